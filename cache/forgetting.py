"""Forgetting across replicas: the keys of prompts purged, expired or made again go to a
log in the index (in the transaction that removes or replaces them), and every replica
reads the log each maintenance round and forgets what it holds of those keys in memory
(rows, the hot set, the request-to-key memo, whatever the gateway registered, such as its
URL memo) and on its disk (the local copies of bucket objects).

Rows are read by the time they were written, a window back, not by id: ids come from a
sequence, and transactions commit out of its order. Each replica remembers the ids it has
handled within the window, so a key is forgotten once per entry. The log keeps a day.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import Table, delete, select
from sqlalchemy.engine import Engine

from cache.index import now
from cache.storage import Storage
from cache.tables import PurgedKeyRow

_LOG: Table = PurgedKeyRow.__table__  # type: ignore[assignment]
# Seconds of the log read again each round: late commits and replicas' clocks within it.
WINDOW = 600.0
# Seconds the log keeps an entry.
KEPT = 86_400.0


def purged_since(engine: Engine, since: float) -> list[tuple[int, str, float]]:
    """(id, key, at) of the log's entries written after `since` (blocking)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(_LOG.c.id, _LOG.c.key, _LOG.c.at).where(_LOG.c.at > since).order_by(_LOG.c.id)
        ).all()
    return [(int(i), str(k), float(at)) for i, k, at in rows]


def trim_log(engine: Engine, before: float) -> int:
    """Remove the log's entries written before `before`; how many (blocking)."""
    with engine.begin() as connection:
        return int(connection.execute(delete(_LOG).where(_LOG.c.at < before)).rowcount)


class Forgetting:
    """Follows the purge log for one store: `forget` is called with the keys of entries
    not handled yet."""

    def __init__(self, storage: Storage, forget: Callable[[set[str]], Awaitable[None]]) -> None:
        self._storage = storage
        self._forget = forget
        self._handled: dict[int, float] = {}  # entry id -> when it was written

    async def follow(self) -> int:
        """Forget the keys logged since the last round; how many entries were new."""
        started = now()
        engine = self._storage.index.engine
        rows = await self._storage.read(lambda: purged_since(engine, started - WINDOW))
        new = [(i, key, at) for i, key, at in rows if i not in self._handled]
        if new:
            await self._forget({key for _, key, _ in new})
        for i, _, at in new:
            self._handled[i] = at
        horizon = started - 2 * WINDOW
        self._handled = {i: at for i, at in self._handled.items() if at > horizon}
        return len(new)

    async def trim(self) -> int:
        """Remove entries older than a day (one replica at a time is enough)."""
        engine = self._storage.index.engine
        before = now() - KEPT
        return await self._storage.write(lambda: trim_log(engine, before))
