"""A legitimate client beside hostile ones: what refused and pathological requests cost others.

One run starts the gateway at its default settings under `access: keys`, gives the
legitimate client a key of its own and each of four hostile clients a key limited to one
miss a minute (spent at once on a short text, so that each is refused from then on),
stores one prompt, then measures the legitimate client, quiet, for
--quiet seconds and beside the hostile clients for --seconds: hits on the stored prompt
(/tts.ulaw, paced), new prompts one after the other (each a text never asked before), and
/healthz (paced). The hostile clients, each a process of its own sending as fast as it is
answered: long texts of symbols (refused: over their rate), SSML documents of 999 <s>
elements (refused), and two sending 1,024-character pathological previews
(`，。` repeated; refused past their first). Targets: the legitimate hit p99 <= 10 ms, its
new-prompt median <= 1.5 x quiet, /healthz p99 <= 20 ms.

Exit status: 0 when every target holds, 1 when one is missed, 2 when the run could not be
measured.

usage: .venv/bin/python bench/hostile.py [--quiet 10] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.hits import fetch, gateway_command  # noqa: E402
from bench.procs import (  # noqa: E402
    BenchError,
    Processes,
    free_port,
    on_sigterm,
    percentile,
    wait_until,
)

STORED = "您好，欢迎致电客户服务中心。"
HIT_TARGET_MS = 10.0
NEW_PROMPT_RATIO = 1.5
HEALTHZ_TARGET_MS = 20.0
HIT_INTERVAL = 0.01  # 100 hits a second
HEALTHZ_INTERVAL = 0.05  # a probe every 50 ms
ABUSES = ("long-text", "ssml", "preview", "preview")


def abuse_request(kind: str, n: int) -> tuple[str, str, bytes | None, dict[str, str]]:
    """Method, target, body and headers of a hostile client's n-th request."""
    if kind == "long-text":  # a new text each time, so no memo knows it
        text = f"{n}" + "#*" * 500
        return "GET", f"/tts.ulaw?text={urllib.parse.quote(text[:1024], safe='')}", None, {}
    if kind == "ssml":
        body = "<speak>" + f"<s>{n}</s>" + "<s>好</s>" * 998 + "</speak>"
        return "POST", "/api/tts", json.dumps({"text": body}).encode(), {
            "Content-Type": "application/json"}
    text = "，。" * 512
    return "GET", f"/api/pronounce?text={urllib.parse.quote(text, safe='')}", None, {}


def abuse(kind: str, port: int, key: str, seconds: float) -> int:
    """A hostile client: request after request for `seconds`; prints its statuses as JSON."""
    statuses: Counter[int] = Counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        if n == 1:
            print("sending", flush=True)  # answered once: the measuring may start
        method, target, body, headers = abuse_request(kind, n)
        n += 1
        try:
            connection.request(method, target, body=body,
                               headers={**headers, "Authorization": f"Bearer {key}"})
            response = connection.getresponse()
            response.read()
            statuses[response.status] += 1
        except (OSError, http.client.HTTPException):
            statuses[0] += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    print(json.dumps({"kind": kind, "statuses": statuses}), flush=True)
    return 0


class Legit:
    """The legitimate client's three streams, their latencies in ms by kind."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}"}
        self.errors: list[str] = []
        self._n = 0

    async def run(self, seconds: float, label: str) -> dict[str, list[float]]:
        """Hits, new prompts and probes for `seconds`."""
        latencies: dict[str, list[float]] = {"hit": [], "new": [], "healthz": []}
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession(self.base, headers=self.headers) as session:
            hit = f"/tts.ulaw?text={urllib.parse.quote(STORED)}"

            async def paced(kind: str, target: str, interval: float) -> None:
                while time.monotonic() < deadline:
                    await self._get(session, target, latencies[kind])
                    await asyncio.sleep(interval)

            async def new_prompts() -> None:
                while time.monotonic() < deadline:
                    self._n += 1
                    text = f"您的{label}工单{self._n:04d}号已受理。"
                    await self._get(session, f"/tts.ulaw?text={urllib.parse.quote(text)}",
                                    latencies["new"])

            await asyncio.gather(paced("hit", hit, HIT_INTERVAL),
                                 paced("healthz", "/healthz", HEALTHZ_INTERVAL), new_prompts())
        return latencies

    async def _get(self, session: aiohttp.ClientSession, target: str, into: list[float]) -> None:
        started = time.perf_counter()
        async with session.get(target) as response:
            await response.read()
            if response.status != 200:
                self.errors.append(f"GET {target[:60]} answered {response.status}")
                return
        into.append((time.perf_counter() - started) * 1000)


def make_key(base: str, admin: str, name: str, **fields: int) -> str:
    """A new synthesize key through the admin API."""
    status, _, body = fetch(f"{base}/admin/keys", data=json.dumps(
        {"name": name, "scope": "synthesize", **fields}).encode(), headers={
        "Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    if status != 201:
        raise BenchError(f"POST /admin/keys answered {status}: {body[:200]!r}")
    return str(json.loads(body)["key"])


def summary(latencies: dict[str, list[float]]) -> dict[str, float]:
    """The figures the targets are about."""
    for kind, values in latencies.items():
        if not values:
            raise BenchError(f"no successful {kind} request was measured")
    return {
        "hit_p50": percentile(latencies["hit"], 50), "hit_p99": percentile(latencies["hit"], 99),
        "new_median": statistics.median(latencies["new"]), "new_count": len(latencies["new"]),
        "healthz_p50": percentile(latencies["healthz"], 50),
        "healthz_p99": percentile(latencies["healthz"], 99),
    }


def measure(args: argparse.Namespace, procs: Processes, tmp: Path) -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin = secrets.token_urlsafe(24)
    data_dir = tmp / "data"
    log = tmp / "gateway.log"
    env = dict(os.environ, HUIYIN_DATA_DIR=str(data_dir), HUIYIN_PORT=str(port),
               HUIYIN_HOST="127.0.0.1", HUIYIN_ACCESS="keys", HUIYIN_ADMIN_TOKEN=admin)
    argv, cwd = gateway_command(port)
    gateway = procs.start(argv, log=log, cwd=cwd, env=env)
    wait_until(lambda: fetch(f"{base}/readyz", timeout=5)[0] == 200, gateway, "the gateway",
               log, timeout=120)
    legit_key = make_key(base, admin, "legit")
    hostile_keys = [make_key(base, admin, f"hostile{n}", rate=1) for n in range(len(ABUSES))]
    for n, key in enumerate(hostile_keys):  # each spends its one miss of the minute now
        text = urllib.parse.quote(f"第{n}位来电者。")
        status, _, _ = fetch(f"{base}/tts.ulaw?text={text}", headers={"Authorization": f"Bearer {key}"})
        if status != 200:
            raise BenchError(f"a hostile client's first miss answered {status}")
    status, _, _ = fetch(f"{base}/tts.ulaw?text={urllib.parse.quote(STORED)}",
                         headers={"Authorization": f"Bearer {legit_key}"})
    if status != 200:
        raise BenchError(f"storing the prompt answered {status}")
    legit = Legit(base, legit_key)
    print(f"quiet: the legitimate client alone for {args.quiet:.0f} s", flush=True)
    quiet = summary(asyncio.run(legit.run(args.quiet, "quiet")))
    print(f"hostile: beside {len(ABUSES)} hostile clients ({', '.join(ABUSES)}) for "
          f"{args.seconds:.0f} s", flush=True)
    logs = [tmp / f"hostile-{n}.log" for n in range(len(ABUSES))]
    hostiles = [procs.start([sys.executable, __file__, "--abuse", kind, "--port", str(port),
                             "--key", key, "--seconds", str(args.seconds + 5)],
                            log=log, cwd=REPO)
                for kind, key, log in zip(ABUSES, hostile_keys, logs, strict=True)]
    for proc, log in zip(hostiles, logs, strict=True):  # each started and answered once
        wait_until(lambda log=log: "sending" in log.read_text(), proc, "a hostile client", log,
                   timeout=60)
    loud = summary(asyncio.run(legit.run(args.seconds, "hostile")))
    for proc in hostiles:
        proc.wait(timeout=args.seconds + 120)
    for log in logs:
        print(log.read_text().strip().splitlines()[-1], flush=True)
    if legit.errors:
        raise BenchError(f"the legitimate client was refused: {legit.errors[:5]}")
    rows = [("hit p50 (ms)", "hit_p50", None), ("hit p99 (ms)", "hit_p99", HIT_TARGET_MS),
            ("new prompt median (ms)", "new_median", quiet["new_median"] * NEW_PROMPT_RATIO),
            ("new prompts", "new_count", None),
            ("/healthz p50 (ms)", "healthz_p50", None),
            ("/healthz p99 (ms)", "healthz_p99", HEALTHZ_TARGET_MS)]
    print(f"\n{'':26} {'quiet':>9} {'hostile':>9} {'target':>9}")
    missed = []
    for label, name, target in rows:
        shown = f"<= {target:.1f}" if target is not None else ""
        print(f"{label:26} {quiet[name]:9.1f} {loud[name]:9.1f} {shown:>9}")
        if target is not None and loud[name] > target:
            missed.append(label)
    ratio = loud["new_median"] / quiet["new_median"]
    print(f"\nnew prompt median, hostile / quiet: {ratio:.2f} (target <= {NEW_PROMPT_RATIO})")
    print("targets: " + ("met" if not missed else "missed: " + ", ".join(missed)))
    return 1 if missed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds measured quiet")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="seconds measured beside the hostile clients")
    parser.add_argument("--abuse", choices=sorted(set(ABUSES)), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.abuse is not None:
        return abuse(args.abuse, args.port, args.key, args.seconds)
    signal.signal(signal.SIGTERM, on_sigterm)
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="huiyin-hostile-") as tmp:
            return measure(args, procs, Path(tmp))
    except BenchError as exc:
        print(f"hostile: {exc}", file=sys.stderr)
        return 2
    finally:
        procs.close()


if __name__ == "__main__":
    sys.exit(main())
