"""Latency of the pronunciation preview, GET /api/pronounce, for ~100-character texts.

A gateway runs in this process on a free port with the default voice; each of the texts
is asked for once, so every figure includes the frontend's whole analysis (normalization,
segmentation, pinyin, symbols) and none comes from its memory of recent texts, except for
sentences the texts share (the frontend remembers each sentence's normalization). Then each
text again with its last character changed, as while an author types. Target: p99 <= 10 ms
for the new texts.

Then texts of the longest length a request may have (max_text_length: 1,024 characters),
each one short pattern repeated (`，。`, `#*`, `2二`, ...): nothing in them anchors the
alignment of the written and the normalized text that marks what a rule wrote. Each is asked twice: the
first answer includes the analysis (the normalizer's time on such texts), the second finds
the analysis remembered and costs the preview alone. Target: the slowest preview alone
<= 100 ms. Exit status 1 when a target is missed.

usage: .venv/bin/python bench/pronounce.py [--texts 100] [--corpus PATH]
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

from bench.procs import percentile  # noqa: E402
from config import load_settings  # noqa: E402
from gateway import create_app  # noqa: E402
from gateway.app import url_limit  # noqa: E402

DEFAULT_CORPUS = REPO / "bench" / "data" / "ivr_public.tsv"
TARGET_P99_MS = 10.0
# Patterns repeated to the longest text a request may have.
REPEATED = ("，。", "#*", "2二", "a1", "1-", "第2位，", "请按1，", "好", "WiFi ", "一102")
TARGET_REPEATED_MS = 100.0


def distinct_texts(corpus: Path, count: int, length: int = 100) -> list[str]:
    """Distinct texts of about `length` characters, each a run of corpus sentences taken
    with its own start and stride."""
    with corpus.open(encoding="utf-8") as fh:
        sentences = [row["text"] for row in csv.DictReader(fh, delimiter="\t")]
    texts: list[str] = []
    seen: set[str] = set()
    stride = 1
    while len(texts) < count and stride <= len(sentences):
        for start in range(len(sentences)):
            text, i = "", start
            while len(text) < length:
                text += sentences[i % len(sentences)]
                i += stride
            text = text[:length]
            if text not in seen:
                seen.add(text)
                texts.append(text)
            if len(texts) == count:
                break
        stride += 1
    return texts


async def bench(count: int, corpus: Path) -> int:
    texts = distinct_texts(corpus, count + 1)
    with tempfile.TemporaryDirectory(prefix="huiyin-pronounce-") as tmp:
        settings = dataclasses.replace(load_settings(), data_dir=Path(tmp), access="open")
        # As the gateway serves: a URL may carry the longest text, percent-encoded.
        runner = web.AppRunner(create_app(settings), max_line_size=url_limit(settings.max_text_length))
        await runner.setup()  # loads the engine
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/api/pronounce"
        times: list[float] = []
        edited: list[float] = []
        repeated: list[tuple[str, float, float]] = []
        try:
            async with ClientSession() as session:
                async def ask(text: str) -> float:
                    started = time.perf_counter()
                    async with session.get(url, params={"text": text}) as response:
                        body = await response.json()
                        if response.status != 200:
                            raise RuntimeError(f"{response.status}: {body}")
                    return (time.perf_counter() - started) * 1000

                async def refused(text: str) -> float:
                    started = time.perf_counter()
                    async with session.get(url, params={"text": text}) as response:
                        await response.read()
                        if response.status != 422:
                            raise RuntimeError(f"{response.status} for a text with nothing to say")
                    return (time.perf_counter() - started) * 1000

                await ask(texts[-1])  # the first call loads the segmenter's dictionary
                for text in texts[:-1]:
                    times.append(await ask(text))
                # As an author types: the same texts with their last character changed, so
                # that one sentence is new and the others were read a moment ago.
                for text in texts[:-1]:
                    edited.append(await ask(text[:-1] + ("好" if text[-1] != "好" else "的")))
                for pattern in REPEATED:
                    text = (pattern * settings.max_text_length)[:settings.max_text_length]
                    if pattern == "，。":  # nothing to say: refused, after the same preview
                        repeated.append((pattern, await refused(text), await refused(text)))
                    else:
                        repeated.append((pattern, await ask(text), await ask(text)))
        finally:
            await runner.cleanup()
    lengths = [len(t) for t in texts[:-1]]
    p50, p99 = statistics.median(times), percentile(times, 99)
    print(f"texts        {len(times)} distinct, {min(lengths)}-{max(lengths)} characters, each asked once")
    print(f"latency      p50 {p50:.1f} ms, p90 {percentile(times, 90):.1f} ms, p99 {p99:.1f} ms, "
          f"max {max(times):.1f} ms")
    print(f"one edited   p50 {statistics.median(edited):.1f} ms, p90 {percentile(edited, 90):.1f} ms, "
          f"p99 {percentile(edited, 99):.1f} ms (the last character changed: one sentence new)")
    ok = p99 <= TARGET_P99_MS
    print(f"target       p99 <= {TARGET_P99_MS:.0f} ms for new texts: {'ok' if ok else 'MISSED'}")
    print(f"repeated     {settings.max_text_length} characters of one pattern, asked twice (analysis and "
          "preview, then the preview alone):")
    for pattern, first, again in repeated:
        print(f"  {pattern!r:12} {first:7.1f} ms, then {again:6.1f} ms")
    worst = max(repeated, key=lambda r: r[2])
    repeated_ok = worst[2] <= TARGET_REPEATED_MS
    print(f"target       the preview alone <= {TARGET_REPEATED_MS:.0f} ms (slowest: {worst[0]!r}, "
          f"{worst[2]:.1f} ms): {'ok' if repeated_ok else 'MISSED'}")
    return 0 if ok and repeated_ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=100, help="how many distinct texts")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="TSV with id and text columns")
    args = parser.parse_args(argv)
    if args.texts < 1:
        parser.error("--texts must be at least 1")
    return asyncio.run(bench(args.texts, args.corpus))


if __name__ == "__main__":
    sys.exit(main())
