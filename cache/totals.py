"""The store's entries and bytes: the index's, as the writes that change them land, plus
the writes answered but not landed yet.

Every index write that adds or removes a phrase or an encoding runs on the storage's one
writer thread and reports what it changed; the change is applied on the event loop when
its future completes. Futures of one thread complete in the order their writes ran, so
the totals see the writes, and a recount made on that same thread, in the order the index
did: there is no second writer to race, and a write is counted once, pending or landed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    """What a write did (or will do) to the index's phrase count and bytes."""

    entries: int = 0
    bytes: int = 0

    def __add__(self, other: Change) -> Change:
        return Change(self.entries + other.entries, self.bytes + other.bytes)

    def __sub__(self, other: Change) -> Change:
        return Change(self.entries - other.entries, self.bytes - other.bytes)


class Totals:
    """The index's totals as this process's writer last left them, and its pending writes.
    Changed only on the event loop, by the storage (cache/storage.py)."""

    def __init__(self) -> None:
        self._landed = Change()
        self._pending = Change()

    @property
    def entries(self) -> int:
        """Phrases in the index, and those answered but not written yet."""
        return self._landed.entries + self._pending.entries

    @property
    def bytes(self) -> int:
        """Bytes of phrases and encodings in the index, and of those not written yet."""
        return self._landed.bytes + self._pending.bytes

    def expect(self, change: Change) -> None:
        """A write was queued whose audio is answered before it lands."""
        self._pending += change

    def land(self, expected: Change, landed: Change) -> None:
        """A write ran: what it was expected to change leaves the pending, what it did
        change (nothing, when it failed) joins the index's."""
        self._pending -= expected
        self._landed += landed

    def recount(self, counted: Change) -> None:
        """The index counted on the writer thread: every earlier write is in it."""
        self._landed = counted
