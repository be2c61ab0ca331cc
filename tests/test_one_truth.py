"""One store, one truth: usage is counted wherever a hit is answered, eviction judges by it,
and streams, whole requests and warm-ups of one phrase share one synthesis."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import soundfile as sf
from aiohttp import web
from aiohttp.test_utils import TestClient

from cache.keys import SpeechRequest
from cache.store import PromptStore
from cache.warm import Warmer
from config import Settings
from config.phrases import parse_phrases
from gateway import create_app
from gateway.state import STORE, VOICES, WARMER
from synth import codecs
from synth.fastspeech2 import FastSpeech2Engine
from tests.support import CountingSynthesizer, same_store, until

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
TOKEN = "one-truth-token"
A, B, C = "您好，这里是客户服务中心。", "您的订单已经发货。", "请您稍后再拨。"
RACEY = "感谢您的耐心等待，我们马上为您服务。"
WARMED = """\
defaults:
  formats: [ulaw]
phrases:
  - id: hold
    text: 请稍候。
"""


def req(text: str) -> SpeechRequest:
    return SpeechRequest.create(text, engine="fastspeech2", voice="baker")


def warmer_for(store: PromptStore) -> Warmer:
    return Warmer(store, lambda spec: SpeechRequest.create(
        spec.text, engine="fastspeech2", voice="baker"))


async def test_hits_after_a_warm_up_count_and_keep_a_phrase_from_eviction(
    store: PromptStore, synth: CountingSynthesizer, tmp_path: Path
) -> None:
    warmer = warmer_for(store)
    for _ in range(2):
        await store.audio(req(A), "wav")
    # A warm-up that replaces the pins (as at startup or POST /admin/warm with no body).
    job = await warmer.run(parse_phrases(WARMED, "warm.yaml", formats=list(codecs.FORMATS),
                                         max_text_length=1024), replace_pins=True)
    assert job.state == "done" and not job.failed
    await store.audio(req(B), "wav")
    hits_before = store.stats().hits
    key_a = await store.key_for(req(A))
    for _ in range(50):  # as the URL memo answers a repeated URL
        assert store.hot_hit(key_a, "wav", 24000) is not None
    assert store.stats().hits == hits_before + 50
    await store.audio(req(C), "wav")
    await store.close()

    # A budget one phrase short: the least recently used unpinned phrase must go.
    probe = await same_store(store, synth)
    await probe.open()
    total = probe.stats().bytes
    await probe.close()
    # Maintenance left off: a round would evict first, and the evict() below is what is judged.
    budgeted = await same_store(store, synth, max_bytes=total - 1, maintenance_interval=3600)
    await budgeted.open()
    try:
        assert await budgeted.evict() == 1
        assert await budgeted.hit(await budgeted.key_for(req(A))) is not None, "A, heard 50 times since, was evicted"
        assert await budgeted.hit(await budgeted.key_for(req(B))) is None, "B, heard once before A, was kept"
        assert await budgeted.hit(await budgeted.key_for(req(C))) is not None
        row = await budgeted.lookup(await budgeted.key_for(req(A)))
        assert row is not None and row.hits == 51  # one hit before the warm-up, fifty after
    finally:
        await budgeted.close()


async def test_renaming_and_unpinning_keep_rows_answering_from_memory(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    stored = await store.get_or_synthesize(req(A))
    await store.name(stored.key, phrase_id="welcome", tags=["greeting"])
    named = await store.hit(phrase_id="welcome")
    assert named is not None and named.pinned and named.tags == ("greeting",)
    assert await store.unpin_except([]) == 1
    assert await store.hit(phrase_id="welcome") is None
    again = await store.get_or_synthesize(req(A))
    assert again.cached and not again.phrase.pinned and synth.calls == 1


async def test_warm_up_lookups_are_not_listener_hits(store: PromptStore) -> None:
    warmer = warmer_for(store)
    specs = parse_phrases(WARMED, "warm.yaml", formats=list(codecs.FORMATS), max_text_length=1024)
    await warmer.run(specs)
    await warmer.run(specs)  # all cached now
    stats = store.stats()
    assert (stats.hits, stats.misses) == (0, 0)


async def test_stream_whole_and_warm_of_one_text_make_one_synthesis(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    stream = await store.stream(req(RACEY))
    assert stream.stored is None
    first = await anext(stream)
    whole = asyncio.create_task(store.audio(req(RACEY), "ulaw"))
    warm_spec = parse_phrases(
        f"phrases:\n  - id: racey\n    text: {RACEY}\n    formats: [ulaw]\n", "body",
        formats=list(codecs.FORMATS), max_text_length=1024,
    )
    warm = asyncio.create_task(warmer_for(store).run(warm_spec))
    chunks = [first] + [chunk async for chunk in stream]
    await stream.aclose()
    audio, job = await whole, await warm
    assert synth.calls == 1
    assert job.state == "done" and not job.failed
    # The stream's chunks are the stored audio, sample for sample.
    stored = await store.hit(phrase_id="racey")
    assert stored is not None and stored.pinned and stored.phrase_id == "racey"
    assert sum(len(c.samples) for c in chunks) == round(stored.duration * stored.sample_rate)
    assert audio.key == stored.key and audio.format == "ulaw"
    assert (await store.check(grace=0)).clean


async def test_a_stream_that_joins_late_hears_the_phrase_from_its_start(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    early = await store.stream(req(RACEY))
    first = await anext(early)
    late = await store.stream(req(RACEY))
    late_chunks = [c async for c in late]
    early_chunks = [first] + [c async for c in early]
    assert synth.calls == 1
    assert [len(c.samples) for c in late_chunks] == [len(c.samples) for c in early_chunks]


async def test_the_last_stream_to_leave_stops_an_unheld_synthesis(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    long_text = "。".join([RACEY] * 6)
    stream = await store.stream(req(long_text))
    await anext(stream)
    await stream.aclose()
    await until(lambda: not store._generations)
    assert await store.hit(await store.key_for(req(long_text))) is None
    # A new request afterwards synthesizes afresh and stores it.
    again = await store.get_or_synthesize(req(long_text))
    assert not again.cached and synth.calls == 2


async def test_a_whole_request_keeps_a_stream_generation_going_after_the_stream_leaves(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    long_text = "。".join([RACEY] * 4)
    stream = await store.stream(req(long_text))
    await anext(stream)
    whole = asyncio.create_task(store.get_or_synthesize(req(long_text)))
    await until(lambda: all(g._held for g in store._generations.values()))
    await stream.aclose()
    stored = await whole
    assert not stored.cached and synth.calls == 1
    assert await store.hit(await store.key_for(req(long_text))) is not None


async def test_a_damaged_master_resynthesized_keeps_pin_name_and_variants(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    first = await store.audio(req(A), "ulaw")
    await store.name(first.key, phrase_id="welcome", tags=["greeting"])
    await asyncio.to_thread(store.files.write, f"{first.key}.wav", b"broken")
    fresh = await same_store(store, synth)
    await store.close()
    await fresh.open()
    try:
        again = await fresh.get_or_synthesize(req(A))
        assert not again.cached and synth.calls == 2
        assert again.phrase.pinned and again.phrase.phrase_id == "welcome"
        variants = await asyncio.to_thread(fresh.index.variants, again.key)
        assert [v.format for v in variants] == ["ulaw"]
        assert (await fresh.check(grace=0)).clean
    finally:
        await fresh.close()


# Through the gateway

def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(**{"data_dir": tmp_path / "data", "admin_token": TOKEN, **overrides})


@pytest.fixture
async def client(aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path) -> Client:
    return await aiohttp_client(create_app(settings_for(tmp_path), engines=[engine]))


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def admin_hits(client: Client) -> int:
    r = await client.get("/admin/stats", headers=auth())
    assert r.status == 200
    return int((await r.json())["cache"]["hits"])


async def test_prompt_and_phrase_fetches_count_as_hits_without_a_search(client: Client) -> None:
    r = await client.post("/admin/warm", json={"phrases": [{"id": "welcome", "text": A}]},
                          headers=auth())
    assert r.status == 202
    job = (await r.json())["job_id"]

    await until(lambda: client.app[WARMER].get(job).state == "done")  # type: ignore[union-attr]
    key = (await client.app[STORE].hit(phrase_id="welcome"))
    assert key is not None
    before = await admin_hits(client)

    async def no_search(**_: Any) -> Any:
        raise AssertionError("a phrase fetch searched the index")

    client.app[STORE].search = no_search  # type: ignore[method-assign]
    for path in ("/phrases/welcome.wav", f"/prompts/{key.key}.wav", "/phrases/welcome.ulaw"):
        r = await client.get(path)
        assert r.status == 200, path
        await r.read()
    assert await admin_hits(client) == before + 3


async def test_stream_and_whole_ulaw_requests_for_one_text_make_one_synthesis(
    client: Client,
) -> None:
    voices = client.app[VOICES]
    completed = lambda: sum(w.completed for w in voices.workers)  # noqa: E731
    url = quote(RACEY)
    stream = await client.get(f"/tts/stream.ulaw?text={url}")
    assert stream.status == 200 and stream.headers["X-Cache"] == "MISS"
    first = await stream.content.readany()
    whole = asyncio.create_task(client.get(f"/tts.ulaw?text={url}"))
    warm = await client.post(
        "/admin/warm", json={"phrases": [{"id": "racey", "text": RACEY, "formats": ["ulaw"]}]},
        headers=auth(),
    )
    assert warm.status == 202
    streamed = first + await stream.read()
    answer = await whole
    assert answer.status == 200
    body = await answer.read()
    # The stream was cut by sentence; the stored μ-law is the same speech whole.
    assert abs(len(streamed) - len(body)) < len(body) // 20
    job = (await warm.json())["job_id"]

    await until(lambda: client.app[WARMER].get(job).state == "done")  # type: ignore[union-attr]
    assert completed() == 1
    named = await client.get("/phrases/racey.ulaw")
    assert named.status == 200 and await named.read() == body
    report = await client.app[STORE].check(grace=0)
    assert report.clean, report.as_dict()  # no orphaned variant, no stray file
    stored = await client.app[STORE].hit(phrase_id="racey")
    assert stored is not None and stored.pinned
    data, rate = sf.read(io.BytesIO(await (await client.get(
        f"/prompts/{stored.key}.wav")).read()), dtype="int16")
    assert rate == stored.sample_rate and len(data) > 0


async def test_repeat_urls_after_a_warm_up_count_in_stats_and_metrics(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    phrases = tmp_path / "phrases.yaml"
    await asyncio.to_thread(phrases.write_text, WARMED, encoding="utf-8")
    client = await aiohttp_client(create_app(
        settings_for(tmp_path, phrases=(phrases,)), engines=[engine]))
    url = f"/tts.wav?text={quote(A)}"
    for _ in range(2):
        assert (await client.get(url)).status == 200
    r = await client.post("/admin/warm", headers=auth())
    assert r.status == 202
    job = (await r.json())["job_id"]

    await until(lambda: client.app[WARMER].get(job).state == "done")  # type: ignore[union-attr]
    before = await admin_hits(client)
    for _ in range(20):
        r = await client.get(url)
        assert r.status == 200 and r.headers["X-Cache"] == "HIT"
    assert await admin_hits(client) == before + 20
    metrics = await (await client.get("/metrics")).text()
    line = next(x for x in metrics.splitlines() if x.startswith("huiyin_cache_hits_total"))
    assert float(line.split()[-1]) >= before + 20


async def test_a_stored_phrase_not_in_memory_streams_whole(
    store: PromptStore, synth: CountingSynthesizer
) -> None:
    await store.get_or_synthesize(req(A))
    fresh = await same_store(store, synth)
    await store.close()
    await fresh.open()
    try:
        stream = await fresh.stream(req(A))
        assert stream.stored is not None and stream.stored.cached
        assert [c async for c in stream] == [] and synth.calls == 1
        assert fresh.stats().hits == 1
    finally:
        await fresh.close()
