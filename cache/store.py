"""The phrase store: the one place every route, stream and warm-up gets its audio.

`get_or_synthesize` answers a request with its stored phrase, and `stream` is its twin for
audio that goes out as it is synthesized. Both meet the same generations: a phrase is
synthesized once however many whole requests, streams and warm-ups ask for it at once.
Usage is counted by key wherever a hit is answered, and eviction judges by it.

A caller that hands an `Admission` (the gateway's scopes, rate limits and quotas) is judged
in the order of cost (cache/admission.py): before its text is read, when its key is not
known yet (cheap checks on what the text could cost), and when it would start a synthesis
(charged there, and only there: a request that joins a synthesis under way, here or on
another replica, is not).
Texts are read on the frontend's fair share (cache/reading.py). The generations
themselves: cache/generations.py. A request is its tenant's (its admission's, else its
own): it is read with that tenant's words and keyed with it (cache/overlays.py).
Naming, deleting, purging, lookups for admin and the maintenance calls: cache/administration.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cache.administration import Administration
from cache.admission import Admission, Starter
from cache.audio import Audio, StoredPhrase
from cache.check import CheckReport
from cache.files import AudioStore
from cache.flight import GenerationStream
from cache.generations import Generations
from cache.hotset import HotSet
from cache.index import Index, Phrase, Pool
from cache.keeping import Keeper
from cache.keying import Keying
from cache.keys import SpeechRequest, is_key
from cache.lexicon import LexiconFollower, SiteLexicon
from cache.maintenance import Maintenance, Stats, Usage
from cache.ratelimit import Buckets, MemoryBuckets, SharedBuckets
from cache.reading import FairShare
from cache.replicas import Replicas
from cache.rows import RowCache
from cache.storage import Storage
from cache.storing import KEEP, Storing
from cache.synthesizer import Synthesizer
from cache.tenants import DEFAULT_TENANT
from cache.upkeep import Upkeep
from cache.variants import Encodings, MissingAudioError, PhraseGoneError
from synth import codecs
from synth.engine import UpstreamError
from synth.worker import Priority

__all__ = ["Admission", "Audio", "CheckReport", "PromptStore", "SpeechStream", "Stats", "StoredPhrase",
           "Synthesizer"]


log = logging.getLogger("huiyin.cache")
T = TypeVar("T")

SpeechStream = GenerationStream[StoredPhrase]


class PromptStore(Administration):
    """Stored phrases by key; misses go to the synthesizer, once per key however many ask."""

    def __init__(
        self, data_dir: Path, synthesizer: Synthesizer | None, *, database_url: str | None = None,
        database_pool: Pool | None = None, audio: AudioStore | None = None,
        max_bytes: int = 0, hot_bytes: int = 64 << 20, maintenance_interval: float = 5.0,
        ttl: int = 0, store_text: str = "always",
    ) -> None:
        self._storage = Storage(data_dir, database_url, database_pool, audio)
        self._synthesizer = synthesizer
        self._stats = Stats(max_bytes=max_bytes)
        self._encodings = Encodings(self._storage, HotSet(hot_bytes))
        self._rows = RowCache()
        self._keeper = Keeper(self._storage, self._rows, self._encodings, store_text=store_text)
        self._ttl = ttl  # seconds an unnamed prompt is kept by default (0: until evicted)
        self._keying = Keying(lambda: self.synthesizer)
        self._generations = Generations(self._storage, self._keeper, lambda: self.synthesizer)
        self._usage = Usage(self._stats)
        self._maintenance = Maintenance(
            self._storage, self._stats, self._usage, max_bytes=max_bytes,
            interval=maintenance_interval, busy=lambda key: key in self._generations,
            forget=self._forget,
        )
        # The words texts are read with, as last applied (cache/lexicon.py); the gateway
        # edits them through a SiteLexicon of its own on the same storage.
        self._words = SiteLexicon(self._storage)
        self._lexicon = LexiconFollower(self._words, self._storage, self, self._read_anew)
        self._buckets: Buckets | None = None
        self._starter = Starter(self._storage, self._rows, self._keeper, self._generations)
        self._upkeep = Upkeep(self._storage, self._rows, self._encodings, self._keying,
                              Replicas(self._storage), store_text=store_text,
                              busy=lambda key: key in self._generations)

    # lifecycle

    async def open(self) -> None:
        """Open (and migrate) the index and start background maintenance."""
        await self._storage.open()
        await self._maintenance.refresh_totals()
        if self._synthesizer is not None:
            await self._lexicon.start()  # read as the index says from the start
            self._maintenance.each_round.append(self._follow_lexicon)
        self._maintenance.each_round.append(self.upkeep)
        self._maintenance.start()

    async def close(self) -> None:
        """Let running syntheses finish and be stored, record usage, stop the threads."""
        await self._lexicon.stop()
        running = [g.task for g in self._generations.values() if g.task is not None]
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        await self._encodings.wait()
        if self._storage.ready:
            await self._maintenance.stop()
        self._keying.reading.close()
        await self._storage.close()

    @property
    def buckets(self) -> Buckets:
        """Rate-limit buckets: shared by the replicas of a shared index, else this process's."""
        if self._buckets is None:
            self._buckets = SharedBuckets(self._storage) if self._storage.shared else MemoryBuckets()
        return self._buckets

    @property
    def reading(self) -> FairShare:
        """The frontend's fair share texts are read into keys on, each client in turn
        (cache/reading.py)."""
        return self._keying.reading

    @property
    def storage(self) -> Storage:
        """The index and the audio files: what the site's other records (its API keys,
        tenants, words and replicas' claims) are kept on beside the phrases."""
        return self._storage

    @property
    def data_dir(self) -> Path:
        """The store's folder."""
        return self._storage.data_dir

    @property
    def database_url(self) -> str:
        """The index's SQLAlchemy URL."""
        return self._storage.database_url

    @property
    def files(self) -> AudioStore:
        """The audio files (a folder or a bucket)."""
        return self._storage.files

    @property
    def index(self) -> Index:
        """The open index."""
        return self._storage.index

    @property
    def synthesizer(self) -> Synthesizer:
        """The synthesizer misses go to (a store opened for maintenance has none)."""
        if self._synthesizer is None:
            raise RuntimeError("this store was opened without a synthesizer")
        return self._synthesizer

    # keys and lookups

    @property
    def reading_epoch(self) -> int:
        """Changes whenever texts may read differently (a site lexicon change, here or on
        another replica): whatever maps a request or a URL to a key must forget it then."""
        return self._keying.epoch

    def _read_anew(self) -> None:
        self._keying.read_anew()

    def _scoped(self, request: SpeechRequest, admission: Admission | None) -> SpeechRequest:
        return self._words.overlays.scoped(
            request, request.tenant if admission is None else admission.tenant)

    async def pronounce(self, request: SpeechRequest, admission: Admission,
                        described: Callable[[SpeechRequest], T]) -> T:
        """What `described` says of a request read with its tenant's words, on the frontend's
        fair share as misses' texts are (never ahead of other clients); nothing is counted,
        synthesized or kept."""
        scoped = self._scoped(request, admission)
        return await self._keying.reading.run(admission.client, lambda: described(scoped))

    async def key_for(
        self, request: SpeechRequest, admission: Admission | None = None, *, remember: bool = True,
    ) -> str:
        """The request's key: what the engine will say, its version, the settings and the
        tenant. A key not known yet is read on the frontend's fair share, once `admission`
        allows it, and remembered for the next time unless `remember` is False (no-store:
        its text is not kept, in memory either)."""
        return await self._keying.key_for(self._scoped(request, admission), admission,
                                          remember=remember)

    async def hit(
        self, key: str | None = None, *, phrase_id: str | None = None, tenant: str | None = None,
    ) -> Phrase | None:
        """A listener's hit, counted: the stored phrase with this key (of `tenant` only, when
        one is given), or the current phrase of `phrase_id` in `tenant`'s namespace (the
        site's when None; its own, else a public one: Index.named). None when there is none,
        a malformed key included."""
        if phrase_id is not None:
            key = await self._named(phrase_id, tenant or DEFAULT_TENANT)
            tenant = None
        row = None if key is None else await self._held(key, tenant)
        if row is not None:
            self._usage.hit(row.key, row.synth_seconds)
        return row

    async def _held(self, key: str, tenant: str | None) -> Phrase | None:
        """The stored phrase with this key, from memory or an intact file; None when there is
        none, or it is not `tenant`'s (when one is given: found as a key never stored is)."""
        row = self._rows.get(key)
        if row is not None and tenant not in (None, row.tenant):
            row = None  # another tenant's: not even the time taken tells it is stored
        if row is None:
            if not is_key(key):
                return None
            found = await self._storage.load_good(key, tenant)
            if found is None:
                return None
            row = found[0]
            self._keeper.hold(row, found[1])
        return row

    async def _named(self, phrase_id: str, tenant: str) -> str | None:
        """The key of a phrase id's current phrase in the tenant's namespace."""
        # On a shared index another replica may have moved the name: the index decides.
        key = None if self._storage.shared else self._rows.named(tenant, phrase_id)
        if key is None:
            index = self.index
            row = await self._storage.read(lambda: index.named(phrase_id, tenant))
            return None if row is None else row.key
        return key

    # whole and streamed synthesis, one generation per key

    async def get_or_synthesize(
        self, request: SpeechRequest, *, priority: Priority = Priority.LIVE,
        admission: Admission | None = None, storing: Storing = KEEP,
    ) -> StoredPhrase:
        """The stored phrase for a request: from the store, or synthesized and stored.
        Live requests count as hits or misses; warm-up does not. `admission` judges a
        caller's request before it costs anything (see Admission); `storing` says whether
        and how long the phrase is kept, or that it is made again (cache/storing.py)."""
        request = self._scoped(request, admission)
        key = await self.key_for(request, admission, remember=storing.keep)
        return await self._obtain(request, key, priority, admission, storing)

    async def _obtain(
        self, request: SpeechRequest, key: str, priority: Priority, admission: Admission | None,
        storing: Storing,
    ) -> StoredPhrase:
        """The stored phrase for a request already scoped to its tenant, whose key is known."""
        live = priority == Priority.LIVE
        row = None if storing.refresh else self._rows.get(key)
        found = row if row is not None else await self._starter.start(
            request, key, priority, streamed=False, admission=admission, fresh=storing.refresh)
        if isinstance(found, Phrase):
            return self._hit(await self._kept_for(found, storing), live)
        generation = found
        generation.want(storing.keep, storing.expires(self._ttl))
        generation.urgency.raise_to(priority)
        generation.hold()
        try:
            stored = await asyncio.shield(generation.result)
        except UpstreamError:
            # The voice's backend is down: its fallback voice speaks, stored under its own
            # key; nothing is stored under this one, so the voice is back once it is.
            instead = self.synthesizer.fallback(request)
            if instead is None:
                raise
            spoken = await self.get_or_synthesize(  # admitted once; the request's tenant's
                dataclasses.replace(instead, tenant=request.tenant), priority=priority,
                storing=dataclasses.replace(storing, refresh=False))
            return dataclasses.replace(spoken, fallback=instead.voice)
        self._count(stored, live)
        if not live and stored.saved is not None:
            await asyncio.shield(stored.saved)  # warm-ups and batches: stored, or an error
        return stored

    async def _kept_for(self, row: Phrase, storing: Storing) -> Phrase:
        """A stored row, its expiry brought forward when the request asks a shorter ttl."""
        if storing.keep and storing.ttl is not None:
            return await self._upkeep.expiry.bring_forward(row, storing.ttl)
        return row

    async def stream(
        self, request: SpeechRequest, *, priority: Priority = Priority.LIVE,
        admission: Admission | None = None, storing: Storing = KEEP,
    ) -> SpeechStream:
        """The request's audio as a stream of chunks, or its stored phrase when it is whole
        already (`SpeechStream.stored`). Close the stream when done; the last stream to
        leave a generation early stops it, unless a whole request waits for it too.
        `admission` and `storing` as in get_or_synthesize."""
        request = self._scoped(request, admission)
        key = await self.key_for(request, admission, remember=storing.keep)
        live = priority == Priority.LIVE
        row = None if storing.refresh else self._rows.get(key)
        found = row if row is not None else await self._starter.start(
            request, key, priority, streamed=True, admission=admission, fresh=storing.refresh)
        if isinstance(found, Phrase):
            stored = StoredPhrase(await self._kept_for(found, storing), cached=True)
            self._count(stored, live)
            return SpeechStream(None, stored, key=key)
        generation = found
        generation.want(storing.keep, storing.expires(self._ttl))
        if not generation.streamed:
            stored = await asyncio.shield(generation.result)
            self._count(stored, live)
            return SpeechStream(None, stored, key=key)
        generation.urgency.raise_to(priority)
        generation.follow()
        if live:
            self._usage.miss()
        return SpeechStream(generation, None, key=key, expires=generation.expires,
                            on_stop=lambda: self._generations.drop(key, generation))

    def _hit(self, row: Phrase, live: bool) -> StoredPhrase:
        stored = StoredPhrase(row, cached=True)
        self._count(stored, live)
        return stored

    def _count(self, stored: StoredPhrase, live: bool) -> None:
        if not live:
            return
        if stored.cached:
            self._usage.hit(stored.key, stored.phrase.synth_seconds)
        else:
            self._usage.miss()

    # encoded variants

    def hot_hit(self, key: str, fmt: str, rate: int) -> Audio | None:
        """Encoded audio from memory only, counted as a hit when found: the path that touches
        neither disk nor index."""
        audio = self._encodings.hot(key, fmt, rate)
        if audio is not None:
            self._usage.hit(key, audio.synth_seconds)
        return audio

    async def audio(
        self, request: SpeechRequest, fmt: str, rate: int | None = None, *,
        priority: Priority = Priority.LIVE, admission: Admission | None = None,
        storing: Storing = KEEP,
    ) -> Audio:
        """The request's audio encoded as fmt (at rate): the one entry point for routes
        (`admission`, `storing`: see get_or_synthesize)."""
        request = self._scoped(request, admission)
        key = await self.key_for(request, admission, remember=storing.keep)
        row = None if storing.refresh else self._rows.get(key)
        if row is not None and priority == Priority.LIVE:
            row = await self._kept_for(row, storing)
            hot = self.hot_hit(key, fmt, codecs.output_rate(fmt, row.sample_rate, rate))
            if hot is not None:
                return hot
        stored = await self._obtain(request, key, priority, admission, storing)
        try:
            variant = await self.encode(stored, fmt, rate, keep=storing.keep)
        except PhraseGoneError:  # evicted by another replica just now: made again
            stored = await self._obtain(request, key, priority, admission, storing)
            variant = await self.encode(stored, fmt, rate, keep=storing.keep)
        if not stored.cached or stored.fallback is not None:
            return dataclasses.replace(variant, cached=stored.cached, fallback=stored.fallback)
        return variant

    async def encode(
        self, stored: StoredPhrase, fmt: str, rate: int | None = None, *, keep: bool = True,
    ) -> Audio:
        """A phrase a request was answered with, encoded as fmt at rate: from the store
        (`keep` False: an encoding not stored yet is made for this answer only), or from
        the master bytes of a phrase that was not kept."""
        if stored.master is not None:
            return await self._encodings.fleeting(stored.phrase, stored.master, fmt, rate)
        return await self.variant(stored.phrase, fmt, rate, keep=keep)

    async def variant(
        self, phrase: Phrase, fmt: str, rate: int | None = None, *, durable: bool = False,
        keep: bool = True,
    ) -> Audio:
        """The phrase encoded as fmt at rate, from memory, disk, or encoded now and stored
        (with `durable`, once it is written; without `keep`, made for this answer only)."""
        try:
            return await self._encodings.get(phrase, fmt, rate, durable=durable, keep=keep)
        except MissingAudioError:
            self._forget(phrase.key)  # memory was behind the index (another replica)
            current = await self._held(phrase.key, None)
            if current is None:
                raise PhraseGoneError(phrase.key) from None
            return await self._encodings.get(current, fmt, rate, durable=durable, keep=keep)
