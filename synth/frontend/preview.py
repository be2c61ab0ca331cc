"""What the voice will say, for a person to read: the normalized text, each word's pinyin
and where its reading came from, the pauses, and the symbols the acoustic model gets.

It is built from the same analysis synthesis uses (Frontend.analyze), so the preview and
the audio cannot disagree; it costs no synthesis. Which characters a normalization rule
wrote is found by aligning the written text with the normalized one (synth/frontend/align.py),
in time near-linear in their length, whatever the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synth.frontend.align import kept_positions
from synth.frontend.g2p import LETTER_NAMES
from synth.frontend.normalize import canonical_text


def rule_positions(written: str, normalized: str) -> set[int]:
    """Positions in the normalized text that a normalization rule wrote (a number read
    out, a time, a symbol named) rather than kept from the written text (see align.py)."""
    kept = kept_positions(canonical_text(written), normalized)
    return set(range(len(normalized))) - kept


def describe(written: str, utterance: Any, id_to_symbol: Mapping[int, str]) -> dict[str, Any]:
    """The preview of an analysis (a Frontend Utterance) as plain data."""
    normalized = utterance.normalized
    origins = utterance.origins
    if origins is None:
        written_by_rule = rule_positions(written, normalized)
        said_as_asked: set[int] = set()
    else:  # a text in pieces (SSML) knows where each character came from
        written_by_rule = {i for i, o in enumerate(origins) if o == "r"}
        said_as_asked = {i for i, o in enumerate(origins) if o == "s"}
    cursor = 0

    def locate(word_text: str) -> set[int]:
        """The normalized-text positions of a word's characters, found in order."""
        nonlocal cursor
        found: set[int] = set()
        for char in word_text:
            if char in LETTER_NAMES:  # letters are upper-cased for their names
                at = next((i for i in range(cursor, len(normalized))
                           if normalized[i].upper() == char), -1)
            else:
                at = normalized.find(char, cursor)
            if at >= 0:
                found.add(at)
                cursor = at + 1
        return found

    sentences = []
    for sentence in utterance.sentences:
        clauses = []
        for index, clause in enumerate(sentence.pinyin):
            words = []
            for word in clause.words:
                source = word.source
                where = locate(word.text)
                if source not in ("lexicon", "ssml") and where & said_as_asked:
                    source = "ssml"
                elif source not in ("lexicon", "ssml") and where & written_by_rule:
                    source = "rule"
                # A letter's word repeats it once per syllable of its name (W: da bu liu).
                text = word.text[0] if word.source == "letters" else word.text
                words.append({"text": text, "pinyin": list(word.syllables), "source": source})
            last = index == len(sentence.pinyin) - 1
            clauses.append({"words": words, "pause_after": "sentence" if last else "clause"})
        sentences.append({
            "text": sentence.text,
            "clauses": clauses,
            "symbols": [id_to_symbol[i] for i in sentence.ids],
            "ids": list(sentence.ids),
        })
    return {"text": written, "normalized": normalized, "sentences": sentences,
            "unread": list(utterance.unread)}
