"""The store's I/O floor: the index on one writer thread, files on an I/O pool.

Writes go file first (atomic rename), row second, so a crash can leave an orphan file but
never a row without its audio. Deletes go row first, file second, for the same reason.

A new phrase's audio is answered from memory while it is written: `persist` queues the
file and its row on the writer thread at once, so every index write queued after it (a pin,
a name, usage, a delete) finds the row. Until it lands it is one of the pending writes
(cache/pending.py), which readers that must see it wait for (`settled`, `pending.wait`).
The writes that add or remove audio move the store's totals as they land, in the order
they ran (cache/totals.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from cache.audio import checksum, decode_master
from cache.files import AudioStore, AudioStoreError, FileStore
from cache.index import Index, Phrase, Pool, sqlite_url
from cache.leases import Leasing
from cache.pending import PendingWrites
from cache.totals import Change, Totals
from synth.engine import audible

log = logging.getLogger("huiyin.cache")
T = TypeVar("T")


class StoreUnavailableError(RuntimeError):
    """The index's database or the audio bucket cannot be reached now (a 503: retry)."""

    retry_after = 5


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    """The database's and the bucket's outages as one error that names neither's address."""
    try:
        yield
    except (OperationalError, InterfaceError, SQLAlchemyTimeoutError):
        raise StoreUnavailableError("the phrase index cannot be reached") from None
    except AudioStoreError as exc:
        raise StoreUnavailableError(str(exc)) from None


class Storage:
    """The index and the audio files, reached only off the event loop."""

    def __init__(
        self, data_dir: Path, database_url: str | None = None, pool: Pool | None = None,
        audio: AudioStore | None = None,
    ) -> None:
        self.data_dir = data_dir
        self._pool = pool
        self.files: AudioStore = audio if audio is not None else FileStore(data_dir / "audio")
        self._database_url = database_url or sqlite_url(data_dir)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-writer")
        self._io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-io")
        self._index: Index | None = None
        self.pending = PendingWrites()  # writes behind: counted, waited for, spared
        self._closed = False
        # Single flight across replicas (cache/leases.py): leases of the open index's.
        self.leases = Leasing(lambda: self.index.leases, self.run, self.load_good)
        self.totals = Totals(self.pending)  # moved only by the writes below, as they land

    async def open(self) -> None:
        """Make the folder and open (and migrate) the index."""
        await self.run(self.files.create)
        self._index = await self.write(lambda: Index(self._database_url, pool=self._pool))

    async def close(self) -> None:
        """Land the writes behind, close the index and stop the threads (once)."""
        if self._closed:
            return
        self._closed = True
        await self.settled()
        await self.leases.given_back()
        loop = asyncio.get_running_loop()
        # Reads under way end before the index's pool is disposed: a connection checked out
        # at that moment would go back to a pool nobody closes, and leak its socket.
        await loop.run_in_executor(None, self._io.shutdown)
        if self._index is not None:
            index = self._index
            await self.write(index.close)
            self._index = None
        await loop.run_in_executor(None, self.files.close)
        await loop.run_in_executor(None, self._writer.shutdown)

    @property
    def database_url(self) -> str:
        """The index's SQLAlchemy URL."""
        return self._database_url

    @property
    def ready(self) -> bool:
        """Whether the index is open."""
        return self._index is not None

    @property
    def index(self) -> Index:
        """The open index."""
        if self._index is None:
            raise RuntimeError("the store is not open")
        return self._index

    async def write(self, fn: Callable[[], T]) -> T:
        """Run an index write on the single writer thread."""
        with _reachable():
            return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run a read or file operation on the I/O pool."""
        with _reachable():
            return await asyncio.get_running_loop().run_in_executor(self._io, fn)

    async def read(self, fn: Callable[[], T]) -> T:
        """Run an index read on the I/O pool once the writes behind have landed."""
        await self.settled()
        return await self.run(fn)

    async def load_good(self, key: str, tenant: str | None = None) -> tuple[Phrase, bytes] | None:
        """The row and master bytes when both exist and agree (and the row is `tenant`'s,
        when one is given); else None (a miss)."""
        row, data = await self.lookup(key, tenant)
        return None if row is None or data is None else (row, data)

    async def lookup(
        self, key: str, tenant: str | None = None
    ) -> tuple[Phrase | None, bytes | None]:
        """The row, and its master bytes when the file is there and agrees with it; nothing
        for a row that is not `tenant`'s (when one is given), whose file is not read."""
        await self.pending.wait(FileStore.phrase_name(key))

        def load() -> tuple[Phrase | None, bytes | None]:
            row = self.index.get(key)
            if row is None or tenant not in (None, row.tenant):
                return None, None
            data = self.files.read(FileStore.phrase_name(key))
            if data is None or len(data) != row.bytes or checksum(data) != row.checksum:
                log.warning("phrase %s… has a missing or damaged file; synthesizing again", key[:8])
                return row, None
            if not audible(decode_master(data)[0]):  # stored before silence was refused
                log.warning("phrase %s… holds only silence; synthesizing again", key[:8])
                return row, None
            return row, data

        return await self.run(load)

    @property
    def shared(self) -> bool:
        """Whether other processes use this index (leases make single flight span them)."""
        return self.leases.shared

    def _queue(
        self, fn: Callable[[], T], landed: Callable[[concurrent.futures.Future[T]], None]
    ) -> asyncio.Future[T]:
        """Queue an index write; `landed` runs on the loop once it ran (or failed, or was
        cancelled before it ran), in the order the writer ran them, and before anyone
        awaiting the write sees it. Tied to the writer's own future, so a caller cancelled
        meanwhile changes nothing of what is counted."""
        loop = asyncio.get_running_loop()

        def ran(done: concurrent.futures.Future[T]) -> None:  # on the writer thread
            if not loop.is_closed():
                loop.call_soon_threadsafe(landed, done)

        job = self._writer.submit(fn)
        job.add_done_callback(ran)  # before the future below: counted before it is seen
        return asyncio.wrap_future(job, loop=loop)

    def _counted(self, fn: Callable[[], T], counts: Callable[[T], Change]) -> asyncio.Future[T]:
        """Queue an index write that changes the totals by what it did (`counts` of its
        result), counted once it lands."""
        return self._queue(fn, lambda done: self._count(done, counts))

    def _count(self, done: concurrent.futures.Future[T], counts: Callable[[T], Change]) -> None:
        wrote = not done.cancelled() and done.exception() is None
        self.totals.land(counts(done.result()) if wrote else Change())

    def persist(
        self, name: str, data: bytes, put_row: Callable[[], T], *, expected: Change,
        counts: Callable[[T], Change],
    ) -> asyncio.Future[T]:
        """Write behind: the file (atomic), then its row, queued on the writer thread now;
        the future tells how it went. Until it lands it is a pending write (cache/pending.py):
        spared by the integrity check, waited for by `settled` and `pending.wait`, and
        counted by the totals as `expected`; then as `counts` of what `put_row` returned
        (nothing, when it failed)."""
        def write() -> T:
            self.files.write(name, data)
            return put_row()

        def landed(done: concurrent.futures.Future[T]) -> None:
            self.pending.done(future)  # in one step: expected no more, counted as it is
            self._count(done, counts)

        future = self._queue(write, landed)
        self.pending.add(name, future, expected)
        return future

    async def settled(self) -> None:
        """Wait until every write behind has landed (or failed)."""
        await self.pending.settled()

    async def remove(self, keys: Sequence[str], *, log: bool = False) -> tuple[int, int]:
        """Delete phrases' rows, then their files and their variants' files; (phrases,
        bytes) removed. With `log`, the keys go to the purge log for every replica to forget
        (cache/forgetting.py)."""
        if not keys:
            return 0, 0
        await self.settled()
        variants = await self.run(lambda: [v for k in keys for v in self.index.variants(k)])
        index = self.index
        with _reachable():
            gone = await self._counted(lambda: index.delete_phrases(keys, log=log),
                                       lambda gone: Change(-gone[0], -gone[1]))

        def unlink() -> None:
            for key in keys:
                self.files.delete(FileStore.phrase_name(key))
            for v in variants:
                self.files.delete(v.file)

        await self.run(unlink)
        return gone

    async def remove_variant(self, key: str, fmt: str, rate: int) -> None:
        """Delete one encoding's row (its file is the caller's to remove)."""
        index = self.index
        with _reachable():
            await self._counted(lambda: index.delete_variant(key, fmt, rate),
                                lambda size: Change(0, -size))

    async def recount(self) -> None:
        """Take the totals from the index, counted on the writer thread: in order with this
        process's writes, and with whatever other processes wrote."""
        def landed(done: concurrent.futures.Future[tuple[int, int]]) -> None:
            if not done.cancelled() and done.exception() is None:
                self.totals.recount(Change(*done.result()))

        index = self.index
        with _reachable():
            await self._queue(index.totals, landed)
