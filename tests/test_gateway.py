"""The HTTP gateway, in process, with the real voice."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import Settings
from gateway import create_app
from gateway.params import EXTENSIONS
from gateway.state import STORE, VOICES
from gateway.streaming import STREAMABLE
from synth import codecs
from synth.engine import Pcm
from synth.fastspeech2 import FastSpeech2Engine
from tests.support import WrappedEngine, until

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    # Built directly: reading the settings file here would block the running loop.
    return Settings(**{"data_dir": tmp_path / "data", "max_text_length": 100, **overrides})


@pytest.fixture
async def client(aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path) -> Client:
    return await aiohttp_client(create_app(settings_for(tmp_path), engines=[engine]))


def decode(data: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="int16")
    return audio, int(rate)


async def test_tts_miss_then_hit_with_caching_headers(client: Client) -> None:
    first = await client.get("/tts.wav", params={"text": "您好，欢迎致电。"})
    assert first.status == 200
    assert first.headers["Content-Type"] == "audio/wav"
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["Cache-Control"] == "public, max-age=86400"
    body = await first.read()
    assert int(first.headers["Content-Length"]) == len(body)
    audio, rate = decode(body)
    assert rate == 24000 and len(audio) / rate > 1.0
    second = await client.get("/tts.wav", params={"text": "您好,欢迎致电。"})  # half-width comma
    assert second.headers["X-Cache"] == "HIT"
    assert second.headers["ETag"] == first.headers["ETag"]
    assert await second.read() == body


@pytest.mark.parametrize(
    ("ext", "content_type", "rate"),
    [
        ("wav16", "audio/x-wav;codec=pcm;bit=16;rate=16000", 16000),
        ("ulaw", "audio/basic", 8000),
        ("ul", "audio/basic", 8000),
        ("mu", "audio/basic", 8000),
        ("PCMU", "audio/basic", 8000),
        ("pcmu", "audio/basic", 8000),
        ("alaw", "audio/x-alaw-basic", 8000),
        ("al", "audio/x-alaw-basic", 8000),
        ("PCMA", "audio/x-alaw-basic", 8000),
        ("sln", "audio/pcm; rate=8000; channels=1", 8000),
        ("r8", "audio/pcm; rate=8000; channels=1", 8000),
        ("sln16", "audio/pcm; rate=16000; channels=1", 16000),
        ("r16", "audio/pcm; rate=16000; channels=1", 16000),
        ("mp3", "audio/mpeg", 24000),
        ("ogg", "audio/ogg; codecs=opus", 24000),
        ("opus", "audio/ogg; codecs=opus", 24000),
    ],
)
async def test_every_ivr_and_browser_format(
    client: Client, ext: str, content_type: str, rate: int
) -> None:
    response = await client.get(f"/tts.{ext}", params={"text": "请按一。"})
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    data = await response.read()
    duration = float(response.headers["X-Audio-Duration"])
    if ext.lower() in ("ulaw", "ul", "mu", "pcmu", "alaw", "al", "pcma"):
        assert abs(len(data) / 8000 - duration) < 0.02
    elif ext in ("sln", "sln16", "r8", "r16"):
        assert abs(len(data) / 2 / rate - duration) < 0.02
    else:
        audio, got = decode(data)
        assert got == rate and abs(len(audio) / got - duration) < 0.1


async def test_ivr_aliases_are_the_same_audio_as_their_format(client: Client) -> None:
    for alias, own in (("PCMU", "ulaw"), ("ul", "ulaw"), ("PCMA", "alaw"), ("r8", "sln"),
                       ("r16", "sln16")):
        asked = await client.get(f"/tts.{alias}", params={"text": "请按二。"})
        canonical = await client.get(f"/tts.{own}", params={"text": "请按二。"})
        assert await asked.read() == await canonical.read(), alias
        assert asked.headers["ETag"] == canonical.headers["ETag"], alias
    listed = {f["name"]: f for f in (await (await client.get("/api/voices")).json())["formats"]}
    assert listed["ulaw"]["extensions"] == ["ulaw", "ul", "mu", "PCMU"]
    assert listed["alaw"]["extensions"] == ["alaw", "al", "PCMA"]
    assert listed["sln"]["extensions"] == ["sln", "slin", "r8"]
    assert listed["sln16"]["extensions"] == ["sln16", "slin16", "r16"]
    assert listed["wav"]["content_types"] == {"16000": "audio/x-wav;codec=pcm;bit=16;rate=16000"}
    unknown = await client.get("/tts.r24", params={"text": "请按二。"})  # 24-bit to FreeSWITCH
    assert unknown.status == 404 and "PCMU" in (await unknown.json())["message"]


async def test_wav_rate_choice(client: Client) -> None:
    response = await client.get("/tts.wav", params={"text": "请按一。", "rate": "8000"})
    _, rate = decode(await response.read())
    assert rate == 8000
    # Asterisk reads audio/wav as 8 kHz and knows 16 kHz WAV only by its own long name;
    # 22050 and 24000 Hz have no Asterisk format and keep the type browsers know.
    assert response.headers["Content-Type"] == "audio/wav"
    for wav_rate, content_type in ((16000, "audio/x-wav;codec=pcm;bit=16;rate=16000"),
                                   (22050, "audio/wav"), (24000, "audio/wav")):
        answer = await client.get("/tts.wav", params={"text": "请按一。", "rate": str(wav_rate)})
        assert answer.headers["Content-Type"] == content_type, wav_rate
        assert decode(await answer.read())[1] == wav_rate
    bad = await client.get("/tts.ulaw", params={"text": "请按一。", "rate": "16000"})
    assert bad.status == 422 and (await bad.json())["field"] == "rate"


async def test_head_and_conditional_requests(client: Client) -> None:
    get = await client.get("/tts.ulaw", params={"text": "感谢来电。"})
    body = await get.read()
    etag = get.headers["ETag"]
    head = await client.head("/tts.ulaw", params={"text": "感谢来电。"})
    assert head.status == 200 and await head.read() == b""
    assert head.headers["Content-Length"] == str(len(body)) and head.headers["ETag"] == etag
    for method in (client.get, client.head):
        cached = await method("/tts.ulaw", params={"text": "感谢来电。"}, headers={"If-None-Match": etag})
        assert cached.status == 304 and await cached.read() == b""
        assert cached.headers["ETag"] == etag and "max-age" in cached.headers["Cache-Control"]
    weak = await client.get("/tts.ulaw", params={"text": "感谢来电。"}, headers={"If-None-Match": f"W/{etag}"})
    assert weak.status == 304
    other = await client.get("/tts.ulaw", params={"text": "感谢来电。"}, headers={"If-None-Match": '"nope"'})
    assert other.status == 200


# What a client that checks a URL with HEAD before it plays compares (FreeSWITCH's mod_httapi:
# ETag, Last-Modified, Content-Length) and what a cache keeps of the answer.
HEAD_COMPARED = ("ETag", "Content-Length", "Last-Modified", "Content-Type", "Cache-Control")


def compared(response: Any) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in HEAD_COMPARED}


async def test_head_carries_the_get_headers_on_every_route_and_format(client: Client) -> None:
    store = client.app[STORE]
    seed = await client.get("/tts.ulaw", params={"text": "请按零。"})
    key = seed.headers["ETag"].strip('"').split("-")[0]
    await store.name(key, phrase_id="menu.zero", tags=[])
    formats = list(codecs.FORMATS)
    seen: set[str] = set()
    for ext in sorted(EXTENSIONS, key=str.lower):
        fmt = EXTENSIONS[ext]
        # A text per format: the format's first extension meets a miss, its aliases a hit.
        number = formats.index(fmt) + 1
        urls = [f"/tts.{ext}?text=请按{number}号键。", f"/prompts/{key}.{ext}",
                f"/phrases/menu.zero.{ext}"]
        if fmt in STREAMABLE:
            urls.append(f"/tts/stream.{ext}?text=请稍候，第{number}位。")
        for url in urls:
            head = await client.head(url)
            assert head.status == 200 and await head.read() == b"", url
            if url.startswith("/tts") and fmt not in seen:
                assert head.headers["X-Cache"] == "MISS", url  # HEAD synthesized it
            get = await client.get(url)
            body = await get.read()
            assert get.status == 200 and compared(get) == compared(head), url
            assert int(head.headers["Content-Length"]) == len(body) > 0, url
            assert head.headers["ETag"] and head.headers.get("Last-Modified") is None, url
            again = await client.head(url)
            assert compared(again) == compared(head), url
        seen.add(fmt)


async def test_byte_ranges_for_browser_players(client: Client) -> None:
    full = await (await client.get("/tts.wav", params={"text": "再见。"})).read()
    part = await client.get("/tts.wav", params={"text": "再见。"}, headers={"Range": "bytes=0-99"})
    assert part.status == 206 and await part.read() == full[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(full)}"
    tail = await client.get("/tts.wav", params={"text": "再见。"}, headers={"Range": "bytes=-10"})
    assert await tail.read() == full[-10:]
    beyond = await client.get("/tts.wav", params={"text": "再见。"}, headers={"Range": f"bytes={len(full)}-"})
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(full)}"


async def test_prompts_by_key_are_immutable(client: Client) -> None:
    miss = await client.get("/tts.ulaw", params={"text": "请稍候。"})
    key = miss.headers["ETag"].strip('"').split("-")[0]
    response = await client.get(f"/prompts/{key}.ulaw")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert await response.read() == await miss.read()
    wav8k = await client.get(f"/prompts/{key}.wav", params={"rate": "8000"})
    assert decode(await wav8k.read())[1] == 8000
    for path in (f"/prompts/{'0' * 32}.ulaw", "/prompts/not-a-key.ulaw", f"/prompts/{key}.xyz"):
        missing = await client.get(path)
        assert missing.status == 404 and missing.content_type == "application/json", path


async def test_download_names_are_sanitized(client: Client) -> None:
    miss = await client.get("/tts.wav", params={"text": "请稍候。"})
    key = miss.headers["ETag"].strip('"').split("-")[0]
    response = await client.get(f"/prompts/{key}.wav", params={"download": "../../etc/passwd"})
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="passwd.wav"')
    chinese = await client.get(f"/prompts/{key}.wav", params={"download": "问候语.wav"})
    assert "filename*=UTF-8''%E9%97%AE%E5%80%99%E8%AF%AD.wav" in chinese.headers["Content-Disposition"]


# Asterisk's media cache gives up a download at any header line over 1,023 bytes
# (res_http_media_cache.c, MAX_HEADER_LENGTH); the gateway keeps every line within 1,000.
HEADER_LINE_LIMIT = 1000


async def test_no_header_line_grows_past_1000_bytes_whatever_the_request_carries(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(settings_for(tmp_path, max_text_length=500), engines=[engine]))
    long_text = "请稍候。" + "—" * 496  # long without being slow: nothing is said for the dashes
    seed = await client.get("/tts.ulaw", params={"text": long_text})
    assert seed.status == 200
    key = seed.headers["ETag"].strip('"').split("-")[0]
    long_id = "p" + "0123456789" * 6 + "abc"  # the longest phrase id there is
    await client.app[STORE].name(key, phrase_id=long_id, tags=[])
    names = ["𠀀" * 300, "😀" * 300, "a" * 2000, "问候语" * 200 + ".wav", "%E4" * 300, '"' * 300]
    requests: list[tuple[str, dict[str, str]]] = [
        ("/tts.ulaw?text=" + quote(long_text), {}),
        ("/tts.ulaw?text=" + quote(long_text), {"X-Request-Id": "r" * 2000}),
        ("/tts.ulaw?text=" + quote(long_text), {"X-Request-Id": "r" * 64, "Origin": "o" * 2000}),
        ("/tts.ulaw?text=" + quote("好" * 501), {}),
        (f"/phrases/{long_id}.ulaw", {}),
        (f"/phrases/{'q' * 900}.ulaw", {}),
        (f"/tts.ulaw?{'x' * 900}=1", {}),
        *((f"/prompts/{key}.wav?download={quote(name)}", {}) for name in names),
        *((f"/prompts/{key}.wav?download={quote(name)}", {"Range": "bytes=0-9"}) for name in names),
    ]
    for target, headers in requests:
        response = await client.get(target, headers=headers)
        await response.read()
        lines = {name.decode("latin-1"): len(name) + 2 + len(value) + 2
                 for name, value in response.raw_headers}
        assert max(lines.values()) <= HEADER_LINE_LIMIT, (target[:80], lines)
    download = await client.get(f"/prompts/{key}.wav?download={quote('问候语' * 200)}")
    assert "filename*=UTF-8''%E9%97%AE%E5%80%99%E8%AF%AD" in download.headers["Content-Disposition"]


async def test_named_phrases_follow_their_text(client: Client, engine: FastSpeech2Engine) -> None:
    store = client.app[STORE]
    unknown = await client.get("/phrases/greeting.ulaw")
    # No phrase file is configured here: the 404 says so, and how to give one.
    assert unknown.status == 404
    assert "no phrase files" in (message := (await unknown.json())["message"])
    assert "HUIYIN_PHRASES" in message
    first = await client.get("/tts.ulaw", params={"text": "您好。"})
    key1 = first.headers["ETag"].strip('"').split("-")[0]
    await store.name(key1, phrase_id="greeting", tags=["welcome"])
    named = await client.get("/phrases/greeting.ulaw")
    assert named.status == 200 and named.headers["ETag"] == first.headers["ETag"]
    assert named.headers["Cache-Control"] == "public, max-age=300"
    second = await client.get("/tts.ulaw", params={"text": "您好，欢迎致电。"})
    key2 = second.headers["ETag"].strip('"').split("-")[0]
    await store.name(key2, phrase_id="greeting", tags=["welcome"])
    renamed = await client.get("/phrases/greeting.ulaw")
    assert renamed.headers["ETag"] == second.headers["ETag"] != first.headers["ETag"]
    assert (await client.get("/phrases/..%2Fetc.ulaw")).status == 404


async def test_api_tts_success_shape_and_urls(client: Client) -> None:
    response = await client.post("/api/tts", json={
        "text": "您的订单已发货。", "emotion": "cheerful", "format": "ulaw",
        "output_wav_name": "../order shipped.wav",
    })
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "success" and body["cached"] is False
    assert body["format"] == "ulaw" and body["sample_rate"] == 8000 and body["duration"] > 1
    assert body["audio_url"].endswith(f"/prompts/{body['key']}.ulaw")
    audio = await client.get(body["audio_url"].split(str(client.make_url("")), 1)[-1] or body["audio_url"])
    assert audio.status == 200
    download = await client.get(body["download_url"].replace(str(client.make_url("")).rstrip("/"), ""))
    assert 'filename="order shipped.ulaw"' in download.headers["Content-Disposition"]
    again = await client.post("/api/tts", json={"text": "您的订单已发货。", "style": "cheerful", "format": "ulaw"})
    assert (await again.json())["cached"] is True


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"text": "您好", "colour": "red"}, 400, "colour"),
        ({}, 422, "text"),
        ({"text": "   "}, 422, "text"),
        ({"text": 5}, 422, "text"),
        ({"text": "您" * 101}, 413, "text"),
        ({"text": "您好", "speed": "fast"}, 422, "speed"),
        ({"text": "您好", "speed": 9}, 422, "speed"),
        ({"text": "您好", "pitch": True}, 422, "pitch"),
        ({"text": "您好", "voice": "nobody"}, 422, "voice"),
        ({"text": "您好", "style": "angry"}, 422, "style"),
        ({"text": "您好", "style": "calm", "emotion": "cheerful"}, 400, "emotion"),
        ({"text": "您好", "format": "xyz"}, 422, "format"),
        ({"text": "您好", "format": "ulaw", "sample_rate": 16000}, 422, "sample_rate"),
        ({"text": "……"}, 422, "text"),
    ],
)
async def test_api_tts_errors_name_the_field(
    client: Client, payload: dict[str, Any], status: int, field: str
) -> None:
    response = await client.post("/api/tts", json=payload)
    assert response.status == status
    body = await response.json()
    assert body["status"] == "error" and body["field"] == field and body["message"]


async def test_api_tts_refuses_broken_bodies(client: Client) -> None:
    for data, headers in (
        (b"{not json", {"Content-Type": "application/json"}),
        (b"[1, 2]", {"Content-Type": "application/json"}),
        (b"text=hi", {"Content-Type": "application/x-www-form-urlencoded"}),
    ):
        response = await client.post("/api/tts", data=data, headers=headers)
        assert response.status == 400 and (await response.json())["status"] == "error"
    huge = await client.post("/api/tts", data=b"x" * (70 << 10), headers={"Content-Type": "application/json"})
    assert huge.status == 413 and huge.content_type == "application/json"


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({}, 422, "text"),
        ({"text": "您好", "speed": "fast"}, 422, "speed"),
        ({"text": "您好", "speed": "nan"}, 422, "speed"),
        ({"text": "您好", "pitch": "3"}, 422, "pitch"),
        ({"text": "您好", "colour": "red"}, 400, "colour"),
        ({"text": "您" * 101}, 413, "text"),
    ],
)
async def test_tts_errors_are_json_naming_the_field(
    client: Client, params: dict[str, str], status: int, field: str
) -> None:
    response = await client.get("/tts.wav", params=params)
    assert response.status == status
    assert response.content_type == "application/json"
    assert (await response.json())["field"] == field


async def test_repeated_parameters_and_unknown_routes_are_json(client: Client) -> None:
    repeated = await client.get("/tts.wav?text=a&text=b")
    assert repeated.status == 400 and (await repeated.json())["field"] == "text"
    for response, status in (
        (await client.get("/nope"), 404),
        (await client.post("/tts.wav"), 405),
        (await client.get("/tts.xyz?text=hi"), 404),
    ):
        assert response.status == status, response.url
        assert response.content_type == "application/json"
        assert (await response.json())["status"] == "error"


async def test_api_voices_lists_engines_styles_ranges_formats(client: Client) -> None:
    body = await (await client.get("/api/voices")).json()
    (engine,) = body["engines"]
    assert engine["name"] == "fastspeech2" and engine["sample_rate"] == 24000
    assert engine["settings"]["speed"] == {"min": 0.5, "max": 2.0, "default": 1.0}
    assert "cheerful" in engine["voices"][0]["styles"]
    assert {f["name"] for f in body["formats"]} >= {"wav", "wav16", "ulaw", "alaw", "sln", "mp3", "ogg"}
    assert body["default_voice"] == "baker" and body["max_text_length"] == 100


async def test_metrics_count_hits_misses_and_syntheses(client: Client) -> None:
    for _ in range(2):
        await client.get("/tts.ulaw", params={"text": "您好。"})
    text = await (await client.get("/metrics")).text()
    assert "huiyin_cache_hits_total 1.0" in text
    assert "huiyin_cache_misses_total 1.0" in text
    assert 'huiyin_synth_total{engine="fastspeech2"} 1.0' in text
    assert "huiyin_queue_depth 0.0" in text and "huiyin_queue_capacity 32.0" in text
    assert "huiyin_ready 1.0" in text and "huiyin_cache_max_bytes" in text
    assert 'huiyin_requests_total{route="/tts.{ext}",status="200"} 2.0' in text
    assert "huiyin_synth_seconds_count 1.0" in text and "huiyin_rtf" in text


async def test_health_readiness_and_openapi(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await (await client.get("/readyz")).json())["status"] == "ready"
    spec = await (await client.get("/openapi.json")).json()
    assert {"/tts.{ext}", "/prompts/{key}.{ext}", "/phrases/{phrase_id}.{ext}", "/api/tts",
            "/api/voices"} <= set(spec["paths"])


class HeldEngine(WrappedEngine):
    """The real engine, but each synthesis waits until the test lets it go."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        super().__init__(engine)
        self.release = threading.Event()
        self.started = threading.Event()

    def synthesize(self, text: str, **kw: Any) -> Pcm:
        self.started.set()
        self.release.wait(timeout=30)
        return self._engine.synthesize(text, **kw)

    def stream(self, text: str, **kw: Any) -> Iterator[Pcm]:
        self.started.set()
        self.release.wait(timeout=30)
        return self._engine.stream(text, **kw)


@pytest.fixture
async def held(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> AsyncIterator[tuple[Client, HeldEngine]]:
    held_engine = HeldEngine(engine)
    app = create_app(settings_for(tmp_path, queue_size=1, synthesis_deadline=5.0), engines=[held_engine])  # type: ignore[list-item]
    client = await aiohttp_client(app)
    yield client, held_engine
    held_engine.release.set()


async def test_a_full_queue_answers_503_with_retry_after(held: tuple[Client, HeldEngine]) -> None:
    client, engine = held
    (worker,) = client.app[VOICES].workers
    running = asyncio.ensure_future(client.get("/tts.ulaw", params={"text": "一。"}))
    await until(engine.started.is_set, what="the first synthesis")
    queued = asyncio.ensure_future(client.get("/tts.ulaw", params={"text": "二。"}))
    await until(lambda: worker.queue_depth == 1, what="the second request queued")
    refused = await client.get("/tts.ulaw", params={"text": "三。"})
    assert refused.status == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await refused.json())["code"] == "busy"
    engine.release.set()
    assert (await running).status == 200 and (await queued).status == 200
    assert (await client.get("/tts.ulaw", params={"text": "三。"})).status == 200


async def test_a_synthesis_past_its_deadline_is_a_504(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    held_engine = HeldEngine(engine)
    app = create_app(settings_for(tmp_path, synthesis_deadline=0.3), engines=[held_engine])  # type: ignore[list-item]
    client = await aiohttp_client(app)
    try:
        response = await client.get("/tts.ulaw", params={"text": "您好。"})
        assert response.status == 504 and (await response.json())["code"] == "deadline_exceeded"
    finally:
        held_engine.release.set()
