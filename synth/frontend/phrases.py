"""pypinyin, loaded with its phrase readings held compactly.

At import, pypinyin parses its list of 47,000 phrase readings into a list of lists of
strings per phrase (34 MB of objects, with every syllable a string of its own) and
copies its dictionaries: 54 MB resident. Its documented switches (PYPINYIN_NO_PHRASES,
PYPINYIN_NO_DICT_COPY) load neither, and its public `load_phrases_dict` takes readings
in; so the same file is read here line by line, each distinct reading of a character
(1,249 of them) made once and shared by every phrase that has it: 30 MB in all. Sharing
is safe because pypinyin deep-copies a phrase's readings before it changes them.

The file is read by its layout (one JSON token a line), which is pypinyin's release
PYPINYIN_VERSION's; any other release (or pypinyin imported before this module had its
say) loads its own way, as fast and only larger. A test checks the readings equal those
pypinyin parses itself.

pypinyin's word cutter (`pypinyin.seg.mmseg.seg`) asks whether a run of characters starts
some phrase of the list, and answers from a set of every prefix of every phrase (87,000
strings, 5 MB, built at each start). With the same release, the set is replaced before the
phrases load by `PhrasePrefixes`, which answers the same question from the phrases sorted
(one list of the strings the phrase dictionary already holds). A test checks the cuts
equal those of pypinyin's own set.
"""

from __future__ import annotations

import json
import os
import sys
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from importlib import metadata, resources
from typing import Any

PYPINYIN_VERSION = "0.55.0"


def compact_readings(lines: Iterable[str]) -> dict[str, list[list[str]]]:
    """pypinyin's phrases_dict.json, one token a line, as phrase -> readings (a list of
    a character's possible syllables for each character), equal readings shared."""
    shared: dict[tuple[str, ...], list[str]] = {}
    phrases: dict[str, list[list[str]]] = {}
    readings: list[list[str]] | None = None
    syllables: list[str] = []
    for raw in lines:
        line = raw.strip()
        if line.endswith(": ["):
            readings = phrases.setdefault(json.loads(line[:-3]), [])
        elif line.startswith('"') and readings is not None:
            syllables.append(json.loads(line.rstrip(",")))
        elif line in ("]", "],") and readings is not None:
            if syllables:  # a character's syllables end
                key = tuple(syllables)
                readings.append(shared.setdefault(key, list(key)))
                syllables = []
            else:  # the phrase ends
                readings = None
    return phrases


class PhrasePrefixes:
    """What pypinyin's mmseg `PrefixSet` answers (whether a string starts some word it was
    trained on; `train` adds words), from the words sorted: the first word not below a
    string starts with it if any word does."""

    def __init__(self) -> None:
        self._words: list[str] = []

    def train(self, words: Iterable[str]) -> None:
        """Add words (pypinyin trains again on its whole phrase list after each load)."""
        known = set(self._words)
        known.update(words)
        self._words = sorted(known)

    def __contains__(self, prefix: object) -> bool:
        if not isinstance(prefix, str) or not prefix:
            return False
        words = self._words
        at = bisect_left(words, prefix)
        return at < len(words) and words[at].startswith(prefix)


def load_pypinyin() -> Mapping[str, Any]:
    """Import pypinyin with its phrase readings (compact when its release is the one
    whose file layout is known); its phrase dictionary."""
    known = metadata.version("pypinyin") == PYPINYIN_VERSION and "pypinyin" not in sys.modules
    if known:
        os.environ.setdefault("PYPINYIN_NO_PHRASES", "1")
        os.environ.setdefault("PYPINYIN_NO_DICT_COPY", "1")
    import pypinyin
    from pypinyin.constants import PHRASES_DICT

    if known and not PHRASES_DICT:
        from pypinyin.seg import mmseg

        # Before the phrases load: loading trains the cutter's prefixes on them.
        prefixes = PhrasePrefixes()
        mmseg.p_set = mmseg.seg._prefix_set = prefixes  # type: ignore[assignment]
        source = resources.files("pypinyin") / "phrases_dict.json"
        with source.open("r", encoding="utf-8") as lines:
            pypinyin.load_phrases_dict(compact_readings(lines))
    elif not PHRASES_DICT:  # told to load none by the environment, but needed here
        from pypinyin.phrases_dict import phrases_dict

        pypinyin.load_phrases_dict(phrases_dict)
    phrases: Mapping[str, Any] = PHRASES_DICT
    return phrases
