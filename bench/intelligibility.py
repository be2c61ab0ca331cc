"""Intelligibility of the default voice: synthesize an IVR corpus, let whisper listen, score it.

Each sentence is synthesized, transcribed by the whisper base recognizer, and both the
reference and the transcript are put through the same scoring treatment (the product's own
normalization, Simplified Chinese, no punctuation). Reported per sentence and for the whole
corpus (total edits / total reference length): character error rate (CER) and toneless
syllable error rate (SER), which forgives the recognizer's homophone slips.

A corpus with a `said` column is SSML (say-as, phoneme, sub, break): its `text` is the
document, its `said` what a listener should hear, in characters (homophones where a
phoneme changes a reading), which is the reference scored.

Run from the repo root: .venv/bin/python bench/intelligibility.py [--corpus PATH ...]
[--out-dir DIR]; by default both the IVR corpus and the SSML corpus.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import csv  # noqa: E402
import time  # noqa: E402
import unicodedata  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import soundfile as sf  # noqa: E402

from bench.listen import Listener, edit_distance, score_text, syllables  # noqa: E402
from config import load_settings  # noqa: E402
from synth.engine import Prosody  # noqa: E402
from synth.fastspeech2 import FastSpeech2Engine, ModelNotPreparedError  # noqa: E402
from synth.ssml import is_ssml, parse_document, speaking  # noqa: E402

DEFAULT_CORPUS = REPO / "bench" / "data" / "ivr_public.tsv"
SSML_CORPUS = REPO / "bench" / "data" / "ssml_public.tsv"
REF_WIDTH = 44  # display columns given to the reference before the hypothesis column


@dataclass(frozen=True)
class Score:
    """One sentence's scored reference and hypothesis with its edit counts."""

    sid: str
    ref: str
    hyp: str
    char_edits: int
    syllable_edits: int
    ref_syllables: int

    @property
    def cer(self) -> float:
        """Character error rate of this sentence."""
        return self.char_edits / len(self.ref) if self.ref else float(bool(self.hyp))

    @property
    def ser(self) -> float:
        """Syllable error rate of this sentence."""
        if not self.ref_syllables:
            return float(bool(self.hyp))
        return self.syllable_edits / self.ref_syllables


def read_corpus(path: Path) -> list[tuple[str, str, str]]:
    """The (id, text, reference) rows of a TSV corpus with `id` and `text` columns; the
    reference is the `said` column where there is one, else the text."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"id", "text"} - set(reader.fieldnames or ())
        if missing:
            raise SystemExit(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        return [(row["id"], row["text"], row.get("said") or row["text"])
                for row in reader if row["text"] and row["text"].strip()]


def score(sid: str, ref: str, hyp: str) -> Score:
    """Edit counts of an already scored reference and hypothesis."""
    ref_tokens, hyp_tokens = syllables(ref), syllables(hyp)
    syllable_edits = edit_distance(ref_tokens, hyp_tokens)
    return Score(sid, ref, hyp, edit_distance(ref, hyp), syllable_edits, len(ref_tokens))


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - _width(text), 1)


def _row(sid: str, cer: str, ser: str, ref: str, hyp: str) -> str:
    return f"{sid:<6} {cer:>6} {ser:>6}  {_pad(ref, REF_WIDTH)} {hyp}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; returns the exit status."""
    parser = argparse.ArgumentParser(
        description="Synthesize every sentence of an IVR corpus with the default voice, "
        "transcribe it with the whisper base recognizer, and report character and "
        "toneless-syllable error rates per sentence and for the corpus."
    )
    parser.add_argument(
        "--corpus", type=Path, action="append",
        help="TSV with `id` and `text` columns (and `said` for SSML); may be repeated "
             f"(default: {DEFAULT_CORPUS.relative_to(REPO)} and {SSML_CORPUS.relative_to(REPO)})",
    )
    parser.add_argument(
        "--out-dir", type=Path, help="also save each sentence's audio here, as <id>.wav"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    settings = load_settings()
    try:
        engine = FastSpeech2Engine.load(settings.models_dir, threads=settings.resolved_threads())
    except ModelNotPreparedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    listener = Listener()
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    for corpus in args.corpus or [DEFAULT_CORPUS, SSML_CORPUS]:
        run_corpus(corpus, engine, listener, args.out_dir)
    print(f"elapsed: {time.perf_counter() - started:.1f} s", flush=True)
    return 0


def run_corpus(
    corpus: Path, engine: FastSpeech2Engine, listener: Listener, out_dir: Path | None
) -> None:
    """Synthesize, transcribe and score one corpus, printing its table and totals."""
    rows = read_corpus(corpus)
    normalize = engine.frontend.normalize
    print(f"corpus: {corpus} ({len(rows)} sentences), voice {engine.version}", flush=True)
    print(_row("id", "CER", "SER", "reference", "hypothesis"), flush=True)
    scores: list[Score] = []
    audio_seconds = 0.0
    for sid, text, reference in rows:
        spoken = parse_document(text).canonical if is_ssml(text) else text
        pcm = speaking.synthesize(engine, spoken, voice=None, style="neutral", prosody=Prosody())
        audio_seconds += pcm.duration
        if out_dir is not None:
            sf.write(out_dir / f"{sid}.wav", pcm.samples, pcm.sample_rate, subtype="PCM_16")
        heard = listener.transcribe(pcm.samples, pcm.sample_rate)
        s = score(sid, score_text(reference, normalize), score_text(heard, normalize))
        scores.append(s)
        print(_row(sid, f"{s.cer:.3f}", f"{s.ser:.3f}", s.ref, s.hyp), flush=True)
        if pcm.unread:
            print(f"{'':6} unread by the frontend: {' '.join(pcm.unread)}", flush=True)

    char_edits = sum(s.char_edits for s in scores)
    syllable_edits = sum(s.syllable_edits for s in scores)
    ref_chars = sum(len(s.ref) for s in scores)
    ref_syllables = sum(s.ref_syllables for s in scores)
    corpus_cer = char_edits / ref_chars if ref_chars else 0.0
    corpus_ser = syllable_edits / ref_syllables if ref_syllables else 0.0
    print(flush=True)
    print(f"sentences: {len(scores)}  audio: {audio_seconds:.1f} s", flush=True)
    print(f"corpus CER: {corpus_cer:.4f}  ({char_edits} / {ref_chars} characters)", flush=True)
    print(f"corpus SER: {corpus_ser:.4f}  ({syllable_edits} / {ref_syllables} syllables)", flush=True)
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
