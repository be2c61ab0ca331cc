"""Speed of the default voice over the public IVR corpus.

Prints the real-time factor of whole-text synthesis (synthesis seconds / audio seconds),
the latency of a stream's first audio (the first sentence, or a long one's opening), the
cold start (process start to first audio, in a fresh
process) and the peak resident memory.

Beside it, in the same run and with the same threads, the real-time factor of Piper's
packaged US English voice (en_US-joe-medium, from the `english` extra, loaded as the
gateway's `piper` engine loads it) on English IVR sentences (tests/data/en_ivr.tsv), whole
text at a time, and the ratio of the two: a reference point for the default voice's speed.
Each round synthesizes both corpora, one after the other, so both see the same machine.

usage: .venv/bin/python bench/synth_rtf.py [--corpus PATH] [--threads N] [--rounds N]
                                           [--english-corpus PATH]
"""

from __future__ import annotations

import argparse
import csv
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import load_settings  # noqa: E402
from synth.engine import Engine  # noqa: E402
from synth.fastspeech2 import FastSpeech2Engine  # noqa: E402
from synth.piper_voice import PiperEngine, PiperUnavailableError  # noqa: E402

DEFAULT_CORPUS = REPO / "bench" / "data" / "ivr_public.tsv"
ENGLISH_CORPUS = REPO / "tests" / "data" / "en_ivr.tsv"

_COLD_PROBE = """
import sys, time
sys.path.insert(0, {repo!r})
from config import load_settings
from synth.fastspeech2 import FastSpeech2Engine
s = load_settings()
engine = FastSpeech2Engine.load(s.models_dir, threads={threads})
next(engine.stream({text!r}))
print("first-audio", flush=True)
"""


def read_corpus(path: Path) -> list[tuple[str, str]]:
    """(id, text) rows of a corpus TSV with `id` and `text` columns."""
    with path.open(encoding="utf-8") as fh:
        return [(row["id"], row["text"]) for row in csv.DictReader(fh, delimiter="\t")]


def cold_start(threads: int, text: str) -> float:
    """Seconds from starting a fresh Python process to its first synthesized audio."""
    code = _COLD_PROBE.format(repo=str(REPO), threads=threads, text=text)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "first-audio":
            elapsed = time.perf_counter() - started
            proc.wait()
            return elapsed
    raise RuntimeError(f"cold-start probe failed (exit {proc.wait()})")


def whole_texts(engine: Engine, texts: list[str]) -> tuple[float, float]:
    """Synthesis seconds and audio seconds of each text synthesized whole."""
    synth_s = audio_s = 0.0
    for text in texts:
        started = time.perf_counter()
        pcm = engine.synthesize(text)
        synth_s += time.perf_counter() - started
        audio_s += pcm.duration
    return synth_s, audio_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the corpus")
    parser.add_argument("--english-corpus", type=Path, default=ENGLISH_CORPUS,
                        help="the English sentences Piper's voice reads")
    args = parser.parse_args()

    settings = load_settings()
    threads = args.threads or settings.resolved_threads()
    rows = read_corpus(args.corpus)

    cold = cold_start(threads, rows[0][1])
    engine = FastSpeech2Engine.load(settings.models_dir, threads=threads)
    for _, text in rows[:3]:  # warm-up: first runs allocate and plan
        engine.synthesize(text)
    english = [text for _, text in read_corpus(args.english_corpus)]
    piper: PiperEngine | None = None
    try:
        piper = PiperEngine(threads=threads)
        whole_texts(piper, english[:3])  # its warm-up
    except PiperUnavailableError as exc:
        piper_missing = str(exc)

    synth_s = audio_s = piper_synth_s = piper_audio_s = 0.0
    firsts: list[float] = []
    for _ in range(args.rounds):
        for _, text in rows:
            started = time.perf_counter()
            pcm = engine.synthesize(text)
            synth_s += time.perf_counter() - started
            audio_s += pcm.duration
            started = time.perf_counter()
            stream = engine.stream(text)
            next(stream)
            firsts.append(time.perf_counter() - started)
            stream.close()
        if piper is not None:
            spent, said = whole_texts(piper, english)
            piper_synth_s += spent
            piper_audio_s += said

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"corpus            {args.corpus.name}: {len(rows)} sentences x {args.rounds} rounds")
    print(f"threads           {threads}")
    print(f"audio             {audio_s / args.rounds:.1f} s per round")
    rtf = synth_s / audio_s
    print(f"RTF               {rtf:.4f}  (synthesis s / audio s; target <= 0.025)")
    if piper is None:
        print(f"Piper RTF         not measured: {piper_missing}")
    else:
        piper_rtf = piper_synth_s / piper_audio_s
        print(f"Piper RTF         {piper_rtf:.4f}  ({piper.voices()[0].name}, packaged; "
              f"{args.english_corpus.name}: {len(english)} English sentences, "
              f"{piper_audio_s / args.rounds:.1f} s of audio per round; same threads)")
        print(f"RTF ratio         {rtf / piper_rtf:.2f}  (this voice's RTF / Piper's: "
              f"{'slower' if rtf > piper_rtf else 'faster'} than Piper)")
    print(f"first audio       median {statistics.median(firsts) * 1000:.0f} ms, "
          f"max {max(firsts) * 1000:.0f} ms")
    print(f"cold start        {cold:.2f} s  (process start to first audio; target <= 1.0 s)")
    print(f"peak RSS          {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
