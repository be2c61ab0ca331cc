"""Token buckets: each client's misses and characters, refilled at a rate per minute.

A bucket holds at most `capacity` tokens and gains `per_minute` a minute; a request takes
`cost` tokens or, when there are too few, is refused with the seconds until there would be
enough. On SQLite they live in this process (`MemoryBuckets`); on a shared index in one
table every replica draws from (`SharedBuckets`), each draw one transaction.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from cache.storage import Storage
from cache.tables import RateBucketRow

_BUCKETS = cast(Table, RateBucketRow.__table__)
# Buckets this process keeps in memory (oldest dropped: a dropped bucket starts full).
MEMORY_BUCKETS = 100_000
# A shared bucket untouched this long is full again and its row is removed.
_IDLE_SECONDS = 86_400.0


@dataclass(frozen=True)
class Draw:
    """What one request takes from one bucket."""

    name: str
    capacity: float
    per_minute: float
    cost: float


def refill(tokens: float, updated: float, draw: Draw, now: float) -> float:
    """The bucket's tokens at `now`."""
    return min(draw.capacity, tokens + max(0.0, now - updated) * draw.per_minute / 60.0)


def wait_for(tokens: float, draw: Draw) -> float:
    """Seconds until the bucket holds the draw's cost (0: it does now). A cost above the
    capacity can never be met: infinity."""
    if draw.cost > draw.capacity:
        return math.inf
    missing = draw.cost - tokens
    return 0.0 if missing <= 0 else missing * 60.0 / draw.per_minute


class Buckets(Protocol):
    """Where the buckets are."""

    async def take(self, draws: list[Draw]) -> float:
        """Take every draw, or none: 0 when taken, else the seconds to wait."""
        ...

    async def peek(self, draws: list[Draw]) -> float:
        """What take would answer now, taking nothing."""
        ...

    async def give(self, draws: list[Draw]) -> None:
        """Give back what take took (a request refused after it drew)."""
        ...


class MemoryBuckets:
    """This process's buckets (one machine: SQLite)."""

    def __init__(self, size: int = MEMORY_BUCKETS) -> None:
        self._size = size
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _levels(self, draws: list[Draw], now: float) -> tuple[list[float], float]:
        levels = []
        for draw in draws:
            tokens, updated = self._state.get(draw.name, (draw.capacity, now))
            levels.append(refill(tokens, updated, draw, now))
        return levels, max((wait_for(t, d) for t, d in zip(levels, draws, strict=True)), default=0.0)

    async def peek(self, draws: list[Draw]) -> float:
        """What take would answer now (see Buckets.peek)."""
        return self._levels(draws, time.monotonic())[1]

    async def give(self, draws: list[Draw]) -> None:
        """Give back what take took (see Buckets.give)."""
        now = time.monotonic()
        levels, _ = self._levels(draws, now)
        for tokens, draw in zip(levels, draws, strict=True):
            self._state[draw.name] = (min(draw.capacity, tokens + draw.cost), now)

    async def take(self, draws: list[Draw]) -> float:
        """Take every draw, or none (see Buckets.take)."""
        now = time.monotonic()
        levels, wait = self._levels(draws, now)
        if wait > 0:
            return wait
        for tokens, draw in zip(levels, draws, strict=True):
            self._state[draw.name] = (tokens - draw.cost, now)
            self._state.move_to_end(draw.name)
        while len(self._state) > self._size:
            self._state.popitem(last=False)
        return 0.0


class SharedBuckets:
    """Buckets in the shared index: replicas draw from the same tokens."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._draws = 0

    async def take(self, draws: list[Draw]) -> float:
        """Take every draw, or none (see Buckets.take), in one transaction."""
        engine = self._storage.index.engine
        self._draws += 1
        prune = self._draws % 1000 == 1
        return await self._storage.run(lambda: take_shared(engine, draws, prune=prune))

    async def peek(self, draws: list[Draw]) -> float:
        """What take would answer now (see Buckets.peek): the rows read, nothing locked."""
        engine = self._storage.index.engine
        return await self._storage.run(lambda: peek_shared(engine, draws))

    async def give(self, draws: list[Draw]) -> None:
        """Give back what take took (see Buckets.give), in one transaction."""
        engine = self._storage.index.engine
        await self._storage.run(lambda: give_shared(engine, draws))


def peek_shared(engine: Engine, draws: list[Draw]) -> float:
    """The seconds a take of these draws would wait now (a missing row is a full bucket)."""
    now = time.time()
    with engine.connect() as connection:
        rows = {r.name: r for r in connection.execute(
            select(_BUCKETS).where(_BUCKETS.c.name.in_([d.name for d in draws])))}
    levels = [refill(rows[d.name].tokens, rows[d.name].updated, d, now) if d.name in rows
              else d.capacity for d in draws]
    return max((wait_for(t, d) for t, d in zip(levels, draws, strict=True)), default=0.0)


def give_shared(engine: Engine, draws: list[Draw]) -> None:
    """Add each draw's cost back to its bucket, up to its capacity."""
    now = time.time()
    with engine.begin() as connection:
        for draw in sorted(draws, key=lambda d: d.name):  # the locking order take uses
            row = connection.execute(select(_BUCKETS).where(_BUCKETS.c.name == draw.name)
                                     .with_for_update()).first()
            if row is None:
                continue  # pruned: full again
            tokens = min(draw.capacity, refill(row.tokens, row.updated, draw, now) + draw.cost)
            connection.execute(_BUCKETS.update().where(_BUCKETS.c.name == draw.name)
                               .values(tokens=tokens, updated=now))


def take_shared(engine: Engine, draws: list[Draw], *, prune: bool = False) -> float:
    """Draw from buckets rows (PostgreSQL): rows locked, levels computed, written back."""
    now = time.time()
    draws = sorted(draws, key=lambda d: d.name)  # one locking order: no deadlock between replicas
    names = [d.name for d in draws]
    with engine.begin() as connection:
        if prune:
            connection.execute(delete(_BUCKETS).where(_BUCKETS.c.updated < now - _IDLE_SECONDS))
        # A missing row is a full bucket: made first, and every row locked by this statement
        # (DO UPDATE locks an existing row; DO NOTHING would not, and a prune elsewhere
        # could remove it before the SELECT below).
        insert = postgresql.insert(_BUCKETS).values(
            [{"name": d.name, "tokens": d.capacity, "updated": now} for d in draws])
        connection.execute(insert.on_conflict_do_update(
            index_elements=[_BUCKETS.c.name], set_={"updated": _BUCKETS.c.updated}))
        rows = {r.name: r for r in connection.execute(
            select(_BUCKETS).where(_BUCKETS.c.name.in_(names)).order_by(_BUCKETS.c.name)
            .with_for_update()
        )}
        levels = [refill(rows[d.name].tokens, rows[d.name].updated, d, now) for d in draws]
        wait = max((wait_for(t, d) for t, d in zip(levels, draws, strict=True)), default=0.0)
        if wait > 0:
            return wait
        for tokens, draw in zip(levels, draws, strict=True):
            connection.execute(_BUCKETS.update().where(_BUCKETS.c.name == draw.name)
                               .values(tokens=tokens - draw.cost, updated=now))
    return 0.0
