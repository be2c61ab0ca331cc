"""Resident memory of a gateway through a flood of misses, with its default settings.

Starts the gateway (`python -m gateway`, a fresh data folder, every setting at its default
but the port) and, once it is ready, sends distinct texts for `--duration` seconds from
`--clients` clients at once, in several formats, so every request is a miss (a 503 when the
queue is full is counted, not retried). The gateway's resident set size (VmRSS) is sampled
every half second; the bench prints it when ready, its peak during the flood and at the end,
next to the target, and the misses served per second. `--setting NAME=VALUE` (repeatable)
gives the gateway one setting as HUIYIN_NAME, to see what a part holds of the peak (such as
`hot_set_bytes=0`).

usage: .venv/bin/python bench/memory.py [--duration 60] [--clients 8] [--setting NAME=VALUE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hits import fetch  # noqa: E402
from bench.procs import BenchError, Processes, free_port, wait_until  # noqa: E402
from bench.synth_rtf import DEFAULT_CORPUS, read_corpus  # noqa: E402

TARGET_MB = 300.0
FORMATS = ("ulaw", "wav", "mp3", "wav16")


def rss_mb(pid: int) -> float:
    """The process's resident set size in MB (1e6 bytes), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no VmRSS for pid {pid}")


async def flood(base: str, duration: float, clients: int, pid: int, formats: list[str]
                ) -> tuple[Counter[int], list[float]]:
    """Distinct misses from `clients` clients until `duration` has passed; the statuses and
    the RSS samples taken meanwhile."""
    sentences = [text for _, text in read_corpus(DEFAULT_CORPUS)]
    statuses: Counter[int] = Counter()
    samples: list[float] = []
    ends = time.monotonic() + duration
    counter = iter(range(10**9))

    async def client(session: ClientSession) -> None:
        while time.monotonic() < ends:
            n = next(counter)
            text = f"{sentences[n % len(sentences)]}您的编号是{n}。"
            fmt = formats[n % len(formats)]
            async with session.get(f"{base}/tts.{fmt}", params={"text": text}) as response:
                await response.read()
                statuses[response.status] += 1

    async def sampler() -> None:
        while time.monotonic() < ends:
            samples.append(rss_mb(pid))
            await asyncio.sleep(0.5)

    async with ClientSession(timeout=ClientTimeout(total=120)) as session:
        await asyncio.gather(sampler(), *[client(session) for _ in range(clients)])
    return statuses, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--formats", nargs="+", default=list(FORMATS),
                        help="encodings asked for, in turn")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a gateway setting other than its default (HUIYIN_NAME=VALUE)")
    args = parser.parse_args()
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="huiyin-memory-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "gateway.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUIYIN_")}
        env.update(HUIYIN_DATA_DIR=str(Path(tmp) / "data"), HUIYIN_PORT=str(port))
        for setting in args.setting:
            name, _, value = setting.partition("=")
            env[f"HUIYIN_{name.upper()}"] = value
        try:
            gateway = procs.start([sys.executable, "-m", "gateway"], log=log, cwd=REPO, env=env)
            wait_until(lambda: fetch(f"{base}/readyz", timeout=5)[0] == 200, gateway,
                       "the gateway", log, timeout=120)
            ready = rss_mb(gateway.pid)
            started = time.monotonic()
            statuses, samples = asyncio.run(flood(base, args.duration, args.clients, gateway.pid,
                                             args.formats))
            took = time.monotonic() - started
            end = rss_mb(gateway.pid)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
        finally:
            procs.close()
    peak = max([ready, end, *samples])
    answered = ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
    print(f"flood             {args.duration:.0f} s, {args.clients} clients, distinct texts in "
          f"{', '.join(args.formats)}: {answered}"
          + (f"; settings {', '.join(args.setting)}" if args.setting else ""))
    print(f"misses served     {statuses[200] / took:.2f}/s ({statuses[200]} in {took:.1f} s)")
    print(f"RSS               ready {ready:.0f} MB, peak {peak:.0f} MB, end {end:.0f} MB  "
          f"(target: peak <= {TARGET_MB:.0f} MB)")
    return 0 if peak <= TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
