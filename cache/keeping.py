"""New audio into the store: answered from memory at once, written behind.

A new phrase's row and master WAV go into memory (the row cache, the hot set) the moment
it is synthesized, and its file and row are queued on the writer thread, counted in the
totals as pending until they land (cache/totals.py); a listener waits for neither. Should
the write fail, memory forgets the phrase, and its next request synthesizes it again. A
phrase that replaces a damaged one is written first, as its row keeps the pin, name, tags
and variants it had.
"""

from __future__ import annotations

import asyncio
import logging

from cache.audio import StoredPhrase, checksum, encode_master
from cache.files import FileStore
from cache.index import Phrase, now
from cache.keys import SpeechRequest
from cache.rows import RowCache
from cache.storage import Storage
from cache.totals import Change
from cache.variants import Encodings
from synth.engine import Pcm, SynthesisError

log = logging.getLogger("huiyin.cache")


class Keeper:
    """Keeps good phrases in memory, and stores new ones."""

    def __init__(self, storage: Storage, rows: RowCache, encodings: Encodings) -> None:
        self._storage = storage
        self._rows = rows
        self._encodings = encodings

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
            last_used=stamp, hits=0, pinned=False, phrase_id=None, tags=(), tenant=request.tenant,
        )
        index = self._storage.index
        size = len(data)
        saved = self._storage.persist(
            FileStore.phrase_name(key), data, lambda: index.put_phrase(phrase),
            # Counted at once when answered before it lands; a replacement is not.
            expected=Change() if replacing else Change(1, size),
            counts=lambda put: Change(1, size) if put[1] is None else Change(0, size - put[1]),
        )
        saved.add_done_callback(lambda done: self._landed(phrase, done))
        if replacing:
            stored, _ = await asyncio.shield(saved)
            self.hold(stored, data)
            return StoredPhrase(stored, cached=False)
        self.hold(phrase, data)
        return StoredPhrase(phrase, cached=False, saved=saved)

    def _landed(self, phrase: Phrase, done: asyncio.Future[tuple[Phrase, int | None]]) -> None:
        """A phrase written behind could not be stored: memory forgets it."""
        failed = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if failed is not None:
            log.error("phrase %s… was synthesized but could not be stored (%s)",
                      phrase.key[:8], type(failed).__name__)
            self._rows.discard(phrase.key)
            self._encodings.forget(phrase.key)
