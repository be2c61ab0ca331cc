"""Aliyun NLS speech synthesis over WebSocket (/ws/v1) against a live gateway: the official
SDK (`nls.NlsSpeechSynthesizer`, PyPI 1.0.2) with only its URL changed, and the
streaming-text task (FlowingSpeechSynthesizer) contract-tested with a client that sends what
the SDK's public source sends (tests/nls_flowing.py); every failure a TaskFailed event."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nls
import numpy as np
import pytest
import soundfile as sf
from aiohttp import ClientSession, WSMsgType

from gateway.state import CREDENTIALS, VOICES
from synth.fastspeech2 import FastSpeech2Engine
from tests.live import Server, live
from tests.nls_flowing import FlowingClient
from tests.support import PATIENCE, until

TEXT = "您好，这里是客户服务中心。请问有什么可以帮您？"
REPLY = ["您好，这里", "是客户服务", "中心。您尾号38", "21的信用卡本期应还5,2", "60.50元。请问还有", "什么可以帮您？"]


async def in_thread(fn: Callable[[], Any]) -> Any:
    """The SDK is synchronous: it runs beside the server's loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


Make = Callable[..., Awaitable[Server]]
# Open access (any token speaks), small limits for the cases past them.
DEFAULTS = {"access": "open", "max_text_length": 200, "max_body_bytes": 4096}


@pytest.fixture
async def make(engine: FastSpeech2Engine, tmp_path: Path) -> AsyncIterator[Make]:
    """Gateways served as `huiyin serve` serves them (its connections: a WebSocket's frames
    pass them untouched), with these settings."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(**overrides: Any) -> Server:
            return await stack.enter_async_context(
                live(engine, tmp_path / "data", **{**DEFAULTS, **overrides}))

        yield start


@pytest.fixture
async def server(make: Make) -> Server:
    return await make()


def url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def ws_url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/ws/v1"


class Synthesis:
    """One `NlsSpeechSynthesizer.start`, as the SDK's docs show it: what its callbacks got."""

    def __init__(self, url: str, token: str = "any-token", **start: Any) -> None:
        self.frames: list[bytes] = []
        self.completed: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.closed = threading.Event()
        self.synthesizer = nls.NlsSpeechSynthesizer(
            url=url, token=token, appkey="project-1",
            on_data=lambda data, *args: self.frames.append(data),
            on_completed=lambda message, *args: setattr(self, "completed", json.loads(message)),
            on_error=lambda message, *args: setattr(self, "error", json.loads(message)),
            on_close=lambda *args: self.closed.set(),
        )
        self.start = start

    def run(self, text: str) -> Synthesis:
        self.synthesizer.start(text, **self.start)
        # The SDK closes its connection itself after SynthesisCompleted; after TaskFailed
        # its user does, as here.
        self.synthesizer.shutdown()
        assert self.closed.wait(PATIENCE), "the connection did not close"
        return self

    @property
    def audio(self) -> bytes:
        return b"".join(self.frames)


async def synthesize(server: Server, text: str, **start: Any) -> Synthesis:
    token = start.pop("token", "any-token")
    return await in_thread(lambda: Synthesis(ws_url(server), token, **start).run(text))  # type: ignore[no-any-return]


async def test_the_official_sdk_speaks_wav_pcm_and_mp3_at_the_asked_rate(server: Server) -> None:
    wav = await synthesize(server, TEXT, voice="xiaoyun", aformat="wav", sample_rate=16000)
    assert wav.error is None and wav.completed is not None
    assert wav.completed["header"]["name"] == "SynthesisCompleted"
    assert wav.completed["header"]["status"] == 20000000
    samples, rate = sf.read(io.BytesIO(wav.audio), dtype="int16")
    assert rate == 16000 and 2.0 < len(samples) / rate < 8.0
    assert wav.audio[:4] == b"RIFF" and wav.audio.count(b"RIFF") == 1  # one header
    # The same text again is stored, sent whole: pcm is its samples without a header (a
    # stream resamples sentence by sentence, the store the whole: equal in length).
    pcm = await synthesize(server, TEXT, aformat="pcm", sample_rate=16000)
    assert pcm.error is None and len(pcm.frames) == 1
    assert abs(len(pcm.audio) // 2 - len(samples)) <= 8
    mp3 = await synthesize(server, "请稍候，正在为您转接。", aformat="mp3", sample_rate=8000,
                           volume=80, speech_rate=100, pitch_rate=-100)
    decoded, rate = await in_thread(lambda: sf.read(io.BytesIO(mp3.audio), dtype="int16"))
    assert mp3.error is None and rate == 8000 and len(decoded) / rate > 1.0


async def test_audio_streams_as_it_is_made_and_a_repeat_anywhere_is_a_hit(server: Server) -> None:
    (worker,) = server.app[VOICES].workers
    first = await synthesize(server, TEXT, aformat="pcm", sample_rate=24000)
    assert first.error is None and len(first.frames) >= 2  # sentence by sentence
    await until(lambda: worker.completed >= 1, what="the synthesis counted")
    assert worker.completed == 1
    again = await synthesize(server, TEXT, aformat="wav", sample_rate=24000)
    assert len(again.frames) == 1 and worker.completed == 1  # stored: sent whole
    async with ClientSession() as session:
        for path, params in (("/tts.wav", {"text": TEXT}),
                             ("/stream/v1/tts", {"text": TEXT, "format": "mp3"})):
            answer = await session.get(url(server, path), params=params)
            assert answer.status == 200 and answer.headers["X-Cache"] == "HIT"
        whole = await (await session.get(url(server, "/tts.pcm"), params={"text": TEXT})).read()
    assert whole == first.audio  # the stream is the stored audio, sample for sample
    both = await asyncio.gather(*(synthesize(server, "两个连接同时请求同一句话。", aformat="pcm")
                                  for _ in range(2)))
    assert both[0].audio == both[1].audio
    await until(lambda: worker.completed >= 2, what="the synthesis counted")
    assert worker.completed == 2


@pytest.mark.parametrize(("start", "text", "status", "named"), [
    ({"voice": "nobody"}, TEXT, 40000003, "voice"),
    ({"sample_rate": 44100}, TEXT, 40000003, "sample_rate"),
    ({"ex": {"format": "ogg"}}, TEXT, 40000003, "format"),
    ({"ex": {"volume": 120}}, TEXT, 40000003, "volume"),
    ({"ex": {"speed": 2}}, TEXT, 40000002, "speed"),
    ({}, "好" * 201, 40000003, "text"),
    ({}, "   ", 40000003, "text"),
])
async def test_bad_parameters_arrive_as_task_failed_in_on_error(
    server: Server, start: dict[str, Any], text: str, status: int, named: str,
) -> None:
    done = await synthesize(server, text, **start)
    assert done.completed is None and done.frames == []
    assert done.error is not None, "on_error was not called"
    header = done.error["header"]
    assert header["name"] == "TaskFailed" and header["status"] == status
    assert named in header["status_text"] and header["status_text"].startswith("Gateway:")


async def test_under_access_keys_the_handshake_token_is_an_api_key(
    make: Make,
) -> None:
    server = await make(access="keys")
    _, secret = await server.app[CREDENTIALS].create("ivr", "synthesize")
    refused = await synthesize(server, TEXT, token="not-a-key")
    assert refused.error is not None and refused.error["header"]["status"] == 40000001
    spoken = await synthesize(server, TEXT, token=secret, aformat="wav")
    assert spoken.error is None and spoken.audio[:4] == b"RIFF"


async def raw_task(server: Server, *messages: str | bytes) -> dict[str, Any]:
    """Send messages as they are (no SDK) and read until the task's last event."""
    async with ClientSession() as session, session.ws_connect(
            ws_url(server), headers={"X-NLS-Token": "any"}) as ws:
        for message in messages:
            await (ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message))
        async for received in ws:
            if received.type == WSMsgType.TEXT:
                event = json.loads(received.data)
                if event["header"]["name"] in ("TaskFailed", "SynthesisCompleted"):
                    await ws.close()  # the server waits for its client to close first
                    return dict(event["header"])
    raise AssertionError("the connection closed without a last event")


def start_message(**payload: Any) -> str:
    return json.dumps({"header": {"namespace": "SpeechSynthesizer", "name": "StartSynthesis",
                                  "task_id": "a" * 32, "message_id": "b" * 32, "appkey": "k"},
                       "payload": {"text": "您好。", **payload}}, ensure_ascii=False)


@pytest.mark.parametrize(("messages", "status"), [
    (['{"header": {"name": "StartSyn'], 40000002),  # not JSON
    (["[1, 2, 3]"], 40000002),
    (['{"header": {"namespace": "SpeechSynthesizer"}}'], 40000002),
    ([b"\x00\x01binary"], 40000002),
    ([json.dumps({"header": {"namespace": "SpeechSynthesizer", "name": "StopSynthesis"}})], 40000002),
    ([json.dumps({"header": {"namespace": "Elsewhere", "name": "StartSynthesis"}})], 40000002),
    ([start_message(text="好" * 2000)], 40000002),  # a message past max_body_bytes
    ([start_message(sample_rate=True)], 40000003),
    ([start_message(enable_subtitle=True)], 20000000),  # taken and ignored
])
async def test_messages_the_protocol_refuses_end_in_task_failed(
    server: Server, messages: list[str | bytes], status: int,
) -> None:
    header = await raw_task(server, *messages)
    assert header["status"] == status, header
    if status != 20000000:
        assert header["name"] == "TaskFailed" and header["namespace"] == "Default"
        assert header["status_text"].startswith("Gateway:")


# The streaming-text task (FlowingSpeechSynthesizer), as the SDK's public source speaks it.

async def flowing(server: Server, pieces: list[str], token: str = "any-token",
                  **start: Any) -> FlowingClient:
    def run() -> FlowingClient:
        client = FlowingClient(ws_url(server), token)
        if client.start(**start):
            for piece in pieces:
                client.send(piece)
            client.stop()
        else:
            client.wait()
        return client

    return await in_thread(run)  # type: ignore[no-any-return]


def sentences(client: FlowingClient) -> list[str]:
    return [p["subtitles"][0]["text"] for name, _, p in client.events if name == "SentenceEnd"]


async def test_a_reply_streamed_in_pieces_is_spoken_sentence_by_sentence(server: Server) -> None:
    client = await flowing(server, REPLY, aformat="wav", sample_rate=16000)
    assert client.failure() is None
    said = sentences(client)
    assert said == ["您好，这里是客户服务中心。", "您尾号3821的信用卡本期应还5,260.50元。",
                    "请问还有什么可以帮您？"]
    names = [n for n in client.order if n != "audio"]
    assert names[0] == "SynthesisStarted" and names[-1] == "SynthesisCompleted"
    assert names[1:-1] == ["SentenceBegin", "SentenceSynthesis", "SentenceEnd"] * 3
    # Each sentence's audio comes between its SentenceBegin and its SentenceSynthesis.
    for begin in (i for i, n in enumerate(client.order) if n == "SentenceBegin"):
        assert client.order[begin + 1] == "audio"
    started = next(p for n, _, p in client.events if n == "SynthesisStarted")
    assert started["session_id"] == client.session_id
    samples, rate = sf.read(io.BytesIO(client.audio), dtype="int16")
    assert rate == 16000 and len(samples) / rate > 5.0
    ends = [p["subtitles"][0] for n, _, p in client.events if n == "SentenceEnd"]
    assert ends[-1]["end_time"] == pytest.approx(1000 * len(samples) / rate, abs=2)
    assert all(a["end_time"] < b["begin_time"] for a, b in zip(ends, ends[1:], strict=False))
    # Each sentence is stored under the key /tts gives it.
    async with ClientSession() as session:
        for sentence in said:
            answer = await session.get(url(server, "/tts.wav"), params={"text": sentence})
            assert answer.headers["X-Cache"] == "HIT"


async def test_stored_sentences_are_hits_and_settings_keep_their_keys(server: Server) -> None:
    (worker,) = server.app[VOICES].workers
    async with ClientSession() as session:
        first = await session.get(url(server, "/tts.wav"), params={
            "text": "请问还有什么可以帮您？", "volume": "2", "speed": "0.5"})
        assert first.headers["X-Cache"] == "MISS"
    made = worker.completed
    # volumn (sic) 100 is volume 2, speech_rate -500 half speed: the stored sentence is a hit.
    client = await flowing(server, ["好的，已为您办理。请问还有", "什么可以帮您？"], aformat="pcm",
                           sample_rate=24000, volume=100, speech_rate=-500)
    assert client.failure() is None and len(sentences(client)) == 2
    await until(lambda: worker.completed > made, what="the synthesis counted")
    assert worker.completed - made == 1  # only the new sentence was synthesized
    pcm = np.frombuffer(client.audio, dtype="<i2")
    assert len(pcm) / 24000 > 3.0


@pytest.mark.parametrize(("start", "pieces", "status", "named"), [
    ({"voice": "nobody"}, [], 40000003, "voice"),
    ({"sample_rate": 11025}, [], 40000003, "sample_rate"),
    ({"aformat": "opus"}, [], 40000003, "format"),
    ({"bogus": 1}, [], 40000002, "bogus"),
    ({}, ["好" * 201], 40000003, "text"),
    ({}, ["。" * 200] * 11, 40000003, "longer than 2000"),  # the session's bound
])
async def test_flowing_errors_are_task_failed(
    server: Server, start: dict[str, Any], pieces: list[str], status: int, named: str,
) -> None:
    client = await flowing(server, pieces, **start)
    failure = client.failure()
    assert failure is not None and failure["status"] == status
    assert named in failure["status_text"]
    assert "SynthesisCompleted" not in client.order


async def test_flowing_under_access_keys(
    make: Make,
) -> None:
    server = await make(access="keys")
    _, secret = await server.app[CREDENTIALS].create("bot", "synthesize")
    refused = await flowing(server, ["您好。"], token="hy_not_a_key")
    assert refused.failure() is not None and refused.failure()["status"] == 40000001  # type: ignore[index]
    spoken = await flowing(server, ["您好。"], token=secret)
    assert spoken.failure() is None and sentences(spoken) == ["您好。"]
