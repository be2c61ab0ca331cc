"""What the store forgets and tidies: every copy this replica holds of prompts purged,
expired or made again (here, or on another replica through the purge log), and each
maintenance round, on one replica at a time, the expired prompts, the texts `store_text`
does not keep, and the purge log's old entries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cache.expiry import Expiry
from cache.forgetting import Forgetting
from cache.keying import Keying
from cache.replicas import Replicas
from cache.retention import forget_texts, kept_text
from cache.rows import RowCache
from cache.storage import Storage
from cache.variants import Encodings

# The claim one replica at a time holds for the expiry sweep and the index's upkeep.
_CLAIM = "upkeep"


class Upkeep:
    """Forgetting and tidying for one store."""

    def __init__(
        self, storage: Storage, rows: RowCache, encodings: Encodings, keying: Keying,
        replicas: Replicas, *, store_text: str, busy: Callable[[str], bool],
    ) -> None:
        self._storage = storage
        self._rows = rows
        self._encodings = encodings
        self._keying = keying
        self._replicas = replicas
        self._store_text = store_text
        self.expiry = Expiry(storage, rows, encodings, busy=busy, forget=self.forget)
        self._log = Forgetting(storage, self.forget)
        # One round at a time: a round asked for while the background one runs would find
        # its claim held (by this very replica) and tidy nothing, and follow the log from
        # where the other did, forgetting its keys twice.
        self._one_round = asyncio.Lock()
        # Called with the keys forgotten: what the gateway keeps of them (its URL memo) goes.
        self.callbacks: list[Callable[[set[str]], None]] = []

    async def forget(self, keys: set[str]) -> None:
        """Forget everything held of these keys: rows, encodings, the requests that read
        into them (their texts), what the gateway registered, local copies of the bucket."""
        for key in keys:
            self._rows.discard(key)
        self._encodings.forget_all(keys)
        self._keying.forget(keys)
        for forget in self.callbacks:
            forget(keys)
        files = self._storage.files
        await self._storage.run(lambda: files.forget_copies(keys))

    async def round(self) -> None:
        """Forget what was purged or made again on any replica; and on one replica at a
        time, remove expired prompts, drop the texts `store_text` does not keep, and trim
        the purge log. A round asked for while another runs waits for it, then runs."""
        async with self._one_round:
            await self._log.follow()
            if not await self._replicas.claim(_CLAIM):
                return
            try:
                await self.expiry.sweep()
                mode, engine = self._store_text, self._storage.index.engine
                if await self._storage.write(lambda: forget_texts(engine, mode)):
                    self._rows.forget_texts(
                        lambda row: kept_text(mode, "", named=row.phrase_id is not None) is not None)
                await self._log.trim()
            finally:
                await self._replicas.unclaim(_CLAIM)
