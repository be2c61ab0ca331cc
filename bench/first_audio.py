"""First-audio latency for ~100-character texts, streamed and not streamed.

A gateway runs in this process on a free port; each trial asks for a text not yet in the
store, so every figure is a miss. "First audio" is the time until the first audio bytes
of the response body arrive.

usage: .venv/bin/python bench/first_audio.py [--trials 10] [--corpus PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import ClientSession, web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import load_settings  # noqa: E402
from gateway import create_app  # noqa: E402

DEFAULT_CORPUS = REPO / "bench" / "data" / "ivr_public.tsv"
TARGET_MS = 100


def hundred_character_texts(corpus: Path, count: int) -> list[str]:
    """Distinct texts of about 100 characters, made of consecutive corpus sentences."""
    with corpus.open(encoding="utf-8") as fh:
        sentences = [row["text"] for row in csv.DictReader(fh, delimiter="\t")]
    texts = []
    for start in range(count):
        text, i = "", start
        while len(text) < 100:
            text += sentences[i % len(sentences)]
            i += 1
        texts.append(text)
    return texts


async def first_byte(session: ClientSession, url: str, text: str) -> tuple[float, float]:
    """(seconds to the first body bytes, seconds to the end) for one request."""
    started = time.perf_counter()
    async with session.get(url, params={"text": text}) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {await response.text()}")
        await response.content.readany()
        first = time.perf_counter() - started
        await response.read()
        return first, time.perf_counter() - started


async def bench(trials: int, corpus: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="huiyin-first-") as tmp:
        settings = dataclasses.replace(load_settings(), data_dir=Path(tmp), max_text_length=1024)
        runner = web.AppRunner(create_app(settings))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        texts = hundred_character_texts(corpus, 2 * trials + 1)
        results: dict[str, list[tuple[float, float]]] = {"streamed": [], "whole": []}
        try:
            async with ClientSession() as session:
                await first_byte(session, f"{base}/tts.pcm", texts[-1])  # warm-up
                for i in range(trials):
                    results["streamed"].append(await first_byte(session, f"{base}/tts/stream.pcm", texts[2 * i]))
                    results["whole"].append(await first_byte(session, f"{base}/tts.pcm", texts[2 * i + 1]))
        finally:
            await runner.cleanup()
    lengths = [len(t) for t in texts[:-1]]
    print(f"texts             {trials} x 2, {min(lengths)}-{max(lengths)} characters, every one a miss")
    for name, rows in results.items():
        firsts = sorted(r[0] * 1000 for r in rows)
        ends = [r[1] * 1000 for r in rows]
        print(f"{name:17s} first audio median {statistics.median(firsts):.0f} ms, "
              f"max {max(firsts):.0f} ms; complete median {statistics.median(ends):.0f} ms")
    median = statistics.median(r[0] for r in results["streamed"]) * 1000
    print(f"target            streamed first audio <= {TARGET_MS} ms: "
          f"{'met' if median <= TARGET_MS else 'NOT met'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    return asyncio.run(bench(args.trials, args.corpus))


if __name__ == "__main__":
    sys.exit(main())
