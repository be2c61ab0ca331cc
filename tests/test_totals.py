"""The store's entries and bytes are the index's, plus the phrases answered but not written
yet: right after concurrent misses while maintenance runs every few milliseconds, through
eviction, failed writes, a damaged phrase made again, deletes and the integrity check, and
on replicas that share one index."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cache.files import FileStore
from cache.keys import SpeechRequest
from cache.store import PromptStore
from cache.variants import PhraseGoneError
from synth.compat import timeout as time_limit
from synth.engine import Pcm
from synth.worker import Priority, Urgency
from tests.support import PATIENCE, Backing, opening_stores, until

ROUND = 0.002  # seconds between maintenance rounds: rounds run among the misses
MISSES = 200
IN_FLIGHT = 40  # concurrent misses
UNBOUNDED = 1 << 40  # a byte budget never reached: each round still counts the store


class QuickVoice:
    """Keys from the text itself and a short tone whose length follows the text's number:
    a miss costs a few milliseconds, and phrases differ in size."""

    def engine_version(self, engine: str) -> str:
        return "quick-1"

    def spoken(self, request: SpeechRequest) -> str:
        return request.text

    def set_site_lexicon(self, entries: Mapping[str, str]) -> None:
        pass

    def fallback(self, request: SpeechRequest) -> None:
        return None

    async def synthesize(self, request: SpeechRequest, priority: Priority | Urgency) -> Pcm:
        await asyncio.sleep(0)  # misses interleave with each other and with maintenance
        digits = "".join(c for c in request.text if c.isdigit()) or "0"
        samples = 2400 + 8 * int(digits)
        return Pcm((np.arange(samples) % 50 * 200).astype(np.int16), 24000)

    async def stream(self, request: SpeechRequest, priority: Priority | Urgency) -> AsyncIterator[Pcm]:
        yield await self.synthesize(request, priority)


def req(text: str) -> SpeechRequest:
    return SpeechRequest.create(text, engine="fastspeech2", voice="baker")


def texts(prefix: str, count: int = MISSES) -> list[str]:
    return [f"{prefix}{n}号。" for n in range(count)]


Opener = Callable[..., Awaitable[PromptStore]]


@pytest.fixture
async def open_store(tmp_path: Path, backing: Backing) -> AsyncIterator[Opener]:
    """Opens stores on the test's index and audio store (on PostgreSQL, replicas of one
    index), with maintenance every ROUND seconds."""
    async with opening_stores(QuickVoice(), backing, tmp_path, maintenance_interval=ROUND) as stores:
        yield lambda **options: stores.open(**options)


def rounds(store: PromptStore) -> Callable[[], int]:
    """How many maintenance rounds the store has run from now on."""
    ran = [0]

    async def count() -> None:
        ran[0] += 1

    store._maintenance.each_round.append(count)
    return lambda: ran[0]


def totals(store: PromptStore) -> tuple[int, int]:
    stats = store.stats()
    return stats.entries, stats.bytes


async def counted(store: PromptStore) -> tuple[int, int]:
    """Phrases and bytes as the index has them."""
    return await asyncio.to_thread(store.index.totals)


async def ask(store: PromptStore, text: str, n: int) -> tuple[int, asyncio.Future[Any] | None]:
    """A miss, every other one with a µ-law encoding (written behind too); the bytes
    answered, and the write of its phrase if under way."""
    stored = await store.get_or_synthesize(req(text))
    size = stored.phrase.bytes
    if n % 2:
        with contextlib.suppress(PhraseGoneError):  # evicted, or not stored, meanwhile
            size += (await store.variant(stored.phrase, "ulaw")).size
    return size, stored.saved


async def ask_all(
    said: list[str], store: Callable[[int], PromptStore],
    heard: Callable[[int], None] = lambda size: None,
) -> None:
    """Every text a miss, `store(n)` answering the n-th, IN_FLIGHT at a time until written
    (on PostgreSQL each holds a connection for its lease until then); `heard` is told the
    bytes of each answer as it comes."""
    room = asyncio.Semaphore(IN_FLIGHT)

    async def one(n: int, text: str) -> None:
        async with room:
            size, saved = await ask(store(n), text, n)
            heard(size)
            if saved is not None:
                await asyncio.wait([saved])

    await asyncio.gather(*(one(n, text) for n, text in enumerate(said)))


async def test_totals_equal_the_index_after_concurrent_misses_while_maintenance_runs(
    open_store: Opener,
) -> None:
    store = await open_store(max_bytes=UNBOUNDED)
    ran = rounds(store)
    await until(lambda: ran() >= 2, what="maintenance rounds")
    before = ran()
    answered = [0, 0]  # phrases, and bytes, the listeners have had so far
    short: list[tuple[tuple[int, int], tuple[int, int]]] = []  # (answered, reported)

    def heard(size: int) -> None:
        answered[0] += 1
        answered[1] += size
        reported = totals(store)
        if reported[0] < answered[0] or reported[1] < answered[1]:
            short.append(((answered[0], answered[1]), reported))

    await ask_all(texts("订单"), lambda n: store, heard)
    await store.settled()
    assert ran() > before  # rounds ran among the misses
    assert short[:3] == []  # a miss answered is counted from then on, whatever the rounds do
    rows, size = await counted(store)
    assert (rows, size) == tuple(answered) and rows == MISSES
    assert totals(store) == (rows, size)


async def test_a_miss_answered_is_counted_at_once_and_once(
    open_store: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(max_bytes=UNBOUNDED)
    await asyncio.gather(*(store.get_or_synthesize(req(t)) for t in texts("已存", 3)))
    await store.settled()
    landed = await counted(store)
    assert totals(store) == landed
    release, waiting = threading.Event(), [0]
    real = store.files.write

    def held(name: str, data: bytes) -> None:
        waiting[0] += 1
        release.wait(30)
        real(name, data)

    monkeypatch.setattr(store.files, "write", held)
    try:
        answered = await asyncio.gather(*(store.get_or_synthesize(req(t))
                                          for t in texts("稍候", 5)))
        await until(lambda: waiting[0] == 1, what="the first write on the writer thread")
        assert await counted(store) == landed  # nothing has landed
        added = sum(a.phrase.bytes for a in answered)
        assert totals(store) == (landed[0] + 5, landed[1] + added)
    finally:
        release.set()
    await store.settled()
    assert await counted(store) == (landed[0] + 5, landed[1] + added)
    assert totals(store) == await counted(store)


async def test_eviction_among_concurrent_misses_keeps_the_totals(open_store: Opener) -> None:
    budget = 60_000  # about ten phrases
    store = await open_store(max_bytes=budget)
    await ask_all(texts("余额"), lambda n: store)
    await store.settled()
    async with time_limit(PATIENCE):  # the rounds evict until the store fits its budget
        while True:
            rows, size = await counted(store)
            if size <= budget and rows == MISSES - store.stats().evictions:
                break  # and the round that evicted last has counted them
            await asyncio.sleep(ROUND)
    assert totals(store) == (rows, size)


async def test_writes_that_fail_leave_the_totals_equal_to_the_index(
    open_store: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(max_bytes=UNBOUNDED)
    real = store.files.write
    failed = [0]

    def write(name: str, data: bytes) -> None:
        if int(name[:2], 16) % 4 == 0:  # about one write in four
            failed[0] += 1
            raise OSError(28, "No space left on device")
        real(name, data)

    monkeypatch.setattr(store.files, "write", write)
    await ask_all(texts("失败"), lambda n: store)
    await store.settled()
    rows, size = await counted(store)
    assert failed[0] > 0 and rows < MISSES
    assert totals(store) == (rows, size)


async def test_repair_delete_and_check_keep_the_totals(open_store: Opener) -> None:
    store = await open_store(max_bytes=UNBOUNDED)
    said = texts("修复", 6)
    await ask_all(said, lambda n: store)
    await store.settled()
    keys = [await store.key_for(req(t)) for t in said]
    # A damaged phrase, asked for again after a restart, is made again in place.
    await asyncio.to_thread(store.files.write, FileStore.phrase_name(keys[0]), b"damaged")
    store._rows.discard(keys[0])
    again = await store.get_or_synthesize(req(said[0]))
    assert not again.cached
    await store.settled()
    assert totals(store) == await counted(store)
    assert await store.delete(keys[2])
    assert totals(store) == await counted(store)
    # A phrase and an encoding whose files went bad: the check drops their rows.
    await asyncio.to_thread(store.files.write, FileStore.phrase_name(keys[4]), b"damaged")
    variant = await asyncio.to_thread(store.index.variant, keys[1], "ulaw", 8000)
    assert variant is not None
    await asyncio.to_thread(store.files.write, variant.file, b"damaged")
    report = await store.check(fix=True, grace=0)
    assert report.fixed and report.corrupt == [keys[4]] and report.bad_variants == [variant.file]
    assert totals(store) == await counted(store)
    assert totals(store)[0] == len(said) - 2


@pytest.mark.parametrize("backing", ["postgresql+s3"], indirect=True)
async def test_replicas_on_one_index_each_report_the_index(open_store: Opener) -> None:
    first, second = await open_store(), await open_store(max_bytes=UNBOUNDED)
    said = texts("共享")
    await ask_all(said, lambda n: first if n % 3 else second)
    await asyncio.gather(first.settled(), second.settled())
    rows, size = await counted(first)
    assert rows == MISSES
    # Each replica learns the other's phrases at its next round.
    await until(lambda: totals(first) == totals(second) == (rows, size),
                what="both replicas reporting the index")
    for key in [await first.key_for(req(t)) for t in said[:10]]:
        assert await second.delete(key)
    rows, size = await counted(first)
    assert totals(second) == (rows, size)
    await until(lambda: totals(first) == (rows, size), what="the deletes on the other replica")
