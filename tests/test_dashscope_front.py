"""DashScope's CosyVoice WebSocket front, driven by DashScope's own SDK (`dashscope` on PyPI)
against a live gateway: whole texts, texts in pieces, formats, hits, one synthesis for
concurrent tasks, and every failure as DashScope's `task-failed` event."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import dashscope
import numpy as np
import pytest
import soundfile as sf
from aiohttp import ClientSession, WSMsgType
from aiohttp.test_utils import TestServer
from dashscope.audio.tts_v2 import AudioFormat, ResultCallback, SpeechSynthesizer
from dashscope.common.error import RequestFailure

from config import Settings
from gateway import create_app
from gateway.dashscope_task import MODELS
from gateway.state import CREDENTIALS, STORE, VOICES
from synth.engine import Pcm
from synth.fastspeech2 import FastSpeech2Engine
from tests.support import PATIENCE, WrappedEngine, until
from tests.test_textstream import REPLY, pieces_of

PATH = "/api-ws/v1/inference"
GREETING = "您好，欢迎致电客户服务中心。"
KEY = "dashscope-test-key"


async def in_thread(fn: Callable[[], Any]) -> Any:
    """DashScope's SDK is synchronous (and reads files as it starts): beside the loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


class Recorder(ResultCallback):
    """Everything the SDK hands its callback."""

    def __init__(self) -> None:
        self.opened = self.completed = self.closed = 0
        self.events: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.audio = bytearray()
        self.done = threading.Event()

    def on_open(self) -> None:
        self.opened += 1

    def on_event(self, message: str) -> None:
        self.events.append(json.loads(message))

    def on_data(self, data: bytes) -> None:
        self.audio += data

    def on_complete(self) -> None:
        self.completed += 1
        self.done.set()

    def on_error(self, message: Any) -> None:
        self.errors.append(json.loads(message))
        self.done.set()

    def on_close(self) -> None:
        self.closed += 1


def synthesizer(callback: Recorder | None = None, *, model: str = "cosyvoice-v2",
                voice: str = "longxiaochun_v2", fmt: AudioFormat = AudioFormat.PCM_24000HZ_MONO_16BIT,
                **kw: Any) -> SpeechSynthesizer:
    return SpeechSynthesizer(model=model, voice=voice, format=fmt, callback=callback, **kw)


def closed(synth: SpeechSynthesizer) -> None:
    """Wait for the SDK to close its connection after a task that ended through the callback
    (it does so on a thread of its own). A connection left to the server to close at the end
    of a test leaks its socket: websocket-client skips closing it after the server's close."""
    assert synth._stopped.wait(PATIENCE)


def speak_whole(text: str, **kw: Any) -> bytes:
    audio = synthesizer(**kw).call(text)
    assert isinstance(audio, bytes)
    return audio


def speak_pieces(pieces: list[str], **kw: Any) -> Recorder:
    recorder = Recorder()
    synth = synthesizer(recorder, **kw)
    for piece in pieces:
        synth.streaming_call(piece)
    synth.streaming_complete()
    return recorder


def decode_mp3(data: bytes, rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    """An MP3 stream's samples, read by ffmpeg (libsndfile takes a stream without a length
    header for as long as its first frame's bit rate implies), after ffprobe confirms its rate."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate",
                            "-of", "json", "-"], input=data, capture_output=True, check=True)
    (stream,) = json.loads(probe.stdout)["streams"]
    assert (stream["codec_name"], int(stream["sample_rate"])) == ("mp3", rate)
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-f", "mp3", "-i", "-", "-f", "s16le", "-"],
                             input=data, capture_output=True, check=True)
    return samples(decoded.stdout)


def samples(data: bytes) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.frombuffer(data, dtype="<i2")


@pytest.fixture
async def server(
    aiohttp_server: Callable[..., Awaitable[TestServer]], engine: FastSpeech2Engine, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> TestServer:
    settings = Settings(data_dir=tmp_path / "data", dashscope_voices="longwan_v2=baker")
    served = await aiohttp_server(create_app(settings, engines=[engine]))
    await until(lambda: VOICES in served.app)
    # The two lines a user changes.
    monkeypatch.setattr(dashscope, "base_websocket_api_url", str(served.make_url(PATH)).replace("http", "ws", 1))
    monkeypatch.setattr(dashscope, "api_key", KEY)
    return served


async def tts_pcm(server: TestServer, text: str) -> tuple[bytes, str]:
    async with ClientSession() as session, session.get(server.make_url("/tts.pcm"), params={"text": text}) as r:
        assert r.status == 200
        return await r.read(), r.headers["X-Cache"]


async def test_a_whole_text_is_the_whole_texts_audio(server: TestServer) -> None:
    audio = await in_thread(lambda: speak_whole(REPLY))
    whole, _ = await tts_pcm(server, REPLY)
    assert len(audio) == len(whole) and np.array_equal(samples(audio), samples(whole))
    # Spoken sentence by sentence: each of them is stored, under its own /tts key.
    for sentence in ("您好，这里是客户服务中心。", "请问还有什么可以帮您？"):
        assert (await tts_pcm(server, sentence))[1] == "HIT"


async def test_text_in_pieces_is_spoken_as_the_whole_text(server: TestServer) -> None:
    pieces = pieces_of(REPLY)  # 2 to 8 characters: 3821 comes in two, 5,260.50 in three
    assert {"本期应还5", ",26", "0.50元。请问"} <= set(pieces) and all(2 <= len(p) <= 8 for p in pieces)
    recorder = await in_thread(lambda: speak_pieces(pieces))
    assert (recorder.opened, recorder.completed, recorder.closed, recorder.errors) == (1, 1, 1, [])
    whole, _ = await tts_pcm(server, REPLY)
    assert np.array_equal(samples(bytes(recorder.audio)), samples(whole))
    kinds = [(e["payload"]["output"]["type"], e["payload"]["output"]["sentence"]["index"])
             for e in recorder.events]
    assert kinds == [("sentence-begin", 0), ("sentence-end", 0), ("sentence-begin", 1),
                     ("sentence-end", 1), ("sentence-begin", 2), ("sentence-end", 2)]
    assert recorder.events[2]["payload"]["output"]["original_text"] == \
        "您尾号3821的信用卡本期应还5,260.50元。"


@pytest.mark.parametrize(("fmt", "rate", "kind"), [
    (AudioFormat.WAV_8000HZ_MONO_16BIT, 8000, "WAV"),
    (AudioFormat.WAV_48000HZ_MONO_16BIT, 48000, "WAV"),
    (AudioFormat.MP3_22050HZ_MONO_256KBPS, 22050, "MP3"),
    (AudioFormat.DEFAULT, 22050, "MP3"),  # DashScope's own default: mp3 at 22050 Hz
])
async def test_audio_comes_at_the_asked_rate_and_format(
    server: TestServer, fmt: AudioFormat, rate: int, kind: str,
) -> None:
    text = "您好。请稍候。"
    audio = await in_thread(lambda: speak_whole(text, fmt=fmt))
    if kind == "WAV":
        assert audio[:4] == b"RIFF" and audio.count(b"RIFF") == 1  # one header, then samples
        info = await asyncio.to_thread(sf.info, io.BytesIO(audio))
        assert info.samplerate == rate
        decoded = samples(audio[44:])
        slack = 0.0
    else:
        decoded = await asyncio.to_thread(decode_mp3, audio, rate)
        slack = 4 * 576 / rate  # one MP3 encoder's delay and padding, and its first (empty) frame
    pcm, _ = await tts_pcm(server, text)
    assert 0 <= len(decoded) / rate - len(pcm) / 2 / 24000 <= slack + 0.01
    raw = await in_thread(lambda: speak_whole(text, fmt=AudioFormat.PCM_16000HZ_MONO_16BIT))
    assert abs(len(raw) / 2 / 16000 - len(pcm) / 2 / 24000) < 0.01


async def test_stored_sentences_are_hits(server: TestServer) -> None:
    store = server.app[STORE]
    assert (await tts_pcm(server, "请问还有什么可以帮您？"))[1] == "MISS"
    before = store.stats()
    recorder = await in_thread(lambda: speak_pieces(pieces_of("好的，已为您办理。请问还有什么可以帮您？")))
    assert recorder.errors == []
    after = store.stats()
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 1)
    # A later reply made of sentences said before: nothing to synthesize.
    await in_thread(lambda: speak_whole("请问还有什么可以帮您？好的，已为您办理。"))
    again = store.stats()
    assert (again.hits - after.hits, again.misses - after.misses) == (2, 0)


class HeldEngine(WrappedEngine):
    """The real engine, whose syntheses wait at a gate before their first audio."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        super().__init__(engine)
        self.gate = threading.Event()
        self.started = 0

    def stream(self, text: str, **kw: Any) -> Iterator[Pcm]:
        self.started += 1
        assert self.gate.wait(PATIENCE)
        yield from self._engine.stream(text, **kw)


async def test_two_tasks_saying_one_sentence_at_once_make_one_synthesis(
    aiohttp_server: Callable[..., Awaitable[TestServer]], engine: FastSpeech2Engine, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = HeldEngine(engine)
    served = await aiohttp_server(create_app(Settings(data_dir=tmp_path / "data"), engines=[held]))  # type: ignore[list-item]
    await until(lambda: VOICES in served.app)
    monkeypatch.setattr(dashscope, "base_websocket_api_url", str(served.make_url(PATH)).replace("http", "ws", 1))
    monkeypatch.setattr(dashscope, "api_key", KEY)
    store = served.app[STORE]
    try:
        first = asyncio.ensure_future(in_thread(lambda: speak_whole(GREETING)))
        second = asyncio.ensure_future(in_thread(lambda: speak_whole(GREETING)))
        # Both tasks follow the one synthesis before it makes any audio.
        await until(lambda: store.stats().misses == 2, what="both tasks waiting for the sentence")
    finally:
        held.gate.set()
    one, two = await first, await second
    assert one == two and len(one) > 24000
    assert held.started == 1


async def test_the_async_variants_report_through_the_callback(server: TestServer) -> None:
    recorder = Recorder()
    whole = await in_thread(lambda: synthesizer(recorder))
    assert await in_thread(lambda: whole.call(GREETING)) is None  # with a callback: at once
    await in_thread(lambda: closed(whole))
    assert recorder.completed == 1 and len(recorder.audio) > 24000
    pieces = Recorder()
    streamed = await in_thread(lambda: synthesizer(pieces))

    def stream() -> None:
        for piece in pieces_of(GREETING):
            streamed.streaming_call(piece)
        streamed.async_streaming_complete()

    await in_thread(stream)
    await in_thread(lambda: closed(streamed))
    assert pieces.completed == 1 and bytes(pieces.audio) == bytes(recorder.audio)


async def test_the_url_with_its_trailing_slash_and_every_model_name(server: TestServer) -> None:
    dashscope.base_websocket_api_url += "/"
    for model in MODELS:
        audio = await in_thread(lambda m=model: speak_whole("您好。", model=m, voice="longwan"))
        assert len(audio) > 4800, model
    # longwan_v2 is mapped to baker by the settings; an unmapped name speaks the default voice.
    mapped = await in_thread(lambda: speak_whole("您好。", voice="longwan_v2"))
    assert mapped == await in_thread(lambda: speak_whole("您好。", voice="baker"))


async def test_rate_pitch_and_volume_map_to_ours(server: TestServer) -> None:
    normal = samples(await in_thread(lambda: speak_whole(GREETING)))
    fast = samples(await in_thread(lambda: speak_whole(GREETING, speech_rate=2.0)))
    assert len(fast) < 0.7 * len(normal)
    quiet = samples(await in_thread(lambda: speak_whole(GREETING, volume=25)))
    assert np.abs(quiet).max() < 0.7 * np.abs(normal).max()
    # pitch 2 is beyond the voice's 1.4: said at 1.4, not refused.
    high = await in_thread(lambda: speak_whole(GREETING, pitch_rate=2.0))
    assert high == await in_thread(lambda: speak_whole(GREETING, pitch_rate=1.4))


# --- failures: DashScope's task-failed, as its SDK hands it to on_error -----------------------

FAILED_HEADER = {"task_id", "event", "error_code", "error_message", "attributes"}


def assert_failed_shape(event: dict[str, Any], code: str) -> None:
    """The contract of task-failed, from DashScope's published server events."""
    assert set(event) == {"header", "payload"} and event["payload"] == {}
    header = event["header"]
    assert set(header) == FAILED_HEADER and header["event"] == "task-failed"
    assert header["error_code"] == code, header
    assert isinstance(header["error_message"], str) and header["error_message"]
    assert "Traceback" not in header["error_message"]


def failing(text: str = GREETING, **kw: Any) -> tuple[Recorder, RequestFailure | None]:
    """A call with a callback: what on_error got, and what call() raised (a task refused at
    run-task is raised as well; one refused later only reaches on_error)."""
    recorder = Recorder()
    synth = synthesizer(recorder, **kw)
    try:
        synth.call(text)
    except RequestFailure as raised:
        return recorder, raised
    assert recorder.done.wait(PATIENCE)
    closed(synth)
    return recorder, None


@pytest.mark.parametrize(("kw", "code", "named"), [
    ({"model": "cosyvoice-v9"}, "ModelNotFound", "cosyvoice-v9"),
    ({"voice": "nobody"}, "InvalidParameter", "nobody"),
    ({"speech_rate": 3.0}, "InvalidParameter", "rate"),
    ({"pitch_rate": 0.1}, "InvalidParameter", "pitch"),
    ({"volume": 101}, "InvalidParameter", "volume"),
    ({"fmt": AudioFormat.OGG_OPUS_16KHZ_MONO_16KBPS}, "InvalidParameter", "opus"),
])
async def test_a_refused_task_reaches_on_error_and_raises(
    server: TestServer, kw: dict[str, Any], code: str, named: str,
) -> None:
    recorder, raised = await in_thread(lambda: failing(**kw))
    (event,) = recorder.errors
    assert_failed_shape(event, code)
    assert named in event["header"]["error_message"]
    assert raised is not None and raised.name == code
    assert recorder.opened == 0 and recorder.audio == b""


async def test_a_text_past_the_limit_fails_its_task(server: TestServer) -> None:
    recorder, _ = await in_thread(lambda: failing("好" * 1025))
    (event,) = recorder.errors
    assert_failed_shape(event, "BadRequest.TooLarge")
    with pytest.raises(RequestFailure) as raised:  # without a callback, call() raises it
        await in_thread(lambda: speak_whole("好" * 1025))
    assert raised.value.name == "BadRequest.TooLarge"


async def test_keys_and_rate_limits_are_dashscopes_errors(
    aiohttp_server: Callable[..., Awaitable[TestServer]], engine: FastSpeech2Engine, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", access="keys", rate_limit_misses=1,
                        rate_limit_burst=1)
    served = await aiohttp_server(create_app(settings, engines=[engine]))
    await until(lambda: VOICES in served.app)
    monkeypatch.setattr(dashscope, "base_websocket_api_url", str(served.make_url(PATH)).replace("http", "ws", 1))
    monkeypatch.setattr(dashscope, "api_key", "not-a-key")
    recorder, raised = await in_thread(failing)
    assert_failed_shape(recorder.errors[0], "InvalidApiKey")
    assert raised is not None and raised.name == "InvalidApiKey"
    _, secret = await served.app[CREDENTIALS].create("voicebot", "synthesize")
    monkeypatch.setattr(dashscope, "api_key", secret)
    # One miss a minute: the first sentence is spoken, the second is refused.
    recorder, raised = await in_thread(lambda: failing("您好。请稍候。"))
    assert raised is None and recorder.opened == 1 and len(recorder.audio) > 4800
    assert_failed_shape(recorder.errors[0], "Throttling.RateQuota")
    _, player = await served.app[CREDENTIALS].create("player", "play")
    monkeypatch.setattr(dashscope, "api_key", player)
    recorder, _ = await in_thread(lambda: failing("这句话没有存过。"))
    assert_failed_shape(recorder.errors[0], "AccessDenied")


class Raw:
    """The protocol without the SDK: what a client in another language sends."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, action: str, task_id: str, payload: Any) -> None:
        await self.ws.send_json({"header": {"action": action, "task_id": task_id,
                                            "streaming": "duplex"}, "payload": payload})

    async def event(self) -> dict[str, Any]:
        """The next event, skipping audio."""
        while True:
            message = await self.ws.receive(timeout=PATIENCE)
            if message.type == WSMsgType.TEXT:
                return dict(json.loads(message.data))
            assert message.type == WSMsgType.BINARY, message

    async def run(self, task_id: str, **parameters: Any) -> dict[str, Any]:
        await self.send("run-task", task_id, {
            "model": "cosyvoice-v1", "task_group": "audio", "task": "tts",
            "function": "SpeechSynthesizer", "input": {},
            "parameters": {"voice": "longxiaochun", "format": "pcm", "sample_rate": 16000,
                           **parameters}})
        return await self.event()


RUN = {"model": "cosyvoice-v1", "parameters": {"voice": "longxiaochun"}}


async def test_malformed_messages_fail_without_closing_the_connection(server: TestServer) -> None:
    async with ClientSession() as session, session.ws_connect(
        server.make_url(PATH), headers={"Authorization": f"Bearer {KEY}"},
    ) as ws:
        raw = Raw(ws)
        cases: list[tuple[Callable[[], Awaitable[None]], str]] = [
            (lambda: ws.send_str("{not json"), "InvalidParameter"),
            (lambda: ws.send_json({"payload": {}}), "InvalidParameter"),
            (lambda: ws.send_json([1, 2]), "InvalidParameter"),
            (lambda: ws.send_bytes(b"\x00\x01"), "InvalidParameter"),
            (lambda: ws.send_str(json.dumps({"header": {"task_id": "t"}, "payload": "x" * (70 << 10)})),
             "BadRequest.TooLarge"),
            (lambda: raw.send("stop-task", "t1", {}), "InvalidParameter"),
            (lambda: raw.send("continue-task", "t2", {"input": {"text": "您好"}}), "InvalidParameter"),
            (lambda: raw.send("run-task", "t3", {"parameters": {"voice": "longxiaochun"}}),
             "BadRequest.EmptyModel"),
            (lambda: raw.send("run-task", "t4", {"model": "cosyvoice-v1"}), "BadRequest.EmptyParameters"),
            (lambda: raw.send("run-task", "t5", {**RUN, "parameters": {"voice": "longxiaochun",
                                                                       "sample_rate": 11025}}),
             "InvalidParameter"),
            (lambda: raw.send("run-task", "t6", {**RUN, "parameters": {"voice": "longxiaochun",
                                                                       "format": "flac"}}),
             "InvalidParameter"),
            (lambda: raw.send("run-task", "t7", {**RUN, "parameters": {"voice": "longxiaochun",
                                                                       "volume": "loud"}}),
             "InvalidParameter"),
            (lambda: raw.send("run-task", "t8", {**RUN, "task": "asr"}), "InvalidParameter"),
        ]
        for send, code in cases:
            await send()
            assert_failed_shape(await raw.event(), code)
        # Still open, and a task runs: a second run-task meanwhile fails alone.
        assert (await raw.run("good"))["header"]["event"] == "task-started"
        assert_failed_shape(await raw.run("another"), "InvalidParameter")
        await raw.send("continue-task", "good", {"input": {"text": "您好", "flush": True}})
        events = [await raw.event() for _ in range(2)]  # flushed: said before the text ends
        assert [e["payload"]["output"]["type"] for e in events] == ["sentence-begin", "sentence-end"]
        await raw.send("continue-task", "good", {"input": {"text": 42}})
        assert_failed_shape(await raw.event(), "InvalidParameter")
        # What a failed task's client still sends is ignored; the next task is answered.
        await raw.send("finish-task", "good", {"input": {}})
        assert (await raw.run("next"))["header"]["event"] == "task-started"
        await raw.send("continue-task", "next", {"input": {"text": "这是一段很长的回复，"}})
        await raw.send("finish-task", "next", {"input": {"directive": "cancel"}})
        done = await raw.event()
        assert done["header"]["event"] == "task-finished", done
        assert set(done["payload"]) == {"output", "usage"}
        # Text after finish-task fails the task (what it was saying stops).
        assert (await raw.run("late"))["header"]["event"] == "task-started"
        await raw.send("continue-task", "late", {"input": {"text": "您好。请稍候。"}})
        await raw.send("finish-task", "late", {"input": {}})
        await raw.send("continue-task", "late", {"input": {"text": "还有"}})
        while (event := await raw.event())["header"]["event"] == "result-generated":
            pass
        assert_failed_shape(event, "InvalidParameter")


async def test_a_plain_http_request_is_told_to_open_a_websocket(server: TestServer) -> None:
    async with ClientSession() as session, session.get(server.make_url(PATH)) as response:
        assert response.status == 400
        assert (await response.json())["code"] == "InvalidParameter"


async def test_the_front_lists_its_voice_names(server: TestServer) -> None:
    async with ClientSession() as session, session.get(server.make_url("/api/voices")) as response:
        front = (await response.json())["fronts"]["dashscope"]
    assert front["routes"] == [PATH]
    assert front["voices"]["longwan_v2"] == "baker" and front["voices"]["longxiaochun"] == "baker"


async def test_call_says_an_ssml_document_whole(server: TestServer) -> None:
    document = '<speak>请稍候，<break time="500ms"/>正在为您转接人工服务。</speak>'
    audio = await in_thread(lambda: speak_whole(document))  # call() sends enable_ssml
    whole, cached = await tts_pcm(server, document)
    assert cached == "HIT" and audio == whole
    broken = await in_thread(lambda: failing("<speak>请稍候<break/"))
    assert_failed_shape(broken[0].errors[0], "InvalidParameter")


async def test_an_idle_connection_is_closed_when_the_gateway_stops(server: TestServer) -> None:
    async with ClientSession() as session, session.ws_connect(server.make_url(PATH)) as ws:
        stopping = asyncio.ensure_future(server.close())
        message = await ws.receive(timeout=PATIENCE)
        assert (message.type, message.data) == (WSMsgType.CLOSE, 1001)  # going away
        await stopping


async def test_an_mp3_task_cancelled_midway_releases_its_encoder(server: TestServer) -> None:
    async with ClientSession() as session, session.ws_connect(server.make_url(PATH)) as ws:
        raw = Raw(ws)
        assert (await raw.run("mp3", format="mp3", sample_rate=16000))["header"]["event"] == "task-started"
        await raw.send("continue-task", "mp3", {"input": {"text": REPLY}})
        while (await ws.receive(timeout=PATIENCE)).type != WSMsgType.BINARY:
            pass  # until its first audio
        await raw.send("finish-task", "mp3", {"input": {"directive": "cancel"}})
        while (event := await raw.event())["header"]["event"] == "result-generated":
            pass
        assert event["header"]["event"] == "task-finished"
    gc.collect()  # an encoder left unreleased would fail in its finalizer, which pytest reports
