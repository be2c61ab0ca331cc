"""Miss throughput: syntheses per second with several distinct misses at once.

Runs the default voice through the gateway's own worker layout (`synth.registry` and
`SynthesisWorker`, with the lanes it chooses): as one worker with one thread (one core's
worth, the anchor), as one worker with every core, and as the layout `workers: 0` chooses
from the cores. Prints syntheses per second of each and the chosen layout's ratio to the
other two, round by round. Each round sends the same distinct corpus sentences, all at
once, to each layout in turn (the order alternating), so a noisy machine slows them alike.

usage: .venv/bin/python bench/throughput.py [--corpus PATH] [--rounds N] [--texts N]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.synth_rtf import DEFAULT_CORPUS, read_corpus  # noqa: E402
from config import Settings, load_settings  # noqa: E402
from synth.registry import lanes_for, load_engines  # noqa: E402
from synth.worker import Priority, SynthesisWorker  # noqa: E402

TARGET = 1.8


class Layout:
    """Workers over the engines `load_engines` gives for some settings."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        engines = load_engines(settings)
        self.workers = [SynthesisWorker(e, max_queue=256, lanes=lanes_for(settings, e))
                        for e in engines]
        self.instances = len(engines)

    async def start(self) -> None:
        for worker in self.workers:
            await worker.start()

    async def close(self) -> None:
        for worker in self.workers:
            await worker.close()

    async def one(self, text: str) -> float:
        worker = min(self.workers, key=lambda w: w.load)
        pcm = await worker.synthesize(text, priority=Priority.LIVE)
        return pcm.duration

    async def rate(self, texts: list[str]) -> tuple[float, float]:
        """Syntheses per second and audio seconds per second, all texts sent at once."""
        started = time.perf_counter()
        audio = await asyncio.gather(*[self.one(t) for t in texts])
        elapsed = time.perf_counter() - started
        return len(texts) / elapsed, sum(audio) / elapsed


async def bench(args: argparse.Namespace) -> int:
    settings = load_settings()
    texts = [text for _, text in read_corpus(args.corpus)]
    one = Layout("one worker", dataclasses.replace(settings, workers=1, threads=1))
    one_all = Layout("one, all cores", dataclasses.replace(settings, workers=1))
    chosen = Layout("workers: 0", dataclasses.replace(settings, workers=0))
    layouts = (one, one_all, chosen)
    for layout in layouts:
        await layout.start()
    try:
        for layout in layouts:  # first runs allocate and plan
            await layout.rate(texts[:4])
        rates: dict[str, list[tuple[float, float]]] = {layout.name: [] for layout in layouts}
        for k in range(args.rounds):
            batch = [texts[(k * args.texts + i) % len(texts)] for i in range(args.texts)]
            for layout in layouts if k % 2 == 0 else reversed(layouts):
                rates[layout.name].append(await layout.rate(batch))
    finally:
        for layout in layouts:
            await layout.close()
    print(f"corpus            {args.corpus.name}: {args.texts} distinct texts at once, "
          f"{args.rounds} rounds, {os.cpu_count()} cores")
    medians = {}
    for layout in layouts:
        per_s = [r for r, _ in rates[layout.name]]
        audio = [a for _, a in rates[layout.name]]
        medians[layout.name] = statistics.median(per_s)
        lanes = sum(w.lanes for w in layout.workers)
        print(f"{layout.name:<17} {lanes} lane(s) on {layout.instances} loaded "
              f"instance(s): median {medians[layout.name]:.2f} syntheses/s "
              f"({statistics.median(audio):.1f} audio-s/s), rounds "
              f"{', '.join(f'{r:.2f}' for r in per_s)}")
    # Each round's ratio, its layouts run side by side in time: steadier than a ratio of
    # medians on a machine whose speed drifts.
    for anchor in (one, one_all):
        ratios = [c / o for (c, _), (o, _) in zip(rates[chosen.name], rates[anchor.name], strict=True)]
        target = f"  (target >= {TARGET})" if anchor is one else ""
        print(f"ratio             {statistics.median(ratios):.2f} x {anchor.name} "
              f"(rounds {', '.join(f'{r:.2f}' for r in ratios)}){target}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--texts", type=int, default=12, help="distinct misses sent at once")
    return asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
