"""The phrase store: get_or_synthesize, encoded variants, hot set, eviction, integrity check.

Writes go file first (atomic rename), row second, so a crash can leave an orphan file but
never a row without its audio. Deletes go row first, file second, for the same reason.
All index writes run on one writer thread; reads and file work on an I/O pool.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import soundfile as sf
import xxhash

from cache.files import FileStore
from cache.hotset import HotSet
from cache.index import Index, Phrase, Variant, now
from cache.keys import SpeechRequest, is_key
from synth import codecs
from synth.engine import Pcm, SynthesisError
from synth.worker import Priority

log = logging.getLogger("huiyin.cache")
T = TypeVar("T")

MASTER_FORMAT = "wav"


class Synthesizer(Protocol):
    """What the store needs from the synthesis side; it never sees an engine."""

    def engine_version(self, engine: str) -> str:
        """Current version of the named engine (part of every key)."""
        ...

    async def synthesize(self, request: SpeechRequest, priority: Priority) -> Pcm:
        """Synthesize a request."""
        ...


def checksum(data: bytes) -> str:
    """Content checksum of a stored file (xxh3-64 hex)."""
    return xxhash.xxh3_64_hexdigest(data)


@dataclass(frozen=True)
class StoredPhrase:
    """A phrase that is in the store, and whether this request found it there."""

    phrase: Phrase
    cached: bool

    @property
    def key(self) -> str:
        """The phrase key."""
        return self.phrase.key


@dataclass(frozen=True)
class Audio:
    """Encoded bytes of a phrase in one format and rate, ready for the wire."""

    key: str
    format: str
    rate: int
    data: bytes
    checksum: str
    duration: float
    cached: bool = True

    @property
    def size(self) -> int:
        """Bytes on the wire."""
        return len(self.data)

    @property
    def etag(self) -> str:
        """Strong ETag: the content key, format, rate and the bytes' checksum."""
        return f'"{self.key}-{self.format}-{self.rate}-{self.checksum}"'


@dataclass
class Stats:
    """Counters since start, and totals from the index."""

    entries: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    saved_seconds: float = 0.0
    max_bytes: int = 0

    @property
    def hit_ratio(self) -> float:
        """Hits over all lookups (0 before the first)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "entries": self.entries, "bytes": self.bytes, "max_bytes": self.max_bytes,
            "hits": self.hits, "misses": self.misses, "hit_ratio": round(self.hit_ratio, 4),
            "evictions": self.evictions, "synthesis_seconds_saved": round(self.saved_seconds, 3),
        }


@dataclass
class CheckReport:
    """What an integrity check found, and whether it fixed it."""

    phrases: int = 0
    variants: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    bad_variants: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    fixed: bool = False

    @property
    def consistent(self) -> bool:
        """Every row has its intact file: nothing committed is lost or damaged."""
        return not (self.missing or self.corrupt or self.bad_variants)

    @property
    def clean(self) -> bool:
        """Consistent, and no stray files left by interrupted writes either."""
        return self.consistent and not (self.orphans or self.temp_files)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "consistent": self.consistent, "clean": self.clean, "fixed": self.fixed,
            "phrases": self.phrases,
            "variants": self.variants, "missing": self.missing, "corrupt": self.corrupt,
            "bad_variants": self.bad_variants, "orphans": self.orphans,
            "temp_files": self.temp_files,
        }


def encode_master(pcm: Pcm) -> bytes:
    """The phrase's master file: 16-bit mono WAV at the engine's rate."""
    return codecs.encode(pcm.samples, pcm.sample_rate, MASTER_FORMAT)


def decode_master(data: bytes) -> tuple[npt.NDArray[np.int16], int]:
    """Samples and rate of a master file."""
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    return samples, int(rate)


class PromptStore:
    """Stored phrases by key; misses go to the synthesizer, once per key however many ask."""

    def __init__(
        self, data_dir: Path, synthesizer: Synthesizer | None, *, database_url: str | None = None,
        max_bytes: int = 0, hot_bytes: int = 64 << 20, maintenance_interval: float = 5.0,
    ) -> None:
        self.data_dir = data_dir
        self.files = FileStore(data_dir / "audio")
        self._database_url = database_url or f"sqlite:///{data_dir / 'index.sqlite3'}"
        self._synthesizer = synthesizer
        self._hot: HotSet[tuple[str, str, int], Audio] = HotSet(hot_bytes)
        self._phrases: dict[str, Phrase] = {}  # rows known to be good, to answer hits from memory
        self._inflight: dict[Any, asyncio.Task[Any]] = {}
        self._writing: set[str] = set()  # file names written but maybe not yet in the index
        self._usage: dict[str, list[float]] = {}  # key -> [last used, hits] not yet written
        self._stats = Stats(max_bytes=max_bytes)
        self.max_bytes = max_bytes
        self._interval = maintenance_interval
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-writer")
        self._io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-io")
        self._index: Index | None = None
        self._maintenance: asyncio.Task[None] | None = None

    # lifecycle

    async def open(self) -> None:
        """Open (and migrate) the index and start background maintenance."""
        await self._run(self.files.create)
        self._index = await self._write(lambda: Index(self._database_url))
        await self._refresh_totals()
        self._maintenance = asyncio.create_task(self._maintain(), name="store-maintenance")

    async def close(self) -> None:
        """Wait for running writes, record usage, stop the threads."""
        if self._maintenance is not None:
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)
            self._maintenance = None
        if self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        if self._index is not None:
            await self._flush_usage()
            index = self._index
            await self._write(index.close)
            self._index = None
        loop = asyncio.get_running_loop()
        for pool in (self._writer, self._io):
            await loop.run_in_executor(None, pool.shutdown)

    @property
    def index(self) -> Index:
        """The open index."""
        if self._index is None:
            raise RuntimeError("the store is not open")
        return self._index

    async def _write(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn)

    async def _once(self, token: Any, make: Callable[[], Awaitable[T]]) -> T:
        """Single flight: concurrent callers with the same token share one run of make()."""
        task = self._inflight.get(token)
        if task is None:
            async def run() -> T:
                try:
                    return await make()
                finally:
                    self._inflight.pop(token, None)

            task = asyncio.create_task(run())
            self._inflight[token] = task
        # A caller that goes away must not cancel the work others wait for.
        result: T = await asyncio.shield(task)
        return result

    # phrases

    @property
    def synthesizer(self) -> Synthesizer:
        """The synthesizer misses go to (a store opened for maintenance has none)."""
        if self._synthesizer is None:
            raise RuntimeError("this store was opened without a synthesizer")
        return self._synthesizer

    def key_for(self, request: SpeechRequest) -> str:
        """The key this request has with the engine's current version."""
        return request.key(self.synthesizer.engine_version(request.engine))

    def _used(self, phrase: Phrase) -> None:
        entry = self._usage.setdefault(phrase.key, [0.0, 0.0])
        entry[0] = now()
        entry[1] += 1
        self._stats.hits += 1
        self._stats.saved_seconds += phrase.synth_seconds

    async def _load_good(self, key: str) -> tuple[Phrase, bytes] | None:
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

        return await self._run(load)

    async def get_or_synthesize(
        self, request: SpeechRequest, *, priority: Priority = Priority.LIVE
    ) -> StoredPhrase:
        """The stored phrase for a request: from the store, or synthesized and stored."""
        key = self.key_for(request)
        phrase = self._phrases.get(key)
        if phrase is not None:
            self._used(phrase)
            return StoredPhrase(phrase, cached=True)
        return await self._once(("phrase", key), lambda: self._lookup_or_make(request, key, priority))

    async def _lookup_or_make(
        self, request: SpeechRequest, key: str, priority: Priority
    ) -> StoredPhrase:
        found = await self._load_good(key)
        if found is not None:
            phrase, data = found
            self._hold(phrase, data)
            self._used(phrase)
            return StoredPhrase(phrase, cached=True)
        self._stats.misses += 1
        started = time.perf_counter()
        pcm = await self.synthesizer.synthesize(request, priority)
        return await self._keep(request, key, pcm, time.perf_counter() - started)

    async def find(self, request: SpeechRequest) -> Phrase | None:
        """The stored phrase for a request, or None; never synthesizes."""
        return await self._stored(self.key_for(request))

    async def _stored(self, key: str) -> Phrase | None:
        """A stored phrase by key, from memory or from an intact file; counted as used."""
        phrase = self._phrases.get(key)
        if phrase is None:
            found = await self._load_good(key)
            if found is None:
                return None
            phrase = found[0]
            self._phrases[key] = phrase
        self._used(phrase)
        return phrase

    async def put(self, request: SpeechRequest, pcm: Pcm, seconds: float) -> StoredPhrase:
        """Store audio synthesized elsewhere (a completed stream) under the request's key."""
        self._stats.misses += 1
        key = self.key_for(request)
        return await self._once(("phrase", key), lambda: self._keep(request, key, pcm, seconds))

    async def _keep(self, request: SpeechRequest, key: str, pcm: Pcm, seconds: float) -> StoredPhrase:
        if len(pcm.samples) == 0:
            raise SynthesisError("the engine returned no audio")
        data = await self._run(lambda: encode_master(pcm))
        stamp = now()
        phrase = Phrase(
            key=key, text=request.text, engine=request.engine,
            engine_version=self.synthesizer.engine_version(request.engine),
            voice=request.voice, style=request.style, speed=request.speed, pitch=request.pitch,
            volume=request.volume, duration=pcm.duration, sample_rate=pcm.sample_rate,
            bytes=len(data), checksum=checksum(data), synth_seconds=seconds, created=stamp,
            last_used=stamp, hits=0, pinned=False, phrase_id=None, tags=(),
        )
        await self._commit(FileStore.phrase_name(key), data, lambda: self.index.put_phrase(phrase))
        self._forget(key)
        self._hold(phrase, data)
        await self._refresh_totals()
        return StoredPhrase(phrase, cached=False)

    async def _commit(self, name: str, data: bytes, put_row: Callable[[], object]) -> None:
        """File first (atomic), row second; the integrity check leaves the name alone meanwhile."""
        self._writing.add(name)
        try:
            await self._run(lambda: self.files.write(name, data))
            await self._write(put_row)
        finally:
            self._writing.discard(name)

    def _hold(self, phrase: Phrase, data: bytes) -> None:
        """Keep a good phrase row, and its master WAV in the hot set, for answers from memory."""
        self._phrases[phrase.key] = phrase
        self._hot.put((phrase.key, MASTER_FORMAT, phrase.sample_rate), Audio(
            phrase.key, MASTER_FORMAT, phrase.sample_rate, data, phrase.checksum, phrase.duration,
        ))

    # encoded variants

    def peek(self, key: str, fmt: str, rate: int) -> Audio | None:
        """Encoded audio from memory only: the hit path that touches neither disk nor index."""
        audio = self._hot.get((key, fmt, rate))
        if audio is not None:
            phrase = self._phrases.get(key)
            if phrase is not None:
                self._used(phrase)
        return audio

    async def audio(
        self, request: SpeechRequest, fmt: str, rate: int | None = None, *,
        priority: Priority = Priority.LIVE,
    ) -> Audio:
        """The request's audio encoded as fmt (at rate): the one entry point for routes."""
        key = self.key_for(request)
        phrase = self._phrases.get(key)
        if phrase is not None:
            out_rate = codecs.output_rate(fmt, phrase.sample_rate, rate)
            hot = self.peek(key, fmt, out_rate)
            if hot is not None:
                return hot
        stored = await self.get_or_synthesize(request, priority=priority)
        variant = await self.variant(stored.phrase, fmt, rate)
        if not stored.cached:
            return Audio(variant.key, variant.format, variant.rate, variant.data,
                         variant.checksum, variant.duration, cached=False)
        return variant

    async def by_key(self, key: str, fmt: str, rate: int | None = None) -> Audio | None:
        """Audio of a stored phrase by its key, or None when unknown (never synthesizes)."""
        phrase = await self._stored(key) if is_key(key) else None
        return None if phrase is None else await self.variant(phrase, fmt, rate)

    async def variant(self, phrase: Phrase, fmt: str, rate: int | None = None) -> Audio:
        """The phrase encoded as fmt at rate, from memory, disk, or encoded now and stored."""
        out_rate = codecs.output_rate(fmt, phrase.sample_rate, rate)
        hot = self._hot.get((phrase.key, fmt, out_rate))
        if hot is not None:
            return hot
        return await self._once(
            ("variant", phrase.key, fmt, out_rate),
            lambda: self._load_or_encode(phrase, fmt, out_rate),
        )

    async def _load_or_encode(self, phrase: Phrase, fmt: str, rate: int) -> Audio:
        key = phrase.key
        master_name = FileStore.phrase_name(key)
        if fmt == MASTER_FORMAT and rate == phrase.sample_rate:
            data = await self._run(lambda: self.files.read(master_name))
            if data is None or checksum(data) != phrase.checksum:
                raise SynthesisError("the phrase's audio file is missing")
            audio = Audio(key, fmt, rate, data, phrase.checksum, phrase.duration)
            self._hot.put((key, fmt, rate), audio)
            return audio

        def load() -> Audio | None:
            row = self.index.variant(key, fmt, rate)
            if row is None:
                return None
            data = self.files.read(row.file)
            if data is None or len(data) != row.size or checksum(data) != row.checksum:
                return None
            return Audio(key, fmt, rate, data, row.checksum, phrase.duration)

        audio = await self._run(load)
        if audio is None:
            def encode() -> bytes:
                master = self.files.read(master_name)
                if master is None or checksum(master) != phrase.checksum:
                    raise SynthesisError("the phrase's audio file is missing")
                samples, native = decode_master(master)
                return codecs.encode(samples, native, fmt, rate)

            data = await self._run(encode)
            name = FileStore.variant_name(key, fmt, rate, codecs.FORMATS[fmt].extension)
            row = Variant(key, fmt, rate, name, len(data), checksum(data))
            await self._commit(name, data, lambda: self.index.put_variant(row))
            self._stats.bytes += len(data)
            audio = Audio(key, fmt, rate, data, row.checksum, phrase.duration)
        self._hot.put((key, fmt, rate), audio)
        return audio

    # naming, deleting, searching

    async def name(
        self, key: str, *, phrase_id: str | None, tags: Sequence[str] = (), pinned: bool = True
    ) -> None:
        """Give a stored phrase its phrase id and tags, and pin it."""
        await self._write(lambda: self.index.set_named(key, phrase_id=phrase_id, tags=tags, pinned=pinned))
        self._phrases.pop(key, None)  # reload the row with its new name on next use

    async def unpin_except(self, keep: Sequence[str]) -> int:
        """Unpin every pinned phrase whose key is not in keep."""
        count = await self._write(lambda: self.index.unpin_except(keep))
        self._phrases.clear()
        return count

    async def delete(self, key: str) -> bool:
        """Remove a phrase and its variants; False if it was not stored."""
        if not is_key(key):
            return False
        row = await self._run(lambda: self.index.get(key))
        if row is None:
            return False
        await self._remove([key])
        await self._refresh_totals()
        return True

    async def _remove(self, keys: Sequence[str]) -> None:
        variants = await self._run(lambda: [v for k in keys for v in self.index.variants(k)])
        await self._write(lambda: self.index.delete_phrases(keys))
        for key in keys:
            self._forget(key)

        def unlink() -> None:
            for key in keys:
                self.files.delete(FileStore.phrase_name(key))
            for v in variants:
                self.files.delete(v.file)

        await self._run(unlink)

    def _forget(self, key: str) -> None:
        self._phrases.pop(key, None)
        self._hot.discard_where(lambda k: k[0] == key)

    async def search(self, **kwargs: Any) -> tuple[int, list[Phrase]]:
        """Search the index (see Index.search)."""
        return await self._run(lambda: self.index.search(**kwargs))

    async def get_phrase(self, key: str) -> Phrase | None:
        """The phrase row for a key, if stored."""
        if not is_key(key):
            return None
        return await self._run(lambda: self.index.get(key))

    # maintenance

    def stats(self) -> Stats:
        """A snapshot of the counters."""
        return Stats(**self._stats.__dict__)

    async def _refresh_totals(self) -> None:
        entries, size = await self._run(self.index.totals)
        self._stats.entries, self._stats.bytes = entries, size

    async def _flush_usage(self) -> None:
        if not self._usage:
            return
        usage, self._usage = self._usage, {}
        batch = [(k, v[0], int(v[1])) for k, v in usage.items()]
        await self._write(lambda: self.index.touch(batch))

    async def evict(self) -> int:
        """Remove least recently used unpinned phrases until the store fits its byte budget."""
        if not self.max_bytes:
            return 0
        await self._flush_usage()
        await self._refresh_totals()
        excess = self._stats.bytes - self.max_bytes
        if excess <= 0:
            return 0
        candidates = await self._run(lambda: self.index.eviction_candidates(10_000))
        chosen: list[str] = []
        for key, size in candidates:
            if excess <= 0:
                break
            if ("phrase", key) in self._inflight:
                continue
            chosen.append(key)
            excess -= size
        await self._remove(chosen)
        self._stats.evictions += len(chosen)
        await self._refresh_totals()
        if chosen:
            log.info("evicted %d phrases; store holds %d bytes", len(chosen), self._stats.bytes)
        return len(chosen)

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._flush_usage()
                await self.evict()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("store maintenance failed")

    async def check(self, *, fix: bool = False, grace: float = 60.0) -> CheckReport:
        """Reconcile index and files; with fix, drop broken rows and remove stray files.

        Files younger than `grace` seconds, or being written right now, are left alone: they
        may belong to a write whose row is not committed yet.
        """
        busy = set(self._writing)

        def scan() -> CheckReport:
            report = CheckReport()
            phrases = self.index.all_phrases()
            variants = self.index.all_variants()
            report.phrases, report.variants = len(phrases), len(variants)
            known: set[str] = set()
            for p in phrases:
                name = FileStore.phrase_name(p.key)
                known.add(name)
                data = self.files.read(name)
                if data is None:
                    report.missing.append(p.key)
                elif len(data) != p.bytes or checksum(data) != p.checksum:
                    report.corrupt.append(p.key)
            for v in variants:
                known.add(v.file)
                data = self.files.read(v.file)
                if data is None or len(data) != v.size or checksum(data) != v.checksum:
                    report.bad_variants.append(v.file)
            cutoff = time.time() - grace
            for path, name in self.files.walk():
                if name is not None and (name in known or name in busy):
                    continue
                if path.stat().st_mtime > cutoff:
                    continue
                (report.orphans if name is not None else report.temp_files).append(
                    str(path.relative_to(self.files.root))
                )
            return report

        report = await self._run(scan)
        if fix and not report.clean:
            broken = report.missing + report.corrupt
            await self._remove(broken)
            bad = {v.file: v for v in await self._run(self.index.all_variants)}
            for name in report.bad_variants:
                v = bad.get(name)
                if v is not None:
                    await self._write(lambda v=v: self.index.delete_variant(v.key, v.format, v.rate))
                    self._hot.discard((v.key, v.format, v.rate))

            def unlink() -> None:
                for rel in report.bad_variants:
                    self.files.path(rel).unlink(missing_ok=True)
                for rel in report.orphans + report.temp_files:
                    (self.files.root / rel).unlink(missing_ok=True)

            await self._run(unlink)
            await self._refresh_totals()
            report.fixed = True
        return report
