"""The site lexicon in the index: a word added re-synthesizes only the stored prompts it
reads differently, pinned ones at once under their phrase ids, the rest on request; other
replicas follow; the admin routes and the command line edit it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from cache.keys import SpeechRequest
from cache.lexicon import SiteLexicon
from cache.store import PromptStore
from config import Settings
from gateway import create_app
from gateway.state import LEXICON, STORE
from synth.engine import InvalidInputError, Pcm
from synth.fastspeech2 import FastSpeech2Engine
from synth.worker import Priority, Urgency
from tests.support import same_store

WORD, READING = "汇音", "hui2 yin1"  # pypinyin says hui4 yin1
ADMIN = "lexicon-admin-token"


class QuickSynthesizer:
    """The real engine's reading (and so the real keys), 0.1 s of silence for audio: a
    thousand prompts are stored in seconds."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        self.engine = engine
        self.texts: list[str] = []

    def engine_version(self, engine: str) -> str:
        return self.engine.version

    def spoken(self, request: SpeechRequest) -> str:
        return self.engine.spoken_form(request.text)

    def set_site_lexicon(self, entries: Any) -> None:
        self.engine.set_site_lexicon(entries)

    def fallback(self, request: SpeechRequest) -> None:
        return None

    async def synthesize(self, request: SpeechRequest, priority: Priority | Urgency) -> Pcm:
        self.texts.append(request.text)
        # A short tone: audio is made, quickly (silence would be refused).
        tone = 3000 * np.sin(np.arange(2400) * 2 * np.pi * 440 / 24000)
        return Pcm(tone.astype(np.int16), 24000)

    async def stream(self, request: SpeechRequest, priority: Priority | Urgency) -> AsyncIterator[Pcm]:
        yield await self.synthesize(request, priority)


@pytest.fixture
def quick(engine: FastSpeech2Engine) -> Iterator[QuickSynthesizer]:
    yield QuickSynthesizer(engine)
    engine.set_site_lexicon({})  # the engine is the session's: put it back


def req(text: str) -> SpeechRequest:
    return SpeechRequest.create(text, engine="fastspeech2", voice="baker")


async def test_a_word_added_remakes_exactly_the_prompts_that_contain_it(
    tmp_path: Path, quick: QuickSynthesizer
) -> None:
    store = PromptStore(tmp_path / "data", quick, maintenance_interval=3600)  # type: ignore[arg-type]
    await store.open()
    try:
        texts = [f"您的订单{n}号已发货。" for n in range(997)]
        with_word = ["欢迎致电汇音客服。", "汇音提醒您按时还款。", "感谢使用汇音。"]
        for text in texts + with_word:
            await store.get_or_synthesize(req(text))
        for n, text in enumerate(with_word[:2]):
            made = await store.get_or_synthesize(req(text))
            await store.name(made.key, phrase_id=f"brand-{n}", tags=("brand",))
        await store.settled()
        before = {n: (await store.lookup(phrase_id=f"brand-{n}")) for n in range(2)}
        assert len(quick.texts) == 1000
        quick.texts.clear()

        await SiteLexicon(store.storage).put(WORD, READING)
        change = await store.relexicon()
        assert (change.affected, change.rewarming) == (3, 2)
        await store.rewarmed()
        assert sorted(quick.texts) == sorted(with_word[:2])  # the pinned two, made again
        for n in range(2):
            now = await store.lookup(phrase_id=f"brand-{n}")
            assert now is not None and now.key != before[n].key and now.pinned  # type: ignore[union-attr]
        # Every other prompt is still a hit; the unpinned one is made on its next request.
        for text in texts + with_word:
            await store.get_or_synthesize(req(text))
        assert sorted(quick.texts) == sorted(with_word)
        # Removing the word reads as before: the old phrases are hits again.
        quick.texts.clear()
        assert await SiteLexicon(store.storage).remove(WORD)
        change = await store.relexicon(rewarm=False)
        assert change.affected == 3
        for text in with_word:
            assert (await store.get_or_synthesize(req(text))).cached
        assert quick.texts == []
    finally:
        await store.close()


async def test_another_replica_follows_a_lexicon_change(
    tmp_path: Path, quick: QuickSynthesizer, backing: Any
) -> None:
    first = PromptStore(tmp_path / "data", quick, database_url=backing.database_url,
                        audio=await asyncio.to_thread(backing.audio, tmp_path / "data"),
                        maintenance_interval=3600)  # type: ignore[arg-type]
    await first.open()
    second = await same_store(first, quick)
    await second.open()
    try:
        text = "欢迎致电汇音。"
        old_key = await second.key_for(req(text))  # remembered by the second replica
        epoch = second.reading_epoch
        await SiteLexicon(first.storage).put(WORD, READING)
        await first.relexicon()
        new_key = await first.key_for(req(text))
        assert new_key != old_key
        await second._follow_lexicon()  # its maintenance round
        assert await second.key_for(req(text)) == new_key
        assert second.reading_epoch != epoch  # so its URL memo forgets what it remembered
        # A replica opened afterwards reads with the index's words from the start.
        quick.engine.set_site_lexicon({})
        third = await same_store(first, quick)
        await third.open()
        try:
            assert await third.key_for(req(text)) == new_key
        finally:
            await third.close()
    finally:
        await second.close()
        await first.close()


Client = TestClient[Any, web.Application]


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[Client]], engine: FastSpeech2Engine, tmp_path: Path
) -> AsyncIterator[Client]:
    # Every prompt's text kept: a lexicon change can read each one again and count it.
    yield await aiohttp_client(create_app(
        Settings(data_dir=tmp_path / "data", admin_token=ADMIN, store_text="always"),
        engines=[engine]))
    engine.set_site_lexicon({})


async def test_the_admin_routes_edit_the_lexicon_and_say_what_changed(client: Client) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    made = await client.post("/api/tts", json={"text": "汇音提醒您按时还款。"})
    assert made.status == 200
    before = await (await client.get("/api/pronounce", params={"text": "汇音"})).json()
    assert [p for w in before["sentences"][0]["clauses"][0]["words"] for p in w["pinyin"]] == [
        "hui4", "yin1"]
    put = await client.put(f"/admin/lexicon/{WORD}", json={"pinyin": "hui2  yin1"}, headers=auth)
    assert put.status == 200
    assert await put.json() == {"word": WORD, "pinyin": READING, "affected": 1, "rewarming": 0}
    after = await (await client.get("/api/pronounce", params={"text": "汇音"})).json()
    word = after["sentences"][0]["clauses"][0]["words"][0]
    assert word["pinyin"] == ["hui2", "yin1"] and word["source"] == "lexicon"
    listed = await client.get("/admin/lexicon", headers=auth)
    assert await listed.json() == {"words": [{"word": WORD, "pinyin": READING}]}
    assert WORD.encode() in await listed.read()  # as it reads, not \u escapes
    again = await client.post("/api/tts", json={"text": "汇音提醒您按时还款。"})
    assert (await again.json())["cached"] is False  # read differently: made again
    for word_, body, field in ((WORD, {"pinyin": "hui9 yin1"}, "pinyin"),
                               (WORD, {"pinyin": "hui2"}, "word"), ("x" * 40, {"pinyin": "a1"}, "word"),
                               (WORD, {}, "pinyin")):
        refused = await client.put(f"/admin/lexicon/{word_}", json=body, headers=auth)
        assert refused.status == 422 and (await refused.json())["field"] == field, body
    assert (await client.put(f"/admin/lexicon/{WORD}", json={"pinyin": READING})).status == 401
    gone = await client.delete(f"/admin/lexicon/{WORD}", headers=auth)
    assert gone.status == 200 and (await gone.json())["affected"] == 1
    missing = await client.delete(f"/admin/lexicon/{WORD}", headers=auth)
    assert missing.status == 404 and (await missing.json())["field"] == "word"
    assert await client.app[LEXICON].entries() == {}


async def test_a_word_a_lexicon_line_cannot_hold_is_refused(client: Client) -> None:
    # The engines read the site's words as 'word<TAB>pin1 yin1' lines, where '#' starts a
    # comment: '#汇音' would be no line at all, and pass any check made of one.
    auth = {"Authorization": f"Bearer {ADMIN}"}
    for word, pinyin, field in (("#汇音", "hui2 yin1", "word"), ("#Huiyin", "hui2 yin1", "word"),
                                ("汇#", "hui2", "word"), ("汇 音", "hui2 yin1", "word"),
                                (WORD, "hui2 yin1 #", "pinyin"), (WORD, "# hui2 yin1", "pinyin")):
        refused = await client.put(f"/admin/lexicon/{quote(word, safe='')}", json={"pinyin": pinyin},
                                   headers=auth)
        body = await refused.json()
        assert refused.status == 422 and body["field"] == field, (word, pinyin, body)
    store = client.app[STORE]
    assert await SiteLexicon(store.storage).entries() == {}
    with pytest.raises(InvalidInputError) as refused_here:  # the command line's way in
        await SiteLexicon(store.storage).put("#汇音", READING)
    assert refused_here.value.field == "word" and await SiteLexicon(store.storage).entries() == {}
    # A word the lines can hold is checked by the engines as before.
    put = await client.put(f"/admin/lexicon/{quote(WORD)}", json={"pinyin": READING}, headers=auth)
    assert put.status == 200 and await SiteLexicon(store.storage).entries() == {WORD: READING}
