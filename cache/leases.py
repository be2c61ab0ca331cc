"""Single flight across processes: replicas on one PostgreSQL index synthesize a key once.

The replica that takes a key's lease synthesizes it; the others wait for its row (a short
poll of the index) or for the lease to be free again. A lease is a PostgreSQL session-level
advisory lock on a dedicated connection, so a replica that dies (SIGKILL included) loses
its leases with its connection and never blocks a key. On SQLite, one process owns the
index and the in-process single flight is all there is: leases are free.

`Leases` holds the locks (blocking, on the index's side); `Leasing` takes, waits for and
gives them back from the event loop. Named leases (claims: eviction, expiry, upkeep, the
startup warm-up) are taken and given back the same way as a key's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import xxhash
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from cache.tables import Phrase

log = logging.getLogger("huiyin.cache")
T = TypeVar("T")

# Waiting for another replica's synthesis: how often to look, and for how long at most.
_LEASE_POLL = 0.05
_PATIENCE = 60.0

# A key's lock id: 63 bits of its hash, in the advisory lock space of this program.
_LOCK_SPACE = b"huiyin-key-lease"


def lock_id(key: str) -> int:
    """The advisory lock id of a phrase key (a signed 64-bit integer)."""
    value = xxhash.xxh3_64_intdigest(_LOCK_SPACE + key.encode())
    return value - (1 << 64) if value >= (1 << 63) else value


class Leases:
    """Keys being synthesized by this process, held as advisory locks (blocking methods)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.shared = engine.dialect.name == "postgresql"
        self._held: dict[str, Connection] = {}
        self._lock = threading.Lock()

    def try_take(self, key: str) -> bool:
        """Take a key's lease when no process holds it; True when this one holds it now."""
        if not self.shared:
            return True
        with self._lock:
            if key in self._held:
                return True
        connection = self._engine.connect()
        try:
            got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:id)"),
                                          {"id": lock_id(key)}).scalar())
            connection.commit()
        except BaseException:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        with self._lock:
            self._held[key] = connection
        return True

    def release(self, key: str) -> None:
        """Give a key's lease back (nothing when it is not held here)."""
        with self._lock:
            connection = self._held.pop(key, None)
        if connection is None:
            return
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id(key)})
            connection.commit()
        finally:
            connection.close()  # the session's locks go with it, whatever happened above

    def held(self) -> list[str]:
        """Keys this process holds."""
        with self._lock:
            return list(self._held)

    def close(self) -> None:
        """Give every lease back and release the lease connections (at shutdown)."""
        for key in self.held():
            self.release(key)
        if self.shared:
            self._engine.dispose()


class Runner(Protocol):
    """Runs a blocking call off the event loop (the storage's I/O pool)."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


class Leasing:
    """The leases of this process from the event loop: taken, waited for and given back,
    the blocking calls on `run`'s threads."""

    def __init__(
        self, leases: Callable[[], Leases], run: Runner,
        find: Callable[[str], Awaitable[tuple[Phrase, bytes] | None]],
    ) -> None:
        """`leases`: the open index's; `find`: a key's good stored phrase, or None."""
        self._leases = leases
        self._run = run
        self._find = find
        self._releasing: set[asyncio.Future[None]] = set()  # leases being given back

    @property
    def shared(self) -> bool:
        """Whether other processes use this index (leases make single flight span them)."""
        return self._leases().shared

    async def take(self, key: str) -> bool:
        """Take a lease when no process holds it (always, on SQLite); True when this one
        holds it now. Give it back with `release`."""
        leases = self._leases()
        return await self._run(lambda: leases.try_take(key))

    async def wait(self, key: str, *, fresh: bool = False) -> tuple[Phrase, bytes] | None:
        """Hold the key's lease so that this process synthesizes it (None), or the phrase
        another process stored while this one waited (with `fresh`, never: the stored
        phrase is being replaced, and this process waits for the lease). A holder that
        stays past `_PATIENCE` is given up on: this process synthesizes too, rather than
        never."""
        waited = 0.0
        while True:
            if await self.take(key):
                found = None if fresh else await self._find(key)  # stored meanwhile?
                if found is not None:
                    await self.release(key)
                return found
            await asyncio.sleep(_LEASE_POLL)  # the holder's row, or its lease, will come
            waited += _LEASE_POLL
            found = None if fresh else await self._find(key)
            if found is not None:
                return found
            if waited >= _PATIENCE:
                log.warning("phrase %s… is held by another replica past %.0f s; "
                            "synthesizing it here too", key[:8], _PATIENCE)
                return None

    async def release(self, key: str) -> None:
        """Give a lease back."""
        leases = self._leases()
        if leases.shared:
            await self._run(lambda: leases.release(key))

    def release_after(self, key: str, saved: asyncio.Future[Any] | None) -> None:
        """Give a key's lease back once its phrase is written (now, when it is already)."""
        def landed(_: object) -> None:
            task = asyncio.ensure_future(self.release(key))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

        if saved is None:
            landed(None)
        else:
            saved.add_done_callback(landed)

    async def given_back(self) -> None:
        """Wait until the leases being given back are (at shutdown, before the index closes)."""
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
