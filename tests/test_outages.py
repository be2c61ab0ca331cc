"""The shared stores going down under a running gateway: PostgreSQL stopped and started
again, and the bucket stopped and started again. Hits from memory keep playing, misses get
the documented 503 with Retry-After (the database) or are answered but not indexed (the
bucket), and everything recovers without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from cache.index import Index
from cache.keys import SpeechRequest
from config import Settings
from gateway import create_app
from gateway.state import STORE
from synth.fastspeech2 import FastSpeech2Engine
from tests.servers import Postgres, SeaweedFS

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def own_postgres() -> AsyncIterator[Postgres]:
    server = await asyncio.to_thread(Postgres)  # this test stops its own server
    try:
        yield server
    finally:
        await asyncio.to_thread(server.close)


def tts(text: str) -> str:
    return f"/tts.wav?text={quote(text)}"


async def test_postgresql_down_and_back_under_traffic(
    own_postgres: Postgres, aiohttp_client: MakeClient, engine: FastSpeech2Engine,
    tmp_path: Path,
) -> None:
    url = await asyncio.to_thread(own_postgres.database)
    await asyncio.to_thread(lambda: Index(url, upgrade=True).close())
    client = await aiohttp_client(create_app(
        Settings(data_dir=tmp_path / "data", database_url=url), engines=[engine]))
    heard = await client.get(tts("您好，欢迎致电。"))
    assert heard.status == 200 and heard.headers["X-Cache"] == "MISS"
    body = await heard.read()
    await client.app[STORE].settled()

    await asyncio.to_thread(own_postgres.stop, "immediate")
    again = await client.get(tts("您好，欢迎致电。"))
    assert again.status == 200 and again.headers["X-Cache"] == "HIT" and await again.read() == body
    miss = await client.get(tts("查询余额请按一。"))
    assert miss.status == 503 and miss.headers["Retry-After"] == "5"
    answer = await miss.json()
    assert answer["code"] == "store_unavailable"
    assert "127.0.0.1" not in answer["message"]

    await asyncio.to_thread(own_postgres.start)
    back = await client.get(tts("查询余额请按一。"))
    assert back.status == 200 and back.headers["X-Cache"] == "MISS"
    await client.app[STORE].settled()
    assert (await client.app[STORE].check(grace=0)).clean


@pytest.fixture
async def own_seaweed(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SeaweedFS]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    server = await asyncio.to_thread(SeaweedFS)  # this test stops its own server
    try:
        yield server
    finally:
        await asyncio.to_thread(server.close)


async def test_the_bucket_down_and_back_under_traffic(
    own_seaweed: SeaweedFS, postgres: Postgres, aiohttp_client: MakeClient,
    engine: FastSpeech2Engine, tmp_path: Path,
) -> None:
    url = await asyncio.to_thread(postgres.database)
    await asyncio.to_thread(lambda: Index(url, upgrade=True).close())
    client = await aiohttp_client(create_app(Settings(
        data_dir=tmp_path / "data", database_url=url, audio_store="s3://outage/audio",
        s3_endpoint_url=own_seaweed.endpoint, s3_region="us-east-1", s3_timeout=2,
    ), engines=[engine]))
    store = client.app[STORE]
    heard = await client.get(tts("您好，欢迎致电。"))
    assert heard.status == 200 and heard.headers["X-Cache"] == "MISS"
    body = await heard.read()
    await store.settled()

    await asyncio.to_thread(own_seaweed.stop)
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["audio_store"] == "unreachable"
    again = await client.get(tts("您好，欢迎致电。"))
    assert again.status == 200 and await again.read() == body
    ulaw = await client.get("/tts.ulaw", params={"text": "您好，欢迎致电。"})
    assert ulaw.status == 200  # encoded from the master held in memory
    miss = await client.get(tts("查询余额请按一。"))
    assert miss.status == 200 and miss.headers["X-Cache"] == "MISS"  # answered, not stored
    await store.settled()
    key = await store.key_for(SpeechRequest.create("查询余额请按一。", engine="fastspeech2",
                                                   voice="baker"))
    assert await store.lookup(key) is None

    await asyncio.to_thread(own_seaweed.start)
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["audio_store"] == "up"
    back = await client.get(tts("查询余额请按一。"))
    assert back.status == 200 and back.headers["X-Cache"] == "MISS"
    await store.settled()
    assert await store.lookup(key) is not None
    assert (await store.check(grace=0)).clean
