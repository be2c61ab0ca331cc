"""Normalized Chinese text to toned pinyin: phrase-level polyphones from pypinyin,
lexicon overrides, tone sandhi, and Latin letters by their Mandarin names."""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from synth.frontend.context import di_is_de, wei_in_word, wei_reading
from synth.frontend.phrases import load_pypinyin
from synth.frontend.sandhi import DIGIT_CHARS, Token, apply_sandhi
from synth.frontend.segmenter import hold_compactly, import_jieba, segmenter_dictionary
from synth.memo import Memo

# How Mandarin speakers name Latin letters, in pinyin the Baker voice can say. I and M
# end level (ai1, ai2 mu1), and W's last syllable too: said with a falling or neutral
# tone, a listener took them for Chinese syllables (ID as 爱帝, ATM as ATI墓), not letters.
LETTER_NAMES: Mapping[str, tuple[str, ...]] = {
    "A": ("ei1",), "B": ("bi4",), "C": ("xi1",), "D": ("di4",), "E": ("yi4",),
    "F": ("ai2", "fu5"), "G": ("ji4",), "H": ("ei1", "qu1"), "I": ("ai1",),
    "J": ("jie4",), "K": ("kai4",), "L": ("ai2", "le5"), "M": ("ai2", "mu1"),
    "N": ("en1",), "O": ("ou1",), "P": ("pi1",), "Q": ("qiu1",), "R": ("a1", "er5"),
    "S": ("ai2", "si1"), "T": ("ti4",), "U": ("you1",), "V": ("wei1",),
    "W": ("da2", "bu5", "liu1"), "X": ("ai2", "ke4", "si1"), "Y": ("wai1",), "Z": ("zei4",),
}

# Characters with more than one common reading: read outside a word the pronunciation
# dictionary or the segmenter lists, their reading is the dictionary's guess, which the
# preview marks.
COMMON_POLYPHONES = frozenset(
    "行重长还乐会调数便传处差参藏朝称冲单弹当倒发干更供观号和横划几假间将降角教结解"
    "觉卡空量露率论落没模难宁片铺曲圈任散色扇少舍省盛识属说宿提挑吐为系相兴血应与"
    "约载扎择曾占涨正只中种转作仔折背薄剥堡奔秘辟屏泊卜场车大度恶分缝佛给红哄晃会"
    "济系夹禁尽劲圈看壳咳勒累俩凉撩淋笼露绿抹宁弄呕炮漂仆強强悄翘亲区券塞厦什似"
    "拓挖尾鲜吓纤校吁旋咽要叶遗殷饮佣晕咋粘挣殖轴属爪综钻"
)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,32}")
_LATIN_RUN = re.compile(r"[A-Za-z]+")
_SYLLABLE = re.compile(r"^[a-z]+[1-5]$")


class LexiconError(ValueError):
    """A lexicon file line is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Lexicon:
    """Word -> syllables overrides, matched longest first; and Latin-letter words
    (lower-cased) -> how they are said, instead of their letters' names."""

    entries: Mapping[str, tuple[str, ...]]
    loanwords: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    @property
    def longest(self) -> int:
        """Length of the longest word, for matching."""
        return max((len(w) for w in self.entries), default=0)


def parse_lexicon(lines: Iterable[str], source: str, valid: set[str] | None = None) -> Lexicon:
    """Parse 'word<TAB>pin1 yin1' lines ('#' starts a comment); errors name source:line."""
    entries: dict[str, tuple[str, ...]] = {}
    loanwords: dict[str, tuple[str, ...]] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise LexiconError(f"{source}:{number}: expected a word, then its pinyin")
        word, pinyin = parts
        syllables = tuple(s.lower().replace("ü", "v") for s in pinyin.split())
        latin = _LATIN_WORD.fullmatch(word) is not None
        if not latin and (len(syllables) != len(word) or not all(_HAN.fullmatch(c) for c in word)):
            raise LexiconError(
                f"{source}:{number}: '{word}' needs one syllable per Chinese character "
                "(or is a word of Latin letters)"
            )
        for s in syllables:
            if not _SYLLABLE.match(s) or (valid is not None and s[:-1] not in valid):
                raise LexiconError(f"{source}:{number}: '{s}' is not a toned pinyin syllable")
        if latin:
            loanwords[word.lower()] = syllables
        else:
            entries[word] = syllables
    return Lexicon(entries, loanwords)


def load_lexicon(path: Path | None, valid: set[str] | None = None) -> Lexicon:
    """The built-in domain lexicon, overlaid with the user's file when one is given."""
    files = resources.files("synth.frontend")
    merged: dict[str, tuple[str, ...]] = {}
    loanwords: dict[str, tuple[str, ...]] = {}
    for name, label in (("lexicon.tsv", "built-in lexicon"), ("loanwords.tsv", "built-in loanwords")):
        builtin = parse_lexicon(files.joinpath(name).read_text("utf-8").splitlines(), label, valid)
        merged.update(builtin.entries)
        loanwords.update(builtin.loanwords)
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise LexiconError(f"{path}: cannot read lexicon: {exc.strerror}") from None
        own = parse_lexicon(text.splitlines(), str(path), valid)
        merged.update(own.entries)
        loanwords.update(own.loanwords)
    return Lexicon(merged, loanwords)


def load_vocabulary() -> tuple[str, ...]:
    """The built-in customer-service words the segmenter keeps whole (vocabulary.txt)."""
    text = resources.files("synth.frontend").joinpath("vocabulary.txt").read_text("utf-8")
    words = (line.split("#", 1)[0].split() for line in text.splitlines())
    return tuple(dict.fromkeys(w for line in words for w in line))


# Where a word's reading came from, from the most certain to the least: the site's or
# built-in lexicon, the pronunciation dictionary (a word it lists, or a character with one
# reading), a letter's name, or a guess (a polyphonic character read alone, which the
# dictionary resolved without a word to go by). `rule` (the text was written by a
# normalization rule: a number, a time, a symbol) and `ssml` (the text's markup asked for
# the reading: a phoneme, a say-as, a sub) are the frontend's to mark.
SOURCES = ("lexicon", "dictionary", "letters", "guess", "rule", "ssml")


@dataclass(frozen=True, slots=True)
class Word:
    """A word's characters and toned syllables (one per character; letters may have more).
    Slotted, its syllables interned: the clause memo holds thousands of these."""

    text: str
    syllables: tuple[str, ...]
    source: str = "dictionary"  # one of SOURCES: the least certain of its characters'


@dataclass(frozen=True, slots=True)
class ClausePinyin:
    """A clause as words of syllables, plus what could not be read."""

    words: tuple[Word, ...]
    unread: tuple[str, ...]


def _is_silent(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith(("P", "Z"))


def _digits_apart(pieces: list[str]) -> list[str]:
    """A run of digits read one by one becomes one word per digit, so each is said distinctly."""
    out: list[str] = []
    for piece in pieces:
        if len(piece) > 1 and all(c in DIGIT_CHARS for c in piece):
            out.extend(piece)
        else:
            out.append(piece)
    return out


def _spans(pieces: Iterable[str], start: int) -> list[tuple[int, int]]:
    """Where each piece of a cut text starts and ends, counting from start."""
    spans = []
    for piece in pieces:
        spans.append((start, start + len(piece)))
        start += len(piece)
    return spans


def _no_syllables(chars: str) -> Any:
    """pypinyin's answer for characters it cannot read: an empty syllable for each.

    Typed Any: pypinyin accepts a list here, one item per character, though its hints say str.
    """
    return [""] * len(chars)


# Clauses remembered: those that texts share (greetings, menu lines) and the one a preview
# changes as it is typed. A whole text is remembered by its engine's memo (4,096 of them),
# and a new text's analysis is a small part of its synthesis; 4,096 clauses held 8.6 MB
# once a replica had seen that many, 1,024 hold about 2 MB.
CLAUSES_KEPT = 1024
# What the segmenter is told of a lexicon word: frequent enough to be kept whole.
_LEXICON_FREQ = 100000
class G2P:
    """Word segmentation (jieba), pinyin (pypinyin) and our rules. Dictionaries load once."""

    def __init__(self, lexicon: Lexicon, cache_dir: Path | None = None) -> None:
        jieba = import_jieba()

        # First: how pypinyin loads its phrases is decided as it is first imported.
        phrases = load_pypinyin()
        from pypinyin import Style
        from pypinyin.contrib.neutral_tone import NeutralToneWith5Mixin
        from pypinyin.converter import DefaultConverter
        from pypinyin.core import Pinyin

        class _Converter(NeutralToneWith5Mixin, DefaultConverter):
            pass

        jieba.setLogLevel(logging.WARNING)
        cache_dir = cache_dir or Path(tempfile.gettempdir()) / "huiyin"
        self._tokenizer = jieba.Tokenizer(str(segmenter_dictionary(cache_dir)))
        self._tokenizer.tmp_dir = str(cache_dir)  # jieba's own parsed cache lives beside it
        self._tokenizer.initialize()
        for word in load_vocabulary():
            # jieba's own suggestion: just frequent enough to beat the pieces it was cut into,
            # so a longer word or a likelier cut of the sentence around it still wins.
            self._tokenizer.add_word(word, freq=self._tokenizer.suggest_freq(word))
        for word in lexicon.entries:
            self._tokenizer.add_word(word, freq=_LEXICON_FREQ)
        hold_compactly(self._tokenizer)  # the site's words come later, as few
        self._base = lexicon
        self._site: dict[str, int] = {}  # the site's words, and their segmenter frequency before
        from pypinyin.seg.mmseg import seg

        self._pinyin = Pinyin(_Converter()).pinyin
        self._style = Style.TONE3
        self._lexicon = lexicon
        self._phrases: Mapping[str, Any] = phrases
        self._clauses = Memo(self._clause, CLAUSES_KEPT)
        self._segment: Callable[[str], Iterable[str]] = seg.cut

    def set_site_words(self, site: Lexicon) -> None:
        """Overlay the site's words (kept in the index) on the built-in and file lexicon,
        replacing the previous ones; not thread-safe (the frontend holds its lock)."""
        freq = self._tokenizer.FREQ
        for word in set(self._site) - set(site.entries):
            if word not in self._base.entries:
                self._tokenizer.add_word(word, freq=self._site[word])  # as it was before
        for word in site.entries:
            if word not in self._site:
                self._site[word] = freq.get(word, 0)
            self._tokenizer.add_word(word, freq=_LEXICON_FREQ)
        self._site = {w: f for w, f in self._site.items() if w in site.entries}
        self._lexicon = Lexicon({**self._base.entries, **site.entries},
                                {**self._base.loanwords, **site.loanwords})
        self._clauses.cache_clear()

    def _han_pinyin(self, run: str) -> tuple[list[str], list[str]]:
        """Pinyin for a run of Han characters, lexicon first, longest match; and where each
        character's reading came from (see SOURCES)."""
        out: list[str] = [""] * len(run)
        from_lexicon = [False] * len(run)
        covered = [False] * len(run)
        i = 0
        longest = self._lexicon.longest
        pending_start = 0

        def flush(end: int) -> None:
            if end > pending_start:
                chunk = run[pending_start:end]
                items = self._pinyin(chunk, style=self._style, errors=_no_syllables)
                for k, item in enumerate(items):
                    out[pending_start + k] = item[0] if item else ""
                words = _spans(self._tokenizer.lcut(chunk, HMM=False), pending_start)
                inside = {k for a, b in words if b - a > 1 for k in range(a + 1, b)}
                for a, b in _spans(self._segment(chunk), pending_start):  # pypinyin's words
                    if b - a < 2 or chunk[a - pending_start : b - pending_start] not in self._phrases:
                        continue
                    if a in inside or b in inside:
                        # A phrase of pypinyin's list that takes the end of one of the
                        # segmenter's words and the start of the next is not there: 拨打|的
                        # is no 打的 (dǎ dī, a taxi), 标准|将 no 准将 (zhǔn jiàng, a
                        # general). The words it cuts are read as the segmenter cut them.
                        for c, d in words:
                            if c < b and d > a:
                                read = self._pinyin(run[c:d], style=self._style,
                                                    errors=_no_syllables)
                                out[c:d] = [item[0] if item else "" for item in read]
                    else:
                        covered[a:b] = [True] * (b - a)
                # pypinyin's phrase list leaves out the words read by each character's
                # first reading (中心: zhōng xīn), so a word the segmenter knows, whose
                # characters pypinyin read one by one, is read as that word is too.
                texts = [run[a:b] for a, b in words]
                for n, (a, b) in enumerate(words):
                    if b - a > 1:
                        covered[a:b] = [True] * (b - a)
                    elif run[a] == "地" and di_is_de(texts, n):
                        out[a] = "de5"  # 更好地为您服务: how it is done, not the ground

        while i < len(run):
            for size in range(min(longest, len(run) - i), 1, -1):
                entry = self._lexicon.entries.get(run[i : i + size])
                if entry is not None:
                    flush(i)
                    out[i : i + size] = entry
                    from_lexicon[i : i + size] = [True] * size
                    i += size
                    pending_start = i
                    break
            else:
                i += 1
        flush(len(run))
        if "为" in run:
            # 为 as a word of its own is "for" or "is" by the words around it; in a word
            # pypinyin lists (成为, 为了, 特为) it is read as that word.
            cut = self._tokenizer.lcut(run, HMM=False)
            for n, (a, _) in enumerate(_spans(cut, 0)):
                word = cut[n]
                if "为" not in word or word in self._phrases:
                    continue
                for k, char in enumerate(word):
                    if char == "为" and not from_lexicon[a + k] and out[a + k] in ("wei2", "wei4"):
                        out[a + k] = wei_reading(cut, n) if word == "为" else wei_in_word(word, k)
        sources = [self._source(c, lexical, known)
                   for c, lexical, known in zip(run, from_lexicon, covered, strict=True)]
        return out, sources

    def _source(self, char: str, from_lexicon: bool, covered: bool) -> str:
        """Where a Han character's reading came from (see SOURCES); `covered`: inside a
        word the pronunciation dictionary lists."""
        if from_lexicon:
            return "lexicon"
        if char not in COMMON_POLYPHONES or covered:
            return "dictionary"
        return "guess"

    def clause(self, text: str) -> ClausePinyin:
        """Pinyin for one clause of normalized text (the last CLAUSES_KEPT are remembered:
        texts share clauses, and a preview while typing changes one)."""
        return self._clauses(text)

    def _clause(self, text: str) -> ClausePinyin:
        unread: list[str] = []
        words: list[list[Token]] = []
        han_chars = "".join(c for c in text if _HAN.match(c))
        syllables, sources = self._han_pinyin(han_chars)
        han = iter(zip(syllables, sources, strict=True))
        for piece in _digits_apart(self._tokenizer.lcut(text, HMM=False)):
            said = self._lexicon.loanwords.get(piece.lower()) if _LATIN_RUN.fullmatch(piece) else None
            if said is not None:  # a word said as Chinese speakers say it, not spelled
                words.append([Token(piece if k == 0 else "", syllable, "lexicon")
                              for k, syllable in enumerate(said)])
                continue
            tokens: list[Token] = []
            for char in piece:
                if _HAN.match(char):
                    syllable, source = next(han)
                    if syllable and _SYLLABLE.match(syllable):
                        tokens.append(Token(char, syllable, source))
                    else:
                        unread.append(char)
                elif char.upper() in LETTER_NAMES:
                    if tokens:
                        words.append(tokens)
                        tokens = []
                    words.append([Token(char.upper(), s, "letters")
                                  for s in LETTER_NAMES[char.upper()]])
                elif not _is_silent(char):
                    unread.append(char)
            if tokens:
                words.append(tokens)
        result = apply_sandhi(words)
        return ClausePinyin(
            tuple(Word("".join(t.char for t in w), tuple(sys.intern(t.syllable) for t in w),
                       max((t.source for t in w), key=SOURCES.index)) for w in result),
            tuple(unread),
        )
