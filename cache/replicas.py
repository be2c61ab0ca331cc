"""What replicas on one shared index share beyond the phrases: warm-up jobs' progress,
claims that one replica at a time holds, and the store's counters summed over all of them.
On SQLite (one process) the same calls work, and the counters are this process's own."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from cache.maintenance import COUNTERS, Maintenance, Stats
from cache.shared_rows import put_warm_job, warm_job
from cache.storage import Storage


class Replicas:
    """The shared part of the index, for the gateway and warm-up."""

    def __init__(
        self, storage: Storage, maintenance: Maintenance, stats: Callable[[], Stats]
    ) -> None:
        self._storage = storage
        self._maintenance = maintenance
        self._stats = stats

    async def record_job(self, job_id: str, state: str, progress: dict[str, Any]) -> None:
        """Write a warm-up job's progress where every replica can read it."""
        index = self._storage.index
        await self._storage.write(lambda: put_warm_job(index.engine, job_id, state, progress))

    async def job(self, job_id: str) -> dict[str, Any] | None:
        """A warm-up job's progress as last recorded by whichever replica runs it."""
        index = self._storage.index
        return await self._storage.read(lambda: warm_job(index.engine, job_id))

    async def claim(self, name: str) -> bool:
        """Take a named lease that one replica on a shared index holds at a time (always
        True on SQLite); give it back with `unclaim`."""
        return await self._storage.leases.take(f"claim:{name}")

    async def unclaim(self, name: str) -> None:
        """Give a claimed lease back."""
        await self._storage.leases.release(f"claim:{name}")

    def stats(self) -> Stats:
        """The counters of every replica on a shared index, this one's newest included (as
        of the last usage flush); this process's own on SQLite."""
        mine = self._stats()
        shared, reported = self._maintenance.shared, self._maintenance.reported
        if shared is None:
            return mine
        values = {n: shared.get(n, 0.0) + getattr(mine, n) - reported[n] for n in COUNTERS}
        return dataclasses.replace(
            mine, hits=int(values["hits"]), misses=int(values["misses"]),
            evictions=int(values["evictions"]), saved_seconds=values["saved_seconds"],
        )
