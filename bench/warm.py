"""Warm-up speed: the example phrase file into an empty store.

Prints phrases per second and audio seconds per second, for the file's own formats or
the ones given.

usage: .venv/bin/python bench/warm.py [--file PATH] [--formats ulaw wav16]
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

from config import load_settings  # noqa: E402
from config.phrases import load_phrase_files  # noqa: E402
from gateway.app import load_default_engines  # noqa: E402
from gateway.services import open_services  # noqa: E402
from synth import codecs  # noqa: E402


async def bench(file: Path, formats: list[str] | None) -> int:
    with tempfile.TemporaryDirectory(prefix="huiyin-warm-") as tmp:
        settings = dataclasses.replace(load_settings(), data_dir=Path(tmp))
        specs = load_phrase_files([file], formats=list(codecs.FORMATS))
        if formats:
            specs = tuple(dataclasses.replace(s, formats=tuple(formats)) for s in specs)
        async with open_services(settings, None, load_default_engines) as services:
            started = time.perf_counter()
            job = await services.warmer.run(specs)
            elapsed = time.perf_counter() - started
            audio = sum(r.duration for r in services.store.index.all_phrases())
        used = sorted({f for s in specs for f in s.formats})
        print(f"file              {file.name}: {job.total} phrases, formats {', '.join(used)}")
        print(f"warmed            {job.done - len(job.failed)} ok, {len(job.failed)} failed, "
              f"{job.synthesized} synthesized")
        print(f"elapsed           {elapsed:.1f} s  (target: 60+ phrases in <= 20 s)")
        print(f"phrases/s         {job.total / elapsed:.2f}")
        print(f"audio-seconds/s   {audio / elapsed:.1f}  ({audio:.0f} s of audio)")
        return 0 if not job.failed else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=REPO / "config" / "phrases.example.yaml")
    parser.add_argument("--formats", nargs="+", help="encodings to prepare (default: the file's)")
    args = parser.parse_args()
    return asyncio.run(bench(args.file, args.formats))


if __name__ == "__main__":
    sys.exit(main())
