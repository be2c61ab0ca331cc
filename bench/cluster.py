"""What the shared store costs: a PostgreSQL index with audio in an S3 bucket against SQLite
with a local folder, and two replicas against one.

One run starts a PostgreSQL server and a SeaweedFS S3 gateway on loopback ports (as the
tests do), then, for each of the two setups, `huiyin serve` with the default voice:

1. misses: --texts IVR sentences from bench/data/ivr_public.tsv, each asked once
   (`/tts.wav`, one connection), the same texts in both setups;
2. hot-set hits: each text asked --repeat more times;
3. after a restart with an empty local copy ("cold": index and bucket), each text once;
4. after another restart that keeps the local copy ("warm": index and local disk), once.

For SQLite with a local folder, 3 and 4 are the same thing (a restart; the files are on the
local disk). Then it measures hit throughput over --seconds with --clients concurrent
clients against one PostgreSQL+S3 replica, and against two (the clients alternate).

Targets: a hot-set hit costs the same on both setups; a miss adds <= 15 ms (median over the
same texts) over SQLite+local. On 2 cores the throughput figure shows what a second replica
costs on one machine, not how it scales.
Exit status: 0 when the targets hold, 1 when one is missed, 2 when it could not be measured.

usage: .venv/bin/python bench/cluster.py [--texts 20] [--repeat 20] [--clients 8]
                                         [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from bench.procs import (  # noqa: E402
    BenchError,
    Interrupted,
    Processes,
    free_port,
    on_sigterm,
    percentile,
    wait_until,
)
from tests.servers import Postgres, SeaweedFS, postgres_available  # noqa: E402

HOST = "127.0.0.1"
TARGET_MISS_ADDED_MS = 15.0
HIT_SAME_RATIO = 1.5  # a hot-set hit "costs the same": within this factor, or 0.3 ms


def texts(count: int) -> list[str]:
    """IVR sentences from the public sample set (more than it holds: numbered variants)."""
    rows = (REPO / "bench" / "data" / "ivr_public.tsv").read_text(encoding="utf-8").splitlines()
    base = [line.split("\t", 1)[1] for line in rows[1:] if "\t" in line]
    out = list(base[:count])
    n = 0
    while len(out) < count:
        out.append(f"{base[n % len(base)]}工号{n + 1}为您服务。")
        n += 1
    return out


class Gateway:
    """One `huiyin serve` with the given settings, and a kept-alive connection to it."""

    def __init__(self, servers: Processes, env: dict[str, str], data: Path, log: Path) -> None:
        self.port = free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith("HUIYIN_")}
        full.update(env, HUIYIN_DATA_DIR=str(data), HUIYIN_HOST=HOST, HUIYIN_PORT=str(self.port),
                    HUIYIN_LOG_LEVEL="warning")
        self._servers = servers
        self.proc = servers.start([sys.executable, "-m", "gateway.cli", "serve"], log=log,
                                  cwd=REPO, env=full)
        wait_until(self._ready, self.proc, "the gateway", log, 180)
        self._conn = http.client.HTTPConnection(HOST, self.port, timeout=120)

    def _ready(self) -> bool:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def ask(self, text: str) -> tuple[float, str]:
        """Milliseconds for /tts.wav of text, and its X-Cache."""
        started = time.perf_counter()
        self._conn.request("GET", f"/tts.wav?text={urllib.parse.quote(text)}")
        answer = self._conn.getresponse()
        body = answer.read()
        took = (time.perf_counter() - started) * 1000
        if answer.status != 200 or body[:4] != b"RIFF":
            raise BenchError(f"/tts.wav answered {answer.status}: {body[:200]!r}")
        return took, answer.headers.get("X-Cache", "")

    def stop(self) -> None:
        self._conn.close()
        self._servers.stop(self.proc)


def spread(values: Sequence[float]) -> str:
    return f"p50 {percentile(values, 50):7.2f} ms, p99 {percentile(values, 99):7.2f} ms"


def measure(servers: Processes, env: dict[str, str], folder: Path, sentences: list[str],
            repeat: int, name: str) -> dict[str, list[float]]:
    """Misses, hot-set hits, and first hits after a cold and a warm restart."""
    data = folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[float]] = {"miss": [], "hot": [], "cold": [], "warm": []}
    gateway = Gateway(servers, env, data, folder / "gateway.log")
    try:
        for text in sentences:
            took, cache = gateway.ask(text)
            if cache != "MISS":
                raise BenchError(f"{name}: a new text answered X-Cache {cache}")
            figures["miss"].append(took)
        for _ in range(repeat):
            for text in sentences:
                figures["hot"].append(gateway.ask(text)[0])
    finally:
        gateway.stop()
    for phase in ("cold", "warm"):
        if phase == "cold":
            shutil.rmtree(data / "bucket-cache", ignore_errors=True)
        gateway = Gateway(servers, env, data, folder / f"gateway-{phase}.log")
        try:
            for text in sentences:
                took, cache = gateway.ask(text)
                if cache != "HIT":
                    raise BenchError(f"{name}: a stored text answered X-Cache {cache} ({phase})")
                figures[phase].append(took)
        finally:
            gateway.stop()
    return figures


async def throughput(ports: list[int], sentences: list[str], clients: int, seconds: float) -> float:
    """Hits per second over `seconds`, the clients spread over the gateways."""
    done = 0
    stop = time.monotonic() + seconds

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal done
        port = ports[i % len(ports)]
        n = i
        while time.monotonic() < stop:
            text = sentences[n % len(sentences)]
            async with session.get(f"http://{HOST}:{port}/tts.wav",
                                   params={"text": text}) as answer:
                await answer.read()
                if answer.status != 200:
                    raise BenchError(f"a hit answered {answer.status}")
            done += 1
            n += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    return done / seconds


def main(argv: list[str] | None = None) -> int:
    """Start the servers, measure both setups and the replicas; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=20, help="distinct sentences")
    parser.add_argument("--repeat", type=int, default=20, help="hot-set hits per sentence")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput window")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    why = postgres_available()
    if why is not None:
        print(f"cannot measure: {why}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="huiyin-cluster-"))
    servers = Processes()
    postgres = seaweed = None
    try:
        postgres, seaweed = Postgres(), SeaweedFS()
        url = postgres.database()
        from cache.index import Index

        Index(url, upgrade=True).close()
        shared = {"HUIYIN_DATABASE_URL": url, "HUIYIN_AUDIO_STORE": "s3://huiyin-bench/audio",
                  "HUIYIN_S3_ENDPOINT_URL": seaweed.endpoint, "HUIYIN_S3_REGION": "us-east-1",
                  "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
        sentences = texts(args.texts)
        print(f"texts             {len(sentences)}, each a miss, then {args.repeat} hot-set "
              "hits, then one hit after a restart with a cold and with a warm local copy")
        local = measure(servers, {}, tmp / "local", sentences, args.repeat, "SQLite+local")
        cluster = measure(servers, shared, tmp / "cluster", sentences, args.repeat,
                          "PostgreSQL+S3")
        for label, figures in (("SQLite+local", local), ("PostgreSQL+S3", cluster)):
            print(f"{label}")
            for phase, what in (("miss", "miss"), ("hot", "hit, hot set"),
                                ("cold", "hit, cold local copy"), ("warm", "hit, warm local copy")):
                print(f"  {what:22s} {spread(figures[phase])}")
        added = [c - s for c, s in zip(cluster["miss"], local["miss"], strict=True)]
        miss_added = percentile(added, 50)
        hot_local, hot_cluster = percentile(local["hot"], 50), percentile(cluster["hot"], 50)
        print(f"miss added        median {miss_added:+.1f} ms per text (PostgreSQL+S3 - "
              f"SQLite+local; target <= {TARGET_MISS_ADDED_MS:g} ms)")
        print(f"hot-set hit       p50 {hot_cluster:.2f} ms against {hot_local:.2f} ms")

        gateways = []
        try:
            gateways = [Gateway(servers, shared, tmp / f"replica-{i}", tmp / f"replica-{i}.log")
                        for i in range(2)]
            one = asyncio.run(throughput([gateways[0].port], sentences, args.clients,
                                         args.seconds))
            two = asyncio.run(throughput([g.port for g in gateways], sentences, args.clients,
                                         args.seconds))
        finally:
            for gateway in gateways:
                gateway.stop()
        print(f"hit throughput    one replica {one:.0f}/s, two replicas {two:.0f}/s "
              f"({two / one:.2f}x; {args.clients} clients, 2 cores shared by all)")
        hot_ok = hot_cluster <= max(hot_local * HIT_SAME_RATIO, hot_local + 0.3)
        miss_ok = miss_added <= TARGET_MISS_ADDED_MS
        print(f"targets           miss added: {'met' if miss_ok else 'NOT met'}; hot-set hit "
              f"the same: {'met' if hot_ok else 'NOT met'}")
        return 0 if miss_ok and hot_ok else 1
    except BenchError as exc:
        print(f"cannot measure: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted):
        return 130
    finally:
        servers.close()
        for server in (seaweed, postgres):
            if server is not None:
                server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
