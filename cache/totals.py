"""The store's entries and bytes: the index's, as the writes that change them land, plus
the writes answered but not landed yet (the pending writes', cache/pending.py).

Every index write that adds or removes a phrase or an encoding runs on the storage's one
writer thread and reports what it changed; the change is applied on the event loop when
its future completes. Futures of one thread complete in the order their writes ran, so
the totals see the writes, and a recount made on that same thread, in the order the index
did: there is no second writer to race, and a write is counted once, pending or landed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cache.pending import PendingWrites


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
    """The index's totals as this process's writer last left them, and what its pending
    writes will add. Changed only on the event loop, by the storage (cache/storage.py)."""

    def __init__(self, pending: PendingWrites) -> None:
        self._landed = Change()
        self._pending = pending

    @property
    def entries(self) -> int:
        """Phrases in the index, and those answered but not written yet."""
        return self._landed.entries + self._pending.change.entries

    @property
    def bytes(self) -> int:
        """Bytes of phrases and encodings in the index, and of those not written yet."""
        return self._landed.bytes + self._pending.change.bytes

    def land(self, landed: Change) -> None:
        """A write ran: what it did change (nothing, when it failed) joins the index's (in
        the same step, the pending writes stop expecting it)."""
        self._landed += landed

    def recount(self, counted: Change) -> None:
        """The index counted on the writer thread: every earlier write is in it."""
        self._landed = counted
