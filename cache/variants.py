"""Encoded variants of stored phrases: the hot set in memory, files on disk, and encoding
a format from the master once, however many ask for it at the same time. An answer that
must leave nothing behind (no-store) takes what is stored already and encodes the rest in
memory, keeping none of it; audio that was never stored is encoded from its master bytes."""

from __future__ import annotations

import asyncio
import logging

from cache.audio import MASTER_FORMAT, Audio, checksum, decode_master
from cache.files import FileStore
from cache.flight import SingleFlight
from cache.hotset import HotSet
from cache.index import Phrase, Variant
from cache.storage import Storage
from cache.totals import Change
from synth import codecs
from synth.engine import SynthesisError

log = logging.getLogger("huiyin.cache")


class MissingAudioError(SynthesisError):
    """A phrase held in memory has no audio file any more (another replica evicted it)."""


class PhraseGoneError(LookupError):
    """The phrase is no longer stored (a 404): it was evicted or deleted meanwhile."""


class Encodings:
    """Every phrase's encodings: from the hot set, from their files, or encoded now."""

    def __init__(self, storage: Storage, hot: HotSet[tuple[str, str, int], Audio]) -> None:
        self._storage = storage
        self._hot = hot
        self._encoding: SingleFlight[Audio] = SingleFlight()

    def hot(self, key: str, fmt: str, rate: int) -> Audio | None:
        """An encoding held in memory, or None."""
        return self._hot.get((key, fmt, rate))

    def hold_master(self, phrase: Phrase, data: bytes) -> None:
        """Keep a new phrase's master WAV in memory, for the encodings its requests ask for."""
        self._hot.hold((phrase.key, MASTER_FORMAT, phrase.sample_rate), Audio(
            phrase.key, MASTER_FORMAT, phrase.sample_rate, data, phrase.checksum, phrase.duration,
            synth_seconds=phrase.synth_seconds, expires=phrase.expiry,
        ))

    def forget(self, key: str) -> None:
        """Drop every encoding of a phrase from memory."""
        self._hot.discard_where(lambda k: k[0] == key)

    def forget_all(self, keys: set[str]) -> None:
        """Drop every encoding of these phrases from memory (one pass)."""
        self._hot.discard_where(lambda k: k[0] in keys)

    async def fleeting(self, phrase: Phrase, master: bytes, fmt: str, rate: int | None) -> Audio:
        """Audio that is in no store (no-store) encoded as fmt at rate from its master
        bytes, kept nowhere."""
        out_rate = codecs.output_rate(fmt, phrase.sample_rate, rate)
        if fmt == MASTER_FORMAT and out_rate == phrase.sample_rate:
            data = master
        else:
            def encode() -> bytes:
                samples, native = decode_master(master)
                return codecs.encode(samples, native, fmt, out_rate)

            data = await self._storage.run(encode)
        return Audio(phrase.key, fmt, out_rate, data, checksum(data), phrase.duration,
                     cached=False, synth_seconds=phrase.synth_seconds)

    def discard(self, key: str, fmt: str, rate: int) -> None:
        """Drop one encoding from memory."""
        self._hot.discard((key, fmt, rate))

    async def wait(self) -> None:
        """Wait for encodings under way."""
        await self._encoding.wait()

    async def get(
        self, phrase: Phrase, fmt: str, rate: int | None = None, *, durable: bool = False,
        keep: bool = True,
    ) -> Audio:
        """The phrase encoded as fmt at rate, from memory, disk, or encoded now and stored
        (written behind; with `durable`, once it is written, or an error). Without `keep`,
        an encoding not stored yet is made in memory for this answer and kept nowhere."""
        out_rate = codecs.output_rate(fmt, phrase.sample_rate, rate)
        audio = self._hot.get((phrase.key, fmt, out_rate))
        if audio is None:
            audio = await self._encoding.run(
                (phrase.key, fmt, out_rate, keep),
                lambda: self._load_or_encode(phrase, fmt, out_rate, keep),
            )
        if durable and not (fmt == MASTER_FORMAT and out_rate == phrase.sample_rate):
            await self._is_stored(phrase.key, fmt, out_rate)
        return audio

    async def _is_stored(self, key: str, fmt: str, rate: int) -> None:
        """Wait for the encoding's write; raise when its row is not in the index after it."""
        await self._storage.pending.wait(
            FileStore.variant_name(key, fmt, rate, codecs.FORMATS[fmt].extension)
        )
        index = self._storage.index
        if await self._storage.run(lambda: index.variant(key, fmt, rate)) is None:
            raise SynthesisError(f"the {fmt} encoding could not be stored")

    async def _load_or_encode(self, phrase: Phrase, fmt: str, rate: int, keep: bool) -> Audio:
        key = phrase.key
        files, index = self._storage.files, self._storage.index
        master_name = FileStore.phrase_name(key)
        held = self._hot.held((key, MASTER_FORMAT, phrase.sample_rate))

        def audio_of(data: bytes, sum_: str) -> Audio:
            return Audio(key, fmt, rate, data, sum_, phrase.duration,
                         synth_seconds=phrase.synth_seconds, expires=phrase.expiry)

        def master() -> bytes:
            if held is not None:
                return held.data
            data = files.read(master_name)
            if data is None or checksum(data) != phrase.checksum:
                raise MissingAudioError("the phrase's audio file is missing")
            return data

        if held is None:
            await self._storage.pending.wait(master_name)  # a new phrase's file may be landing
        if fmt == MASTER_FORMAT and rate == phrase.sample_rate:
            audio = held or audio_of(await self._storage.run(master), phrase.checksum)
            if keep:
                self._hot.put((key, fmt, rate), audio)
            return audio

        def load() -> Audio | None:
            row = index.variant(key, fmt, rate)
            if row is None:
                return None
            data = files.read(row.file)
            if data is None or len(data) != row.size or checksum(data) != row.checksum:
                return None
            return audio_of(data, row.checksum)

        found = await self._storage.run(load)
        if found is None:
            def encode() -> bytes:
                samples, native = decode_master(master())
                return codecs.encode(samples, native, fmt, rate)

            data = await self._storage.run(encode)
            if not keep:
                return audio_of(data, checksum(data))
            name = FileStore.variant_name(key, fmt, rate, codecs.FORMATS[fmt].extension)
            row = Variant(key, fmt, rate, name, len(data), checksum(data))
            # Answered now, written behind (after its phrase's row, on the same thread).
            saved = self._storage.persist(
                name, data, lambda: index.put_variant(row), expected=Change(0, row.size),
                counts=lambda replaced: Change(0, row.size - (replaced or 0)),
            )
            saved.add_done_callback(lambda done: self._landed(row, done))
            found = audio_of(data, row.checksum)
        if keep:
            self._hot.put((key, fmt, rate), found)
        return found

    def _landed(self, variant: Variant, done: asyncio.Future[int | None]) -> None:
        """A variant written behind could not be stored: memory forgets it."""
        if done.cancelled() or done.exception() is not None:
            log.error("an encoding of phrase %s… could not be stored", variant.key[:8])
            self._hot.discard((variant.key, variant.format, variant.rate))
