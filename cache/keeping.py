"""New audio into the store: answered from memory at once, written behind.

A new phrase's row and master WAV go into memory (the row cache, the hot set) and the
totals the moment it is synthesized, and its file and row are queued on the writer thread;
a listener waits for neither. Should the write fail, memory and totals forget the phrase,
and its next request synthesizes it again. A phrase that replaces a damaged one is written
first, as its row keeps the pin, name, tags and variants it had.
"""

from __future__ import annotations

import asyncio
import logging

from cache.audio import StoredPhrase, checksum, encode_master
from cache.files import FileStore
from cache.index import Phrase, now
from cache.keys import SpeechRequest
from cache.maintenance import Stats
from cache.rows import RowCache
from cache.storage import Storage
from cache.variants import Encodings
from synth.engine import Pcm, SynthesisError

log = logging.getLogger("huiyin.cache")


class Keeper:
    """Keeps good phrases in memory, and stores new ones."""

    def __init__(
        self, storage: Storage, rows: RowCache, encodings: Encodings, stats: Stats
    ) -> None:
        self._storage = storage
        self._rows = rows
        self._encodings = encodings
        self._stats = stats

    def hold(self, phrase: Phrase, data: bytes) -> None:
        """Keep a good phrase row, and its master WAV in the hot set, for answers from memory."""
        self._rows.put(phrase)
        self._encodings.hold_master(phrase, data)

    async def keep(
        self, request: SpeechRequest, key: str, pcm: Pcm, seconds: float, *,
        engine_version: str, replacing: bool,
    ) -> StoredPhrase:
        """The new phrase, held in memory and written behind (`StoredPhrase.saved` tells
        when it landed); with `replacing`, written first."""
        if len(pcm.samples) == 0:
            raise SynthesisError("the engine returned no audio")
        data = await self._storage.run(lambda: encode_master(pcm))  # off the loop: a few ms
        stamp = now()
        phrase = Phrase(
            key=key, text=request.text, engine=request.engine, engine_version=engine_version,
            voice=request.voice, style=request.style, speed=request.speed, pitch=request.pitch,
            volume=request.volume, duration=pcm.duration, sample_rate=pcm.sample_rate,
            bytes=len(data), checksum=checksum(data), synth_seconds=seconds, created=stamp,
            last_used=stamp, hits=0, pinned=False, phrase_id=None, tags=(),
        )
        index = self._storage.index
        saved = self._storage.persist(
            FileStore.phrase_name(key), data, lambda: index.put_phrase(phrase)
        )
        # Totals follow each write (a full count per miss would grow with the store).
        self._stats.entries += 1
        self._stats.bytes += len(data)
        saved.add_done_callback(lambda done: self._landed(phrase, done))
        if replacing:
            stored, _ = await asyncio.shield(saved)
            self.hold(stored, data)
            return StoredPhrase(stored, cached=False)
        self.hold(phrase, data)
        return StoredPhrase(phrase, cached=False, saved=saved)

    def _landed(self, phrase: Phrase, done: asyncio.Future[tuple[Phrase, int | None]]) -> None:
        """A phrase written behind has landed, or could not be stored: memory follows."""
        failed = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if failed is not None:
            log.error("phrase %s… was synthesized but could not be stored (%s)",
                      phrase.key[:8], type(failed).__name__)
            self._rows.discard(phrase.key)
            self._encodings.forget(phrase.key)
            self._stats.entries -= 1
            self._stats.bytes -= phrase.bytes
            return
        _, replaced = done.result()
        if replaced is not None:  # it replaced a damaged phrase
            self._stats.entries -= 1
            self._stats.bytes -= replaced
