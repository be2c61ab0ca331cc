"""Throughput of the gateway's cache-hit path next to nginx serving the same WAV as a file.

One run starts the gateway (pinned to core 0) with a fresh data folder, warms one phrase,
then loads `/tts.wav?text=...` with wrk (pinned to core 1), so every request pays for
looking its URL up and finding the audio in the hot set. It then stops the gateway, has
Debian's nginx (1 worker, also on core 0) serve the same bytes as a static file, and loads
that with the same wrk command. Targets: gateway req/s >= 0.5 x nginx, gateway p99 <= 10 ms.

Exit status: 0 when both targets hold, 1 when a target is missed, 2 when the run could not
be measured (missing tools, a process that would not start, errors reported by wrk).

With its default settings the gateway answers these repeat URLs in its hit lane (the
fast_hits setting); --no-fast-hits measures aiohttp's full request cycle instead.

--access key or signed loads the same URL under `access: keys`, with an API key in a header
or as a signed URL: the cost of checking credentials on every hit.

usage: .venv/bin/python bench/hits.py [--duration 10] [--connections 32] [--text "..."]
                                      [--access open|key|signed] [--no-fast-hits]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.procs import (  # noqa: E402
    BenchError,
    Interrupted,
    Processes,
    free_port,
    metric,
    on_sigterm,
    wait_until,
)
from gateway.signing import sign  # noqa: E402

DEFAULT_TEXT = "您好，欢迎致电客户服务中心，请问有什么可以帮您？"
SERVER_CORE = "0"
CLIENT_CORE = "1"
TARGET_RATIO = 0.5
TARGET_P99_MS = 10.0
INSTALL_HINT = "apt-get install nginx wrk"

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    types {{ audio/wav wav; }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/nginx-client-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reported."""

    requests: int
    seconds: float
    read_bytes: float
    requests_per_s: float
    transfer_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    socket_errors: dict[str, int]
    non_2xx: int

    def errors(self) -> list[str]:
        """Descriptions of every error wrk counted; empty when there were none."""
        found = [f"socket errors: {name} {count}"
                 for name, count in self.socket_errors.items() if count]
        if self.non_2xx:
            found.append(f"non-2xx or 3xx responses: {self.non_2xx}")
        return found


def ms(value: str, unit: str) -> float:
    """A wrk duration (number and unit us, ms, s, m or h) in milliseconds."""
    if unit not in _TIME_UNITS:
        raise BenchError(f"unknown time unit {unit!r} in wrk output")
    return float(value) * _TIME_UNITS[unit]


def size_bytes(value: str, prefix: str) -> float:
    """A wrk size (number and binary prefix K, M, G, ...) in bytes."""
    return float(value) * _SIZE_UNITS[prefix]


def parse_wrk(output: str) -> WrkResult:
    """Figures of wrk's report (run with --latency)."""
    def need(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"wrk output lacks {pattern!r}:\n{output}")
        return match

    percentiles = {
        int(p): ms(v, u)
        for p, v, u in re.findall(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
    }
    missing = [p for p in (50, 90, 99) if p not in percentiles]
    if missing:
        raise BenchError(f"wrk output lacks the {missing} percentiles (run with --latency):\n{output}")
    total = need(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)([KMGTP]?)B read")
    rate = need(r"^Requests/sec:\s*([\d.]+)")
    transfer = need(r"^Transfer/sec:\s*([\d.]+)([KMGTP]?)B")
    socket_errors: dict[str, int] = {}
    sock = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)
    if sock:
        for name, count in re.findall(r"(\w+) (\d+)", sock.group(1)):
            socket_errors[name] = int(count)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(total.group(1)),
        seconds=ms(total.group(2), total.group(3)) / 1e3,
        read_bytes=size_bytes(total.group(4), total.group(5)),
        requests_per_s=float(rate.group(1)),
        transfer_per_s=size_bytes(transfer.group(1), transfer.group(2)),
        p50_ms=percentiles[50],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def find_tool(name: str) -> str:
    """The path of an executable (also looking in the sbin folders), or a BenchError."""
    path = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if path is None:
        raise BenchError(f"{name} is not installed; install it with: {INSTALL_HINT}")
    return path


def gateway_command(port: int) -> tuple[list[str], Path]:
    """The command that serves the gateway on port, and the folder to run it in."""
    script = Path(sys.executable).parent / "huiyin"
    if script.exists():
        return [str(script), "serve", "--port", str(port)], REPO
    return [sys.executable, "-m", "gateway", "--port", str(port)], REPO


def fetch(url: str, timeout: float = 60.0, headers: dict[str, str] | None = None,
          data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET (a POST with data); HTTP errors are answers too."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def run_wrk(wrk: str, url: str, duration: int, connections: int,
            headers: dict[str, str] | None = None) -> WrkResult:
    """Load url with wrk (1 thread, pinned to the client core) and parse its report."""
    extra = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    argv = ["taskset", "-c", CLIENT_CORE, wrk, "-t1", f"-c{connections}", f"-d{duration}s",
            "--latency", *extra, url]
    shown = [a if not a.startswith("X-API-Key:") else "X-API-Key: hy_…" for a in argv]
    print(f"  $ {' '.join(shown)}", flush=True)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 60} s") from None
    if done.returncode != 0:
        raise BenchError(f"wrk failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


def cache_counts(base: str) -> tuple[float, float]:
    """The gateway's cache hit and miss counters."""
    status, _, body = fetch(f"{base}/metrics")
    if status != 200:
        raise BenchError(f"GET /metrics answered {status}")
    text = body.decode()
    return metric(text, "huiyin_cache_hits_total"), metric(text, "huiyin_cache_misses_total")


def bench_gateway(procs: Processes, tmp: Path, args: argparse.Namespace,
                  wrk: str) -> tuple[WrkResult, bytes]:
    """Start the gateway, warm the phrase, load its hit path; returns the figures and the WAV."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / "gateway.log"
    data_dir = tmp / "data"
    data_dir.mkdir()
    admin, signing = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = dict(os.environ, HUIYIN_DATA_DIR=str(data_dir), HUIYIN_PORT=str(port),
               HUIYIN_HOST="127.0.0.1", HUIYIN_LOG_LEVEL="warning", HUIYIN_THREADS="1",
               HUIYIN_FAST_HITS="false" if args.no_fast_hits else "true",
               HUIYIN_ACCESS="open" if args.access == "open" else "keys",
               HUIYIN_ADMIN_TOKEN=admin, HUIYIN_URL_SIGNING_SECRET=signing)
    argv, cwd = gateway_command(port)
    gateway = procs.start(["taskset", "-c", SERVER_CORE, *argv], log=log, cwd=cwd, env=env)
    started = time.perf_counter()
    wait_until(lambda: fetch(f"{base}/readyz", timeout=5)[0] == 200, gateway, "the gateway",
               log, timeout=120)
    print(f"gateway    pid {gateway.pid}, port {port}, ready in "
          f"{time.perf_counter() - started:.1f} s", flush=True)

    target = f"/tts.wav?text={urllib.parse.quote(args.text, safe='')}"
    keyed: dict[str, str] = {}
    if args.access == "signed":
        target = sign(target, signing, 3600)
    elif args.access == "key":
        status, _, made = fetch(f"{base}/admin/keys", headers={
            "Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
            data=json.dumps({"name": "bench", "scope": "synthesize"}).encode())
        if status != 201:
            raise BenchError(f"POST /admin/keys answered {status}: {made[:300]!r}")
        keyed = {"X-API-Key": json.loads(made)["key"]}
    url = base + target
    print(f"access     {args.access}", flush=True)
    for expected in ("MISS", "HIT"):
        status, headers, body = fetch(url, headers=keyed)
        if status != 200:
            raise BenchError(f"GET {url} answered {status}: {body[:300]!r}")
        got = headers.get("X-Cache")
        if got != expected:
            raise BenchError(f"GET {url} answered X-Cache: {got}, expected {expected}")
        if headers.get("Content-Type", "").split(";")[0] != "audio/wav" or body[:4] != b"RIFF":
            raise BenchError(f"GET {url} did not answer a WAV: {headers.get('Content-Type')}")
    print(f"phrase     {args.text} ({len(args.text)} chars): {len(body)} bytes, MISS then HIT",
          flush=True)

    hits_before, misses_before = cache_counts(base)
    result = run_wrk(wrk, url, args.duration, args.connections, keyed)
    hits_after, misses_after = cache_counts(base)
    if misses_after != misses_before:
        raise BenchError(f"{misses_after - misses_before:.0f} cache misses during the load")
    if hits_after - hits_before < result.requests:
        raise BenchError(f"only {hits_after - hits_before:.0f} cache hits for "
                         f"{result.requests} requests")
    procs.stop(gateway, signal.SIGINT)
    return result, body


def bench_nginx(procs: Processes, tmp: Path, args: argparse.Namespace, wrk: str,
                nginx: str, wav: bytes) -> WrkResult:
    """Serve the WAV as a static file with nginx (1 worker) and load it."""
    root = tmp / "www"
    root.mkdir()
    (root / "prompt.wav").write_bytes(wav)
    # nginx started as root runs its worker as nobody, which must reach the file.
    for path in (tmp, root):
        path.chmod(0o755)
    (root / "prompt.wav").chmod(0o644)
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root))
    log = tmp / "nginx.log"
    url = f"http://127.0.0.1:{port}/prompt.wav"
    server = procs.start(
        ["taskset", "-c", SERVER_CORE, nginx, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"),
         "-c", str(conf)],
        log=log, cwd=tmp,
    )

    def serving() -> bool:
        status, _, body = fetch(url, timeout=5)
        return status == 200 and body == wav

    wait_until(serving, server, "nginx", tmp / "nginx-error.log", timeout=20)
    print(f"nginx      pid {server.pid}, port {port}, serving {len(wav)} bytes", flush=True)
    result = run_wrk(wrk, url, args.duration, args.connections)
    procs.stop(server, signal.SIGTERM)
    return result


def report(gateway: WrkResult, nginx: WrkResult, body_bytes: int) -> bool:
    """Print the comparison table; True when both targets hold."""
    def row(name: str, r: WrkResult) -> str:
        per = r.read_bytes / r.requests if r.requests else 0.0
        return (f"{name:<9}{r.requests_per_s:>10,.0f}{r.p50_ms:>9.2f}{r.p90_ms:>9.2f}"
                f"{r.p99_ms:>9.2f}{r.transfer_per_s / (1 << 20):>11,.0f}{per / 1024:>10.1f}")

    ratio = gateway.requests_per_s / nginx.requests_per_s if nginx.requests_per_s else 0.0
    ratio_ok = ratio >= TARGET_RATIO
    p99_ok = gateway.p99_ms <= TARGET_P99_MS
    print()
    print(f"WAV body {body_bytes / 1024:.1f} KiB; p50/p90/p99 in ms; MiB/s; KiB read per request")
    print(f"{'':<9}{'req/s':>10}{'p50':>9}{'p90':>9}{'p99':>9}{'MiB/s':>11}{'KiB/req':>10}")
    print(row("gateway", gateway))
    print(row("nginx", nginx))
    print()
    print(f"ratio gateway/nginx  {ratio:.2f}  (target >= {TARGET_RATIO}: "
          f"{'ok' if ratio_ok else 'MISSED'})")
    print(f"gateway p99          {gateway.p99_ms:.2f} ms  (target <= {TARGET_P99_MS:g} ms: "
          f"{'ok' if p99_ok else 'MISSED'})")
    return ratio_ok and p99_ok


def main(argv: list[str] | None = None) -> int:
    """Run both loads and print the comparison; the exit status says whether targets hold."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="the phrase to warm and load")
    parser.add_argument("--access", choices=("open", "key", "signed"), default="open",
                        help="open (no credentials), key (access: keys, an X-API-Key header) "
                             "or signed (access: keys, a signed URL)")
    parser.add_argument("--no-fast-hits", action="store_true",
                        help="turn the gateway's hit lane off: every hit takes aiohttp's full cycle")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1:
        parser.error("--duration and --connections must be at least 1")

    try:
        wrk, nginx = find_tool("wrk"), find_tool("nginx")
        find_tool("taskset")
    except BenchError as exc:
        print(f"hits: error: {exc}", file=sys.stderr)
        return 2
    if len(os.sched_getaffinity(0)) < 2 or (os.cpu_count() or 1) < 2:
        print("hits: warning: fewer than 2 cores; server and client share one", file=sys.stderr)

    signal.signal(signal.SIGTERM, on_sigterm)
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="huiyin-hits-"))
    try:
        gateway, wav = bench_gateway(procs, tmp, args, wrk)
        nginx_result = bench_nginx(procs, tmp, args, wrk, nginx, wav)
        failures = [f"{name}: {e}" for name, r in (("gateway", gateway), ("nginx", nginx_result))
                    for e in r.errors()]
        ok = report(gateway, nginx_result, len(wav))
        if failures:
            print("\nwrk reported errors:", file=sys.stderr)
            for failure in failures:
                print(f"  {failure}", file=sys.stderr)
            return 2
        return 0 if ok else 1
    except BenchError as exc:
        print(f"hits: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted):
        print("hits: interrupted", file=sys.stderr)
        return 130
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
