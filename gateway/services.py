"""The running service stack, shared by the HTTP app and the command line:
engines -> locked workers -> voices -> store -> warmer, opened and closed in order."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cache.credentials import Credentials
from cache.files import AudioStore
from cache.index import Pool
from cache.keys import SpeechRequest
from cache.lexicon import SiteLexicon
from cache.replicas import Replicas
from cache.store import PromptStore
from cache.tenants import Tenants
from cache.warm import Warmer
from config import Settings
from config.phrases import PhraseSpec
from gateway.logs import note
from synth.engine import Engine
from synth.priority import run_in_background
from synth.registry import lanes_for
from synth.voices import Observer, Timing, Voices
from synth.worker import SynthesisWorker


def audio_store(settings: Settings) -> AudioStore | None:
    """The bucket the settings name (None: the local folder)."""
    if settings.audio_store is None:
        return None
    from cache.objects import Bucket, ObjectStore  # boto3 loads only when a bucket is used

    bucket = Bucket.parse(settings.audio_store, endpoint_url=settings.s3_endpoint_url,
                          region=settings.s3_region, timeout=settings.s3_timeout)
    return ObjectStore(bucket, settings.data_dir / "bucket-cache", settings.local_cache_bytes)


def database_pool(settings: Settings) -> Pool:
    """The index's connection pool, from the settings."""
    return Pool(size=settings.database_pool_size, overflow=settings.database_max_overflow,
                timeout=settings.database_pool_timeout,
                connect_timeout=settings.database_connect_timeout)


EngineLoader = Callable[[Settings], Sequence[Engine]]


@dataclass(frozen=True)
class Services:
    """What handlers and commands work with: the voices, the store and its warm-ups, and the
    site's records kept on the store's storage beside the phrases (API keys, tenants, the
    site's and tenants' words, what replicas share)."""

    voices: Voices
    store: PromptStore
    warmer: Warmer
    credentials: Credentials
    tenants: Tenants
    lexicon: SiteLexicon
    replicas: Replicas


def note_timing(timing: Timing) -> None:
    """Put a synthesis's engine and queue milliseconds on the current request's log line."""
    note(synth_ms=round(timing.engine_seconds * 1000, 1),
         queue_ms=round(timing.queue_seconds * 1000, 1))


def phrase_request(voices: Voices, spec: PhraseSpec) -> SpeechRequest:
    """A checked request for a phrase from a phrase file."""
    return voices.request(
        spec.text, voice=spec.voice, style=spec.style, speed=spec.speed, pitch=spec.pitch,
        volume=spec.volume,
    )


# glibc gives threads that allocate at once arenas of their own, up to 8 per core, and what
# is freed in an arena serves only that arena: the synthesis lanes, the vocoder's chunk
# threads, the log writer and the loop's executor each kept their own high-water mark. Two
# arenas kept the peak of a flood of misses about 10 MB lower (bench/memory.py), as fast.
MALLOC_ARENAS = 2
# glibc serves a block this large or larger from a mapping of its own, given back when it is
# freed. By default the threshold rises to the largest block freed (up to 32 MB), and the
# heap then keeps twice that unreturned: each synthesis' audio and mel buffers stayed
# resident. Held fixed, the peak of a flood of misses was about 8 MB lower, as fast.
MALLOC_MMAP_THRESHOLD = 256 << 10
_M_ARENA_MAX = -8  # mallopt's parameter numbers in glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> None:
    """Let glibc's malloc keep at most MALLOC_ARENAS arenas (mallopt M_ARENA_MAX) and map
    blocks of MALLOC_MMAP_THRESHOLD bytes or more on their own (M_MMAP_THRESHOLD), each
    unless the environment sets it (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_ or
    GLIBC_TUNABLES: the operator's choice, read by glibc itself). Called before the process
    starts threads. A no-op where the C library has no mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "MALLOC_ARENA_MAX" not in os.environ and "arena_max" not in tunables:
        mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and "mmap_threshold" not in tunables:
        mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)


def return_freed_memory() -> None:
    """Give the C allocator's free pages back to the system (glibc's malloc_trim): loading
    the voices leaves some 50 MB freed but resident (the acoustic model's file is read
    whole before its tensors are made). A no-op where the C library has no malloc_trim."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _load_and_settle(load_engines: EngineLoader, settings: Settings) -> Sequence[Engine]:
    """The engines, loaded; then what loading left behind is collected and given back."""
    engines = load_engines(settings)
    # The voices' dictionaries are millions of objects that live as long as the process:
    # kept out of the garbage collector's scans, so a collection stays cheap (a large
    # phrase file parses 1.55 s -> 1.0 s). What loading left as garbage goes first.
    gc.collect()
    gc.freeze()
    return_freed_memory()
    return engines


@asynccontextmanager
async def open_services(
    settings: Settings, engines: Sequence[Engine] | None, load_engines: EngineLoader,
    observers: Sequence[Observer] = (),
) -> AsyncIterator[Services]:
    """Load (off the loop) and start everything; on exit stop warm-ups, let running
    syntheses finish so their results are committed, then close the store."""
    loop = asyncio.get_running_loop()
    if engines is None:
        # On a thread of its own below the loop's priority: the threads ONNX Runtime starts
        # for the engines' sessions inherit it (synth/priority.py).
        loading = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-engines",
                                     initializer=run_in_background)
        try:
            engines = await loop.run_in_executor(loading, _load_and_settle, load_engines, settings)
        finally:
            loading.shutdown(wait=False)  # its one job is done: nothing to wait for
    loaded = engines
    workers = [
        # Each job's freed buffers go back to the system: the peak under a flood of misses
        # was 3 MB lower, misses per second unchanged.
        SynthesisWorker(e, max_queue=settings.queue_size, deadline=settings.synthesis_deadline,
                        lanes=lanes_for(settings, e), after_job=return_freed_memory)
        for e in loaded
    ]
    for worker in workers:
        await worker.start()
    voices = Voices(workers, default_voice=settings.default_voice)
    voices.observers.extend([note_timing, *observers])
    store = PromptStore(
        settings.data_dir, voices, database_url=settings.database_url,
        database_pool=database_pool(settings),
        audio=await loop.run_in_executor(None, audio_store, settings),  # boto3 reads files
        max_bytes=settings.cache_max_bytes, hot_bytes=settings.hot_set_bytes,
        ttl=settings.tts_ttl, store_text=settings.store_text,
    )
    await store.open()
    # One lane more than the engines have, so a lane's encodings and writes overlap the
    # others' syntheses.
    warmer = Warmer(store, lambda spec: phrase_request(voices, spec),
                    concurrency=sum(w.lanes for w in workers) + 1)
    try:
        storage = store.storage
        yield Services(voices, store, warmer, Credentials(storage), Tenants(storage),
                       SiteLexicon(storage), Replicas(storage))
    finally:
        await warmer.close()
        for worker in workers:
            await worker.close()
        await store.close()
        closers = [c for c in (getattr(e, "close", None) for e in loaded) if c is not None]
        if closers:  # remote backends' connection pools
            await loop.run_in_executor(None, lambda: [close() for close in closers])
