"""No-store through every API front, as its own client says it: a field beside the front's
own parameters (the OpenAI SDK's extra_body, Aliyun's body, query and the SDK's `ex`,
DashScope's additional_params, CosyVoice's form fields and Lite's JSON). Each such request
is spoken with the real voice and leaves nothing behind: no row, no file, no memo of its
text, no line of it in the logs; a value the field does not take is each protocol's own
error, naming the field."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from typing import Any

import nls
import numpy as np
import openai
import pytest
import soundfile as sf
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from dashscope.audio.tts_v2 import AudioFormat, SpeechSynthesizer

from gateway.state import STORE
from tests import test_fronts_share
from tests.nls_flowing import FlowingClient
from tests.support import PATIENCE
from tests.test_customer_routes import remembered
from tests.test_dashscope_front import Recorder, closed

NO_STORE = {"cache": "no-store"}
# One text per front, said nowhere else in the tests (the engine's memos live for the session).
TEXTS = {
    "openai": "您尾号六二一九的储蓄卡今日入账八百元。",
    "aliyun_post": "您预约的维修师傅将于明早九点上门。",
    "aliyun_get": "您申请的退款已原路退回至支付账户。",
    "aliyun_ws": "您的快递已放入小区北门的丰巢柜。",
    "aliyun_flowing": "您本月的话费账单共计七十八元。",
    "dashscope": "您在本店的会员积分还剩两千三百分。",
    "cosyvoice": "您购买的机票已改签至周五上午航班。",
    "lite": "您的体检报告已可在公众号内查看。",
}


# The gateway with the real voice, and DashScope's SDK pointed at it.
server = test_fronts_share.server


# The clients' own loggers (their SDKs log what they send and receive at debug level).
CLIENT_LOGGERS = ("openai", "httpx", "httpcore", "nls", "dashscope", "websocket")


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record of the gateway's side, message and structured fields, as one text."""
    return "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')} {r.exc_text or ''}"
                     for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS))


def loud(pcm: bytes) -> bool:
    return len(pcm) > 16000 and int(np.abs(np.frombuffer(pcm, dtype="<i2")).max()) > 1000


def ws_url(server: TestServer, path: str) -> str:
    return str(server.make_url(path)).replace("http", "ws", 1)


def openai_speech(server: TestServer, text: str) -> tuple[str, bytes]:
    client = openai.OpenAI(base_url=str(server.make_url("/v1")), api_key="unused", max_retries=0)
    response = client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input=text, response_format="wav", extra_body=NO_STORE)
    return response.headers["cache-control"], response.parse().read()


def aliyun_websocket(server: TestServer, text: str) -> bytes:
    audio = bytearray()
    done = threading.Event()
    synthesizer = nls.NlsSpeechSynthesizer(
        url=ws_url(server, "/ws/v1"), token="any", appkey="app",
        on_data=lambda data, *_: audio.extend(data), on_completed=lambda *_: done.set(),
        on_error=lambda *_: done.set())
    synthesizer.start(text, voice="xiaoyun", aformat="pcm", sample_rate=16000, ex=NO_STORE)
    assert done.wait(PATIENCE)
    return bytes(audio)


def aliyun_flowing(server: TestServer, text: str) -> bytes:
    client = FlowingClient(ws_url(server, "/ws/v1"), "any")
    assert client.start(aformat="pcm", sample_rate=16000, **NO_STORE)
    for piece in (text[:6], text[6:]):
        client.send(piece)
    client.stop()
    assert client.failure() is None
    return client.audio


def dashscope_speech(text: str) -> bytes:
    synthesizer = SpeechSynthesizer(model="cosyvoice-v2", voice="longxiaochun_v2",
                                    format=AudioFormat.PCM_16000HZ_MONO_16BIT,
                                    additional_params=dict(NO_STORE))  # the SDK adds to it
    audio = synthesizer.call(text)
    closed(synthesizer)
    assert isinstance(audio, bytes)
    return audio


async def test_every_front_asked_no_store_speaks_and_keeps_nothing(
    server: TestServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # even the debug access log
    loop = asyncio.get_running_loop()
    heard: dict[str, bytes] = {}
    cache_control, wav = await loop.run_in_executor(None, openai_speech, server, TEXTS["openai"])
    assert cache_control == "no-store"
    heard["openai"] = sf.read(io.BytesIO(wav), dtype="int16")[0].tobytes()
    async with ClientSession() as session:
        async with session.post(server.make_url("/stream/v1/tts"), json={
                "token": "any", "text": TEXTS["aliyun_post"], "format": "pcm",
                "sample_rate": 16000, **NO_STORE}) as answer:
            assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
            heard["aliyun_post"] = await answer.read()
        async with session.get(server.make_url("/stream/v1/tts"), params={
                "token": "any", "text": TEXTS["aliyun_get"], "format": "pcm",
                "sample_rate": "16000", **NO_STORE}) as answer:
            assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
            heard["aliyun_get"] = await answer.read()
        async with session.request("GET", server.make_url("/inference_sft"), data={
                "tts_text": TEXTS["cosyvoice"], "spk_id": "中文女", **NO_STORE}) as answer:
            assert answer.status == 200, await answer.text()
            heard["cosyvoice"] = await answer.read()
        async with session.post(server.make_url("/tts"), json={
                "text": TEXTS["lite"], **NO_STORE}) as answer:
            assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
            heard["lite"] = sf.read(io.BytesIO(await answer.read()), dtype="int16")[0].tobytes()
    heard["aliyun_ws"] = await loop.run_in_executor(None, aliyun_websocket, server,
                                                    TEXTS["aliyun_ws"])
    heard["aliyun_flowing"] = await loop.run_in_executor(None, aliyun_flowing, server,
                                                         TEXTS["aliyun_flowing"])
    heard["dashscope"] = await loop.run_in_executor(None, dashscope_speech, TEXTS["dashscope"])
    assert sorted(heard) == sorted(TEXTS)
    assert all(loud(pcm) for pcm in heard.values()), {k: len(v) for k, v in heard.items()}
    store = server.app[STORE]
    await store.settled()
    assert await asyncio.to_thread(store.index.all_phrases) == []
    assert await asyncio.to_thread(lambda: list(store.files.walk())) == []
    assert len(store._rows) == 0 and len(store._encodings._hot) == 0
    assert store.stats().misses == len(TEXTS)  # each was spoken, none was a hit
    for text in TEXTS.values():
        assert not remembered(text[2:9]), text
        assert text not in logged(caplog)
        assert not any(r.text == text for r in store._keying._keys)


async def test_a_kept_text_asked_again_no_store_through_a_front_is_a_hit(server: TestServer) -> None:
    text = "本店营业时间为每天上午九点至晚上九点。"
    async with ClientSession() as session:
        async with session.post(server.make_url("/stream/v1/tts"), json={
                "token": "any", "text": text, "format": "pcm", "sample_rate": 16000}) as answer:
            kept = await answer.read()
            assert answer.headers["X-Cache"] == "MISS"
        async with session.post(server.make_url("/stream/v1/tts"), json={
                "token": "any", "text": text, "format": "pcm", "sample_rate": 16000,
                **NO_STORE}) as answer:
            assert answer.headers["X-Cache"] == "HIT"
            assert answer.headers["Cache-Control"] == "no-store"
            assert await answer.read() == kept


async def test_a_value_the_field_does_not_take_is_each_protocols_own_error(
    server: TestServer,
) -> None:
    async with ClientSession() as session:
        async with session.post(server.make_url("/stream/v1/tts"), json={
                "token": "any", "text": "您好。", "cache": "forever"}) as answer:
            body = await answer.json()
            assert answer.status == 422 and "cache" in body["message"] and body["result"] == ""
        async with session.request("GET", server.make_url("/inference_sft"), data={
                "tts_text": "您好。", "spk_id": "中文女", "ttl": "0"}) as answer:
            assert answer.status == 422
            (detail,) = (await answer.json())["detail"]
            assert detail["loc"][-1] == "ttl"
        async with session.post(server.make_url("/v1/audio/speech"), json={
                "model": "tts-1", "voice": "alloy", "input": "您好。",
                "refresh": 1}) as answer:
            assert answer.status == 403 and (await answer.json())["error"]["param"] == "refresh"

    def refused() -> dict[str, Any]:
        recorder = Recorder()
        synthesizer = SpeechSynthesizer(model="cosyvoice-v2", voice="longxiaochun_v2",
                                        callback=recorder, additional_params={"cache": "forever"})
        try:
            synthesizer.call("您好。")
        except Exception:  # the SDK raises a task refused at run-task, after on_error
            pass
        assert recorder.done.wait(PATIENCE)
        (event,) = recorder.errors
        return dict(event["header"])

    header = await asyncio.get_running_loop().run_in_executor(None, refused)
    assert header["error_code"] == "InvalidParameter" and "cache" in header["error_message"]
    assert server.app[STORE].stats().misses == 0
