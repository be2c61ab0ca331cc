"""A new phrase is answered from memory while it is written: what is answered before it
lands, what waits for it, and what a write that fails leaves behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from cache.files import FileStore
from cache.keys import SpeechRequest
from cache.store import PromptStore
from cache.warm import Warmer
from config.phrases import parse_phrases
from synth.worker import Priority
from tests.support import CountingSynthesizer, same_store, until

TEXT = "您好，欢迎致电客户服务中心。"


def req(text: str = TEXT) -> SpeechRequest:
    return SpeechRequest.create(text, engine="fastspeech2", voice="baker")


class HeldWrites:
    """Audio file writes that wait for `release`, so a test sees the store mid-write."""

    def __init__(self, store: PromptStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = threading.Event()
        self.waiting = 0
        real = store.files.write

        def write(name: str, data: bytes) -> None:
            self.waiting += 1
            self.release.wait(30)
            real(name, data)

        monkeypatch.setattr(store.files, "write", write)


@pytest.fixture
def held(store: PromptStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldWrites]:
    writes = HeldWrites(store, monkeypatch)
    yield writes
    writes.release.set()  # never leave the writer thread waiting


async def test_a_miss_is_answered_before_its_write_lands(
    store: PromptStore, synth: CountingSynthesizer, held: HeldWrites
) -> None:
    first = await store.get_or_synthesize(req())
    assert not first.cached and first.saved is not None and not first.saved.done()
    await until(lambda: held.waiting == 1, what="the write on the writer thread")
    name = FileStore.phrase_name(first.key)
    assert await asyncio.to_thread(store.files.read, name) is None
    # Hits, encodings and the prompt URL are answered from memory meanwhile.
    again = await store.get_or_synthesize(req())
    assert again.cached and synth.calls == 1
    ulaw = await store.audio(req(), "ulaw")
    assert ulaw.rate == 8000 and ulaw.size > 0
    found = await store.hit(first.key)
    by_key = None if found is None else await store.variant(found, "wav")
    assert by_key is not None and by_key.checksum == first.phrase.checksum
    # What reads the index, and what writes after it, waits for the write: the row is
    # found and named although neither was in the index when they were asked.
    row = asyncio.create_task(store.lookup(first.key))
    named = asyncio.create_task(store.name(first.key, phrase_id="welcome"))
    held.release.set()
    assert (await row) is not None and await named
    await store.settled()
    assert await asyncio.to_thread(store.files.read, name) is not None
    variant = await asyncio.to_thread(store.index.variant, first.key, "ulaw", 8000)
    assert variant is not None
    report = await store.check(grace=0)
    assert report.clean and (report.phrases, report.variants) == (1, 1)
    assert (store.stats().entries, store.stats().bytes) == await asyncio.to_thread(store.index.totals)


async def test_a_warm_up_waits_until_its_phrase_is_stored(
    store: PromptStore, held: HeldWrites
) -> None:
    warm = asyncio.create_task(store.get_or_synthesize(req(), priority=Priority.WARM))
    await until(lambda: held.waiting == 1, what="the warm-up's write")
    assert not warm.done()
    held.release.set()
    stored = await warm
    assert await asyncio.to_thread(store.index.get, stored.key) is not None


async def test_a_write_that_fails_is_forgotten_and_the_next_request_synthesizes_again(
    store: PromptStore, synth: CountingSynthesizer, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = store.files.write
    failing = {"left": 1}

    def write(name: str, data: bytes) -> None:
        if failing["left"]:
            failing["left"] -= 1
            raise OSError(28, "No space left on device")
        real(name, data)

    monkeypatch.setattr(store.files, "write", write)
    first = await store.get_or_synthesize(req())
    assert not first.cached and first.phrase.bytes > 0  # the listener has the audio
    await store.settled()
    assert "could not be stored" in caplog.text and TEXT not in caplog.text
    assert store.hot_hit(first.key, "wav", first.phrase.sample_rate) is None
    assert await store.lookup(first.key) is None
    assert (store.stats().entries, store.stats().bytes) == (0, 0)
    again = await store.get_or_synthesize(req())
    assert not again.cached and synth.calls == 2
    await store.settled()
    assert await store.lookup(first.key) is not None
    assert (await store.check(grace=0)).clean


async def test_a_warm_up_whose_write_fails_reports_it(
    store: PromptStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write(name: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.files, "write", write)
    phrases = parse_phrases(f"phrases:\n  - id: welcome\n    text: {TEXT}\n", "p.yaml",
                            formats=["wav"], max_text_length=1024)
    warmer = Warmer(store, lambda spec: req(spec.text))
    job = await warmer.run(phrases)
    assert job.keys == {} and len(job.failed) == 1
    (failure,) = job.failed
    assert failure["id"] == "welcome" and "No space left" in failure["reason"]


async def test_closing_the_store_lands_every_write(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    keys = [(await store.get_or_synthesize(req(f"请按{d}。"))).key for d in "一二三"]
    await store.close()
    reopened = await same_store(store, synth)
    await reopened.open()
    try:
        for key in keys:
            assert await reopened.lookup(key) is not None
        assert (await reopened.check(grace=0)).clean
    finally:
        await reopened.close()


async def test_a_warm_up_whose_encoding_cannot_be_written_reports_it(
    store: PromptStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store.files.write

    def write(name: str, data: bytes) -> None:
        if "-ulaw-" in name:
            raise OSError(28, "No space left on device")
        real(name, data)

    monkeypatch.setattr(store.files, "write", write)
    phrases = parse_phrases(
        f"phrases:\n  - id: welcome\n    text: {TEXT}\n    formats: [ulaw]\n", "p.yaml",
        formats=["wav", "ulaw"], max_text_length=1024,
    )
    job = await Warmer(store, lambda spec: req(spec.text)).run(phrases)
    (failure,) = job.failed
    assert failure["id"] == "welcome" and "ulaw encoding could not be stored" in failure["reason"]
    assert store.hot_hit(await store.key_for(req()), "ulaw", 8000) is None
