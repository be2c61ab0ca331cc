"""The phrase store with the real voice behind a counting wrapper."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import soundfile as sf

from cache.files import FileStore
from cache.hotset import HotSet
from cache.index import Index, now
from cache.keys import SpeechRequest
from cache.store import Audio, PromptStore
from synth.engine import Pcm, SynthesisError
from synth.worker import Priority
from tests.support import CountingSynthesizer, new_store, same_store, until

T = TypeVar("T")


async def off(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking file or index work off the loop, as the store itself does."""
    return await asyncio.to_thread(fn, *args)


def req(text: str, **kw: float | str) -> SpeechRequest:
    return SpeechRequest.create(text, engine="fastspeech2", voice="baker", **kw)  # type: ignore[arg-type]


async def reopen(store: PromptStore, synth: CountingSynthesizer, **kw: int) -> PromptStore:
    await store.close()
    fresh = await same_store(store, synth, **kw)
    await fresh.open()
    return fresh


def plays(data: bytes) -> float:
    audio, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert len(audio) > 0 and np.abs(audio).max() > 1000
    return float(len(audio) / rate)


async def test_miss_then_hit_and_the_files_are_sharded(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    first = await store.get_or_synthesize(req("您好，欢迎致电。"))
    second = await store.get_or_synthesize(req("您好，欢迎致电。"))
    assert (first.cached, second.cached) == (False, True)
    assert synth.calls == 1
    key = first.key
    await store.settled()  # answered from memory, written behind
    data = await off(store.files.read, FileStore.phrase_name(key))
    assert data is not None and abs(plays(data) - first.phrase.duration) < 0.01
    stats = store.stats()
    assert (stats.entries, stats.hits, stats.misses) == (1, 1, 1)
    assert stats.hit_ratio == 0.5 and stats.saved_seconds > 0


async def test_a_hit_survives_a_restart(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    await store.get_or_synthesize(req("请稍候。"))
    store = await reopen(store, synth)
    try:
        again = await store.get_or_synthesize(req("请稍候。"))
        assert again.cached and synth.calls == 1
    finally:
        await store.close()


async def test_fifty_concurrent_misses_make_one_synthesis(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    results = await asyncio.gather(*[store.audio(req("查询余额请按一。"), "ulaw") for _ in range(50)])
    assert synth.calls == 1
    assert len({r.data for r in results}) == 1
    assert sum(not r.cached for r in results) >= 1


async def test_variants_are_encoded_once_and_served_from_memory(store: PromptStore) -> None:
    audio = await store.audio(req("转人工服务请按零。"), "ulaw")
    assert audio.rate == 8000 and abs(audio.size / 8000 - audio.duration) < 0.05
    await store.settled()
    row = await off(store.index.variant, audio.key, "ulaw", 8000)
    assert row is not None and await off(store.files.read, row.file) == audio.data
    hot = store.hot_hit(audio.key, "ulaw", 8000)
    assert hot is not None and hot.data == audio.data and hot.cached
    wav = await store.audio(req("转人工服务请按零。"), "wav", 8000)
    assert abs(plays(wav.data) - audio.duration) < 0.05


async def test_a_corrupt_file_is_a_miss_and_is_repaired(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    first = await store.get_or_synthesize(req("感谢您的来电。"))
    await store.settled()
    name = FileStore.phrase_name(first.key)
    data = bytearray(await off(store.files.read, name) or b"")
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    await off(store.files.write, name, bytes(data))  # damaged in place
    store = await reopen(store, synth)
    try:
        assert not (await store.check()).consistent
        again = await store.get_or_synthesize(req("感谢您的来电。"))
        assert not again.cached and synth.calls == 2
        await store.settled()
        assert await off(store.files.read, name) != bytes(data)
        assert (await store.check(grace=0)).clean
    finally:
        await store.close()


async def test_a_missing_file_is_a_miss_and_is_repaired(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    first = await store.get_or_synthesize(req("再见。"))
    await store.settled()
    await off(store.files.delete, FileStore.phrase_name(first.key))
    store = await reopen(store, synth)
    try:
        again = await store.get_or_synthesize(req("再见。"))
        assert not again.cached and synth.calls == 2
        await store.settled()
        assert await off(store.files.read, FileStore.phrase_name(first.key)) is not None
    finally:
        await store.close()


async def test_search_finds_tags_and_text_as_written(store: PromptStore) -> None:
    texts = ["您好。", "请按一。", "请按二。"]
    phrases = [await store.get_or_synthesize(req(t)) for t in texts]
    await store.name(phrases[0].key, phrase_id="greeting", tags=["问候", "menu"])
    await store.name(phrases[1].key, phrase_id="menu_1", tags=["menu_1"])
    await store.name(phrases[2].key, phrase_id="pct", tags=["50%"])

    async def ids(**kwargs: str) -> set[str]:
        total, rows = await store.search(**kwargs)
        assert total == len(rows)
        return {r.phrase_id or "" for r in rows}

    assert await ids(tag="问候") == {"greeting"}  # a Chinese tag, stored as UTF-8
    assert await ids(tag="menu") == {"greeting"}  # a whole tag, not a prefix of menu_1
    assert await ids(tag="50%") == {"pct"}
    assert await ids(tag="%") == set()  # wildcards are literal
    assert await ids(query="_") == {"menu_1"}
    assert await ids(query="按一") == {"menu_1"}


async def test_eviction_respects_pins_budget_and_recency(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    texts = ["您好。", "请按一。", "请按二。", "请按三。", "请按四。"]
    phrases = [await store.get_or_synthesize(req(t)) for t in texts]
    await store.name(phrases[0].key, phrase_id="greeting", tags=["menu"])
    # The next use must carry a later time than every synthesis above.
    await until(lambda: now() > max(p.phrase.last_used for p in phrases))
    await store.get_or_synthesize(req(texts[1]))  # recently used: survives
    sizes = {p.key: p.phrase.bytes for p in phrases}
    budget = sizes[phrases[0].key] + sizes[phrases[1].key] + 100
    # Maintenance left off: a round would evict first, and the evict() below is what is judged.
    store = await reopen(store, synth, max_bytes=budget, maintenance_interval=3600)
    try:
        await store.get_or_synthesize(req(texts[1]))
        evicted = await store.evict()
        assert evicted == 3
        stats = store.stats()
        assert stats.bytes <= budget and stats.evictions == 3
        kept = {p.key for p in await off(store.index.all_phrases)}
        assert kept == {phrases[0].key, phrases[1].key}
        assert (await store.check(grace=0)).clean
    finally:
        await store.close()


async def test_check_reports_and_fixes_strays_and_dangling_rows(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    kept = await store.get_or_synthesize(req("请输入密码。"))
    lost = await store.get_or_synthesize(req("请重新输入。"))
    await store.settled()
    await off(store.files.delete, FileStore.phrase_name(lost.key))
    orphan = FileStore.phrase_name("0" * 32)
    await off(store.files.write, orphan, b"left by an interrupted write")
    folder = isinstance(store.files, FileStore)  # only a folder has temp files (a PUT is whole)
    temp = store.files.path(FileStore.phrase_name(kept.key)).parent / ".tmp-abc" if folder else None
    if temp is not None:
        await off(temp.write_bytes, b"partial")
    report = await store.check(grace=0)
    assert report.missing == [lost.key]
    assert len(report.orphans) == 1 and len(report.temp_files) == (1 if folder else 0)
    fixed = await store.check(fix=True, grace=0)
    assert fixed.fixed
    assert (await store.check(grace=0)).clean
    assert await off(store.files.read, orphan) is None
    assert temp is None or not await off(temp.exists)
    assert await off(store.index.get, lost.key) is None
    assert await off(store.index.get, kept.key) is not None


async def test_young_stray_files_are_left_for_running_writes(store: PromptStore) -> None:
    await store.get_or_synthesize(req("您好。"))
    orphan = FileStore.phrase_name("1" * 32)
    await off(store.files.write, orphan, b"a write in progress")
    assert (await store.check(fix=True, grace=60)).orphans == []
    assert await off(store.files.read, orphan) is not None


async def test_failed_and_empty_synthesis_are_never_stored(tmp_path: Path) -> None:
    class Broken:
        calls = 0

        def engine_version(self, engine: str) -> str:
            return "v"

        def spoken(self, request: SpeechRequest) -> str:
            return request.text

        def stream(self, request: SpeechRequest, priority: Priority) -> AsyncIterator[Pcm]:
            raise AssertionError("not streamed here")

        async def synthesize(self, request: SpeechRequest, priority: Priority) -> Pcm:
            Broken.calls += 1
            if request.text == "空":
                return Pcm(np.zeros(0, dtype=np.int16), 24000)
            raise SynthesisError("engine failed")

    store = new_store(tmp_path / "data", Broken())
    await store.open()
    try:
        for text in ("空", "坏"):
            with pytest.raises(SynthesisError):
                await store.get_or_synthesize(req(text))
        with pytest.raises(SynthesisError):
            await store.get_or_synthesize(req("坏"))
        assert Broken.calls == 3  # a failure is not remembered as a result
        assert await off(store.index.all_phrases) == []
        assert await off(lambda: list(store.files.walk())) == []
    finally:
        await store.close()


async def test_unknown_or_malformed_keys_are_not_found(store: PromptStore) -> None:
    assert await store.hit("f" * 32) is None
    assert await store.hit("../../etc/passwd") is None
    assert not await store.delete("not-a-key")


def test_sqlite_index_runs_in_wal_mode(tmp_path: Path) -> None:
    index = Index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    with index.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
    index.close()


def _audio(n: int) -> Audio:
    return Audio("k" * 32, "ulaw", 8000, bytes(n), "c", 1.0)


def test_hot_set_is_lru_within_its_budget() -> None:
    hot: HotSet[str, Audio] = HotSet(100, window_share=10)  # 10 bytes of window, 90 in
    for key in ("a", "b", "c"):
        hot.put(key, _audio(1))  # asked for once: seen
    hot.put("a", _audio(40))
    hot.put("b", _audio(40))
    assert hot.get("a") is not None  # a is now the most recent
    hot.put("c", _audio(40))
    assert hot.get("b") is None and hot.get("a") is not None and hot.bytes == 80
    hot.put("huge", _audio(500))
    assert hot.get("huge") is None and len(hot) == 2


def test_the_hot_set_lets_audio_in_on_its_second_request() -> None:
    hot: HotSet[str, Audio] = HotSet(1000, window_share=10)  # 100 bytes of window
    hot.put("repeat", _audio(60))
    assert hot.get("repeat") is not None  # asked again while in the window: moves in
    for n in range(20):  # a flood of one-off audio passes through the window only
        hot.put(f"once{n}", _audio(60))
    assert hot.get("repeat") is not None and hot.bytes <= 60 + 100
    assert [hot.get(f"once{n}") is None for n in range(20)].count(False) == 1
    hot.put("late", _audio(60))
    hot.put("once0", _audio(60))  # pushed out of the window, asked for again: moves in
    for n in range(20, 40):
        hot.put(f"once{n}", _audio(60))
    assert hot.get("once0") is not None and hot.get("late") is None


def test_audio_held_for_a_new_phrase_moves_in_on_its_second_request() -> None:
    hot: HotSet[str, Audio] = HotSet(1000, window_share=10)
    hot.hold("new", _audio(60))
    assert hot.held("new") is not None and hot.held("new") is not None  # not requests
    assert hot.get("new") is not None  # the first request
    hot.put("other", _audio(60))  # the window holds one: "new" is pushed out
    assert hot.get("new") is None
    hot.hold("made", _audio(60))
    assert hot.get("made") is not None and hot.get("made") is not None  # moved in
    for n in range(20):
        hot.put(f"once{n}", _audio(60))
    assert hot.get("made") is not None


def test_the_hot_set_forgets_only_so_many_keys_seen_once() -> None:
    hot: HotSet[str, Audio] = HotSet(1000, window_share=10, seen=3)
    for key in ("a", "b", "c", "d"):
        hot.put(key, _audio(60))
    hot.put("a", _audio(60))  # seen too long ago: the window again
    hot.put("d", _audio(60))  # seen recently: in
    hot.put("e", _audio(60))
    assert hot.get("d") is not None and hot.held("a") is None


def test_file_names_are_checked_before_they_become_paths(tmp_path: Path) -> None:
    files = FileStore(tmp_path)
    for bad in ("../x.wav", "abc.wav", "0" * 32 + "/../../x.wav", "0" * 31 + "g.wav",
                "0" * 32 + ".wav\n"):
        with pytest.raises(ValueError):
            files.path(bad)
    assert files.path(FileStore.phrase_name("ab" * 16)) == tmp_path / "ab" / "ab" / ("ab" * 16 + ".wav")


async def test_a_flood_of_one_off_prompts_leaves_a_repeated_one_in_memory(
    tmp_path: Path, synth: CountingSynthesizer
) -> None:
    store = new_store(tmp_path / "data", synth, hot_bytes=1 << 20)
    await store.open()
    try:
        for _ in range(2):  # an IVR menu, asked for again
            menu = await store.audio(req("查询余额请按一。"), "ulaw")
        flood = [await store.audio(req(f"您的验证码是{n:04d}。"), "ulaw") for n in range(40)]
        await store.settled()
        # Kept as it came, the flood's audio (its masters too) would be more than the budget.
        assert sum(a.size * 7 for a in flood) > 1 << 20
        assert store.hot_hit(menu.key, "ulaw", 8000) is not None
        held = [store.hot_hit(a.key, "ulaw", 8000) is not None for a in flood]
        assert not any(held[:30]) and sum(held) <= 10  # the last few, in the window
        again = await store.audio(req("您的验证码是0000。"), "ulaw")  # asked again: moves in
        assert again.cached and store.hot_hit(again.key, "ulaw", 8000) is not None
    finally:
        await store.close()
