"""Customer text as customer data, through the HTTP routes of a live gateway (in process,
the real voice): no-store on every route that speaks (the official OpenAI client included),
answered `Cache-Control: no-store`, leaving nothing in the index, the files, memory or the
logs; `ttl` and `tts_ttl` bound the answers' max-age; `refresh` needs the admin scope; a
purge by each selector through `DELETE /admin/cache`; texts not kept show as null."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import openai
import pytest
import soundfile as sf
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from config import Settings
from gateway import create_app
from gateway.access import ACCESS
from gateway.signing import sign
from gateway.state import STORE
from gateway.urlmemo import URL_MEMO
from synth.fastspeech2 import FastSpeech2Engine
from synth.memo import every_memo

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
ADMIN = "customer-data-admin-token"
SECRET_TEXT = "您的验证码是八二六一，请勿告诉他人。"
PHRASES = """\
phrases:
  - {id: welcome, text: "您好，欢迎致电。", tags: [greeting]}
  - {id: agent, text: "人工服务请按零。", tags: [menu]}
"""


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(**{"data_dir": tmp_path / "data", "admin_token": ADMIN, **overrides})


@pytest.fixture
async def client(aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path) -> Client:
    return await aiohttp_client(create_app(settings_for(tmp_path), engines=[engine]))


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


def decoded_seconds(data: bytes) -> float:
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert np.abs(samples).max() > 1000
    return float(len(samples) / rate)


async def nothing_kept_of(client: Client, text: str) -> None:
    """The index and the store's memory hold nothing of this text (other prompts may be)."""
    store = client.app[STORE]
    await store.settled()
    assert all(p.text != text for p in await asyncio.to_thread(store.index.all_phrases))
    assert not any(r.text == text for r in store._keying._keys)
    assert not any(quote(text) in url for url in client.app[URL_MEMO]._places)


async def nothing_kept(client: Client, text: str) -> None:
    """The index, the audio folder, the store's memory and the URL memo hold nothing of it."""
    store = client.app[STORE]
    await store.settled()
    assert await asyncio.to_thread(store.index.all_phrases) == []
    assert await asyncio.to_thread(lambda: list(store.files.walk())) == []
    assert not any(r.text == text for r in store._keying._keys)
    assert len(store._rows) == 0 and len(store._encodings._hot) == 0
    assert len(client.app[URL_MEMO]) == 0


# The client's own loggers (the OpenAI SDK logs what it sends at debug level).
CLIENT_LOGGERS = ("openai", "httpx", "httpcore")


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record of the gateway's side, message and structured fields, as one text."""
    return "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')} {r.exc_text or ''}"
                     for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS))


def max_age(response: Any) -> int:
    found = re.search(r"max-age=(\d+)", response.headers["Cache-Control"])
    assert found is not None, response.headers["Cache-Control"]
    return int(found.group(1))


async def test_no_store_on_every_speaking_route_leaves_nothing_behind(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # even the debug access log, which writes queries
    header = {"Cache-Control": "no-store"}
    answers = [
        await client.get("/tts.wav", params={"text": SECRET_TEXT}, headers=header),
        await client.get("/tts.ulaw", params={"text": SECRET_TEXT, "cache": "no-store"}),
        await client.get("/tts/stream.wav", params={"text": SECRET_TEXT, "cache": "no-store"}),
        await client.get("/tts/stream.pcm", params={"text": SECRET_TEXT}, headers=header),
        await client.head("/tts.wav", params={"text": SECRET_TEXT}, headers=header),
    ]
    for answer in answers:
        assert answer.status == 200, await answer.text()
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers.get("X-Cache") == "MISS"
    assert decoded_seconds(await answers[0].read()) > 1.5
    assert len(await answers[1].read()) > 8000
    posted = await client.post("/api/tts", json={"text": SECRET_TEXT, "cache": "no-store",
                                                  "format": "mp3"})
    assert posted.status == 200 and posted.headers["Cache-Control"] == "no-store"
    body = await posted.json()
    assert body["audio_url"] is None and body["content_type"] == "audio/mpeg"
    assert len(base64.b64decode(body["audio_base64"])) > 2000
    await nothing_kept(client, SECRET_TEXT)
    assert SECRET_TEXT not in logged(caplog)
    assert quote(SECRET_TEXT) not in logged(caplog)
    # A repeat is no hit: nothing was kept to find.
    again = await client.get("/tts.wav", params={"text": SECRET_TEXT}, headers=header)
    assert again.headers["X-Cache"] == "MISS"


def remembered(fragment: str) -> bool:
    """Whether any memo of the frontend or the engines holds a piece of text with it."""
    return any(fragment in str(key) for memo in every_memo() for key in memo.keys())


async def test_no_memo_of_the_frontend_or_the_engines_keeps_a_no_store_text(
    client: Client,
) -> None:
    # Texts said nowhere else in the tests: the engine and its memos live for the session.
    private, kept = "您的取件柜门在东侧第三排。", "本店的营业厅位于西门北侧。"
    header = {"Cache-Control": "no-store"}
    assert (await client.get("/tts.wav", params={"text": private}, headers=header)).status == 200
    streamed = await client.get("/tts/stream.wav", params={"text": private, "cache": "no-store"})
    assert streamed.status == 200 and len(await streamed.read()) > 24000
    posted = await client.post("/api/tts", json={"text": private, "cache": "no-store"})
    assert posted.status == 200
    ssml = f"<speak>{private}<break time=\"300ms\"/>请稍候。</speak>"
    assert (await client.get("/tts.ulaw", params={"text": ssml}, headers=header)).status == 200
    assert not remembered("柜门在东侧")
    assert (await client.get("/tts.wav", params={"text": kept})).status == 200
    assert remembered("营业厅位于西门")  # what is kept is remembered, as before


async def test_a_no_store_request_for_a_stored_text_is_answered_from_the_store(
    client: Client,
) -> None:
    kept = await client.get("/tts.wav", params={"text": "查询余额请按一。"})
    assert kept.headers["Cache-Control"] == "public, max-age=86400"
    private = await client.get("/tts.wav", params={"text": "查询余额请按一。"},
                               headers={"Cache-Control": "no-store"})
    assert private.headers["X-Cache"] == "HIT" and private.headers["Cache-Control"] == "no-store"
    assert await private.read() == await kept.read()


async def test_a_signed_no_store_url_is_not_remembered(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    secret = "signing-secret-for-no-store-tests"
    client = await aiohttp_client(create_app(settings_for(
        tmp_path, access="keys", url_signing_secret=(secret,)), engines=[engine]))
    target = f"/tts.ulaw?text={quote(SECRET_TEXT)}&cache=no-store"
    signed = sign(target, secret, 3600, bucket=1)
    answer = await client.get(signed)
    assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
    remembered = client.app[ACCESS].callers._signed
    assert not any(quote(SECRET_TEXT) in t for t in remembered)
    kept = sign(f"/tts.ulaw?text={quote('请稍候。')}", secret, 3600, bucket=1)
    assert (await client.get(kept)).status == 200 and len(remembered) == 1  # the others are
    await nothing_kept_of(client, SECRET_TEXT)


async def test_the_official_openai_client_sends_no_store(
    aiohttp_server: Callable[..., Awaitable[TestServer]], engine: FastSpeech2Engine,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    app = create_app(settings_for(tmp_path), engines=[engine])
    server = await aiohttp_server(app)

    def speak() -> tuple[str, bytes]:
        client = openai.OpenAI(base_url=str(server.make_url("/v1")), api_key="unused",
                               max_retries=0)
        response = client.audio.speech.with_raw_response.create(
            model="tts-1", voice="alloy", input=SECRET_TEXT, response_format="wav",
            extra_headers={"Cache-Control": "no-store"},
        )
        return response.headers["cache-control"], response.parse().read()

    cache_control, data = await asyncio.get_running_loop().run_in_executor(None, speak)
    assert cache_control == "no-store" and decoded_seconds(data) > 1.5
    store = app[STORE]
    await store.settled()
    assert await asyncio.to_thread(store.index.all_phrases) == []
    assert await asyncio.to_thread(lambda: list(store.files.walk())) == []
    assert SECRET_TEXT not in logged(caplog)


async def test_ttl_bounds_max_age_and_is_bounded_itself(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(settings_for(tmp_path, tts_ttl=3000, max_ttl=7200),
                                             engines=[engine]))
    default = await client.get("/tts.ulaw", params={"text": "您好，欢迎致电。"})
    assert default.status == 200 and 1024 <= max_age(default) <= 2048  # ≤ 3000 s left
    short = await client.get("/tts.ulaw", params={"text": "查询余额请按一。", "ttl": "100"})
    assert short.status == 200 and 32 <= max_age(short) <= 64
    key = short.headers["ETag"].strip('"').split("-")[0]
    prompt = await client.get(f"/prompts/{key}.ulaw")
    assert "immutable" not in prompt.headers["Cache-Control"] and max_age(prompt) <= 100
    streamed = await client.get("/tts/stream.ulaw", params={"text": "人工服务请按零。", "ttl": "100"})
    assert streamed.headers["X-Cache"] == "MISS" and 32 <= max_age(streamed) <= 64
    await streamed.read()
    again = await client.get("/tts.ulaw", params={"text": "查询余额请按一。", "ttl": "100"})
    assert again.headers["X-Cache"] == "HIT" and max_age(again) <= 64  # the URL memo too
    for bad in ("0", "7201", "soon"):
        refused = await client.get("/tts.ulaw", params={"text": "请稍候。", "ttl": bad})
        assert refused.status == 422 and (await refused.json())["field"] == "ttl"
    posted = await client.post("/api/tts", json={"text": "请稍候。", "ttl": 50})
    assert posted.status == 200
    row = await client.app[STORE].lookup((await posted.json())["key"])
    assert row is not None and row.expires is not None


async def test_refresh_needs_the_admin_scope_and_makes_the_prompt_again(client: Client) -> None:
    url = "/tts.ulaw"
    first = await client.get(url, params={"text": "请稍候。"})
    refused = await client.get(url, params={"text": "请稍候。", "refresh": "1"})
    assert refused.status == 403 and (await refused.json())["field"] == "refresh"
    made = await client.get(url, params={"text": "请稍候。", "refresh": "1"}, headers=admin())
    assert made.status == 200 and made.headers["X-Cache"] == "MISS"
    # The real voice says the same again: the same bytes, so the ETag (it names them) holds.
    assert made.headers["ETag"] == first.headers["ETag"]
    both = await client.get(url, params={"text": "请稍候。", "refresh": "1", "cache": "no-store"},
                            headers=admin())
    assert both.status == 400 and (await both.json())["field"] == "refresh"
    posted = await client.post("/api/tts", json={"text": "请稍候。", "refresh": True})
    assert posted.status == 403


async def test_delete_admin_cache_purges_by_each_selector(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    phrases = tmp_path / "ivr-menu.yaml"
    await asyncio.to_thread(phrases.write_text, PHRASES, "utf-8")
    client = await aiohttp_client(create_app(settings_for(tmp_path, phrases=(phrases,)),
                                             engines=[engine]))
    store = client.app[STORE]
    warmed = await client.post("/admin/warm", headers=admin())
    job = (await warmed.json())["job_id"]
    for _ in range(600):
        state = (await (await client.get(f"/admin/warm/{job}", headers=admin())).json())["state"]
        if state == "done":
            break
        await asyncio.sleep(0.1)
    assert state == "done"
    texts = {"key": "查询余额请按一。", "text": SECRET_TEXT, "old": "感谢您的来电。"}
    keys = {}
    for name, text in texts.items():
        answer = await client.get("/tts.ulaw", params={"text": text})
        keys[name] = answer.headers["ETag"].strip('"').split("-")[0]
    assert (await client.get("/tts.ulaw", params={"text": SECRET_TEXT})).headers["X-Cache"] == "HIT"
    listed = await (await client.get("/admin/phrases", headers=admin())).json()
    texts_listed = {p["phrase_id"]: p["text"] for p in listed["phrases"]}
    assert texts_listed == {"welcome": "您好，欢迎致电。", "agent": "人工服务请按零。", None: None}
    assert {p["text_length"] for p in listed["phrases"] if p["phrase_id"] is None} == {8, 18, 7}

    async def purge(how: str, **selectors: Any) -> dict[str, Any]:
        if how == "query":
            answer = await client.delete("/admin/cache", params=selectors, headers=admin())
        else:
            answer = await client.delete("/admin/cache", json=selectors, headers=admin())
        assert answer.status == 200, await answer.text()
        return dict(await answer.json())

    assert (await client.delete("/admin/cache", json={"key": keys["key"]})).status == 401
    gone = await purge("json", key=keys["key"])
    assert gone["prompts"] == 1 and gone["bytes"] > 8000
    assert (await purge("json", text=SECRET_TEXT))["prompts"] == 1
    # The URL memo let the text's URL go: a repeat is made again.
    again = await client.get("/tts.ulaw", params={"text": SECRET_TEXT})
    assert again.headers["X-Cache"] == "MISS"
    assert (await purge("json", text=SECRET_TEXT, voice="baker", speed=1.0))["prompts"] == 1
    assert (await purge("query", tag="greeting"))["prompts"] == 1
    assert await store.hit(phrase_id="welcome") is None
    assert (await purge("query", phrase_file="ivr-menu.yaml"))["prompts"] == 1
    assert (await purge("json", older_than=0))["prompts"] == 1  # "old", the last one left
    assert await asyncio.to_thread(store.index.all_phrases) == []
    assert await asyncio.to_thread(lambda: list(store.files.walk())) == []
    for body, field in (({}, None), ({"key": "zz"}, "key"), ({"older_than": -1}, "older_than"),
                        ({"phrase_file": "other.yaml"}, "phrase_file"), ({"colour": 1}, "colour")):
        refused = await client.delete("/admin/cache", json=body, headers=admin())
        assert 400 <= refused.status < 500 and (await refused.json()).get("field") == field
    both = await client.delete("/admin/cache?tag=a", json={"tag": "b"}, headers=admin())
    assert both.status == 400
