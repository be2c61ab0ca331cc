"""Warm-up speed: a phrase file into an empty store, and checking a large phrase file.

Prints, first, how long a 10,000-phrase file (made from the IVR corpus) takes to parse and
to check (each phrase made a request, as a warm-up makes it: voice, settings, text); then
phrases per second and audio seconds per second of warming the file, for its own formats or
the ones given. `--phrases N` warms N phrases made from the corpus instead of the file.

usage: .venv/bin/python bench/warm.py [--file PATH | --phrases N] [--formats ulaw wav16]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.synth_rtf import DEFAULT_CORPUS, read_corpus  # noqa: E402
from config import load_settings  # noqa: E402
from config.phrases import PhraseSpec, load_phrase_files  # noqa: E402
from gateway.app import load_default_engines  # noqa: E402
from gateway.services import Services, open_services, phrase_request  # noqa: E402
from synth import codecs  # noqa: E402

CHECK_PHRASES = 10_000
CHECK_TARGET = 2.0  # seconds


def corpus_phrases(count: int, formats: list[str]) -> str:
    """A phrase file of `count` distinct phrases: corpus sentences, each with a number."""
    texts = [text for _, text in read_corpus(DEFAULT_CORPUS)]
    lines = [f"defaults:\n  formats: [{', '.join(formats)}]\nphrases:"]
    for n in range(count):
        lines.append(f"  - id: p{n:05d}\n    text: {texts[n % len(texts)]}请按{n}号键。\n"
                     f"    tags: [menu, group{n % 7}]")
    return "\n".join(lines) + "\n"


def check_large_file(services: Services, tmp: Path) -> None:
    """Parse and check a 10,000-phrase file as `huiyin warm` and POST /admin/warm do."""
    path = tmp / "large.yaml"
    path.write_text(corpus_phrases(CHECK_PHRASES, ["ulaw", "wav16"]), encoding="utf-8")
    started = time.perf_counter()
    specs = load_phrase_files([path], formats=list(codecs.FORMATS))
    parsed = time.perf_counter()
    for spec in specs:
        phrase_request(services.voices, spec)
    checked = time.perf_counter()
    print(f"large file        {len(specs)} phrases ({path.stat().st_size / 1e6:.1f} MB): parsed "
          f"in {parsed - started:.2f} s, checked in {checked - parsed:.2f} s, "
          f"{checked - started:.2f} s in all  (target <= {CHECK_TARGET:.0f} s)")


async def bench(file: Path, count: int | None, formats: list[str] | None) -> int:
    with tempfile.TemporaryDirectory(prefix="huiyin-warm-") as tmp:
        settings = dataclasses.replace(load_settings(), data_dir=Path(tmp))
        if count:
            file = Path(tmp) / f"{count}.yaml"
            file.write_text(corpus_phrases(count, formats or ["ulaw", "wav16"]), encoding="utf-8")
        specs: tuple[PhraseSpec, ...] = load_phrase_files([file], formats=list(codecs.FORMATS))
        if formats:
            specs = tuple(dataclasses.replace(s, formats=tuple(formats)) for s in specs)
        async with open_services(settings, None, load_default_engines) as services:
            check_large_file(services, Path(tmp))
            started = time.perf_counter()
            job = await services.warmer.run(specs)
            elapsed = time.perf_counter() - started
            audio = sum(r.duration for r in services.store.index.all_phrases())
        used = sorted({f for s in specs for f in s.formats})
        print(f"file              {file.name}: {job.total} phrases, formats {', '.join(used)}")
        print(f"warmed            {job.done - len(job.failed)} ok, {len(job.failed)} failed, "
              f"{job.synthesized} synthesized")
        print(f"elapsed           {elapsed:.1f} s")
        print(f"phrases/s         {job.total / elapsed:.2f}")
        print(f"audio-seconds/s   {audio / elapsed:.1f}  ({audio:.0f} s of audio; target >= 30 "
              "for 1,000 phrases in two formats)")
        return 0 if not job.failed else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=REPO / "config" / "phrases.example.yaml")
    parser.add_argument("--phrases", type=int, metavar="N",
                        help="warm N phrases made from the IVR corpus instead of --file")
    parser.add_argument("--formats", nargs="+", help="encodings to prepare (default: the file's)")
    args = parser.parse_args()
    return asyncio.run(bench(args.file, args.phrases, args.formats))


if __name__ == "__main__":
    sys.exit(main())
