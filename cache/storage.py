"""The store's I/O floor: the index on one writer thread, files on an I/O pool.

Writes go file first (atomic rename), row second, so a crash can leave an orphan file but
never a row without its audio. Deletes go row first, file second, for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from cache.audio import checksum
from cache.files import FileStore
from cache.index import Index, Phrase

log = logging.getLogger("huiyin.cache")
T = TypeVar("T")


class Storage:
    """The index and the audio files, reached only off the event loop."""

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.files = FileStore(data_dir / "audio")
        self._database_url = database_url or f"sqlite:///{data_dir / 'index.sqlite3'}"
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-writer")
        self._io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-io")
        self._index: Index | None = None
        # File names written but maybe not yet in the index: the integrity check spares them.
        self.writing: set[str] = set()

    async def open(self) -> None:
        """Make the folder and open (and migrate) the index."""
        await self.run(self.files.create)
        self._index = await self.write(lambda: Index(self._database_url))

    async def close(self) -> None:
        """Close the index and stop the threads."""
        if self._index is not None:
            index = self._index
            await self.write(index.close)
            self._index = None
        loop = asyncio.get_running_loop()
        for pool in (self._writer, self._io):
            await loop.run_in_executor(None, pool.shutdown)

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
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run a read or file operation on the I/O pool."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn)

    async def load_good(self, key: str) -> tuple[Phrase, bytes] | None:
        """The row and master bytes when both exist and agree; else None (a miss)."""
        def load() -> tuple[Phrase, bytes] | None:
            row = self.index.get(key)
            if row is None:
                return None
            data = self.files.read(FileStore.phrase_name(key))
            if data is None or len(data) != row.bytes or checksum(data) != row.checksum:
                log.warning("phrase %s… has a missing or damaged file; synthesizing again", key[:8])
                return None
            return row, data

        return await self.run(load)

    async def commit(self, name: str, data: bytes, put_row: Callable[[], T]) -> T:
        """File first (atomic), row second; the integrity check leaves the name alone meanwhile."""
        self.writing.add(name)
        try:
            await self.run(lambda: self.files.write(name, data))
            return await self.write(put_row)
        finally:
            self.writing.discard(name)

    async def remove(self, keys: Sequence[str]) -> None:
        """Delete phrases' rows, then their files and their variants' files."""
        if not keys:
            return
        variants = await self.run(lambda: [v for k in keys for v in self.index.variants(k)])
        await self.write(lambda: self.index.delete_phrases(keys))

        def unlink() -> None:
            for key in keys:
                self.files.delete(FileStore.phrase_name(key))
            for v in variants:
                self.files.delete(v.file)

        await self.run(unlink)

    async def totals(self) -> tuple[int, int]:
        """(phrase count, bytes of phrases and variants) from the index."""
        return await self.run(self.index.totals)
