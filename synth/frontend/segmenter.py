"""jieba's word segmenter over a trimmed dictionary, its word counts held compactly.

jieba keeps its dictionary as `Tokenizer.FREQ`, a dict of every word and every prefix of
one (137,000 strings here) to its count: 17 MB of objects. `WordCounts` holds the same
in one string of the words end to end, arrays of where each starts and of its count, and
an open-addressed table of their hashes: 3.8 MB, and the same answer for every key (the
frontend 9-11 MB smaller, its analyses about 16% slower, jieba's cuts alone half as fast).
jieba reads FREQ by `in`, `[]` and `.get()` when it cuts, and writes it in `add_word`;
what is written afterwards goes to a small dict laid over the arrays.

That FREQ is a dict jieba reads and writes is its release's detail, not its interface:
the compact table is used with JIEBA_VERSION only (the pinned one), any other keeps
jieba's own dict and says so. Tests check cuts and answers equal those of jieba's dict.

jieba imports its HMM word finder (`jieba.finalseg`) with its package, and with it the
finder's character probabilities: 9 MB, never read here (every cut is HMM=False).
`import_jieba` puts a stand-in for that module first, which loads it on its first use;
with JIEBA_VERSION only, whose package imports the module by name and reads it only to
cut with HMM or to force a word apart.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
import threading
import types
from array import array
from collections.abc import Iterator, Mapping, MutableMapping
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The release whose use of Tokenizer.FREQ (get_DAG, calc, add_word, suggest_freq, cut's
# HMM and search modes: in, [], get, item assignment) the compact table was checked against.
JIEBA_VERSION = "0.42.1"
# Words rarer than this are left out of the segmentation dictionary: it loads in a
# quarter of the time, and word boundaries for prosody and sandhi measured the same.
SEGMENTER_MIN_FREQ = 10

_ABSENT = object()
_NOTHING: tuple[object, int] = (_ABSENT, 0)
_EMPTY = -1  # a free place in the hash table
_MAX_COUNT = 0xFFFFFFFF  # what array("I") holds; a larger count (or a negative) is laid over


class _Deferred(types.ModuleType):
    """A stand-in in sys.modules for a module not loaded yet: the first attribute asked of
    it loads the module (from its file, under its own name) and every attribute is then
    read from that."""

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.__path__ = [str(path)]  # its own submodules import beside it
        self.__file__ = str(path / "__init__.py")
        self.__dict__["_lock"] = threading.Lock()
        self.__dict__["_loaded"] = None

    def __getattr__(self, name: str) -> Any:
        with self.__dict__["_lock"]:
            loaded = self.__dict__["_loaded"]
            if loaded is None:
                spec = importlib.util.spec_from_file_location(
                    self.__name__, self.__dict__["__file__"],
                    submodule_search_locations=list(self.__path__))
                assert spec is not None and spec.loader is not None
                loaded = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(loaded)
                self.__dict__["_loaded"] = loaded
        return getattr(loaded, name)


def import_jieba() -> types.ModuleType:
    """jieba, its HMM word finder loaded only when a cut uses it (with JIEBA_VERSION)."""
    if "jieba" not in sys.modules and metadata.version("jieba") == JIEBA_VERSION:
        spec = importlib.util.find_spec("jieba")  # finds the package, imports nothing
        if spec is not None and spec.submodule_search_locations:
            finder = Path(list(spec.submodule_search_locations)[0]) / "finalseg"
            sys.modules.setdefault("jieba.finalseg", _Deferred("jieba.finalseg", finder))
    return importlib.import_module("jieba")


def segmenter_dictionary(cache_dir: Path) -> Path:
    """jieba's word list without its rare words, written once into cache_dir (atomically)."""
    jieba = import_jieba()
    source = Path(str(jieba.__file__)).with_name("dict.txt")
    target = cache_dir / f"jieba-{jieba.__version__}-f{SEGMENTER_MIN_FREQ}.txt"
    if target.is_file():
        return target
    kept = []
    for line in source.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and (len(parts[0]) == 1 or int(parts[1]) >= SEGMENTER_MIN_FREQ):
            kept.append(line)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".jieba-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(kept) + "\n")
    os.replace(tmp, target)
    return target


class WordCounts(MutableMapping[str, int]):
    """A str -> int mapping that answers as the dict it was made from, in a fraction of
    its memory; keys set or deleted afterwards are kept apart, in a dict and a set."""

    __slots__ = ("_counts", "_hashes", "_last", "_mask", "_over", "_removed", "_starts", "_table",
                 "_text")

    def __init__(self, counts: Mapping[str, int]) -> None:
        size = len(counts)
        self._text = "".join(counts)
        # Made at their full size, not grown: no freed blocks left between them.
        self._starts = array("I", [0]) * (size + 1)
        self._counts = array("I", [0]) * size
        self._hashes = array("q", [0]) * size
        self._over: dict[str, int] = {}  # set since, or a count array("I") cannot hold
        self._removed: set[str] = set()  # of the words in the arrays, those deleted since
        self._last: tuple[object, int] = _NOTHING  # the key last found by `in`, and its count
        end = 0
        for index, (word, count) in enumerate(counts.items()):
            end += len(word)
            self._starts[index + 1] = end
            if 0 <= count <= _MAX_COUNT:
                self._counts[index] = count
            else:
                self._over[word] = count
            self._hashes[index] = hash(word)
        # At most two thirds full: a lookup, found or not, probes one or two places.
        places = 8
        while places * 2 < size * 3:
            places *= 2
        self._mask = places - 1
        self._table = array("i", [_EMPTY]) * places
        for index, h in enumerate(self._hashes):
            place = h & self._mask
            while self._table[place] != _EMPTY:
                place = (place + 1) & self._mask
            self._table[place] = index

    def _index(self, key: str) -> int:
        """Where key is in the arrays, or -1."""
        h = hash(key)
        mask = self._mask
        table = self._table
        place = h & mask
        while (index := table[place]) != _EMPTY:
            if self._hashes[index] == h and self._text[self._starts[index]:self._starts[index + 1]] == key:
                return index
            place = (place + 1) & mask
        return -1

    def _find(self, key: str) -> Any:
        """key's count, or _ABSENT."""
        if self._over:
            count = self._over.get(key, _ABSENT)
            if count is not _ABSENT:
                return count
        if self._removed and key in self._removed:
            return _ABSENT
        index = self._index(key)
        return _ABSENT if index < 0 else self._counts[index]

    def get(self, key: str, default: Any = None) -> Any:
        """key's count, or default (jieba's calc and suggest_freq read counts so)."""
        count = self._find(key)
        return default if count is _ABSENT else count

    def __contains__(self, key: object) -> bool:
        count = self._find(key)  # type: ignore[arg-type]
        if count is _ABSENT:
            return False
        # jieba asks `frag in FREQ`, then reads FREQ[frag]: the second is answered from here.
        self._last = (key, count)
        return True

    def __getitem__(self, key: str) -> int:
        last = self._last  # one read: another thread may replace it, never half of it
        if last[0] is key:
            found: int = last[1]
            return found
        count = self._find(key)
        if count is _ABSENT:
            raise KeyError(key)
        found = count
        return found

    def __setitem__(self, key: str, count: int) -> None:
        self._last = _NOTHING
        self._over[key] = count

    def __delitem__(self, key: str) -> None:
        self._last = _NOTHING
        held = key not in self._removed and self._index(key) >= 0
        if key not in self._over and not held:
            raise KeyError(key)
        self._over.pop(key, None)
        if held:
            self._removed.add(key)

    def _words(self) -> Iterator[str]:
        starts = self._starts
        for index in range(len(self._counts)):
            yield self._text[starts[index]:starts[index + 1]]

    def __iter__(self) -> Iterator[str]:
        # A dict's order: its words as made, then those added since (a word deleted and
        # set again comes last, as in a dict).
        for word in self._words():
            if word not in self._removed:
                yield word
        for word in self._over:
            if word in self._removed or self._index(word) < 0:
                yield word

    def __len__(self) -> int:
        added = sum(1 for w in self._over if w in self._removed or self._index(w) < 0)
        return len(self._counts) - len(self._removed) + added


def hold_compactly(tokenizer: Any) -> bool:
    """Replace an initialized jieba Tokenizer's FREQ dict with WordCounts, if jieba is the
    release that was checked (JIEBA_VERSION); whether it was replaced."""
    jieba = import_jieba()

    if jieba.__version__ != JIEBA_VERSION:
        log.warning("jieba %s is not %s: its word counts are kept as its own dict (about "
                    "10 MB more)", jieba.__version__, JIEBA_VERSION)
        return False
    with tokenizer.lock:
        if not isinstance(tokenizer.FREQ, WordCounts):
            tokenizer.FREQ = WordCounts(tokenizer.FREQ)
    return True
