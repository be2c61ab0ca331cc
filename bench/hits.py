"""Throughput of the gateway's cache-hit path next to nginx serving the same bytes as a file.

One run starts the gateway (pinned to core 0) with a fresh data folder, warms one phrase,
then loads `/tts.wav?text=...` with wrk (pinned to core 1), so every request pays for
looking its URL up and finding the audio in the hot set. It then stops the gateway, has
Debian's nginx (1 worker, also on core 0) serve the same bytes as a static file, and loads
that with the same wrk command. Targets: gateway req/s >= 0.5 x nginx, gateway p99 <= 10 ms.

--format picks the encoding (ulaw: what IVR platforms fetch) and --route the URL form:
tts (`/tts.<fmt>?text=`), prompts (`/prompts/<key>.<fmt>`) or phrases (`/phrases/<id>.<fmt>`,
the phrase warmed by the admin API). --edge loads the documented edge instead
(deploy/nginx/huiyin.conf.template, nginx with 1 worker on core 0, in front of the gateway),
after checking that its answer is the gateway's, byte for byte; the targets are then those
of the edge: >= 0.8 x bare nginx for prompts and phrases, >= 0.5 x for tts.

Exit status: 0 when both targets hold, 1 when a target is missed, 2 when the run could not
be measured (missing tools, a process that would not start, errors reported by wrk).

The gateway answers these repeat URLs through aiohttp's request cycle, finding a /tts URL
in its URL memo and the audio in the hot set. It logs at warning unless --log-level info,
its default setting, writes the access log line of every request. --log-level both loads
the gateway at info and at warning, in --rounds rounds (default 5; info first, then warning
first, in turn), and prints what an access line costs: the median of the rounds' warning
req/s over info req/s (target: a logged hit costs <= 1.25 x an unlogged one); the table
shows the median round, and the gateway/nginx targets are then checked on its info load.

--access key or signed loads the same URL under `access: keys`, with an API key in a header
or as a signed URL: the cost of checking credentials on every hit.

usage: .venv/bin/python bench/hits.py [--duration 10] [--rounds 5] [--connections 32] [--text "..."]
                                      [--access open|key|signed] [--log-level warning|info|both]
                                      [--format wav|ulaw|...] [--route tts|prompts|phrases]
                                      [--edge]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
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
    tail,
    wait_until,
)
from gateway.signing import sign  # noqa: E402
from synth import codecs  # noqa: E402

DEFAULT_TEXT = "您好，欢迎致电客户服务中心，请问有什么可以帮您？"
SERVER_CORE = "0"
CLIENT_CORE = "1"
TARGET_RATIO = 0.5
TARGET_P99_MS = 10.0
# What a hit with its access line may cost, against one without (--log-level both).
TARGET_LOG_COST = 1.25
# Through the edge: URLs that name stored audio (a key, a phrase id) against those that carry
# the text.
EDGE_TARGETS = {"prompts": 0.8, "phrases": 0.8, "tts": 0.5}
EDGE_TEMPLATE = REPO / "deploy" / "nginx" / "huiyin.conf.template"
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
    types {{ {types} }}
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
    {site}
}}
"""
STATIC_SITE = """server {{
        listen 127.0.0.1:{port};
        root {root};
    }}"""


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


def warm_phrase(base: str, admin: str, text: str, fmt: str) -> tuple[str, str]:
    """Warm `text` as the named phrase `bench` in `fmt` through the admin API; its id and key."""
    body = f"phrases:\n  - id: bench\n    text: {json.dumps(text, ensure_ascii=False)}\n" \
           f"    formats: [{fmt}]\n"
    auth = {"Authorization": f"Bearer {admin}"}
    status, _, made = fetch(f"{base}/admin/warm", data=body.encode(),
                            headers={**auth, "Content-Type": "application/yaml"})
    if status != 202:
        raise BenchError(f"POST /admin/warm answered {status}: {made[:300]!r}")
    job = json.loads(made)["job_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = json.loads(fetch(f"{base}/admin/warm/{job}", headers=auth)[2])
        if state["state"] in ("done", "failed"):
            if state["state"] == "failed" or state["failed"]:
                raise BenchError(f"warming the phrase failed: {state}")
            break
        time.sleep(0.2)
    else:
        raise BenchError("warming the phrase took over 120 s")
    listed = json.loads(fetch(f"{base}/admin/phrases?q=bench", headers=auth)[2])
    (phrase,) = [p for p in listed["phrases"] if p.get("phrase_id") == "bench"]
    return "bench", phrase["key"]


def route_target(args: argparse.Namespace, base: str, admin: str) -> str:
    """The path and query loaded for --route and --format."""
    if args.route == "tts":
        return f"/tts.{args.format}?text={urllib.parse.quote(args.text, safe='')}"
    phrase_id, key = warm_phrase(base, admin, args.text, args.format)
    return f"/prompts/{key}.{args.format}" if args.route == "prompts" else \
        f"/phrases/{phrase_id}.{args.format}"


def check_answer(url: str, headers: dict[str, str], body: bytes, fmt: str) -> None:
    """The answer is the format asked for."""
    expected = codecs.FORMATS[fmt].content_type
    if headers.get("Content-Type") != expected or not body:
        raise BenchError(f"GET {url} answered {headers.get('Content-Type')} "
                         f"({len(body)} bytes), expected {expected}")


def start_gateway(procs: Processes, tmp: Path, args: argparse.Namespace
                  ) -> tuple[subprocess.Popen[bytes], str, str, str]:
    """The gateway on core 0 with a fresh data folder: process, base URL, admin token and
    signing secret."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / "gateway.log"
    data_dir = tmp / "data"
    data_dir.mkdir()
    admin, signing = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = dict(os.environ, HUIYIN_DATA_DIR=str(data_dir), HUIYIN_PORT=str(port),
               HUIYIN_HOST="127.0.0.1", HUIYIN_LOG_LEVEL=args.log_level, HUIYIN_THREADS="1",
               HUIYIN_ACCESS="open" if args.access == "open" else "keys",
               HUIYIN_ADMIN_TOKEN=admin, HUIYIN_URL_SIGNING_SECRET=signing,
               # This checkout's code, whichever checkout the environment was installed from.
               PYTHONPATH=os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))))
    argv, cwd = gateway_command(port)
    gateway = procs.start(["taskset", "-c", SERVER_CORE, *argv], log=log, cwd=cwd, env=env)
    started = time.perf_counter()
    wait_until(lambda: fetch(f"{base}/readyz", timeout=5)[0] == 200, gateway, "the gateway",
               log, timeout=120)
    print(f"gateway    pid {gateway.pid}, port {port}, ready in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return gateway, base, admin, signing


def bench_gateway(procs: Processes, tmp: Path, args: argparse.Namespace,
                  wrk: str) -> tuple[WrkResult, bytes]:
    """Start the gateway, warm the phrase, load its hit path (or the edge in front of it);
    returns the figures and the audio."""
    gateway, base, admin, signing = start_gateway(procs, tmp, args)
    target = route_target(args, base, admin)
    keyed: dict[str, str] = {}
    if args.access == "signed":
        target = sign(target, signing, 3600, bucket=3600)
    elif args.access == "key":
        status, _, made = fetch(f"{base}/admin/keys", headers={
            "Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
            data=json.dumps({"name": "bench", "scope": "synthesize"}).encode())
        if status != 201:
            raise BenchError(f"POST /admin/keys answered {status}: {made[:300]!r}")
        keyed = {"X-API-Key": json.loads(made)["key"]}
    url = base + target
    print(f"access     {args.access}; route {args.route}, format {args.format}; log level "
          f"{args.log_level}", flush=True)
    for expected in ("MISS", "HIT") if args.route == "tts" else ("HIT", "HIT"):
        status, headers, body = fetch(url, headers=keyed)
        if status != 200:
            raise BenchError(f"GET {url} answered {status}: {body[:300]!r}")
        got = headers.get("X-Cache")
        if got != expected:
            raise BenchError(f"GET {url} answered X-Cache: {got}, expected {expected}")
        check_answer(url, headers, body, args.format)
    print(f"phrase     {args.text} ({len(args.text)} chars): {len(body)} bytes", flush=True)

    if args.edge:
        result = bench_edge(procs, tmp, args, wrk, base, target, (headers, body))
        procs.stop(gateway, signal.SIGINT)
        return result, body
    hits_before, misses_before = cache_counts(base)
    result = run_wrk(wrk, url, args.duration, args.connections, keyed)
    hits_after, misses_after = cache_counts(base)
    if misses_after != misses_before:
        raise BenchError(f"{misses_after - misses_before:.0f} cache misses during the load")
    if hits_after - hits_before < result.requests:
        raise BenchError(f"only {hits_after - hits_before:.0f} cache hits for "
                         f"{result.requests} requests")
    procs.stop(gateway, signal.SIGINT)
    if args.log_level == "info":
        # Every line is written by the time the gateway has stopped, however fast they came.
        logged = sum('"logger": "huiyin.access"' in line
                     for line in (tmp / "gateway.log").read_text(encoding="utf-8").splitlines())
        print(f"access log {logged:,} lines for the load's {result.requests:,} requests and the "
              "others (warm-up, metrics)", flush=True)
        if logged < result.requests:
            raise BenchError(f"{logged} access lines for {result.requests} requests")
    return result, body


# Headers the edge adds or sets itself, and the id of the request that filled its cache;
# every other header is the gateway's, unchanged.
EDGE_OWN = {"server", "date", "connection", "keep-alive", "x-edge-cache", "x-request-id"}


def gateway_headers(headers: dict[str, str], *also: str) -> dict[str, str]:
    """An answer's headers, lower-cased, without those the edge sets itself (and `also`)."""
    return {k.lower(): v for k, v in headers.items() if k.lower() not in {*EDGE_OWN, *also}}


def bench_edge(procs: Processes, tmp: Path, args: argparse.Namespace, wrk: str, base: str,
               target: str, direct: tuple[dict[str, str], bytes]) -> WrkResult:
    """The documented edge config in front of the gateway (nginx, 1 worker, core 0): check
    that a cached answer is the gateway's, then load it."""
    nginx = find_tool("nginx")
    edge_tmp = tmp / "edge"
    edge_tmp.mkdir()
    # nginx started as root runs its worker as nobody, which must write the cache.
    for path in (tmp, edge_tmp):
        path.chmod(0o755)
    port = free_port()
    site = (EDGE_TEMPLATE.read_text(encoding="utf-8")
            .replace("${UPSTREAM}", base.removeprefix("http://"))
            .replace("${LISTEN}", f"127.0.0.1:{port}")
            .replace("${CACHE_DIR}", str(edge_tmp / "cache"))
            .replace("access_log /var/log/nginx/access.log huiyin;", "access_log off;"))
    conf = edge_tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=edge_tmp, types="", site=site))
    server = procs.start(
        ["taskset", "-c", SERVER_CORE, nginx, "-p", str(edge_tmp), "-e",
         str(edge_tmp / "nginx-error.log"), "-c", str(conf)],
        log=edge_tmp / "nginx.log", cwd=edge_tmp,
    )
    url = f"http://127.0.0.1:{port}{target}"
    wait_until(lambda: fetch(f"http://127.0.0.1:{port}/healthz", timeout=5)[0] == 200, server,
               "the edge", edge_tmp / "nginx-error.log", timeout=20)
    fetch(url)  # fills the edge's cache
    status, headers, body = fetch(url)
    if status != 200 or headers.get("X-Edge-Cache") != "HIT":
        raise BenchError(f"the edge answered {status}, X-Edge-Cache {headers.get('X-Edge-Cache')}:"
                         f"\n{tail(edge_tmp / 'nginx-error.log')}")
    want_headers, want_body = direct
    mine, theirs = gateway_headers(headers), gateway_headers(want_headers)
    if body != want_body or mine != theirs:
        raise BenchError(f"the edge's answer differs from the gateway's: {mine} != {theirs}")
    print(f"edge       pid {server.pid}, port {port}: a cached answer is the gateway's, "
          "byte for byte", flush=True)
    result = run_wrk(wrk, url, args.duration, args.connections)
    procs.stop(server, signal.SIGTERM)
    return result


def bench_nginx(procs: Processes, tmp: Path, args: argparse.Namespace, wrk: str,
                nginx: str, audio: bytes) -> WrkResult:
    """Serve the audio as a static file with nginx (1 worker) and load it."""
    root = tmp / "www"
    root.mkdir()
    name = f"prompt.{args.format}"
    (root / name).write_bytes(audio)
    # nginx started as root runs its worker as nobody, which must reach the file.
    for path in (tmp, root):
        path.chmod(0o755)
    (root / name).chmod(0o644)
    port = free_port()
    conf = tmp / "nginx.conf"
    # The bare type (a parameter's ';' would end nginx's directive): only the bytes compare.
    types = f"{codecs.FORMATS[args.format].content_type.split(';')[0]} {args.format};"
    conf.write_text(NGINX_CONF.format(tmp=tmp, types=types,
                                      site=STATIC_SITE.format(port=port, root=root)))
    log = tmp / "nginx.log"
    url = f"http://127.0.0.1:{port}/{name}"
    server = procs.start(
        ["taskset", "-c", SERVER_CORE, nginx, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"),
         "-c", str(conf)],
        log=log, cwd=tmp,
    )

    def serving() -> bool:
        status, _, body = fetch(url, timeout=5)
        return status == 200 and body == audio

    wait_until(serving, server, "nginx", tmp / "nginx-error.log", timeout=20)
    print(f"nginx      pid {server.pid}, port {port}, serving {len(audio)} bytes", flush=True)
    result = run_wrk(wrk, url, args.duration, args.connections)
    procs.stop(server, signal.SIGTERM)
    return result


def report(args: argparse.Namespace, runs: dict[str, WrkResult], nginx: WrkResult,
           body_bytes: int, costs: Sequence[float] = ()) -> bool:
    """Print the comparison table; True when the targets hold. `runs` are the gateway's
    (or the edge's) figures by log level, the first the one the targets are checked on;
    `costs` each round's logged / unlogged cost (--log-level both)."""
    name = "edge" if args.edge else "gateway"
    gateway = next(iter(runs.values()))
    width = 9 if len(runs) == 1 else 17

    def row(label: str, r: WrkResult) -> str:
        per = r.read_bytes / r.requests if r.requests else 0.0
        return (f"{label:<{width}}{r.requests_per_s:>10,.0f}{r.p50_ms:>9.2f}{r.p90_ms:>9.2f}"
                f"{r.p99_ms:>9.2f}{r.transfer_per_s / (1 << 20):>11,.0f}{per / 1024:>10.1f}")

    ratio = gateway.requests_per_s / nginx.requests_per_s if nginx.requests_per_s else 0.0
    target = EDGE_TARGETS[args.route] if args.edge else TARGET_RATIO
    ratio_ok = ratio >= target
    p99_ok = gateway.p99_ms <= TARGET_P99_MS
    print()
    print(f"{args.format} body {body_bytes / 1024:.1f} KiB, route {args.route}; p50/p90/p99 in "
          "ms; MiB/s; KiB read per request")
    print(f"{'':<{width}}{'req/s':>10}{'p50':>9}{'p90':>9}{'p99':>9}{'MiB/s':>11}"
          f"{'KiB/req':>10}")
    for level, result in runs.items():
        print(row(name if len(runs) == 1 else f"{name} {level}", result))
    print(row("nginx", nginx))
    print()
    print(f"ratio {name}/nginx  {ratio:.2f}  (target >= {target}: "
          f"{'ok' if ratio_ok else 'MISSED'})")
    print(f"{name} p99          {gateway.p99_ms:.2f} ms  (target <= {TARGET_P99_MS:g} ms: "
          f"{'ok' if p99_ok else 'MISSED'})")
    log_ok = True
    if costs:
        cost = statistics.median(costs)
        log_ok = cost <= TARGET_LOG_COST
        print(f"logged / unlogged hit cost  {cost:.2f}  (warning req/s over info req/s, the "
              f"median of {len(costs)} round(s): {', '.join(f'{c:.2f}' for c in costs)}; "
              f"target <= {TARGET_LOG_COST:g}: {'ok' if log_ok else 'MISSED'})")
    return ratio_ok and p99_ok and log_ok


def main(argv: list[str] | None = None) -> int:
    """Run both loads and print the comparison; the exit status says whether targets hold."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--rounds", type=int, default=5,
                        help="with --log-level both: rounds of an info and a warning load, in "
                             "alternating order; the cost is the median of the rounds' (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="the phrase to warm and load")
    parser.add_argument("--access", choices=("open", "key", "signed"), default="open",
                        help="open (no credentials), key (access: keys, an X-API-Key header) "
                             "or signed (access: keys, a signed URL)")
    parser.add_argument("--log-level", choices=("warning", "info", "both"), default="warning",
                        help="the gateway's log level: info (its default) writes an access "
                             "log line per request; both loads it at info, then at warning, "
                             "and prints the cost of the access line")
    parser.add_argument("--format", default="wav", choices=sorted(codecs.FORMATS),
                        help="the encoding loaded (default wav; IVR platforms fetch ulaw)")
    parser.add_argument("--route", choices=("tts", "prompts", "phrases"), default="tts",
                        help="the URL form: /tts.<fmt>?text=, /prompts/<key>.<fmt> or "
                             "/phrases/<id>.<fmt>")
    parser.add_argument("--edge", action="store_true",
                        help="load the documented nginx edge in front of the gateway")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1:
        parser.error("--duration and --connections must be at least 1")
    if args.edge and args.access != "open":
        parser.error("--edge loads open URLs (the edge never caches keyed answers)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.edge and args.log_level == "both":
        parser.error("--log-level both loads the gateway alone (the edge answers from its cache)")

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
        both = args.log_level == "both"
        # With both levels, rounds of the two loads, in alternating order (info first, then
        # warning first), so a drift of the machine's speed weighs on both alike.
        rounds = [("info", "warning") if r % 2 == 0 else ("warning", "info")
                  for r in range(args.rounds)] if both else [(args.log_level,)]
        measured: list[dict[str, WrkResult]] = []
        for r, levels in enumerate(rounds):
            measured.append({})
            for level in levels:
                # Each load's gateway in its own folder: a fresh store, started as the first.
                run_tmp = tmp / f"{level}-{r}" if both else tmp
                run_tmp.mkdir(exist_ok=True)
                measured[r][level], audio = bench_gateway(
                    procs, run_tmp, argparse.Namespace(**{**vars(args), "log_level": level}), wrk)
        costs = [m["warning"].requests_per_s / m["info"].requests_per_s for m in measured] if both else []
        for r, (m, cost) in enumerate(zip(measured, costs, strict=False), 1):
            print(f"round {r}    " + ", ".join(f"{level} {m[level].requests_per_s:,.0f}"
                                               for level in m) + f" req/s: {cost:.2f}", flush=True)
        # The table shows the round whose cost is the median (the first round otherwise).
        middle = sorted(range(len(measured)), key=lambda r: costs[r])[len(costs) // 2] if both else 0
        runs: dict[str, WrkResult] = {
            level: measured[middle][level] for level in ("info", "warning") if level in measured[middle]}
        nginx_result = bench_nginx(procs, tmp, args, wrk, nginx, audio)
        failures = [f"{name}: {e}" for m in measured for name, r in m.items() for e in r.errors()]
        failures += [f"nginx: {e}" for e in nginx_result.errors()]
        ok = report(args, runs, nginx_result, len(audio), costs)
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
