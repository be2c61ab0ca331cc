"""Every API front meets the one store: a sentence said through one front is a hit through
every other, and fronts asking for it at once share one synthesis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import dashscope
import nls
import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from dashscope.audio.tts_v2 import AudioFormat, SpeechSynthesizer

from config import Settings
from gateway import create_app
from gateway.state import VOICES
from synth.fastspeech2 import FastSpeech2Engine
from tests.support import PATIENCE, until
from tests.test_dashscope_front import closed

SENTENCE = "请问还有什么可以帮您？"


@pytest.fixture
async def server(
    aiohttp_server: Callable[..., Awaitable[TestServer]], engine: FastSpeech2Engine,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> TestServer:
    served = await aiohttp_server(create_app(Settings(data_dir=tmp_path / "data"), engines=[engine]))
    await until(lambda: VOICES in served.app)
    monkeypatch.setattr(dashscope, "base_websocket_api_url",
                        str(served.make_url("/api-ws/v1/inference")).replace("http", "ws", 1))
    monkeypatch.setattr(dashscope, "api_key", "any")
    return served


def syntheses(server: TestServer) -> int:
    return sum(w.completed for w in server.app[VOICES].workers)


def dashscope_call(text: str) -> bytes:
    synthesizer = SpeechSynthesizer(model="cosyvoice-v2", voice="longxiaochun_v2",
                                    format=AudioFormat.PCM_16000HZ_MONO_16BIT)
    audio = synthesizer.call(text)
    closed(synthesizer)
    assert isinstance(audio, bytes)
    return audio


def aliyun_websocket(url: str, text: str) -> bytes:
    audio = bytearray()
    done = threading.Event()
    synthesizer = nls.NlsSpeechSynthesizer(
        url=url, token="any", appkey="app", on_data=lambda data, *_: audio.extend(data),
        on_completed=lambda *_: done.set(), on_error=lambda *_: done.set())
    synthesizer.start(text, voice="xiaoyun", aformat="pcm", sample_rate=16000)
    assert done.wait(PATIENCE)
    return bytes(audio)


async def test_a_sentence_said_through_one_front_is_a_hit_through_every_other(server: TestServer) -> None:
    loop = asyncio.get_running_loop()
    async with ClientSession() as session:
        async with session.post(server.make_url("/stream/v1/tts"), json={
                "appkey": "app", "token": "any", "text": SENTENCE, "format": "pcm",
                "sample_rate": 16000}) as answer:
            assert answer.status == 200 and answer.headers["Content-Type"] == "audio/mpeg"
            aliyun = await answer.read()
        assert syntheses(server) == 1
        async with session.request("GET", server.make_url("/inference_sft"),
                                   data={"tts_text": SENTENCE, "spk_id": "中文女"}) as answer:
            assert answer.status == 200 and answer.headers["X-Cache"] == "HIT"
            cosyvoice = await answer.read()
        async with session.get(server.make_url("/tts.wav"), params={"text": SENTENCE}) as answer:
            assert answer.headers["X-Cache"] == "HIT"
    dashscope_audio = await loop.run_in_executor(None, dashscope_call, SENTENCE)
    websocket = await loop.run_in_executor(
        None, aliyun_websocket, str(server.make_url("/ws/v1")).replace("http", "ws", 1), SENTENCE)
    assert syntheses(server) == 1  # one synthesis for five fronts
    # The same audio everywhere, at the rate each asked for.
    assert aliyun == dashscope_audio == websocket
    assert len(cosyvoice) // 2 == pytest.approx(len(aliyun) // 2 * 22050 / 16000, abs=2)
    assert np.abs(np.frombuffer(aliyun, dtype="<i2")).max() > 1000


async def test_fronts_asking_at_once_share_one_synthesis(server: TestServer) -> None:
    loop = asyncio.get_running_loop()
    url = str(server.make_url("/ws/v1")).replace("http", "ws", 1)

    async def rest() -> bytes:
        async with ClientSession() as session, session.post(server.make_url("/stream/v1/tts"), json={
                "token": "any", "text": SENTENCE, "format": "pcm", "sample_rate": 16000}) as answer:
            assert answer.status == 200
            return await answer.read()

    heard = await asyncio.gather(
        rest(), loop.run_in_executor(None, dashscope_call, SENTENCE),
        loop.run_in_executor(None, aliyun_websocket, url, SENTENCE), rest())
    assert syntheses(server) == 1
    assert len({len(h) for h in heard}) == 1
