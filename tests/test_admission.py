"""Admission before work, on the real default voice: a refused request reads nothing, a
client's reading waits its turn, joiners of a synthesis are not charged, quotas count what
is said, a lexicon edit reaches every URL heard before, and X-Forwarded-For is read whole."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from cache.reading import FairShare
from config import Settings
from gateway import create_app
from gateway.state import CREDENTIALS, STORE
from synth.fastspeech2 import FastSpeech2Engine
from synth.voices import Voices
from tests.support import until

Client = TestClient[Any, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
ADMIN = "admission-admin-token-7a1e"


def tts(text: str, ext: str = "wav") -> str:
    return f"/tts.{ext}?text={quote(text)}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def readings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the voices read into a key, in order."""
    read: list[str] = []
    spoken = Voices.spoken

    def counting(self: Voices, request: Any) -> str:
        read.append(request.text)
        return spoken(self, request)

    monkeypatch.setattr(Voices, "spoken", counting)
    return read


@pytest.fixture
def syntheses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the voices synthesize whole, in order."""
    made: list[str] = []
    synthesize = Voices.synthesize

    async def counting(self: Voices, request: Any, priority: Any) -> Any:
        made.append(request.text)
        return await synthesize(self, request, priority)

    monkeypatch.setattr(Voices, "synthesize", counting)
    return made


async def app_client(aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path,
                     **settings: Any) -> Client:
    return await aiohttp_client(create_app(Settings(**{
        "data_dir": tmp_path / "data", "access": "keys", "admin_token": ADMIN, **settings}),
        engines=[engine]))


async def make_key(client: Client, name: str, scope: str, **limits: int) -> str:
    made = await client.post("/admin/keys", json={"name": name, "scope": scope, **limits},
                             headers=bearer(ADMIN))
    assert made.status == 201, await made.text()
    return str((await made.json())["key"])


async def test_requests_refused_by_the_rate_limit_or_the_quota_read_nothing(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, readings: list[str]
) -> None:
    client = await app_client(aiohttp_client, engine, tmp_path)
    limited = await make_key(client, "limited", "synthesize", rate=1)
    long_texts = [f"第{n}条。" + "#*" * 400 for n in range(6)]
    first = await client.get(tts(long_texts[0]), headers=bearer(limited))
    assert first.status == 200
    answers = await asyncio.gather(*(client.get(tts(t), headers=bearer(limited))
                                     for t in long_texts[1:]))
    assert {a.status for a in answers} == {429}
    assert [(await a.json())["code"] for a in answers] == ["rate_limited"] * len(answers)
    metered = await make_key(client, "metered", "synthesize", quota=20)
    over = await client.get(tts("您好" * 15), headers=bearer(metered))  # 30 characters > 20
    assert over.status == 429 and (await over.json())["code"] == "quota_exceeded"
    assert readings == [long_texts[0]]  # the refused texts were never read


async def test_a_quota_refusal_takes_no_rate_token_and_ssml_markup_is_not_charged(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, engine, tmp_path)
    key = await make_key(client, "small", "synthesize", rate=1, quota=6)
    credentials = client.app[CREDENTIALS]
    refused = await client.get(tts("请您稍候再拨打本热线"), headers=bearer(key))  # 10 > 6
    assert refused.status == 429 and (await refused.json())["code"] == "quota_exceeded"
    ssml = '<speak>好<break time="300ms"/>的</speak>'  # two characters said, 38 written
    made = await client.post("/api/tts", json={"text": ssml}, headers=bearer(key))
    assert made.status == 200, await made.text()  # the one rate token was still there
    found = await credentials.find(key)
    assert found is not None and await credentials.remaining(found) == 4


async def test_callers_who_join_one_synthesis_are_charged_once(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, syntheses: list[str]
) -> None:
    client = await app_client(aiohttp_client, engine, tmp_path)
    key = await make_key(client, "pbx", "synthesize", quota=40)
    text = "新的公告：本中心营业时间调整为早八点至晚八点，请您知悉。"  # 29 characters
    answers = await asyncio.gather(*(client.get(tts(text, "ulaw"), headers=bearer(key))
                                     for _ in range(20)))
    assert [a.status for a in answers] == [200] * 20
    credentials = client.app[CREDENTIALS]
    found = await credentials.find(key)
    assert found is not None and await credentials.remaining(found) == 40 - len(text)
    assert syntheses == [text]


async def test_one_address_under_open_access_is_charged_once_for_one_announcement(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, syntheses: list[str]
) -> None:
    client = await app_client(aiohttp_client, engine, tmp_path, access="open",
                              rate_limit_burst=1, rate_limit_misses=1)
    answers = await asyncio.gather(*(client.get(tts("请注意，新的通知。", "ulaw"))
                                     for _ in range(40)))
    assert [a.status for a in answers] == [200] * 40
    assert syntheses == ["请注意，新的通知。"]
    assert (await client.get(tts("又一条。", "ulaw"))).status == 429  # its one token went once


async def test_a_lexicon_edit_reaches_every_url_heard_before(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, engine, tmp_path, access="open")
    try:
        url = tts("欢迎光临长乐门店", "ulaw")
        first = await client.get(url)
        again = await client.get(url)
        assert (first.headers["X-Cache"], again.headers["X-Cache"]) == ("MISS", "HIT")
        put = await client.put("/admin/lexicon/长乐", json={"pinyin": "zhang3 yue4"},
                               headers=bearer(ADMIN))
        # Under store_text: named (the default) the index keeps no text of this unnamed
        # prompt, so nothing can be counted; its URL reads anew all the same.
        assert put.status == 200 and (await put.json())["affected"] == 0
        after = await client.get(url)
        assert after.headers["X-Cache"] == "MISS" and after.headers["ETag"] != first.headers["ETag"]
        revalidated = await client.get(url, headers={"If-None-Match": first.headers["ETag"]})
        assert revalidated.status == 200  # the PBX's old copy is not confirmed
        lower = await client.get(url.replace("%E6", "%e6"))
        assert lower.headers["ETag"] == after.headers["ETag"]
    finally:
        engine.set_site_lexicon({})  # the engine is the session's: put it back


async def test_x_forwarded_for_on_several_lines_is_read_whole(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, engine, tmp_path, access="open",
                              rate_limit_burst=1, rate_limit_misses=1,
                              trusted_proxies=("127.0.0.0/8",))
    assert (await client.get(tts("甲。"), headers={"X-Forwarded-For": "203.0.113.7"})).status == 200
    # The client adds a line of its own; the proxy appends the address it saw on another.
    two_lines = CIMultiDict([("X-Forwarded-For", "198.51.100.99"),
                             ("X-Forwarded-For", "203.0.113.7")])
    assert (await client.get(tts("乙。"), headers=two_lines)).status == 429


async def test_previews_are_admitted_like_misses(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, engine, tmp_path, access="open",
                              rate_limit_burst=1, rate_limit_misses=1)
    assert (await client.get("/api/pronounce", params={"text": "您好"})).status == 200
    refused = await client.get("/api/pronounce", params={"text": "，。" * 256})
    assert refused.status == 429 and (await refused.json())["code"] == "rate_limited"


async def test_each_client_reads_in_its_turn() -> None:
    share = FairShare()
    gate = threading.Event()
    order: list[str] = []

    def job(name: str) -> Callable[[], str]:
        def run() -> str:
            gate.wait(20)
            order.append(name)
            return name
        return run

    flood = [asyncio.create_task(share.run("flood", job(f"flood{n}"))) for n in range(5)]
    await until(lambda: share.waiting == 4)  # one running, four waiting
    other = asyncio.create_task(share.run("other", job("other")))
    await until(lambda: share.waiting == 5)
    gate.set()
    assert await other == "other"
    await asyncio.gather(*flood)
    assert order[:2] == ["flood0", "other"]  # one of the flood's jobs ahead of it, not five
    share.close()


async def test_a_caller_that_leaves_while_its_text_waits_takes_nothing() -> None:
    share = FairShare()
    gate = threading.Event()
    ran: list[str] = []

    def job(name: str) -> Callable[[], None]:
        def run() -> None:
            gate.wait(20)
            ran.append(name)
        return run

    first = asyncio.create_task(share.run("a", job("first")))
    await until(lambda: share.waiting == 0 and not first.done())
    left = asyncio.create_task(share.run("b", job("left")))
    await until(lambda: share.waiting == 1)
    left.cancel()
    last = asyncio.create_task(share.run("c", job("last")))
    await until(lambda: share.waiting == 2)
    gate.set()
    await first
    await last
    assert ran == ["first", "last"]
    share.close()


async def test_probes_never_wait_behind_reading_or_previews(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, engine, tmp_path, access="open")
    reading = client.app[STORE].reading
    gate = threading.Event()
    # The frontend's one thread is held, and a preview waits behind it.
    held = asyncio.create_task(reading.run("someone", lambda: gate.wait(20)))
    await until(lambda: reading.waiting == 0 and not held.done())
    preview = asyncio.create_task(client.get("/api/pronounce", params={"text": "您好"}))
    await until(lambda: reading.waiting == 1)
    try:
        assert (await client.get("/readyz")).status == 200
        assert (await client.get("/healthz")).status == 200
        assert not preview.done()
    finally:
        gate.set()
    assert (await preview).status == 200
    await held
