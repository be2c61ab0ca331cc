"""Usage counts and eviction: what was used, when, and what leaves when the store is full.

Usage is kept by key, whatever answered the hit (the hot set, the hit lane, a row from the
index), and reaches the index in batches. Eviction then removes the least recently used
unpinned phrases, after writing the usage it has, so it never judges by stale times. The
entries and bytes it judges by are the storage's (cache/totals.py), counted again from the
index where other processes write to it too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cache.index import now
from cache.shared_rows import add_counters
from cache.storage import Storage, StoreUnavailableError

log = logging.getLogger("huiyin.cache")
_EVICTION = "eviction"  # the lease one replica at a time holds while it evicts
COUNTERS = ("hits", "misses", "evictions", "saved_seconds")  # summed over replicas


@dataclass
class Stats:
    """Counters since start; in a snapshot (`PromptStore.stats`), also the store's entries
    and bytes (kept by the storage as its writes land, cache/totals.py)."""

    entries: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    saved_seconds: float = 0.0
    max_bytes: int = 0

    @property
    def hit_ratio(self) -> float:
        """Hits over all lookups (0 before the first)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "entries": self.entries, "bytes": self.bytes, "max_bytes": self.max_bytes,
            "hits": self.hits, "misses": self.misses, "hit_ratio": round(self.hit_ratio, 4),
            "evictions": self.evictions, "synthesis_seconds_saved": round(self.saved_seconds, 3),
        }


class Usage:
    """Hits by key not yet written to the index: last use and count."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self._pending: dict[str, list[float]] = {}

    def hit(self, key: str, saved_seconds: float) -> None:
        """A listener was answered with this phrase from the store."""
        entry = self._pending.get(key)
        if entry is None:
            self._pending[key] = [now(), 1.0]
        else:
            entry[0] = now()
            entry[1] += 1
        self._stats.hits += 1
        self._stats.saved_seconds += saved_seconds

    def miss(self) -> None:
        """A listener's phrase had to be synthesized."""
        self._stats.misses += 1

    def restore(self, batch: list[tuple[str, float, int]]) -> None:
        """Put back a batch that could not be written (already counted in the stats)."""
        for key, last_used, hits in batch:
            entry = self._pending.get(key)
            if entry is None:
                self._pending[key] = [last_used, float(hits)]
            else:
                entry[0] = max(entry[0], last_used)
                entry[1] += hits

    def drain(self) -> list[tuple[str, float, int]]:
        """The pending usage as (key, last used, hits), cleared."""
        pending, self._pending = self._pending, {}
        return [(k, v[0], int(v[1])) for k, v in pending.items()]


class Maintenance:
    """Flushes usage and evicts beyond the byte budget, now or every `interval` seconds."""

    def __init__(
        self, storage: Storage, stats: Stats, usage: Usage, *, max_bytes: int, interval: float,
        busy: Callable[[str], bool], forget: Callable[[str], None],
    ) -> None:
        self._storage = storage
        self._stats = stats
        self._usage = usage
        self.max_bytes = max_bytes
        self._interval = interval
        self._busy = busy
        self._forget = forget
        self._task: asyncio.Task[None] | None = None
        # Also run each round (the store's look at the site lexicon).
        self.each_round: list[Callable[[], Awaitable[None]]] = []
        # On a shared index: what this replica has added to the index's counters, and the
        # counters of every replica as last read (None until then, and on SQLite).
        self.reported: dict[str, float] = dict.fromkeys(COUNTERS, 0.0)
        self.shared: dict[str, float] | None = None

    def every_replica(self, mine: Stats) -> Stats:
        """The counters of every replica on a shared index, this one's newest (`mine`)
        included, as of the last usage flush; `mine` on SQLite."""
        if self.shared is None:
            return mine
        shared, reported = self.shared, self.reported
        values = {n: shared.get(n, 0.0) + getattr(mine, n) - reported[n] for n in COUNTERS}
        return dataclasses.replace(
            mine, hits=int(values["hits"]), misses=int(values["misses"]),
            evictions=int(values["evictions"]), saved_seconds=values["saved_seconds"],
        )

    def start(self) -> None:
        """Run in the background."""
        self._task = asyncio.create_task(self._loop(), name="store-maintenance")

    async def stop(self) -> None:
        """Stop the background loop and write the usage it has."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush()
        except StoreUnavailableError:
            log.warning("the usage counted since the last flush is lost: the phrase index "
                        "cannot be reached")

    async def flush(self) -> None:
        """Write pending usage to the index in one batch."""
        batch = self._usage.drain()
        if batch:
            index = self._storage.index
            try:
                # Shielded: once handed to the writer the batch is written, even if the
                # caller is cancelled meanwhile, so it is never put back and counted twice.
                await asyncio.shield(self._storage.write(lambda: index.touch(batch)))
            except asyncio.CancelledError:
                raise
            except Exception:
                self._usage.restore(batch)
                raise
        if self._storage.shared:
            await self._share_counters()

    async def _share_counters(self) -> None:
        """Add what this replica counted since the last time to the index's counters, and
        learn every replica's totals."""
        counted = {name: float(getattr(self._stats, name)) for name in COUNTERS}
        deltas = {name: counted[name] - self.reported[name] for name in COUNTERS}
        index = self._storage.index
        before, self.reported = self.reported, counted  # handed over: counted once, even if
        try:                                           # the caller is cancelled meanwhile
            self.shared = await asyncio.shield(
                self._storage.write(lambda: add_counters(index.engine, deltas)))
        except asyncio.CancelledError:
            raise
        except Exception:
            self.reported = before
            raise

    async def refresh_totals(self) -> None:
        """Entries and bytes counted again from the index, in order with this process's
        writes (they follow each write already; a count adds what others wrote)."""
        await self._storage.recount()

    async def evict(self) -> int:
        """Remove least recently used unpinned phrases until the store fits its byte budget."""
        if not self.max_bytes:
            return 0
        await self.flush()
        await self.refresh_totals()
        excess = self._storage.totals.bytes - self.max_bytes
        if excess <= 0:
            return 0
        # Replicas on one index evict one at a time; the others see the result in the index.
        if not await self._storage.leases.take(_EVICTION):
            return 0
        try:
            return await self._evict(excess)
        finally:
            await self._storage.leases.release(_EVICTION)

    async def _evict(self, excess: int) -> int:
        index = self._storage.index
        candidates = await self._storage.run(lambda: index.eviction_candidates(10_000))
        chosen: list[str] = []
        for key, size in candidates:
            if excess <= 0:
                break
            if self._busy(key):
                continue
            chosen.append(key)
            excess -= size
        for key in chosen:  # before and after: no hit is answered from memory meanwhile
            self._forget(key)
        await self._storage.remove(chosen)
        for key in chosen:
            self._forget(key)
        self._stats.evictions += len(chosen)
        if chosen:
            log.info("evicted %d phrases; store holds %d bytes", len(chosen),
                     self._storage.totals.bytes)
        return len(chosen)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                if self.max_bytes:
                    await self.evict()  # it writes the usage and reads the totals first
                else:
                    await self.flush()
                    if self._storage.shared:  # other replicas write to the index too
                        await self.refresh_totals()
                for also in self.each_round:
                    await also()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("store maintenance failed")
