"""Prompts that expire: a prompt kept for a while (the `tts_ttl` setting, or a request's own
`ttl`) is removed once its time is up, files and bucket objects included, by one replica at
a time each maintenance round; named and pinned phrases never expire. A request that asks a
stored prompt for a shorter `ttl` brings its expiry forward (never back): the strictest
caller decides how long a text is kept. Answers are never cached for longer than their
prompt is kept (gateway/caching.py reads `Audio.expires`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import Table, or_, select, update
from sqlalchemy.engine import Engine

from cache.index import Phrase, now
from cache.rows import RowCache
from cache.storage import Storage
from cache.tables import PhraseRow
from cache.variants import Encodings

log = logging.getLogger("huiyin.cache")
_PHRASES: Table = PhraseRow.__table__  # type: ignore[assignment]
_CLAIM = "expiry"  # the lease one replica at a time holds while it removes expired prompts
_BATCH = 1000


def expired(engine: Engine, at: float, limit: int = _BATCH) -> list[str]:
    """Keys of unnamed, unpinned prompts whose expiry is past (blocking)."""
    with engine.connect() as connection:
        return [str(k) for k in connection.execute(
            select(_PHRASES.c.key).where(
                _PHRASES.c.expires <= at, _PHRASES.c.pinned.is_(False),
                _PHRASES.c.phrase_id.is_(None),
            ).order_by(_PHRASES.c.expires).limit(limit)).scalars()]


def bring_forward(engine: Engine, key: str, expires: float) -> bool:
    """Set a prompt's expiry to `expires` when it has none or a later one (blocking)."""
    with engine.begin() as connection:
        return bool(connection.execute(
            update(_PHRASES).where(_PHRASES.c.key == key, or_(
                _PHRASES.c.expires.is_(None), _PHRASES.c.expires > expires,
            )).values(expires=expires)).rowcount)


class Expiry:
    """Expiries of one store: brought forward by requests, swept by maintenance."""

    def __init__(
        self, storage: Storage, rows: RowCache, encodings: Encodings, *,
        busy: Callable[[str], bool], forget: Callable[[set[str]], Awaitable[None]],
    ) -> None:
        self._storage = storage
        self._rows = rows
        self._encodings = encodings
        self._busy = busy
        self._forget = forget

    async def bring_forward(self, row: Phrase, ttl: int) -> Phrase:
        """The row, kept at most `ttl` seconds from now (a named or pinned one is not
        changed: it does not expire)."""
        if row.pinned or row.phrase_id is not None:
            return row
        expires = now() + ttl
        if row.expires is not None and row.expires <= expires:
            return row
        engine = self._storage.index.engine
        await self._storage.write(lambda: bring_forward(engine, row.key, expires))
        sooner = dataclasses.replace(row, expires=expires)
        self._rows.replace(sooner)
        self._encodings.forget(row.key)  # its encodings in memory carry the later expiry
        return sooner

    async def sweep(self) -> int:
        """Remove the prompts whose expiry is past, when this replica holds the claim."""
        if not await self._storage.leases.take(_CLAIM):
            return 0
        try:
            removed = 0
            engine = self._storage.index.engine
            while True:
                due = await self._storage.read(lambda: expired(engine, now()))
                keys = [k for k in due if not self._busy(k)]
                if not keys:
                    break
                await self._forget(set(keys))  # before and after: no hit from memory meanwhile
                gone, size = await self._storage.remove(keys, log=True)
                await self._forget(set(keys))
                removed += gone
                log.info("removed %d expired prompts (%d bytes)", gone, size)
                if len(keys) < _BATCH:
                    break
            return removed
        finally:
            await self._storage.leases.release(_CLAIM)
