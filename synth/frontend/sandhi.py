"""Mandarin tone sandhi on toned pinyin syllables ('ni3'): 一, 不 and third-tone sandhi."""

from __future__ import annotations

from dataclasses import dataclass

# 一 keeps tone 1 after any numeral (十一, 第一) and before a digit (一二三, 一点五);
# before a multiplier it changes like any other 一 (一百 yi4 bai3, 一万 yi2 wan4).
_NUMERIC_BEFORE = set("零幺一二两三四五六七八九十百千万亿第")
_DIGIT_AFTER = set("零幺一二两三四五六七八九点")
# Digits read one by one (codes, phone numbers) stay distinct: no third-tone sandhi
# between two of them (九五五 is jiu3 wu3 wu3, not jiu2 wu2 wu3).
DIGIT_CHARS = set("零幺一二三四五六七八九")
# After these, 一 names the first of something (一月, 一号, 一楼) and keeps tone 1.
_ORDINAL_NEXT = set("月日号楼层级期")


@dataclass(frozen=True)
class Token:
    """One character and its toned syllable."""

    char: str
    syllable: str
    source: str = "dictionary"  # where the reading came from (see g2p.SOURCES)

    @property
    def tone(self) -> int:
        """Tone digit 1..5 (5 is neutral)."""
        return int(self.syllable[-1])

    def with_tone(self, tone: int) -> Token:
        """The same token with another tone."""
        return Token(self.char, f"{self.syllable[:-1]}{tone}", self.source)


def _yi_bu(words: list[list[Token]]) -> list[list[Token]]:
    flat = [t for w in words for t in w]
    out: list[Token] = []
    for i, token in enumerate(flat):
        prev = flat[i - 1].char if i > 0 else ""
        nxt = flat[i + 1] if i + 1 < len(flat) else None
        if token.char == "一" and token.syllable.startswith("yi"):
            if (
                nxt is None
                or prev in _NUMERIC_BEFORE
                or nxt.char in _DIGIT_AFTER
                or nxt.char in _ORDINAL_NEXT
            ):
                token = token.with_tone(1)
            elif nxt.tone == 4:
                token = token.with_tone(2)
            elif nxt.tone in (1, 2, 3):
                token = token.with_tone(4)
        elif token.char == "不" and token.syllable.startswith("bu") and nxt is not None:
            token = token.with_tone(2 if nxt.tone == 4 else 4)
        out.append(token)
    regrouped: list[list[Token]] = []
    pos = 0
    for w in words:
        regrouped.append(out[pos : pos + len(w)])
        pos += len(w)
    return regrouped


def _third_tone_within(word: list[Token]) -> list[Token]:
    # A run of third tones inside a word: all but the last become second tone.
    out = list(word)
    i = 0
    while i < len(out):
        if out[i].tone != 3:
            i += 1
            continue
        j = i
        while j + 1 < len(out) and out[j + 1].tone == 3:
            j += 1
        for k in range(i, j):
            out[k] = out[k].with_tone(2)
        i = j + 1
    return out


def apply_sandhi(words: list[list[Token]]) -> list[list[Token]]:
    """Apply 一/不 sandhi across the clause and third-tone sandhi within and between words.

    Between two words the first changes only when one of them is a single syllable
    (我 想 -> wo2 xiang3), which keeps longer phrases from chaining into rising tones.
    """
    words = [_third_tone_within(w) for w in _yi_bu(words)]
    # Right to left, so 贷款 已审批 gives kuan3 yi2 rather than a chain of rising tones.
    for i in range(len(words) - 2, -1, -1):
        left, right = words[i], words[i + 1]
        if not left or not right:
            continue
        if left[-1].char in DIGIT_CHARS and right[0].char in DIGIT_CHARS:
            continue
        if left[-1].tone == 3 and right[0].tone == 3 and (len(left) == 1 or len(right) == 1):
            words[i] = [*left[:-1], left[-1].with_tone(2)]
    return words
