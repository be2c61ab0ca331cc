"""What the store asks of a caller before a request costs anything (the gateway's scopes,
rate limits and quotas implement it), and how a key's lookup, lease and admission are asked
once however many callers want it at the same time (`Starter`)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Protocol

from cache.generations import Generations, Making
from cache.index import Phrase
from cache.keeping import Keeper
from cache.keys import SpeechRequest
from cache.rows import RowCache
from cache.storage import Storage
from synth.worker import Priority


class Admission(Protocol):
    """What the store asks of a caller's request before it costs anything: each method
    raises to refuse (a scope, a rate limit, a quota) and returns to let it go on."""

    @property
    def client(self) -> str:
        """Whose share of the frontend's time reading the request's text takes."""
        ...

    @property
    def tenant(self) -> str:
        """Whose prompts the caller makes and hears: its requests are that tenant's."""
        ...

    async def before_reading(self, request: SpeechRequest) -> None:
        """Before the request's text is read into its key (its key is not known yet):
        whether it may cost that much, judged by what its text could say."""
        ...

    async def admit(self, request: SpeechRequest) -> None:
        """Before the request starts a synthesis (never when it finds a stored phrase or
        joins a synthesis under way): charge it."""
        ...


@dataclasses.dataclass
class Admitting:
    """A key one caller is being admitted for, and how many callers wait for it."""

    done: asyncio.Future[None]
    followers: int = 0


class Starter:
    """Finds a key's stored row or starts its generation, one caller at a time per key:
    the callers of the same key meanwhile wait, so one admission is asked, not one per
    caller."""

    def __init__(
        self, storage: Storage, rows: RowCache, keeper: Keeper, generations: Generations,
    ) -> None:
        self._storage = storage
        self._rows = rows
        self._keeper = keeper
        self._generations = generations
        self._admitting: dict[str, Admitting] = {}

    def followers(self, key: str) -> int:
        """Callers waiting for the one being admitted for a key (0: none is)."""
        admitting = self._admitting.get(key)
        return 0 if admitting is None else admitting.followers

    async def start(
        self, request: SpeechRequest, key: str, priority: Priority, *, streamed: bool,
        admission: Admission | None, fresh: bool = False,
    ) -> Phrase | Making:
        """A key's stored row, or its generation: the one under way, joined, or one started
        now (`fresh`: never the stored row; a generation that replaces it). One caller at a
        time looks the key up and is admitted; callers of the same key meanwhile wait for it
        and then join what it found or started (a refused one's followers are judged each in
        turn)."""
        while True:
            row = None if fresh else self._rows.get(key)
            if row is not None:
                return row
            generation = self._generations.get(key)
            if generation is not None:
                return generation
            admitting = self._admitting.get(key)
            if admitting is None:
                break
            admitting.followers += 1
            try:
                await asyncio.shield(admitting.done)
            finally:
                admitting.followers -= 1
        admitting = Admitting(asyncio.get_running_loop().create_future())
        self._admitting[key] = admitting
        try:
            return await self._admit_and_start(request, key, priority, streamed, admission, fresh)
        finally:
            del self._admitting[key]
            admitting.done.set_result(None)

    async def _admit_and_start(
        self, request: SpeechRequest, key: str, priority: Priority, streamed: bool,
        admission: Admission | None, fresh: bool,
    ) -> Phrase | Making:
        found = await self._storage.lookup(key)
        row, data = found
        if fresh:
            found = (row, None)  # made again whatever is stored: it is replaced
        elif row is not None and data is not None:
            # Stored but not in memory (after a restart, say): a hit, never admitted.
            self._keeper.hold(row, data)
            return row
        leased = False
        if self._storage.shared:
            # Another replica may be making it: waited for, and neither made twice nor charged.
            leasing = asyncio.ensure_future(self._storage.leases.wait(key, fresh=fresh))
            try:
                made = await asyncio.shield(leasing)
            except asyncio.CancelledError:  # this caller left: a lease taken after is given back
                leasing.add_done_callback(lambda done: self._unlease(key, done))
                raise
            if made is not None:
                self._keeper.hold(*made)
                return made[0]
            leased = True
        if admission is not None:
            try:
                await admission.admit(request)
            except BaseException:
                if leased:
                    await asyncio.shield(self._storage.leases.release(key))
                raise
        return self._generations.start(request, key, priority, streamed=streamed, found=found,
                                       leased=leased, fresh=fresh)

    def _unlease(self, key: str, done: asyncio.Future[tuple[Phrase, bytes] | None]) -> None:
        if not done.cancelled() and done.exception() is None and done.result() is None:
            self._storage.leases.release_after(key, None)
