"""Aliyun NLS's RESTful speech synthesis (POST and GET /stream/v1/tts) against a live
gateway: code written for Aliyun's API with only its URL changed, the audio decoded, the
store shared with every other route, and every error in Aliyun's JSON shape."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import subprocess
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import soundfile as sf
from aiohttp import ClientSession

from gateway.state import CREDENTIALS, VOICES
from synth.fastspeech2 import FastSpeech2Engine
from tests.live import Server, live

TEXT = "您好，欢迎致电客户服务中心。"


async def in_thread(fn: Callable[[], Any]) -> Any:
    """Aliyun's samples are synchronous: run them beside the server's loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


Make = Callable[..., Awaitable[Server]]


@pytest.fixture
async def make(engine: FastSpeech2Engine, tmp_path: Path) -> AsyncIterator[Make]:
    """Gateways served as `huiyin serve` serves them, with these settings."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(**overrides: Any) -> Server:
            return await stack.enter_async_context(live(engine, tmp_path / "data", **overrides))

        yield start


@pytest.fixture
async def server(make: Make) -> Server:
    """Open access (any token speaks); a small body limit for the oversize case."""
    return await make(access="open", max_body_bytes=4096, max_text_length=200)


def url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def tts_url(server: Server) -> str:
    return url(server, "/stream/v1/tts")


# What code written for Aliyun does, its URL changed and nothing else.

def text_to_speech(text: str, path: Path, *, url: str, token: str, appkey: str | None = None,
                   fmt: str = "wav", sample_rate: int = 16000) -> bool:
    """The seed's function: POST JSON with the token in X-NLS-Token; audio only when the
    answer's Content-Type is audio/mpeg, written to a file."""
    body: dict[str, Any] = {"text": text, "voice": "xiaoyun", "format": fmt,
                            "sample_rate": sample_rate}
    if appkey:
        body["appkey"] = appkey
    response = requests.post(url, data=json.dumps(body), timeout=60, headers={
        "X-NLS-Token": token, "Content-Type": "application/json"})
    if response.headers.get("Content-Type") == "audio/mpeg":
        path.write_bytes(response.content)
        return True
    return False


def sample_post(host: str, appkey: str, token: str, text: str, path: Path, fmt: str,
                rate: int) -> tuple[int, str | None, bytes]:
    """As Aliyun's Python sample posts: http.client, the token and appkey in the JSON body."""
    conn = http.client.HTTPConnection(host, timeout=60)
    body = json.dumps({"appkey": appkey, "token": token, "text": text, "format": fmt,
                       "sample_rate": rate})
    conn.request(method="POST", url="/stream/v1/tts", body=body,
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    content_type, data = response.getheader("Content-Type"), response.read()
    conn.close()
    if content_type == "audio/mpeg":
        path.write_bytes(data)
    return response.status, content_type, data


def sample_get(host: str, appkey: str, token: str, text: str, path: Path, fmt: str,
               rate: int) -> tuple[int, str | None, bytes]:
    """As Aliyun's Python sample gets: the text URL-encoded by RFC 3986 and the query
    put together by hand."""
    encoded = urllib.parse.quote_plus(text).replace("+", "%20").replace("*", "%2A") \
        .replace("%7E", "~")
    url = (f"/stream/v1/tts?appkey={appkey}&token={token}&text={encoded}&format={fmt}"
           f"&sample_rate={rate}&voice=xiaoyun&volume=50&speech_rate=0&pitch_rate=0")
    conn = http.client.HTTPConnection(host, timeout=60)
    conn.request(method="GET", url=url)
    response = conn.getresponse()
    content_type, data = response.getheader("Content-Type"), response.read()
    conn.close()
    if content_type == "audio/mpeg":
        path.write_bytes(data)
    return response.status, content_type, data


def ffprobe(path: Path, *options: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", *options, "-i", str(path), "-show_entries",
         "stream=codec_name,sample_rate,channels:format=format_name,duration", "-of", "json"],
        capture_output=True, text=True, check=True).stdout
    found = json.loads(out)
    return {**found["streams"][0], **found["format"]}


async def test_the_seed_function_writes_audio_that_decodes_at_the_asked_rate(
    server: Server, tmp_path: Path,
) -> None:
    for fmt, rate in (("wav", 16000), ("wav", 8000), ("mp3", 16000), ("pcm", 8000)):
        path = tmp_path / f"seed-{rate}.{fmt}"
        assert await in_thread(lambda f=fmt, r=rate, p=path: text_to_speech(
            TEXT, p, url=tts_url(server), token="any-token", appkey="project-1", fmt=f,
            sample_rate=r)), (fmt, rate)
        if fmt == "pcm":  # raw 16-bit little-endian samples at the rate
            samples = np.frombuffer(await asyncio.to_thread(path.read_bytes), dtype="<i2")
            assert 1.5 < len(samples) / rate < 6 and np.abs(samples).max() > 1000
            continue
        info = await in_thread(lambda p=path: ffprobe(p))
        assert info["sample_rate"] == str(rate) and info["channels"] == 1
        assert info["codec_name"] == {"wav": "pcm_s16le", "mp3": "mp3"}[fmt]
        audio, got = await in_thread(lambda p=path: sf.read(p, dtype="int16"))
        assert got == rate and 1.5 < len(audio) / rate < 6


async def test_the_official_samples_post_and_get_and_the_pcm_is_the_wav_without_its_header(
    server: Server, tmp_path: Path,
) -> None:
    host = f"127.0.0.1:{server.port}"
    status, content_type, wav = await in_thread(lambda: sample_post(
        host, "project-1", "any-token", TEXT, tmp_path / "post.wav", "wav", 16000))
    assert (status, content_type) == (200, "audio/mpeg")
    samples, rate = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate == 16000
    status, content_type, pcm = await in_thread(lambda: sample_get(
        host, "project-1", "any-token", TEXT, tmp_path / "get.pcm", "pcm", 16000))
    assert (status, content_type) == (200, "audio/mpeg")
    assert np.array_equal(np.frombuffer(pcm, dtype="<i2"), samples)
    status, content_type, mp3 = await in_thread(lambda: sample_get(
        host, "project-1", "any-token", "请稍候，正在为您转接。", tmp_path / "get.mp3", "mp3", 8000))
    assert (status, content_type) == (200, "audio/mpeg")
    info = await in_thread(lambda: ffprobe(tmp_path / "get.mp3"))
    assert (info["codec_name"], info["sample_rate"]) == ("mp3", "8000")


async def test_repeats_are_hits_on_every_route_with_the_same_keys(server: Server) -> None:
    async with ClientSession() as session:
        first = await session.post(tts_url(server), json={"text": TEXT, "format": "wav"})
        assert first.status == 200 and first.headers["X-Cache"] == "MISS"
        again = await session.get(tts_url(server), params={"text": TEXT, "format": "mp3"})
        assert again.headers["X-Cache"] == "HIT"  # another format of the same phrase
        # Aliyun's defaults are the voice's own manner: /tts says the same phrase.
        plain = await session.get(url(server, "/tts.wav"), params={"text": TEXT, "rate": "16000"})
        assert plain.headers["X-Cache"] == "HIT"
        assert await plain.read() == await first.read()
        # Aliyun's settings map onto ours: -500 is half speed, pitch is held to the voice's
        # range (1.4 at most), volume 100 is twice as loud.
        aliyun = {"text": "请按一。", "speech_rate": -500, "pitch_rate": 500, "volume": 100}
        made = await session.post(tts_url(server), json=aliyun)
        assert made.headers["X-Cache"] == "MISS"
        ours = await session.get(url(server, "/tts.wav"), params={
            "text": "请按一。", "speed": "0.5", "pitch": "1.4", "volume": "2"})
        assert ours.headers["X-Cache"] == "HIT"


async def test_two_identical_requests_at_once_make_one_synthesis(server: Server) -> None:
    (worker,) = server.app[VOICES].workers
    before = worker.completed
    async with ClientSession() as session:
        body = {"text": "两个请求同时到达，只合成一次。", "format": "wav", "sample_rate": 8000}
        answers = await asyncio.gather(*(session.post(tts_url(server), json=body) for _ in range(2)))
        datas = [await a.read() for a in answers]
    assert [a.status for a in answers] == [200, 200] and datas[0] == datas[1]
    assert worker.completed - before == 1


# Errors: Aliyun's JSON, its status codes, our 4xx.

async def nls_error(response: Any) -> dict[str, Any]:
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert set(body) == {"task_id", "result", "status", "message"}, body
    assert len(body["task_id"]) == 32 and body["result"] == ""
    assert 40000000 <= body["status"] <= 49999999
    return dict(body)


@pytest.mark.parametrize(("body", "http", "status", "named"), [
    ({"text": TEXT, "voice": "nobody"}, 422, 40000003, "voice"),
    ({"text": TEXT, "format": "ogg"}, 422, 40000003, "format"),
    ({"text": TEXT, "sample_rate": 44100}, 422, 40000003, "sample_rate"),
    ({"text": TEXT, "sample_rate": "fast"}, 422, 40000003, "sample_rate"),
    ({"text": TEXT, "volume": 101}, 422, 40000003, "volume"),
    ({"text": TEXT, "speech_rate": -501}, 422, 40000003, "speech_rate"),
    ({"text": TEXT, "pitch_rate": 1.5}, 422, 40000003, "pitch_rate"),
    ({"text": ""}, 422, 40000003, "text"),
    ({"voice": "xiaoyun"}, 422, 40000003, "text"),
    ({"text": "好" * 201}, 413, 40000003, "text"),
    ({"text": TEXT, "speed": 1.2}, 400, 40000002, "speed"),
])
async def test_bad_parameters_get_aliyuns_error_naming_the_field(
    server: Server, body: dict[str, Any], http: int, status: int, named: str,
) -> None:
    async with ClientSession() as session:
        response = await session.post(tts_url(server), json=body)
        assert response.status == http
        error = await nls_error(response)
        assert error["status"] == status and named in error["message"]


async def test_malformed_and_oversize_bodies_are_invalid_messages(server: Server) -> None:
    async with ClientSession() as session:
        for data, http in ((b'{"text": "', 400), (b"[1, 2]", 400), (b"x" * 5000, 413)):
            response = await session.post(tts_url(server), data=data,
                                          headers={"Content-Type": "application/json"})
            assert response.status == http
            assert (await nls_error(response))["status"] == 40000002
        unknown = await session.get(tts_url(server), params={"text": TEXT, "speed": "2"})
        assert unknown.status == 400 and (await nls_error(unknown))["status"] == 40000002
        socket = await session.get(url(server, "/ws/v1"))
        assert socket.status == 400 and (await nls_error(socket))["status"] == 40000002


async def test_under_access_keys_the_token_is_an_api_key(
    make: Make, caplog: pytest.LogCaptureFixture,
) -> None:
    server = await make(access="keys")
    _, secret = await server.app[CREDENTIALS].create("callcenter", "synthesize")
    caplog.set_level("INFO", logger="huiyin.access")
    async with ClientSession() as session:
        for headers, body in (({}, {"text": TEXT}), ({"X-NLS-Token": "not-a-key"}, {"text": TEXT}),
                              ({}, {"text": TEXT, "token": "hy_unknown"})):
            refused = await session.post(tts_url(server), json=body, headers=headers)
            assert refused.status == 401
            assert (await nls_error(refused))["status"] == 40000001
        by_header = await session.post(tts_url(server), json={"text": TEXT, "appkey": "proj-7"},
                                       headers={"X-NLS-Token": secret})
        assert by_header.status == 200 and by_header.headers["Content-Type"] == "audio/mpeg"
        in_body = await session.post(tts_url(server), json={"text": TEXT, "token": secret})
        assert in_body.status == 200 and in_body.headers["X-Cache"] == "HIT"
        in_query = await session.get(tts_url(server), params={"text": TEXT, "token": secret})
        assert in_query.status == 200
    lines = [getattr(r, "fields", {}) for r in caplog.records if r.name == "huiyin.access"]
    assert any(f.get("appkey") == "proj-7" and f.get("client") == "callcenter" for f in lines)
    assert secret not in caplog.text and TEXT not in caplog.text


async def test_the_front_lists_aliyuns_voice_names(make: Make) -> None:
    server = await make(access="open", aliyun_voices="aixia=baker,custom=baker")
    async with ClientSession() as session:
        fronts = (await (await session.get(url(server, "/api/voices"))).json())["fronts"]
        mapped = await session.post(tts_url(server), json={"text": "您好。", "voice": "custom"})
        own = await session.post(tts_url(server), json={"text": "您好。", "voice": "baker"})
        assert mapped.status == own.status == 200
    aliyun = fronts["aliyun"]
    assert aliyun["routes"] == ["/stream/v1/tts", "/ws/v1"]
    assert {"xiaoyun", "siqi", "aixia", "aibao", "custom"} <= set(aliyun["voices"])
    assert aliyun["voices"]["custom"] == aliyun["voices"]["xiaoyun"] == "baker"
