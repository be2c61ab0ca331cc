"""New audio into the store: answered from memory at once, written behind.

A new phrase's row and master WAV go into memory (the row cache, the hot set) the moment
it is synthesized, and its file and row are queued on the writer thread, one of the
pending writes until they land (cache/pending.py); a listener waits for neither. Should
the write fail, memory forgets the phrase, and its next request synthesizes it again. A
phrase that replaces a stored one (its file was damaged, or it is made again on purpose) is
written first, as its row keeps the pin, name, tags and text it had; one made again on
purpose loses its encodings, made from the old audio.

Audio nobody wants kept (no-store) is answered from its master bytes alone: no row, no
file, nothing in memory once the answer is out.
"""

from __future__ import annotations

import asyncio
import logging

from cache.audio import StoredPhrase, checksum, encode_master
from cache.files import FileStore
from cache.index import Phrase, Variant, now
from cache.keys import SpeechRequest
from cache.retention import kept_text
from cache.rows import RowCache
from cache.storage import Storage
from cache.totals import Change
from cache.variants import Encodings
from synth.engine import Pcm, SynthesisError

log = logging.getLogger("huiyin.cache")


class Keeper:
    """Keeps good phrases in memory, and stores new ones."""

    def __init__(
        self, storage: Storage, rows: RowCache, encodings: Encodings, *, store_text: str,
    ) -> None:
        self._storage = storage
        self._rows = rows
        self._encodings = encodings
        self.store_text = store_text

    def hold(self, phrase: Phrase, data: bytes) -> None:
        """Keep a good phrase row, and its master WAV in the hot set, for answers from memory."""
        self._rows.put(phrase)
        self._encodings.hold_master(phrase, data)

    async def encode(self, pcm: Pcm) -> bytes:
        """The master WAV of new audio (off the loop: a few ms)."""
        if len(pcm.samples) == 0:
            raise SynthesisError("the engine returned no audio")
        return await self._storage.run(lambda: encode_master(pcm))

    def _phrase(
        self, request: SpeechRequest, key: str, pcm: Pcm, data: bytes, seconds: float, *,
        engine_version: str, text: str | None, expires: float | None,
    ) -> Phrase:
        stamp = now()
        return Phrase(
            key=key, text=text, engine=request.engine, engine_version=engine_version,
            voice=request.voice, style=request.style, speed=request.speed, pitch=request.pitch,
            volume=request.volume, duration=pcm.duration, sample_rate=pcm.sample_rate,
            bytes=len(data), checksum=checksum(data), synth_seconds=seconds, created=stamp,
            last_used=stamp, hits=0, pinned=False, phrase_id=None, tags=(), expires=expires,
            text_length=len(request.text), tenant=request.tenant,
        )

    def fleeting(
        self, request: SpeechRequest, key: str, pcm: Pcm, data: bytes, seconds: float, *,
        engine_version: str,
    ) -> StoredPhrase:
        """New audio that is not kept: its phrase (without text) and master bytes, for its
        callers' answers only."""
        phrase = self._phrase(request, key, pcm, data, seconds, engine_version=engine_version,
                              text=None, expires=None)
        return StoredPhrase(phrase, cached=False, master=data)

    async def keep(
        self, request: SpeechRequest, key: str, pcm: Pcm, data: bytes, seconds: float, *,
        engine_version: str, replacing: bool, expires: float | None, fresh: bool = False,
    ) -> StoredPhrase:
        """The new phrase, held in memory and written behind (`StoredPhrase.saved` tells
        when it landed); with `replacing`, written first; with `fresh`, its old encodings
        are removed with it."""
        text = kept_text(self.store_text, request.text, named=False)
        phrase = self._phrase(request, key, pcm, data, seconds, engine_version=engine_version,
                              text=text, expires=expires)
        index = self._storage.index
        size = len(data)
        dropped: list[Variant] = []

        def put() -> tuple[Phrase, int | None]:
            if fresh:  # on the writer thread: no encoding's row lands between the two
                dropped.extend(index.drop_variants(key))
                index.note_purged([key])  # other replicas forget what they hold of it
            return index.put_phrase(phrase)

        def counts(put: tuple[Phrase, int | None]) -> Change:
            if put[1] is None:
                return Change(1, size)
            return Change(0, size - put[1] - sum(v.size for v in dropped))

        saved = self._storage.persist(
            FileStore.phrase_name(key), data, put,
            # Counted at once when answered before it lands; a replacement is not.
            expected=Change() if replacing else Change(1, size), counts=counts,
        )
        saved.add_done_callback(lambda done: self._landed(phrase, done))
        if replacing:
            stored, _ = await asyncio.shield(saved)
            if fresh:
                self._encodings.forget(key)
                await self._storage.run(lambda: self._delete_files(dropped))
            self.hold(stored, data)
            return StoredPhrase(stored, cached=False)
        self.hold(phrase, data)
        return StoredPhrase(phrase, cached=False, saved=saved)

    def _delete_files(self, variants: list[Variant]) -> None:
        for variant in variants:
            self._storage.files.delete(variant.file)

    def _landed(self, phrase: Phrase, done: asyncio.Future[tuple[Phrase, int | None]]) -> None:
        """A phrase written behind could not be stored: memory forgets it."""
        failed = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if failed is not None:
            log.error("phrase %s… was synthesized but could not be stored (%s)",
                      phrase.key[:8], type(failed).__name__)
            self._rows.discard(phrase.key)
            self._encodings.forget(phrase.key)
