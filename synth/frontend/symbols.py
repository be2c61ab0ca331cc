"""Toned pinyin to the Baker voice's symbol ids, with the prosody markers it was trained on.

The Baker corpus marks every syllable boundary: #0 inside a prosodic word, #1 between
words, #2 between phrases, #3 at an intonation break; utterances start and end with sil.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from synth.frontend.g2p import ClausePinyin, Word
from synth.frontend.sandhi import DIGIT_CHARS

WORD_BREAK = "#1"
PHRASE_BREAK = "#2"
CLAUSE_BREAK = "#3"
# Digits read one by one (codes, phone and order numbers) come in groups of three or four,
# a phrase break between, as IVR prompts say them and callers copy them down: said in one
# breath, six digits or more run together into what sounds like a quantity.
GROUPED_FROM = 6


def digit_groups(count: int) -> list[int]:
    """How a run of `count` digits said one by one is grouped: runs shorter than
    GROUPED_FROM stay whole; longer ones in threes and fours, the fours last (six 3+3,
    seven 3+4, eight 4+4, eleven 3+4+4, as Chinese phone numbers are read)."""
    if count < GROUPED_FROM:
        return [count]
    fours = count % 3  # as few fours as leave a multiple of three
    threes = (count - 4 * fours) // 3
    return [3] * threes + [4] * fours


def _group_starts(words: Sequence[Word]) -> set[int]:
    """Indices of the words that start a new group inside a run of single digits."""
    starts: set[int] = set()
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and words[j].text in DIGIT_CHARS:
            j += 1
        if j - i >= GROUPED_FROM:
            at = i
            for size in digit_groups(j - i)[:-1]:
                at += size
                starts.add(at)
        i = max(j, i + 1)
    return starts


@dataclass(frozen=True)
class SymbolTable:
    """The voice's symbol ids and its syllable -> (initial, final) table."""

    symbol_to_id: Mapping[str, int]
    syllables: Mapping[str, tuple[str, str]]

    @staticmethod
    def from_mapper(mapper: Mapping[str, object]) -> SymbolTable:
        """Build from the voice's baker_mapper.json contents."""
        symbol_to_id = mapper["symbol_to_id"]
        pinyin = mapper["pinyin_dict"]
        if not isinstance(symbol_to_id, dict) or not isinstance(pinyin, dict):
            raise ValueError("mapper needs symbol_to_id and pinyin_dict mappings")
        return SymbolTable(
            {str(k): int(v) for k, v in symbol_to_id.items()},
            {str(k): (str(v[0]), str(v[1])) for k, v in pinyin.items()},
        )

    def phones(self, syllable: str) -> list[str] | None:
        """Initial and toned final for 'zhong1'; erhua and syllabic n/m handled; None if unknown."""
        base, tone = syllable[:-1], syllable[-1]
        if base in ("n", "ng", "hng"):
            base = "en"
        elif base in ("m", "hm"):
            base = "mu"
        pair = self.syllables.get(base)
        if pair is not None:
            return [pair[0], pair[1] + tone]
        if base.endswith("r") and base[:-1] in self.syllables:  # erhua: hua + er
            initial, final = self.syllables[base[:-1]]
            return [initial, final + tone, "er5"]
        return None

    def sentence(self, clauses: Sequence[ClausePinyin]) -> tuple[list[int], list[str]]:
        """Symbol ids (ending in eos) for one sentence, and the syllables it could not map."""
        symbols = ["sil"]
        unknown: list[str] = []
        for ci, clause in enumerate(clauses):
            groups = _group_starts(clause.words)
            for wi, word in enumerate(clause.words):
                for si, syllable in enumerate(word.syllables):
                    phones = self.phones(syllable)
                    if phones is None:
                        unknown.append(syllable)
                        continue
                    if symbols[-1] != "sil":
                        if si > 0:
                            symbols.append("#0")
                        elif wi > 0:
                            symbols.append(PHRASE_BREAK if wi in groups else WORD_BREAK)
                        else:
                            symbols.append(CLAUSE_BREAK if ci > 0 else "#0")
                    symbols.extend(phones)
        symbols.append("sil")
        ids = [self.symbol_to_id[s] for s in symbols]
        ids.append(self.symbol_to_id["eos"])
        return ids, unknown
