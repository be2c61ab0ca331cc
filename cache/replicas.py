"""What replicas on one shared index share beyond the phrases and their counters (those:
PromptStore.stats): warm-up jobs' progress, and claims that one replica at a time holds.
On SQLite (one process) the same calls work."""

from __future__ import annotations

from typing import Any

from cache.shared_rows import put_warm_job, warm_job
from cache.storage import Storage


class Replicas:
    """The shared part of the index, for the gateway and warm-up."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

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
