"""The Mandarin frontend: written text to symbol-id sequences, one per sentence."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from synth.frontend.g2p import G2P, ClausePinyin, Lexicon, Word
from synth.frontend.normalize import TextNormalizer
from synth.frontend.preview import describe, rule_positions
from synth.frontend.split import split_sentences
from synth.frontend.symbols import SymbolTable
from synth.memo import CacheInfo, Memo

# Bump when anything here changes what the voice is asked to say.
FRONTEND_VERSION = "5"
# Longest input one acoustic-model call gets: its position tables cover about 2000 mel
# frames, which 60 syllables stay under even at half speed.
MAX_SYLLABLES = 60
# Texts whose analysis is kept: enough for every request waiting in a few full queues, so a
# text whose spoken form was just asked for is not analyzed again when it is synthesized.
ANALYSES_KEPT = 128
# Characters given their reading (SSML) stand in the normalized text as private-use
# characters while it is split and read, so nothing else can claim them.
_STAND_IN = 0xE000


class Piece(Protocol):
    """A stretch of a text from SSML (synth.ssml.sayas.Piece): `written` (normalized),
    `spoken` (as said) or a `reading` (its syllables given, one per character)."""

    @property
    def text(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def syllables(self) -> tuple[str, ...]: ...
    @property
    def source(self) -> str | None: ...


@dataclass(frozen=True)
class Sentence:
    """One sentence: its normalized text, pinyin and the voice's symbol ids."""

    text: str
    pinyin: tuple[ClausePinyin, ...]
    ids: tuple[int, ...]

    @property
    def syllables(self) -> list[str]:
        """All toned syllables, in order."""
        return [s for c in self.pinyin for w in c.words for s in w.syllables]


@dataclass(frozen=True)
class Utterance:
    """A whole text ready for the acoustic model, and what could not be read."""

    normalized: str
    sentences: tuple[Sentence, ...]
    unread: tuple[str, ...]
    # For a text in pieces: each piece's kind ('k' read as written, 's' said as SSML asked,
    # 'r' a reading given), its written and its normalized text. None for plain text.
    parts: tuple[tuple[str, str, str], ...] | None = None

    @property
    def origins(self) -> str | None:
        """Where each normalized character came from, for a text in pieces: 'k' kept from
        the text, 'r' written by a rule, 's' said as SSML asked (for the preview only: it
        compares texts, which costs more than the analysis)."""
        if self.parts is None:
            return None
        marks = []
        for kind, written, said in self.parts:
            if kind == "k":
                by_rule = rule_positions(written, said)
                marks.append("".join("r" if i in by_rule else "k" for i in range(len(said))))
            else:
                marks.append("s" * len(said))
        return "".join(marks)


class Frontend:
    """Holds the loaded normalizer, segmenter and symbol table; `analyze` is pure given them.

    Safe to call from several threads: analyses run one at a time, since neither
    WeTextProcessing nor jieba promises that concurrent calls are safe.
    """

    def __init__(
        self, symbols: SymbolTable, lexicon: Lexicon, cache_dir: Path | None = None
    ) -> None:
        # WeTextProcessing's FSTs load in native code, so they load beside the segmenter's
        # dictionary (Python) rather than after it: a quicker cold start.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="frontend-load") as loader:
            normalizer = loader.submit(TextNormalizer, cache_dir)
            self._g2p = G2P(lexicon, cache_dir)
            self._normalizer = normalizer.result()
        self._symbols = symbols
        self._id_to_symbol = {i: name for name, i in symbols.symbol_to_id.items()}
        self._lock = threading.Lock()
        self._analyses = Memo(self._analyze, ANALYSES_KEPT)

    def normalize(self, text: str) -> str:
        """Written text to spoken characters (numbers, times, codes read out)."""
        return self._normalizer.normalize(text)

    def analyze(self, text: str | Sequence[Piece]) -> Utterance:
        """Normalize, split, look up pinyin and map to ids; sentences with no sound are dropped.
        A text may come in pieces (an SSML segment): written pieces are normalized, spoken
        ones are read as they are, readings keep their syllables.

        The last ANALYSES_KEPT results are kept: an Utterance is immutable, so they are shared.
        """
        return self._analyses(text if isinstance(text, str) else tuple(text))

    def set_site_words(self, site: Lexicon) -> None:
        """Read with the site's words (they override the built-in and file lexicon); every
        analysis remembered is forgotten."""
        with self._lock:
            self._g2p.set_site_words(site)
            self._analyses.cache_clear()

    def pronounce(self, text: str | Sequence[Piece]) -> dict[str, Any]:
        """What the voice will say, for a person to read (see synth/frontend/preview.py):
        from the same analysis synthesis uses, so the two cannot disagree."""
        written = text if isinstance(text, str) else "".join(p.text for p in text)
        return describe(written, self.analyze(text), self._id_to_symbol)

    def cache_info(self) -> CacheInfo:
        """Hits, misses and size of the kept analyses."""
        return self._analyses.cache_info()

    def _pieces(
        self, pieces: tuple[Piece, ...]
    ) -> tuple[str, tuple[tuple[str, str, str], ...], dict[str, tuple[Word, int]]]:
        """Pieces as one normalized text, with readings as stand-ins (private-use characters
        the text does not hold); each piece's kind ('k': read as written, 's': as SSML
        said), written and normalized text; and the reading and place each stand-in is."""
        taken = {c for p in pieces for c in p.text}
        codes = (chr(c) for c in itertools.count(_STAND_IN) if chr(c) not in taken)
        parts: list[tuple[str, str, str]] = []
        stand_ins: dict[str, tuple[Word, int]] = {}
        for piece in pieces:
            if piece.kind == "reading":
                word = Word(piece.text, piece.syllables, "ssml")
                chars = [next(codes) for _ in piece.text]
                stand_ins.update((c, (word, k)) for k, c in enumerate(chars))
                parts.append(("r", piece.text, "".join(chars)))
            elif piece.kind == "spoken":
                parts.append(("s", piece.text, piece.text))
            else:
                said = self.normalize(piece.text)
                parts.append(("s" if piece.source == "ssml" else "k", piece.text, said))
        return "".join(p[2] for p in parts), tuple(parts), stand_ins

    def _clause(self, text: str, stand_ins: dict[str, tuple[Word, int]]) -> ClausePinyin:
        """A clause's pinyin; runs of stand-ins are their readings, the rest is read."""
        if not stand_ins or not any(c in stand_ins for c in text):
            return self._g2p.clause(text)
        words: list[Word] = []
        unread: list[str] = []
        for run in _runs(text, stand_ins):
            if run[0] in stand_ins:
                word, start = stand_ins[run[0]]
                words.append(Word(word.text[start : start + len(run)],
                                  word.syllables[start : start + len(run)], "ssml"))
            else:
                read = self._g2p.clause(run)
                words.extend(read.words)
                unread.extend(read.unread)
        return ClausePinyin(tuple(words), tuple(unread))

    def _analyze(self, text: str | tuple[Piece, ...]) -> Utterance:
        with self._lock:
            parts: tuple[tuple[str, str, str], ...] | None = None
            stand_ins: dict[str, tuple[Word, int]] = {}
            if isinstance(text, str):
                normalized = self.normalize(text)
            else:
                normalized, parts, stand_ins = self._pieces(text)
            sentences: list[Sentence] = []
            unread: list[str] = []
            for clauses in split_sentences(normalized):
                pinyin = [self._clause(c.text, stand_ins) for c in clauses]
                for p in pinyin:
                    unread.extend(p.unread)
                for chunk in _chunks(pinyin):
                    ids, unknown = self._symbols.sentence(chunk)
                    unread.extend(unknown)
                    text_of = "，".join("".join(w.text for w in c.words) for c in chunk)
                    sentences.append(Sentence(text_of, tuple(chunk), tuple(ids)))
            if stand_ins:
                normalized = "".join(stand_ins[c][0].text[stand_ins[c][1]] if c in stand_ins
                                     else c for c in normalized)
        return Utterance(normalized, tuple(sentences), tuple(unread), parts)


def _runs(text: str, stand_ins: dict[str, tuple[Word, int]]) -> list[str]:
    """A clause cut into runs of plain characters and runs of one reading's stand-ins in
    order (two readings side by side are two runs)."""
    runs: list[str] = []
    for char in text:
        if runs:
            last = runs[-1][-1]
            if char in stand_ins and last in stand_ins:
                (word, k), (previous, j) = stand_ins[char], stand_ins[last]
                if word is previous and k == j + 1:
                    runs[-1] += char
                    continue
            elif char not in stand_ins and last not in stand_ins:
                runs[-1] += char
                continue
        runs.append(char)
    return runs


def _count(clause: ClausePinyin) -> int:
    return sum(len(w.syllables) for w in clause.words)


def _chunks(clauses: list[ClausePinyin]) -> list[list[ClausePinyin]]:
    """Group a sentence's clauses into model calls of at most MAX_SYLLABLES syllables,
    splitting an over-long clause at word boundaries; clauses with no sound are dropped."""
    pieces: list[ClausePinyin] = []
    for clause in clauses:
        if _count(clause) <= MAX_SYLLABLES:
            pieces.append(clause)
            continue
        words: list[Word] = []
        parts = [
            Word(w.text, w.syllables[k : k + MAX_SYLLABLES], w.source)
            for w in clause.words
            for k in range(0, len(w.syllables), MAX_SYLLABLES)
        ]
        for word in parts:
            if words and sum(len(w.syllables) for w in words) + len(word.syllables) > MAX_SYLLABLES:
                pieces.append(ClausePinyin(tuple(words), ()))
                words = []
            words.append(word)
        if words:
            pieces.append(ClausePinyin(tuple(words), ()))
    chunks: list[list[ClausePinyin]] = []
    size = 0
    for piece in pieces:
        n = _count(piece)
        if n == 0:
            continue
        if chunks and size + n <= MAX_SYLLABLES:
            chunks[-1].append(piece)
            size += n
        else:
            chunks.append([piece])
            size = n
    return chunks
