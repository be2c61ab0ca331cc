"""Writes behind: new audio answered from memory whose file and row are queued on the
index's writer thread and have not landed yet, by file name.

One record that everything which must see them consults: the totals count what they will
add (cache/totals.py), reads of their phrase or encoding wait for them (`wait`), and the
integrity check spares their files (cache/check.py). What a write is expected to add
leaves the totals when the writer has run it, in the writer's order and in the same step
that counts what it did (`done`): it is never counted twice, nor missed. Its name leaves
once its future completes, just before whoever waits for it wakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import KeysView
from typing import Any

from cache.totals import Change


class PendingWrites:
    """The writes behind of one storage (changed and read on the event loop only)."""

    def __init__(self) -> None:
        # A name written again before its first write landed has both here, oldest first:
        # one writer thread lands them in that order.
        self._writes: dict[str, list[asyncio.Future[Any]]] = {}
        self._expected: dict[asyncio.Future[Any], Change] = {}  # until the writer ran it
        self._change = Change()

    def add(self, name: str, future: asyncio.Future[Any], expected: Change) -> None:
        """A write of this file (and its row) was queued; the totals count it as `expected`
        (its audio is answered before it lands) until `done`, and its name is here until
        its future completes (so whoever waits for it is woken after it left)."""
        self._writes.setdefault(name, []).append(future)
        self._expected[future] = expected
        self._change += expected
        future.add_done_callback(lambda _: self._gone(name, future))

    def done(self, future: asyncio.Future[Any]) -> None:
        """The writer ran this write (or it failed, or never ran), in the writer's order:
        what it did is in the index's totals from now on, and nothing of it is expected."""
        self._change -= self._expected.pop(future, Change())

    def _gone(self, name: str, future: asyncio.Future[Any]) -> None:
        writes = self._writes.get(name, [])
        if future in writes:
            writes.remove(future)
        if not writes:
            self._writes.pop(name, None)

    def get(self, name: str) -> asyncio.Future[Any] | None:
        """The newest write of this file under way, if one is."""
        writes = self._writes.get(name)
        return writes[-1] if writes else None

    def keys(self) -> KeysView[str]:
        """The names of the files being written (a live view)."""
        return self._writes.keys()

    @property
    def change(self) -> Change:
        """The phrases and bytes the writes under way are expected to add."""
        return self._change

    async def wait(self, name: str) -> None:
        """Wait until the write of this file, if one is under way, has landed (or failed)."""
        future = self.get(name)
        if future is not None:
            await asyncio.wait([future])

    async def settled(self) -> None:
        """Wait until every write under way has landed (or failed)."""
        if self._writes:
            await asyncio.wait([f for writes in self._writes.values() for f in writes])
