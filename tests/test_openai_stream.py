"""The OpenAI-compatible endpoint with the official client, and streaming first audio."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
import soundfile as sf
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer

from config import Settings
from gateway import create_app
from gateway.state import STORE, VOICES
from synth.engine import Pcm
from synth.fastspeech2 import FastSpeech2Engine

Client = TestClient[Any, web.Application]
LONG = ("您好，欢迎致电客户服务中心。查询账户余额请按一，办理信用卡业务请按二。"
        "挂失请按三，转人工服务请按零。如需重新收听，请按星号键；返回上一级菜单，请按井号键。"
        "感谢您的来电，祝您生活愉快。")


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(**{"data_dir": tmp_path / "data", **overrides})


@pytest.fixture
async def server(
    aiohttp_server: Callable[..., Awaitable[TestServer]], engine: FastSpeech2Engine, tmp_path: Path
) -> TestServer:
    app = create_app(settings_for(tmp_path, openai_voices="nova=baker"), engines=[engine])
    return await aiohttp_server(app)


async def in_thread(fn: Callable[[], Any]) -> Any:
    """The official client is synchronous; run it beside the server's loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


async def test_the_official_openai_client_writes_files_that_decode(server: TestServer, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=str(server.make_url("/v1")), api_key="unused", max_retries=0)
    for response_format, rate in (("mp3", 24000), ("wav", 24000), ("flac", 24000), ("opus", 24000)):
        out = tmp_path / f"speech.{response_format}"

        def create(fmt: str = response_format, path: Path = out) -> None:
            with client.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input="您好，欢迎致电。", response_format=fmt,  # type: ignore[arg-type]
            ) as response:
                response.stream_to_file(path)

        await in_thread(create)
        audio, got = sf.read(out, dtype="int16")
        assert got == rate and len(audio) / got > 1.0, response_format
    pcm = await in_thread(lambda: client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="nova", input="您好。", response_format="pcm", speed=1.2,
    ).content)
    assert len(pcm) % 2 == 0 and len(pcm) / 2 / 24000 > 0.3
    models = await in_thread(lambda: [m.id for m in client.models.list()])
    assert "tts-1" in models


async def test_openai_errors_come_in_openai_shape_naming_the_param(server: TestServer) -> None:
    client = openai.OpenAI(base_url=str(server.make_url("/v1")), api_key="unused", max_retries=0)
    for kwargs, param in (
        ({"voice": "nobody"}, "voice"),
        ({"voice": "alloy", "speed": 4.0}, "speed"),
        ({"voice": "alloy", "response_format": "aac"}, "response_format"),
    ):
        with pytest.raises(openai.APIStatusError) as err:
            await in_thread(lambda kw=kwargs: client.audio.speech.create(model="tts-1", input="您好。", **kw))
        assert err.value.status_code == 422
        assert err.value.body["param"] == param  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await in_thread(lambda: client.audio.speech.create(model="dall-e-3", voice="alloy", input="您好。"))


async def test_openai_speech_is_served_from_the_same_store(server: TestServer) -> None:
    async with ClientSession() as session:
        first = await session.get(server.make_url("/tts.mp3"), params={"text": "请稍候。"})
        assert first.headers["X-Cache"] == "MISS"
        second = await session.post(server.make_url("/v1/audio/speech"), json={
            "model": "tts-1", "voice": "alloy", "input": "请稍候。", "response_format": "mp3"})
        assert second.headers["X-Cache"] == "HIT" and await second.read() == await first.read()


class GatedEngine:
    """The real engine, streaming; it holds before the second sentence until released."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        self._engine = engine
        self.name, self.version, self.sample_rate = engine.name, engine.version, engine.sample_rate
        self.gate = threading.Event()
        self.sentences = 0

    def voices(self) -> Any:
        return self._engine.voices()

    def setting_ranges(self) -> Any:
        return self._engine.setting_ranges()

    def synthesize(self, text: str, **kw: Any) -> Pcm:
        return Pcm.concat(list(self.stream(text, **kw)))

    def stream(self, text: str, **kw: Any) -> Iterator[Pcm]:
        for i, pcm in enumerate(self._engine.stream(text, **kw)):
            if i == 1:
                self.gate.wait(timeout=30)
            self.sentences += 1
            yield pcm


@pytest.fixture
async def gated(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], engine: FastSpeech2Engine,
    tmp_path: Path,
) -> AsyncIterator[tuple[Client, GatedEngine]]:
    gated_engine = GatedEngine(engine)
    client = await aiohttp_client(create_app(settings_for(tmp_path), engines=[gated_engine]))  # type: ignore[list-item]
    yield client, gated_engine
    gated_engine.gate.set()


async def test_first_audio_arrives_before_synthesis_finishes_and_lands_in_the_cache(
    gated: tuple[Client, GatedEngine], engine: FastSpeech2Engine
) -> None:
    client, gated_engine = gated
    response = await client.get("/tts/stream.pcm", params={"text": LONG})
    assert response.status == 200 and response.headers["X-Cache"] == "MISS"
    assert "Content-Length" not in response.headers  # chunked
    first = await response.content.readany()
    # The engine is still held before its second sentence: this audio came first.
    assert len(first) > 2 * 24000 * 0.5 and gated_engine.sentences == 1
    gated_engine.gate.set()
    rest = await response.read()
    streamed = first + rest
    whole = engine.synthesize(LONG)
    assert streamed == whole.samples.astype("<i2").tobytes()
    cached = await client.get("/tts.pcm", params={"text": LONG})
    assert cached.headers["X-Cache"] == "HIT" and await cached.read() == streamed


async def test_a_client_that_leaves_early_does_not_poison_the_cache(
    gated: tuple[Client, GatedEngine],
) -> None:
    client, gated_engine = gated
    response = await client.get("/tts/stream.ulaw", params={"text": LONG})
    await response.content.readany()
    response.close()  # hang up mid-stream
    gated_engine.gate.set()
    store = client.app[STORE]
    speech = client.app[VOICES].request(LONG, voice=None, style=None, speed=1, pitch=1, volume=1)
    for _ in range(50):  # the server notices the disconnect and stops
        await asyncio.sleep(0.05)
        if not client.app[VOICES].workers[0].busy:
            break
    assert await store.find(speech) is None
    full = await client.get("/tts.ulaw", params={"text": LONG})
    assert full.headers["X-Cache"] == "MISS"
    assert abs(len(await full.read()) / 8000 - float(full.headers["X-Audio-Duration"])) < 0.02


async def test_streamed_wav_has_an_open_ended_header_and_cached_text_streams_whole(
    gated: tuple[Client, GatedEngine],
) -> None:
    client, gated_engine = gated
    gated_engine.gate.set()
    response = await client.get("/tts/stream.wav", params={"text": "您好。请稍候。", "rate": "16000"})
    data = await response.read()
    assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff" and data[36:44] == b"data\xff\xff\xff\xff"
    samples = np.frombuffer(data[44:], dtype="<i2")
    assert len(samples) / 16000 > 1.0
    again = await client.get("/tts/stream.wav", params={"text": "您好。请稍候。", "rate": "16000"})
    assert again.headers["X-Cache"] == "HIT" and "Content-Length" in again.headers
    audio, rate = sf.read(io.BytesIO(await again.read()), dtype="int16")
    assert rate == 16000 and abs(len(audio) - len(samples)) < 160
    refused = await client.get("/tts/stream.ogg", params={"text": "您好。"})
    assert refused.status == 422 and (await refused.json())["field"] == "format"
