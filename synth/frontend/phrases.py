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
"""

from __future__ import annotations

import json
import os
import sys
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
        source = resources.files("pypinyin") / "phrases_dict.json"
        with source.open("r", encoding="utf-8") as lines:
            pypinyin.load_phrases_dict(compact_readings(lines))
    elif not PHRASES_DICT:  # told to load none by the environment, but needed here
        from pypinyin.phrases_dict import phrases_dict

        pypinyin.load_phrases_dict(phrases_dict)
    phrases: Mapping[str, Any] = PHRASES_DICT
    return phrases
