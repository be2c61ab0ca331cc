"""A bounded in-memory LRU of encoded audio, so hits for hot prompts never touch disk.

Audio is let in on its second request. A flood of distinct prompts (dynamic texts, each
asked once) would otherwise fill the budget with audio nobody asks for again and push out
the prompts callers do repeat (an IVR's menus). A first request's audio waits in a small
window of the budget; asked again there, it moves in. Pushed out of the window first, it
moves in when it is next put, if its key is still among the recently seen (a bounded
doorkeeper, as in TinyLFU), so a prompt asked twice within a few thousand others is kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    """Anything with a byte size."""

    @property
    def size(self) -> int:
        """Bytes it holds."""
        ...


K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Sized)

# The window's share of the budget: room for the audio being answered right now.
WINDOW_SHARE = 16
# Keys remembered as seen once (about 200 bytes each).
SEEN = 8192


class _Lru(Generic[K, V]):
    """Entries by recency up to a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: OrderedDict[K, V] = OrderedDict()

    def add(self, key: K, value: V) -> None:
        self.discard(key)
        if value.size > self.max_bytes:
            return
        self.entries[key] = value
        self.bytes += value.size
        while self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.size

    def discard(self, key: K) -> V | None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        return old


class HotSet(Generic[K, V]):
    """Least-recently-used entries up to a byte budget, let in on their second request; one
    entry larger than its part of the budget is not kept."""

    def __init__(self, max_bytes: int, *, window_share: int = WINDOW_SHARE, seen: int = SEEN) -> None:
        self.max_bytes = max_bytes
        window = max_bytes // window_share
        self._window: _Lru[K, V] = _Lru(window)
        self._main: _Lru[K, V] = _Lru(max_bytes - window)
        # Window entries already requested once (a held entry was made, not yet asked for).
        self._asked: set[K] = set()
        self._seen: OrderedDict[K, None] = OrderedDict()
        self._seen_max = seen

    @property
    def bytes(self) -> int:
        """Bytes held."""
        return self._window.bytes + self._main.bytes

    def get(self, key: K) -> V | None:
        """The entry, for a request: marked most recently used; asked for again in the
        window, it moves in."""
        value = self._main.entries.get(key)
        if value is not None:
            self._main.entries.move_to_end(key)
            return value
        value = self._window.entries.get(key)
        if value is not None:
            if key in self._asked:
                self._admit(key, value)
            else:
                self._asked.add(key)
        return value

    def held(self, key: K) -> V | None:
        """The entry if held, not counted as a request (audio used to make other audio)."""
        value = self._main.entries.get(key)
        return value if value is not None else self._window.entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Keep an entry a request asked for: in, if it is in already or was asked for
        recently; else in the window."""
        if key in self._main.entries or key in self._seen:
            self._admit(key, value)
            return
        self._remember(key)
        self._to_window(key, value, asked=True)

    def hold(self, key: K, value: V) -> None:
        """Keep an entry nobody asked for yet (new audio its requests are about to take)."""
        if key in self._main.entries:
            self._main.add(key, value)
        else:
            self._to_window(key, value, asked=False)

    def discard(self, key: K) -> None:
        """Remove an entry if present, and forget it was ever asked for (a purged key)."""
        self._main.discard(key)
        self._window.discard(key)
        self._asked.discard(key)
        self._seen.pop(key, None)

    def discard_where(self, predicate: Callable[[K], bool]) -> None:
        """Remove every entry whose key matches."""
        for key in [k for k in self.keys() if predicate(k)]:
            self.discard(key)

    def keys(self) -> list[K]:
        """The keys of every entry held (the window's too)."""
        return [*self._main.entries, *self._window.entries]

    def __len__(self) -> int:
        return len(self._main.entries) + len(self._window.entries)

    def _admit(self, key: K, value: V) -> None:
        self._window.discard(key)
        self._asked.discard(key)
        self._seen.pop(key, None)
        self._main.add(key, value)

    def _remember(self, key: K) -> None:
        self._seen[key] = None
        if len(self._seen) > self._seen_max:
            self._seen.popitem(last=False)

    def _to_window(self, key: K, value: V, *, asked: bool) -> None:
        self._window.add(key, value)
        if key not in self._window.entries:
            self._asked.discard(key)
        elif asked:
            self._asked.add(key)
        else:
            self._asked.discard(key)
        # Entries the window pushed out are no longer asked-for window entries.
        if len(self._asked) > len(self._window.entries):
            self._asked &= self._window.entries.keys()
