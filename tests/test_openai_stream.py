"""The OpenAI-compatible endpoint with the official client, and streaming first audio."""

from __future__ import annotations

import asyncio
import io
import logging
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
from synth.fastspeech2 import HEAD_FRAMES, HOP, FastSpeech2Engine
from tests.support import PATIENCE, WrappedEngine, until

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


@pytest.fixture
def client(server: TestServer) -> openai.OpenAI:
    """The official client; built outside the event loop, as it reads files while it starts."""
    return openai.OpenAI(base_url=str(server.make_url("/v1")), api_key="unused", max_retries=0)


async def test_the_official_openai_client_writes_files_that_decode(client: openai.OpenAI, tmp_path: Path) -> None:
    for response_format, rate in (("mp3", 24000), ("wav", 24000), ("flac", 24000), ("opus", 24000)):
        out = tmp_path / f"speech.{response_format}"

        def create(fmt: str = response_format, path: Path = out) -> None:
            with client.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input="您好，欢迎致电。", response_format=fmt,  # type: ignore[arg-type]
            ) as response:
                response.stream_to_file(path)

        await in_thread(create)
        audio, got = await asyncio.to_thread(sf.read, out, dtype="int16")
        assert got == rate and len(audio) / got > 1.0, response_format
    pcm = await in_thread(lambda: client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="nova", input="您好。", response_format="pcm", speed=1.2,
    ).content)
    assert len(pcm) % 2 == 0 and len(pcm) / 2 / 24000 > 0.3
    models = await in_thread(lambda: [m.id for m in client.models.list()])
    assert "tts-1" in models


async def test_openai_errors_come_in_openai_shape_naming_the_param(client: openai.OpenAI) -> None:
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


class GatedEngine(WrappedEngine):
    """The real engine, streaming; it holds before the second sentence until released."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        super().__init__(engine)
        self.gate = threading.Event()
        self.held = threading.Event()  # the engine waits at the gate
        self.sentences = 0
        self.closed = threading.Event()  # a stream was closed, finished or not

    def synthesize(self, text: str, **kw: Any) -> Pcm:
        return Pcm.concat(list(self.stream(text, **kw)))

    def stream(self, text: str, **kw: Any) -> Iterator[Pcm]:
        try:
            for i, pcm in enumerate(self._engine.stream(text, **kw)):
                if i == 1:
                    self.held.set()
                    assert self.gate.wait(PATIENCE)
                self.sentences += 1
                yield pcm
        finally:
            self.closed.set()


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
    # The first sentence's opening, while the engine is held before its next chunk.
    first = await response.content.readexactly(2 * HEAD_FRAMES * HOP)
    assert gated_engine.sentences == 1
    gated_engine.gate.set()
    rest = await response.read()
    streamed = first + rest
    whole = await asyncio.to_thread(engine.synthesize, LONG)
    assert streamed == whole.samples.astype("<i2").tobytes()
    cached = await client.get("/tts.pcm", params={"text": LONG})
    assert cached.headers["X-Cache"] == "HIT" and await cached.read() == streamed


async def test_a_client_that_hangs_up_early_stops_the_synthesis_and_stores_nothing(
    gated: tuple[Client, GatedEngine], caplog: pytest.LogCaptureFixture,
) -> None:
    client, gated_engine = gated
    caplog.set_level(logging.INFO, logger="huiyin.access")
    (worker,) = client.app[VOICES].workers
    response = await client.get("/tts/stream.ulaw", params={"text": LONG})
    await response.content.readany()
    await until(gated_engine.held.is_set, what="the engine held before its second sentence")
    response.close()  # hang up while the engine is held there

    def request_ended() -> bool:
        return any(getattr(r, "fields", {}).get("route") == "/tts/stream.{ext}" for r in caplog.records)

    await until(request_ended, what="the gateway ending the stream's request")
    gated_engine.gate.set()
    await until(lambda: not worker.busy, what="the engine freed")
    # The engine finished the sentence it was making when the client left, and no other.
    made = gated_engine.sentences
    assert gated_engine.closed.is_set() and made == 2
    assert worker.completed == 0  # the stream was abandoned, not finished
    speech = client.app[VOICES].request(LONG, voice=None, style=None, speed=1, pitch=1, volume=1)
    assert await client.app[STORE].hit(await client.app[STORE].key_for(speech)) is None
    full = await client.get("/tts.ulaw", params={"text": LONG})
    assert full.headers["X-Cache"] == "MISS"
    assert abs(len(await full.read()) / 8000 - float(full.headers["X-Audio-Duration"])) < 0.02
    assert gated_engine.sentences - made > made  # the stream left most of the text unsaid


async def test_streamed_wav_has_an_open_ended_header_and_cached_text_streams_whole(
    gated: tuple[Client, GatedEngine],
) -> None:
    client, gated_engine = gated
    gated_engine.gate.set()
    response = await client.get("/tts/stream.wav", params={"text": "您好。请稍候。", "rate": "16000"})
    data = await response.read()
    assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff" and data[36:44] == b"data\xff\xff\xff\xff"
    # Asterisk's name for 16 kHz WAV, streamed or whole (audio/wav is 8 kHz to it).
    assert response.headers["Content-Type"] == "audio/x-wav;codec=pcm;bit=16;rate=16000"
    samples = np.frombuffer(data[44:], dtype="<i2")
    assert len(samples) / 16000 > 1.0
    again = await client.get("/tts/stream.wav", params={"text": "您好。请稍候。", "rate": "16000"})
    assert again.headers["X-Cache"] == "HIT" and "Content-Length" in again.headers
    assert again.headers["Content-Type"] == response.headers["Content-Type"]
    audio, rate = sf.read(io.BytesIO(await again.read()), dtype="int16")
    assert rate == 16000 and abs(len(audio) - len(samples)) < 160
    refused = await client.get("/tts/stream.ogg", params={"text": "您好。"})
    assert refused.status == 422 and (await refused.json())["field"] == "format"
