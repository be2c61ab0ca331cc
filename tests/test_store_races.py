"""The store when things happen at once: a repair during an integrity check, a failed usage
write, a phrase id moving to new audio, a live caller joining a warm-up's synthesis."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from cache.check import CheckReport, _recheck
from cache.keys import SpeechRequest
from cache.maintenance import Stats, Usage
from cache.store import PromptStore
from cache.warm import Warmer
from config.phrases import parse_phrases
from synth import codecs
from synth.worker import Priority, SynthesisWorker, Urgency
from tests.support import Admitting, CountingSynthesizer, new_store, same_store, until

A, B = "您好，欢迎致电。", "请稍候，正在为您转接。"


def req(text: str) -> SpeechRequest:
    return SpeechRequest.create(text, engine="fastspeech2", voice="baker")


async def test_a_phrase_repaired_while_the_check_ran_is_not_removed(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    first = await store.get_or_synthesize(req(A))
    await store.name(first.key, phrase_id="welcome")
    await asyncio.to_thread(store.files.write, f"{first.key}.wav", b"damaged")
    stale = await store.check(grace=0)  # what a scan saw
    assert stale.corrupt == [first.key]
    fresh = await same_store(store, synth)
    await store.close()
    await fresh.open()
    try:
        repaired = await fresh.get_or_synthesize(req(A))  # the repair, during the "scan"
        assert not repaired.cached and repaired.phrase.phrase_id == "welcome"
        todo = await asyncio.to_thread(_recheck, fresh._storage, stale, 0)
        assert todo.corrupt == [] and todo.missing == []
        assert (await fresh.check(fix=True, grace=0)).clean
        assert await fresh.hit(phrase_id="welcome") is not None
    finally:
        await fresh.close()


async def test_a_stray_file_written_for_real_during_the_check_is_kept(store: PromptStore) -> None:
    stored = await store.get_or_synthesize(req(A))
    rel = f"{stored.key[:2]}/{stored.key[2:4]}/{stored.key}.wav"  # as either store lists it
    stale = CheckReport(orphans=[rel])  # seen as an orphan before its row was committed
    todo = await asyncio.to_thread(_recheck, store._storage, stale, 0)
    assert todo.orphans == []


async def test_usage_that_cannot_be_written_is_kept_for_the_next_flush(
    store: PromptStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.get_or_synthesize(req(A))
    hit = await store.get_or_synthesize(req(A))
    assert hit.cached
    real_touch = store.index.touch
    failures = {"left": 1}

    def flaky(batch: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("database is locked")
        real_touch(batch)

    monkeypatch.setattr(store.index, "touch", flaky)
    with pytest.raises(OSError):
        await store.flush_usage()
    await store.flush_usage()
    row = await store.lookup(hit.key)
    assert row is not None and row.hits == 1


def test_restored_usage_merges_with_newer_hits() -> None:
    stats = Stats()
    usage = Usage(stats)
    usage.hit("k", 0.5)
    batch = usage.drain()
    usage.hit("k", 0.5)
    usage.restore(batch)
    ((key, _, hits),) = usage.drain()
    assert (key, hits, stats.hits) == ("k", 2, 2)


async def test_a_phrase_id_names_one_phrase(store: PromptStore, synth: CountingSynthesizer) -> None:
    old = await store.get_or_synthesize(req(A))
    new = await store.get_or_synthesize(req(B))
    assert await store.name(old.key, phrase_id="greeting")
    assert await store.name(new.key, phrase_id="greeting")
    current = await store.hit(phrase_id="greeting")
    assert current is not None and current.key == new.key
    was = await store.lookup(old.key)
    assert was is not None and was.phrase_id is None and not was.pinned
    fresh = await same_store(store, synth)
    await store.close()
    await fresh.open()
    try:
        await fresh.get_or_synthesize(req(A))  # the old row comes back into memory first
        again = await fresh.hit(phrase_id="greeting")
        assert again is not None and again.key == new.key
        assert not await fresh.name("0" * 32, phrase_id="gone")  # no such phrase
    finally:
        await fresh.close()


async def test_a_failed_phrase_keeps_the_audio_it_had_when_pins_are_replaced(
    store: PromptStore,
) -> None:
    warmer = Warmer(store, lambda spec: req(spec.text))

    def specs(text: str) -> Any:
        return parse_phrases(f"phrases:\n  - id: welcome\n    text: {text}\n", "p.yaml",
                             formats=list(codecs.FORMATS), max_text_length=1024)

    first = await warmer.run(specs(A), replace_pins=True)
    assert first.state == "done" and not first.failed
    broken = await warmer.run(specs("😀"), replace_pins=True)  # nothing the voice can say
    assert broken.failed and broken.failed[0]["id"] == "welcome"
    kept = await store.hit(phrase_id="welcome")
    assert kept is not None and kept.pinned and kept.key == first.keys["welcome"]


async def test_an_older_replacing_warm_up_does_not_undo_a_newer_one(store: PromptStore) -> None:
    warmer = Warmer(store, lambda spec: req(spec.text))

    def specs(phrase_id: str, text: str) -> Any:
        return parse_phrases(f"phrases:\n  - id: {phrase_id}\n    text: {text}\n", "p.yaml",
                             formats=list(codecs.FORMATS), max_text_length=1024)

    older = warmer.start(specs("old", A), replace_pins=True)
    newer = warmer.start(specs("new", B), replace_pins=True)
    await until(lambda: older.finished is not None and newer.finished is not None)
    assert await store.hit(phrase_id="new") is not None


class HoldingEngine:
    """The real engine; holds its first synthesis until released, and records the order."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.name, self.version, self.sample_rate = engine.name, engine.version, engine.sample_rate
        self.order: list[str] = []
        self.release = threading.Event()

    def voices(self) -> Any:
        return self._engine.voices()

    def setting_ranges(self) -> Any:
        return self._engine.setting_ranges()

    def spoken_form(self, text: str) -> str:
        return str(self._engine.spoken_form(text))

    def synthesize(self, text: str, **kw: Any) -> Any:
        self.order.append(text)
        if len(self.order) == 1:
            self.release.wait(timeout=30)
        return self._engine.synthesize(text, **kw)

    def stream(self, text: str, **kw: Any) -> Any:
        return self._engine.stream(text, **kw)


async def test_a_live_caller_raises_a_queued_warm_up_to_live(engine: Any) -> None:
    holding = HoldingEngine(engine)
    worker = SynthesisWorker(holding, max_queue=4)  # type: ignore[arg-type]
    await worker.start()
    try:
        urgency = Urgency(Priority.WARM)
        first = asyncio.ensure_future(worker.synthesize("请按一。", priority=Priority.WARM))
        await until(lambda: worker.busy)
        warm = asyncio.ensure_future(worker.synthesize("请按二。", priority=Priority.WARM))
        joined = asyncio.ensure_future(worker.synthesize("请按三。", priority=urgency))
        await until(lambda: worker.queue_depth == 2)
        urgency.raise_to(Priority.LIVE)  # a live caller joined the third one's generation
        holding.release.set()
        await asyncio.gather(first, warm, joined)
        assert holding.order == ["请按一。", "请按三。", "请按二。"]
    finally:
        await worker.close()


async def test_the_store_raises_a_warm_generation_when_a_live_request_joins(
    store: PromptStore, synth: CountingSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Priority] = []
    real = synth.synthesize
    gate = asyncio.Event()

    async def watching(request: SpeechRequest, priority: Any) -> Any:
        await gate.wait()  # the live caller joins while the warm-up waits
        seen.append(priority.priority)
        return await real(request, priority)

    monkeypatch.setattr(synth, "synthesize", watching)
    warm = asyncio.ensure_future(store.get_or_synthesize(req(A), priority=Priority.WARM))
    await until(lambda: bool(store._generations))
    live = asyncio.ensure_future(store.get_or_synthesize(req(A)))
    await until(lambda: all(g.urgency.priority == Priority.LIVE
                            for g in store._generations.values()))
    gate.set()
    await asyncio.gather(warm, live)
    assert seen == [Priority.LIVE] and synth.calls == 1


async def test_totals_follow_each_write_without_a_recount(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    first = await store.audio(req(A), "ulaw")
    await store.audio(req(B), "wav")
    await store.settled()
    await asyncio.to_thread(store.files.write, f"{first.key}.wav", b"damaged")
    store._rows.discard(first.key)  # as after a restart: the row is read again, and repaired
    again = await store.get_or_synthesize(req(A))
    assert not again.cached
    counted = await asyncio.to_thread(store.index.totals)
    stats = store.stats()
    assert (stats.entries, stats.bytes) == counted


async def test_callers_of_a_key_being_admitted_join_its_synthesis_and_are_not_charged(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    waiting, release = asyncio.Event(), asyncio.Event()

    async def slow_admission(request: SpeechRequest) -> None:
        waiting.set()
        await release.wait()  # a quota held up in the database, say

    first, second = Admitting(slow_admission), Admitting(slow_admission)
    made_key = await store.key_for(req(A))
    admitted = asyncio.create_task(store.get_or_synthesize(req(A), admission=first))
    await waiting.wait()
    joining = asyncio.create_task(store.get_or_synthesize(req(A), admission=second))
    warming = asyncio.create_task(store.get_or_synthesize(req(A), priority=Priority.WARM))
    await until(lambda: store._starter.followers(made_key) == 2)
    assert not joining.done() and not warming.done()  # waiting for the first one's admission
    release.set()
    made, joined, warmed = await asyncio.gather(admitted, joining, warming)
    assert synth.calls == 1 and made.key == joined.key == warmed.key
    assert len(first.admitted) == 1 and second.admitted == []  # the joiner was not charged


async def test_a_refused_starter_leaves_its_followers_to_be_judged_each_in_turn(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    waiting, release = asyncio.Event(), asyncio.Event()

    class Refused(Exception):
        pass

    async def refuse_later(request: SpeechRequest) -> None:
        waiting.set()
        await release.wait()
        raise Refused

    async def allow(request: SpeechRequest) -> None:
        pass

    refused, allowed = Admitting(refuse_later), Admitting(allow)
    made_key = await store.key_for(req(A))
    starter = asyncio.create_task(store.get_or_synthesize(req(A), admission=refused))
    await waiting.wait()
    follower = asyncio.create_task(store.get_or_synthesize(req(A), admission=allowed))
    await until(lambda: store._starter.followers(made_key) == 1)
    release.set()
    with pytest.raises(Refused):
        await starter
    assert not (await follower).cached  # judged on its own, admitted, and synthesized
    assert synth.calls == 1 and len(allowed.admitted) == 1


async def test_a_refused_admission_synthesizes_nothing_and_a_stored_phrase_needs_none(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    class Refused(Exception):
        pass

    async def deny(request: SpeechRequest) -> None:
        raise Refused

    refuse = Admitting(deny)
    with pytest.raises(Refused):
        await store.get_or_synthesize(req(B), admission=refuse)
    with pytest.raises(Refused):
        await store.stream(req(B), admission=refuse)
    assert synth.calls == 0
    await store.get_or_synthesize(req(B))
    await store.settled()
    # After a restart the phrase is in the index only: still a hit, never asked about.
    again = await same_store(store, synth)
    await again.open()
    try:
        assert (await again.get_or_synthesize(req(B), admission=refuse)).cached
        assert (await again.stream(req(B), admission=refuse)).stored is not None
    finally:
        await again.close()
    assert synth.calls == 1


async def test_a_replica_whose_caller_joins_another_replicas_synthesis_charges_nothing(
    tmp_path: Any, synth: CountingSynthesizer, postgres: Any
) -> None:
    from cache.index import Index

    url = await asyncio.to_thread(postgres.database)
    await asyncio.to_thread(lambda: Index(url, upgrade=True).close())
    started, gate = asyncio.Event(), asyncio.Event()

    class Held(CountingSynthesizer):
        async def synthesize(self, request: SpeechRequest, priority: Priority) -> Any:
            started.set()
            await gate.wait()  # the first replica is still making it
            return await super().synthesize(request, priority)

    held = Held(synth.engine)
    # Two replicas on one index and one audio folder.
    first = new_store(tmp_path, held, database_url=url)
    second = new_store(tmp_path, synth, database_url=url)
    await first.open()
    await second.open()
    try:
        making = asyncio.create_task(first.get_or_synthesize(req(A)))
        await started.wait()  # it holds the key's lease
        admission = Admitting(lambda request: asyncio.sleep(0))
        joining = asyncio.create_task(second.get_or_synthesize(req(A), admission=admission))
        await until(lambda: len(admission.read) == 1)
        gate.set()
        made, joined = await asyncio.gather(making, joining)
        assert (joined.cached, joined.key, synth.calls, len(admission.admitted)) == (True, made.key, 0, 0)
        assert admission.admitted == [] and synth.calls == 0  # neither charged nor made twice
    finally:
        await second.close()
        await first.close()


async def test_a_stream_left_before_its_synthesis_began_leaves_nothing_behind(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    stream = await store.stream(req(B))
    await stream.aclose()  # before the generation's task took its first step
    await until(lambda: len(store._generations) == 0 and store.index.leases.held() == [])
    made = await store.get_or_synthesize(req(B))  # not a generation that will never end
    assert not made.cached and synth.calls == 1
