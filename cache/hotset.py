"""A bounded in-memory LRU of encoded audio, so hits for hot prompts never touch disk."""

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


class HotSet(Generic[K, V]):
    """Least-recently-used entries up to a byte budget; one entry larger than it is not kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The entry, marked most recently used."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Add or replace an entry, evicting the least recently used beyond the budget."""
        self.discard(key)
        if value.size > self.max_bytes:
            return
        self._entries[key] = value
        self.bytes += value.size
        while self.bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= old.size

    def discard(self, key: K) -> None:
        """Remove an entry if present."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size

    def discard_where(self, predicate: Callable[[K], bool]) -> None:
        """Remove every entry whose key matches."""
        for key in [k for k in self._entries if predicate(k)]:
            self.discard(key)

    def __len__(self) -> int:
        return len(self._entries)
