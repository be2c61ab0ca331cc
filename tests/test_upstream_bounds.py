"""An upstream's call and answer are bounded: the backend's `timeout` bounds the whole call
(an upstream that drips its head or its body a byte at a time included, and retries with
their backoff), and its answer is bounded in bytes as it arrives, in sample rate, and in
length for its text. Anything past a bound is the backend's failure: a JSON error naming
it (or its fallback voice), counted by its breaker, never stored."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config import Settings
from config.backends import BackendConfigError, parse_backends
from gateway.state import STORE, VOICES
from synth.engine import UpstreamTimeoutError, UpstreamUnavailableError
from synth.fastspeech2 import FastSpeech2Engine
from synth.remote.client import Caller
from tests.support import free_port, until
from tests.test_backends import (
    Client,
    MakeClient,
    app_client,
    openai_backend,
    serving,
    settings_for,
    take_request,
    tts,
)

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
DRIP = 0.2  # seconds between two bytes of a dripping upstream


class Scripted:
    """An upstream on a loopback port: reads each request whole, then answers as the test
    says; notes each connection the gateway dropped before the answer was over."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls = 0
        self.dropped = 0
        self.connections: list[tuple[asyncio.Task[Any], asyncio.StreamWriter]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await take_request(self.connections, reader, writer)
        self.calls += 1
        try:
            await self.answer(reader, writer)
        except ConnectionError:
            self.dropped += 1
            return
        if reader.at_eof():
            self.dropped += 1
        writer.close()


@contextlib.asynccontextmanager
async def scripted(answer: Answer) -> AsyncIterator[tuple[Scripted, str]]:
    state = Scripted(answer)
    async with serving(state) as url:
        yield state, url


def wav_head(rate: int, data_bytes: int) -> bytes:
    """A 16-bit mono PCM WAV header declaring `rate` and `data_bytes` of samples."""
    return (b"RIFF" + struct.pack("<I", (36 + data_bytes) & 0xFFFFFFFF) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, (rate * 2) & 0xFFFFFFFF, 2, 16)
            + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF))


def tone(rate: int, seconds: float) -> bytes:
    """A quiet 440 Hz tone as 16-bit PCM."""
    times = np.arange(int(rate * seconds)) / rate
    return (3000 * np.sin(2 * np.pi * 440 * times)).astype("<i2").tobytes()


def whole(body: bytes) -> Answer:
    """An answer that is `body`, as a WAV, all at once."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
    return answer


async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, start: bytes) -> None:
    """Send `start`, then a byte every DRIP seconds until the gateway hangs up."""
    writer.write(start)
    while not reader.at_eof():
        await writer.drain()
        await asyncio.sleep(DRIP)  # the upstream's own pace, not the test's wait
        writer.write(b"\0")


async def drip_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The status line, then one header that never ends."""
    await drip(reader, writer, b"HTTP/1.1 200 OK\r\nX-Slow: ")


async def drip_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Whole headers, then a WAV whose bytes come one at a time."""
    await drip(reader, writer, b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n"
                               b"Content-Length: 100044\r\n\r\n" + wav_head(16000, 100000))


def endless(declared: bool) -> Answer:
    """A WAV declaring 300 MB of samples, sent for as long as the gateway reads it, with
    its length in the headers or without (the body then ends when the connection does)."""
    size = 300 * 1024 * 1024
    length = f"Content-Length: {size + 44}\r\n".encode() if declared else b""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n" + length
                     + b"Connection: close\r\n\r\n" + wav_head(16000, size))
        piece = bytes(64 * 1024)
        while not reader.at_eof():
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0)
    return answer


def stats(client: Client) -> dict[str, Any]:
    (backend,) = client.app[VOICES].backends()
    return backend


async def stored(client: Client, text: str) -> bool:
    asked = client.app[VOICES].request(text, voice="nova", style=None, speed=1.0, pitch=1.0,
                                       volume=1.0)
    await client.app[STORE].settled()
    return await client.app[STORE].hit(await client.app[STORE].key_for(asked)) is not None


@pytest.mark.parametrize("answer", [drip_head, drip_body], ids=["head", "body"])
async def test_a_dripping_upstream_is_cut_off_at_the_timeout_and_the_fallback_speaks(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, answer: Answer,
) -> None:
    async with scripted(answer) as (upstream, url):
        client = await app_client(aiohttp_client, engine, settings_for(
            tmp_path, openai_backend(url, breaker_failures=1, breaker_cooldown=600)))
        r = await client.get(tts("请稍候。", "nova"))
        assert r.status == 200 and r.headers["X-Huiyin-Fallback"] == "baker"
        await until(lambda: upstream.dropped == 1, what="the gateway hanging up")
        figures = stats(client)
        assert figures["errors"] == 1 and figures["breaker_opened"] == 1
        assert not await stored(client, "请稍候。")


async def test_without_a_fallback_a_dripping_upstream_is_a_504_naming_the_backend(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path,
) -> None:
    async with scripted(drip_body) as (_, url):
        client = await app_client(aiohttp_client, engine, settings_for(
            tmp_path, openai_backend(url, fallback=None)))
        r = await client.get(tts("请稍候。", "nova"))
        assert r.status == 504
        body = await r.json()
        assert body["code"] == "upstream_timeout" and "cloud" in body["message"]
        assert stats(client)["errors"] == 1


@pytest.mark.parametrize("answer", [drip_head, drip_body], ids=["head", "body"])
async def test_a_call_and_a_stream_each_end_within_the_timeout(answer: Answer) -> None:
    async with scripted(answer) as (upstream, url):
        call = await asyncio.to_thread(Caller, "slow", url, timeout=0.5, retries=0,
                                       max_bytes=1 << 20)
        try:
            with pytest.raises(UpstreamTimeoutError, match="backend 'slow'"):
                await asyncio.to_thread(call.request, "POST", "/v1/audio/speech", json={})
            with pytest.raises(UpstreamTimeoutError, match="backend 'slow'"):
                await asyncio.to_thread(lambda: list(call.stream("POST", "/inference_sft")))
        finally:
            await asyncio.to_thread(call.close)
        await until(lambda: upstream.dropped == 2, what="both calls hanging up")


def test_retries_and_their_backoff_stay_within_the_timeout() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the backoff moves the clock, not the test
        slept.append(seconds)
        now[0] += seconds

    call = Caller("gone", f"http://127.0.0.1:{free_port()}", timeout=1.0, retries=5,
                  max_bytes=1 << 20, sleep=sleep, clock=lambda: now[0])
    try:
        with pytest.raises(UpstreamUnavailableError, match="backend 'gone'"):
            call.request("POST", "/synthesize", json={})
    finally:
        call.close()
    # Five backoffs would take 1.55 s at the least: those that do not fit are not waited.
    assert sum(slept) < 1.0 and len(slept) < 5


def bad_answers() -> list[Any]:
    return [
        pytest.param(endless(True), "max_answer_bytes", id="huge-declared"),
        pytest.param(endless(False), "max_answer_bytes", id="huge-undeclared"),
        pytest.param(whole(wav_head(1, 6000) + bytes(6000)), "at 1 Hz", id="1-hz"),
        pytest.param(whole(wav_head(2**31 - 1, 6000) + bytes(6000)), "Hz", id="2^31-1-hz"),
        pytest.param(whole(wav_head(16000, 640000) + tone(16000, 20.0)), "s of audio for",
                     id="too-long-for-the-text"),
    ]


@pytest.mark.parametrize(("answer", "says"), bad_answers())
async def test_an_answer_out_of_bounds_is_a_502_naming_the_backend_counted_never_stored(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, answer: Answer, says: str,
) -> None:
    async with scripted(answer) as (_, url):
        client = await app_client(aiohttp_client, engine, settings_for(
            tmp_path, openai_backend(url, fallback=None, max_answer_bytes=1024 * 1024)))
        with caplog.at_level(logging.WARNING):
            r = await client.get(tts("请稍候。", "nova"))
        assert r.status == 502
        body = await r.json()
        assert body["code"] == "upstream_failed" and "cloud" in body["message"]
        assert says in body["message"] and "Traceback" not in await r.text()
        assert not any(record.exc_info for record in caplog.records)
        assert stats(client)["errors"] == 1
        assert not await stored(client, "请稍候。")


async def test_an_answer_within_bounds_plays_and_with_a_fallback_a_huge_one_is_replaced(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path,
) -> None:
    fine = whole(wav_head(16000, 64000) + tone(16000, 2.0))
    async with scripted(fine) as (upstream, url):
        client = await app_client(aiohttp_client, engine, settings_for(
            tmp_path, openai_backend(url, max_answer_bytes=1024 * 1024)))
        r = await client.get(tts("请稍候。", "nova"))
        assert r.status == 200 and "X-Huiyin-Fallback" not in r.headers
        upstream.answer = endless(False)
        replaced = await client.get(tts("您好，欢迎致电。", "nova"))
        assert replaced.status == 200 and replaced.headers["X-Huiyin-Fallback"] == "baker"
        assert stats(client)["errors"] == 1
        assert await stored(client, "请稍候。") and not await stored(client, "您好，欢迎致电。")


@pytest.mark.parametrize(("field", "value", "says"), [
    ("max_answer_bytes", 100, "at least 1024"),
    ("max_answer_bytes", "lots", "a whole number"),
    ("seconds_per_character", 0, "a positive number"),
    ("seconds_margin", -1, "0 or more"),
    ("timeout", math.inf, "a positive number"),
    ("timeout", math.nan, "a positive number"),
])
def test_the_bounds_are_checked_at_load_naming_the_field(field: str, value: Any, says: str) -> None:
    entry = openai_backend("http://127.0.0.1:1", **{field: value})
    with pytest.raises(BackendConfigError, match=f"field '{field}'.*{says}"):
        parse_backends([entry], "settings.yaml")


def test_by_default_a_timed_out_backend_leaves_its_fallback_time_to_answer() -> None:
    (backend,) = parse_backends([{"name": "b", "kind": "piper", "url": "http://127.0.0.1:1",
                                  "voices": {"v": "v"}}], "settings.yaml")
    assert backend.timeout < Settings().synthesis_deadline

