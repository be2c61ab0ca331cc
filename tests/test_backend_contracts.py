"""The sambert_flask, cosyvoice and aliyun kinds against small servers that follow each
service's published request and response shapes, check every request they get (refusing a
wrong one with 400 and noting why), and answer real audio of the Mandarin voice.

Through the gateway: each kind plays and a repeat is a HIT; styles become Sambert emotions;
a cloned CosyVoice voice sends its clip, and a changed clip changes the key; the Aliyun
token is signed, fetched once, shared and refreshed; each upstream's error answers become
JSON errors that name the backend. Example settings files start with no environment set
(but for the credentials an upstream cannot do without).
"""

from __future__ import annotations

import abc
import asyncio
import base64
import dataclasses
import datetime
import hashlib
import hmac
import io
import itertools
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import numpy as np
import pytest
import soundfile as sf
from aiohttp import BodyPartReader, web
from aiohttp.test_utils import TestServer

from config import load_settings
from synth import codecs
from synth.engine import Pcm, SynthesisError
from synth.fastspeech2 import FastSpeech2Engine
from synth.remote import aliyun
from synth.remote.kinds import aliyun_rate, aliyun_volume
from tests.support import REPO
from tests.test_backends import Client, MakeClient, app_client, load_engines_for, settings_for

MakeServer = Callable[[web.Application], Awaitable[TestServer]]
HELLO = "您好，欢迎致电。"


def tts(text: str, voice: str, **params: object) -> str:
    extra = "".join(f"&{name}={value}" for name, value in params.items())
    return f"/tts.wav?voice={voice}&text={quote(text)}{extra}"


def decoded(data: bytes) -> tuple[int, int]:
    """(samples, rate) of a WAV answer, which must hold audio."""
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert len(samples) > 0
    return len(samples), int(rate)


def wav_bytes(pcm: Pcm, rate: int | None = None) -> bytes:
    samples = pcm.samples if rate is None else codecs.resample(pcm.samples, pcm.sample_rate, rate)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate or pcm.sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class Audio:
    """The real voice saying a text, synthesized once and encoded off the event loop."""

    def __init__(self, engine: FastSpeech2Engine, text: str = "您好。") -> None:
        self.engine = engine
        self.text = text
        self._pcm: Pcm | None = None

    async def pcm(self) -> Pcm:
        if self._pcm is None:
            self._pcm = await asyncio.to_thread(self.engine.synthesize, self.text)
        return self._pcm

    async def wav(self, rate: int | None = None) -> bytes:
        return await asyncio.to_thread(wav_bytes, await self.pcm(), rate)

    async def raw(self) -> bytes:
        return (await self.pcm()).samples.astype("<i2").tobytes()


class Fake(abc.ABC):
    """What every fake upstream shares: the requests it refused, and why."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        self.audio = Audio(engine)
        self.problems: list[str] = []

    def refuse(self, problem: str) -> web.Response:
        self.problems.append(problem)
        return web.json_response({"status": "error", "message": problem}, status=400)

    async def serve(self, aiohttp_server: MakeServer) -> str:
        server = await aiohttp_server(self.app())
        return f"http://127.0.0.1:{server.port}"

    @abc.abstractmethod
    def app(self) -> web.Application:
        """The fake server's routes (each fake upstream has its own)."""


# sambert_flask: POST /api/tts (JSON) then GET audio_url, or POST /tts (form)

EMOTIONS = ("happy", "angry", "sad", "fear", "hate", "surprise")


class Sambert(Fake):
    """A ModelScope Sambert Flask service: answers 24 kHz WAV, which Huiyin resamples."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        super().__init__(engine)
        self.asked: list[dict[str, str]] = []
        self.fetched: list[str] = []
        self.status = "success"
        self.audio_url: Callable[[str], str] = lambda path: path  # relative by default

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/tts", self.api)
        app.router.add_post("/tts", self.form)
        app.router.add_get("/static/{name}", self.file)
        return app

    def _checked(self, fields: dict[str, Any]) -> str | None:
        if not set(fields) <= {"text", "emotion"} or "text" not in fields:
            return f"fields must be text and an optional emotion, got {sorted(fields)}"
        if not isinstance(fields["text"], str) or not fields["text"].strip():
            return "text must be non-empty text"
        if "emotion" in fields and fields["emotion"] not in EMOTIONS:
            return f"unknown emotion {fields['emotion']!r}"
        self.asked.append(dict(fields))
        return None

    async def api(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return self.refuse(f"POST /api/tts must be JSON, got {request.content_type}")
        body = await request.json()
        if not isinstance(body, dict):
            return self.refuse("the body must be a JSON object")
        problem = self._checked(body)
        if problem is not None:
            return self.refuse(problem)
        if self.status == "error":
            return web.json_response({"status": "error", "message": f"合成失败：{body['text']}"})
        path = f"/static/{uuid.uuid4().hex}.wav"
        return web.json_response({"status": "success", "audio_url": self.audio_url(path),
                                  "download_url": self.audio_url(path)})

    async def form(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return self.refuse(f"POST /tts must be a form, got {request.content_type}")
        problem = self._checked(dict(await request.post()))
        if problem is not None:
            return self.refuse(problem)
        return web.Response(body=await self.audio.wav(), content_type="audio/wav")

    async def file(self, request: web.Request) -> web.Response:
        self.fetched.append(request.match_info["name"])
        return web.Response(body=await self.audio.wav(), content_type="audio/wav")


def sambert_backend(url: str, **fields: Any) -> dict[str, Any]:
    return {"name": "sambert-flask", "kind": "sambert_flask", "url": url,
            "voices": {"zhitian": "zhitian_emo"}, "version": "zhitian-1", "normalize": False,
            "retries": 0, **fields}


@pytest.mark.parametrize("where", ["relative", "absolute"])
async def test_sambert_api_plays_then_hits_and_fetches_the_audio_url(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path, where: str,
) -> None:
    fake = Sambert(engine)
    url = await fake.serve(aiohttp_server)
    if where == "absolute":
        fake.audio_url = lambda path: f"{url}{path}"
    client = await app_client(aiohttp_client, engine, settings_for(tmp_path, sambert_backend(url)))
    first = await client.get(tts(HELLO, "zhitian"))
    assert first.status == 200 and first.headers["X-Cache"] == "MISS"
    assert decoded(await first.read())[1] == 16000  # the 24 kHz answer, at the kind's rate
    again = await client.get(tts(HELLO, "zhitian"))
    assert again.status == 200 and again.headers["X-Cache"] == "HIT"
    assert fake.asked == [{"text": HELLO}]  # neutral sends no emotion
    assert len(fake.fetched) == 1 and not fake.problems


async def test_sambert_styles_are_its_emotions_on_both_endpoints(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path,
) -> None:
    fake = Sambert(engine)
    url = await fake.serve(aiohttp_server)
    settings = settings_for(tmp_path, sambert_backend(url),
                            sambert_backend(url, name="sambert-form", endpoint="form",
                                            voices={"zhibei": "zhibei_emo"}))
    client = await app_client(aiohttp_client, engine, settings)
    listed = await (await client.get("/api/voices")).json()
    (voice,) = [v for e in listed["engines"] if e["name"] == "sambert-flask" for v in e["voices"]]
    assert voice["styles"] == ["neutral", *EMOTIONS]
    happy = await client.get(tts(HELLO, "zhitian", style="happy"))
    assert happy.status == 200 and decoded(await happy.read())
    sad = await client.get(tts(HELLO, "zhibei", emotion="sad"))
    assert sad.status == 200 and decoded(await sad.read())
    plain = await client.get(tts(HELLO, "zhibei"))
    assert plain.status == 200
    assert fake.asked == [{"text": HELLO, "emotion": "happy"}, {"text": HELLO, "emotion": "sad"},
                          {"text": HELLO}]
    unknown = await client.get(tts(HELLO, "zhitian", style="cheerful"))
    assert unknown.status == 422 and (await unknown.json())["field"] == "style"
    assert not fake.problems


@pytest.mark.parametrize("setting", ["speed", "pitch", "volume"])
async def test_sambert_has_no_speed_pitch_or_volume(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path, setting: str,
) -> None:
    fake = Sambert(engine)
    url = await fake.serve(aiohttp_server)
    client = await app_client(aiohttp_client, engine, settings_for(tmp_path, sambert_backend(url)))
    r = await client.get(tts(HELLO, "zhitian", **{setting: 1.5}))
    assert r.status == 422
    body = await r.json()
    assert body["field"] == setting and setting in body["message"]
    assert fake.asked == []


async def test_sambert_error_status_is_a_json_502_naming_the_backend_not_the_text(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path,
) -> None:
    fake = Sambert(engine)
    fake.status = "error"
    url = await fake.serve(aiohttp_server)
    client = await app_client(aiohttp_client, engine, settings_for(tmp_path, sambert_backend(url)))
    r = await client.get(tts(HELLO, "zhitian"))
    assert r.status == 502
    body = await r.json()
    assert body["code"] == "upstream_failed" and "sambert-flask" in body["message"]
    assert HELLO not in body["message"] and fake.fetched == []


@pytest.mark.parametrize("elsewhere", ["other-host", "other-port", "scheme-relative", "userinfo"])
async def test_sambert_audio_url_off_the_backend_is_refused(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path, elsewhere: str,
) -> None:
    fake, other = Sambert(engine), Sambert(engine)
    url = await fake.serve(aiohttp_server)
    other_port = (await other.serve(aiohttp_server)).rsplit(":", 1)[1]
    port = url.rsplit(":", 1)[1]
    fake.audio_url = {
        "other-host": lambda path: f"http://localhost:{other_port}{path}",
        "other-port": lambda path: f"http://127.0.0.1:{other_port}{path}",
        "scheme-relative": lambda path: f"//localhost:{other_port}{path}",
        "userinfo": lambda path: f"http://user@127.0.0.1:{port}{path}",
    }[elsewhere]
    client = await app_client(aiohttp_client, engine, settings_for(tmp_path, sambert_backend(url)))
    r = await client.get(tts(HELLO, "zhitian"))
    assert r.status == 502
    body = await r.json()
    assert body["code"] == "upstream_failed" and "sambert-flask" in body["message"]
    assert "another host" in body["message"]
    assert fake.fetched == [] and other.fetched == [] and other.asked == []


# cosyvoice: /inference_sft and /inference_zero_shot, answering raw int16 PCM in chunks

class Cosy(Fake):
    """CosyVoice's FastAPI server: form fields in, raw PCM out, streamed in chunks."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        super().__init__(engine)
        self.sft: list[dict[str, str]] = []
        self.zero_shot: list[dict[str, str | bytes]] = []
        self.hold: asyncio.Event | None = None  # set: the server pauses after its first chunk
        self.sent_first = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/inference_sft", self.inference_sft)
        app.router.add_post("/inference_zero_shot", self.inference_zero_shot)
        return app

    async def _pcm(self, request: web.Request) -> web.StreamResponse:
        data = await self.audio.raw()
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, len(data), 4097):  # odd chunks: samples straddle them
            await response.write(data[start:start + 4097])
            if start == 0 and self.hold is not None:
                self.sent_first.set()
                await self.hold.wait()  # the rest is not made yet
        await response.write_eof()
        return response

    async def inference_sft(self, request: web.Request) -> web.StreamResponse:
        if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return self.refuse(f"/inference_sft takes form fields, got {request.content_type}")
        fields = dict(await request.post())
        if set(fields) != {"tts_text", "spk_id"} or not all(
                isinstance(v, str) and v for v in fields.values()):
            return self.refuse(f"/inference_sft needs tts_text and spk_id, got {sorted(fields)}")
        self.sft.append({k: str(v) for k, v in fields.items()})
        return await self._pcm(request)

    async def inference_zero_shot(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != "multipart/form-data":
            return self.refuse(f"/inference_zero_shot takes multipart, got {request.content_type}")
        fields: dict[str, str | bytes] = {}
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader) or part.name is None:
                return self.refuse("every part must be a named field")
            raw = bytes(await part.read())
            fields[part.name] = raw if part.filename is not None else raw.decode()
        if set(fields) != {"tts_text", "prompt_text", "prompt_wav"}:
            return self.refuse(f"/inference_zero_shot needs tts_text, prompt_text and the file "
                               f"prompt_wav, got {sorted(fields)}")
        if not isinstance(fields["prompt_wav"], bytes) or not fields["tts_text"]:
            return self.refuse("prompt_wav must be the clip's bytes, tts_text text")
        self.zero_shot.append(fields)
        return await self._pcm(request)


def cosy_backend(url: str, clip: Path, transcript: str = "您好。", **fields: Any) -> dict[str, Any]:
    return {"name": "cosy", "kind": "cosyvoice", "url": url, "voices": {"zhongwen": "中文女"},
            "zero_shot": {"clone": {"clip": str(clip), "transcript": transcript}},
            "sample_rate": 24000, "version": "300m-sft", "normalize": False, "retries": 0,
            **fields}


async def write_clip(path: Path, audio: Audio) -> bytes:
    data = await audio.wav()
    await asyncio.to_thread(path.write_bytes, data)
    return data


async def test_cosyvoice_speakers_and_cloned_voices(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path,
) -> None:
    fake = Cosy(engine)
    url = await fake.serve(aiohttp_server)
    clip = tmp_path / "clone.wav"
    clip_bytes = await write_clip(clip, Audio(engine))
    client = await app_client(aiohttp_client, engine, settings_for(tmp_path, cosy_backend(url, clip)))
    listed = await (await client.get("/api/voices")).json()
    (cosy,) = [e for e in listed["engines"] if e["name"] == "cosy"]
    assert [v["name"] for v in cosy["voices"]] == ["zhongwen", "clone"]
    first = await client.get(tts(HELLO, "zhongwen"))
    assert first.status == 200 and first.headers["X-Cache"] == "MISS"
    samples, rate = decoded(await first.read())
    assert rate == 24000 and samples == len((await fake.audio.pcm()).samples)  # no byte lost
    again = await client.get(tts(HELLO, "zhongwen"))
    assert again.headers["X-Cache"] == "HIT"
    assert fake.sft == [{"tts_text": HELLO, "spk_id": "中文女"}] and fake.zero_shot == []
    cloned = await client.get(tts(HELLO, "clone"))
    assert cloned.status == 200 and cloned.headers["X-Cache"] == "MISS"
    assert decoded(await cloned.read())[1] == 24000
    assert fake.zero_shot == [{"tts_text": HELLO, "prompt_text": "您好。", "prompt_wav": clip_bytes}]
    assert len(fake.sft) == 1
    speed = await client.get(tts(HELLO, "clone", speed=1.2))
    assert speed.status == 422 and (await speed.json())["field"] == "speed"
    assert not fake.problems


async def test_a_changed_clip_changes_the_key(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path,
) -> None:
    fake = Cosy(engine)
    url = await fake.serve(aiohttp_server)
    clip = tmp_path / "clone.wav"
    await write_clip(clip, Audio(engine))
    settings = settings_for(tmp_path, cosy_backend(url, clip))
    client = await app_client(aiohttp_client, engine, settings)
    assert (await client.get(tts(HELLO, "clone"))).headers["X-Cache"] == "MISS"
    assert (await client.get(tts(HELLO, "clone"))).headers["X-Cache"] == "HIT"
    await client.close()
    # The same store, after the site records a new clip: the stored audio is not reused.
    new_clip = await write_clip(clip, Audio(engine, "请稍候。"))
    client = await app_client(aiohttp_client, engine, settings)
    r = await client.get(tts(HELLO, "clone"))
    assert r.status == 200 and r.headers["X-Cache"] == "MISS"
    assert len(fake.zero_shot) == 2 and fake.zero_shot[1]["prompt_wav"] == new_clip


def cosy_version(tmp_path: Path, clip: Path, transcript: str) -> str:
    settings = settings_for(tmp_path, cosy_backend("http://127.0.0.1:9", clip, transcript))
    engines = load_engines_for(settings)
    try:
        return str(engines[0].version)
    finally:
        for e in engines:
            e.close()


def test_the_version_covers_each_clip_and_its_transcript(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    clip = tmp_path / "clone.wav"
    clip.write_bytes(wav_bytes(engine.synthesize("您好。")))
    first = cosy_version(tmp_path, clip, "您好。")
    assert first == cosy_version(tmp_path, clip, "您好。")
    assert first != cosy_version(tmp_path, clip, "你好。")
    clip.write_bytes(wav_bytes(engine.synthesize("请稍候。")))
    assert first != cosy_version(tmp_path, clip, "您好。")


def test_a_missing_or_unreadable_clip_fails_startup_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "clip.wav"
    with pytest.raises(SynthesisError, match=re.escape(str(missing))):
        load_engines_for(settings_for(tmp_path, cosy_backend("http://127.0.0.1:9", missing)))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(SynthesisError, match=f"{re.escape(str(junk))} is not a WAV"):
        load_engines_for(settings_for(tmp_path, cosy_backend("http://127.0.0.1:9", junk)))
    low = tmp_path / "low.wav"
    sf.write(low, np.zeros(8000, dtype=np.int16), 8000, subtype="PCM_16")
    with pytest.raises(SynthesisError, match="8000 Hz"):
        load_engines_for(settings_for(tmp_path, cosy_backend("http://127.0.0.1:9", low)))


# aliyun: CreateToken (a signed GET) and the RESTful TTS (a JSON POST)

KEY_ID, SECRET, APPKEY = "LTAI-test-key-id", "test+secret/with=odd chars~", "nls-appkey-1"
ENV = {"HUIYIN_TEST_NLS_APPKEY": APPKEY, "HUIYIN_TEST_AK_ID": KEY_ID,
       "HUIYIN_TEST_AK_SECRET": SECRET}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
TTS_FIELDS = {"appkey": str, "token": str, "text": str, "format": str, "sample_rate": int,
              "voice": str, "volume": int, "speech_rate": int, "pitch_rate": int}


def pop_encode(text: str) -> str:
    """Aliyun's percent-encoding, byte by byte: only A-Z a-z 0-9 - _ . ~ stay literal."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode())


def pop_signature(method: str, params: dict[str, str], secret: str) -> str:
    """The signature as Aliyun's server computes it from the query it received."""
    query = "&".join(f"{pop_encode(k)}={pop_encode(v)}" for k, v in sorted(params.items()))
    signed = f"{method}&{pop_encode('/')}&{pop_encode(query)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), signed.encode(), hashlib.sha1)
                            .digest()).decode()


class Nls(Fake):
    """Aliyun's CreateToken at / and the NLS RESTful TTS at /stream/v1/tts."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        super().__init__(engine)
        self.lifetimes = [86400.0]  # seconds each issued token lives; the last one repeats
        self.issued: list[str] = []
        self.expires: dict[str, float] = {}
        self.nonces: set[str] = set()
        self.asked: list[dict[str, Any]] = []
        self.error: tuple[int, int] | None = None  # (HTTP status, NLS status) to answer

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.create_token)
        app.router.add_post("/stream/v1/tts", self.tts)
        return app

    def pop_error(self, code: str, message: str) -> web.Response:
        self.problems.append(code)
        return web.json_response({"RequestId": str(uuid.uuid4()), "HostId": "nls-meta",
                                  "Code": code, "Message": message}, status=400)

    async def create_token(self, request: web.Request) -> web.Response:
        pairs = parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)
        params = dict(pairs)
        if len(params) != len(pairs):
            return self.pop_error("InvalidParameter", "a parameter is given twice")
        signature = params.pop("Signature", "")
        expected = {"AccessKeyId": KEY_ID, "Action": "CreateToken", "Format": "JSON",
                    "RegionId": "cn-shanghai", "SignatureMethod": "HMAC-SHA1",
                    "SignatureVersion": "1.0", "Version": "2019-02-28"}
        if set(params) != {*expected, "SignatureNonce", "Timestamp"}:
            return self.pop_error("MissingParameter", f"parameters: {sorted(params)}")
        wrong = [k for k, v in expected.items() if params[k] != v]
        if wrong:
            return self.pop_error("InvalidParameter", f"wrong {wrong}")
        stamp = _STAMP.fullmatch(params["Timestamp"])
        year, month, day, hour, minute, second = map(int, stamp.groups()) if stamp else [0] * 6
        if stamp is None or abs(datetime.datetime(
                year, month, day, hour, minute, second, tzinfo=datetime.timezone.utc).timestamp()
                - time.time()) > 900:  # Aliyun refuses a timestamp 15 minutes off
            return self.pop_error("InvalidTimeStamp.Format", "Timestamp must be UTC ISO 8601, now")
        nonce = params["SignatureNonce"]
        if not _UUID.fullmatch(nonce) or nonce in self.nonces:
            return self.pop_error("SignatureNonceUsed", "the nonce is used or malformed")
        self.nonces.add(nonce)
        if not hmac.compare_digest(signature, pop_signature("GET", params, SECRET)):
            return self.pop_error("SignatureDoesNotMatch",
                                  "Specified signature is not matched with our calculation.")
        token = f"tok{len(self.issued)}-{uuid.uuid4().hex}"
        lifetime = self.lifetimes[min(len(self.issued), len(self.lifetimes) - 1)]
        self.issued.append(token)
        self.expires[token] = time.time() + lifetime
        return web.json_response({
            "NlsRequestId": uuid.uuid4().hex, "RequestId": str(uuid.uuid4()),
            "Token": {"ExpireTime": int(self.expires[token]), "Id": token, "UserId": "1234"},
        })

    def nls_error(self, http: int, status: int, message: str) -> web.Response:
        return web.json_response({"task_id": uuid.uuid4().hex, "result": "", "status": status,
                                  "message": message}, status=http)

    async def tts(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            self.problems.append(f"content type {request.content_type}")
            return self.nls_error(400, 40000000, "Gateway:CLIENT_ERROR:post data is not JSON")
        body = await request.json()
        if not isinstance(body, dict) or set(body) != set(TTS_FIELDS) or not all(
                type(body[k]) is kind for k, kind in TTS_FIELDS.items()):
            self.problems.append(f"fields {body!r}")
            return self.nls_error(400, 40000003, "Gateway:CLIENT_ERROR:invalid parameter")
        if (body["appkey"] != APPKEY or body["format"] != "wav" or body["sample_rate"] != 16000
                or not 0 <= body["volume"] <= 100 or not -500 <= body["speech_rate"] <= 500
                or not -500 <= body["pitch_rate"] <= 500):
            self.problems.append(f"values {body!r}")
            return self.nls_error(400, 40000003, "Gateway:CLIENT_ERROR:invalid parameter")
        token = body["token"]
        if token not in self.expires or self.expires[token] <= time.time():
            self.problems.append("token")
            return self.nls_error(403, 40000001, f"Gateway:ACCESS_DENIED:The token '{token}' "
                                                 "is invalid!")
        self.asked.append(body)
        if self.error is not None:
            http, status = self.error
            return self.nls_error(http, status, f"SERVER_ERROR:text '{body['text']}', "
                                                f"token '{token}'")
        return web.Response(body=await self.audio.wav(16000), content_type="audio/mpeg")


def nls_backend(url: str, **fields: Any) -> dict[str, Any]:
    return {"name": "nls", "kind": "aliyun", "url": f"{url}/stream/v1/tts",
            "token_url": f"{url}/", "voices": {"xiaoyun": "xiaoyun"}, "version": "xiaoyun-1",
            "appkey_env": "HUIYIN_TEST_NLS_APPKEY", "access_key_id_env": "HUIYIN_TEST_AK_ID",
            "access_key_secret_env": "HUIYIN_TEST_AK_SECRET", "normalize": False,
            "retries": 0, "concurrency": 2, **fields}


@pytest.fixture
def nls_env(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)


def assert_nothing_secret(caplog: pytest.LogCaptureFixture, *more: str) -> None:
    logged = caplog.text
    for secret in (SECRET, APPKEY, HELLO, *more):
        assert secret not in logged


async def nls_client(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, url: str,
    **fields: Any,
) -> Client:
    return await app_client(aiohttp_client, engine, settings_for(tmp_path, nls_backend(url, **fields)))


@pytest.mark.usefixtures("nls_env")
async def test_aliyun_plays_with_one_token_for_concurrent_misses(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    fake = Nls(engine)
    url = await fake.serve(aiohttp_server)
    client = await nls_client(aiohttp_client, engine, tmp_path, url)
    texts = [HELLO, "请稍候，正在为您转接。"]
    first = await asyncio.gather(*(client.get(tts(t, "xiaoyun")) for t in texts))
    assert [r.status for r in first] == [200, 200]
    assert all(r.headers["X-Cache"] == "MISS" for r in first)
    for r in first:
        assert decoded(await r.read())[1] == 16000
    again = await client.get(tts(HELLO, "xiaoyun"))
    assert again.headers["X-Cache"] == "HIT"
    assert len(fake.issued) == 1
    assert sorted(a["text"] for a in fake.asked) == sorted(texts)
    assert {a["token"] for a in fake.asked} == {fake.issued[0]}
    assert all((a["voice"], a["volume"], a["speech_rate"], a["pitch_rate"]) == ("xiaoyun", 50, 0, 0)
               for a in fake.asked)
    assert not fake.problems
    assert_nothing_secret(caplog, *fake.issued)


@pytest.mark.usefixtures("nls_env")
async def test_aliyun_replaces_a_token_about_to_expire(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    fake = Nls(engine)
    fake.lifetimes = [30.0, 86400.0]  # the first within the refresh margin of its expiry
    url = await fake.serve(aiohttp_server)
    client = await nls_client(aiohttp_client, engine, tmp_path, url)
    for i in range(3):
        assert (await client.get(tts(f"{HELLO}第{i}次。", "xiaoyun"))).status == 200
    assert len(fake.issued) == 2
    assert [a["token"] for a in fake.asked] == [fake.issued[0], fake.issued[1], fake.issued[1]]
    assert not fake.problems
    assert_nothing_secret(caplog, *fake.issued)


@pytest.mark.usefixtures("nls_env")
async def test_aliyun_speed_pitch_and_volume_map_onto_its_rates(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path,
) -> None:
    fake = Nls(engine)
    url = await fake.serve(aiohttp_server)
    client = await nls_client(aiohttp_client, engine, tmp_path, url)
    r = await client.get(tts(HELLO, "xiaoyun", speed=0.8, pitch=1.2, volume=1.5))
    assert r.status == 200
    r = await client.get(tts(HELLO, "xiaoyun", speed=2.0, pitch=0.5, volume=0.5))
    assert r.status == 200
    got = [(a["speech_rate"], a["pitch_rate"], a["volume"]) for a in fake.asked]
    assert got == [(-125, 166, 75), (500, -500, 25)]
    too_fast = await client.get(tts(HELLO, "xiaoyun", speed=2.5))
    assert too_fast.status == 422 and (await too_fast.json())["field"] == "speed"
    assert not fake.problems


def test_aliyun_rate_mapping_is_its_published_one_and_monotonic() -> None:
    assert [aliyun_rate(f) for f in (0.5, 0.8, 1.0, 1.2, 2.0)] == [-500, -125, 0, 166, 500]
    factors = np.linspace(0.5, 2.0, 151)
    rates = [aliyun_rate(float(f)) for f in factors]
    assert rates == sorted(rates) and rates[0] == -500 and rates[-1] == 500
    assert [aliyun_volume(v) for v in (0.0, 0.5, 1.0, 2.0)] == [0, 25, 50, 100]


@pytest.mark.usefixtures("nls_env")
@pytest.mark.parametrize("http", [200, 400])
async def test_aliyun_json_error_is_a_json_502_naming_the_backend(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path, caplog: pytest.LogCaptureFixture, http: int,
) -> None:
    fake = Nls(engine)
    fake.error = (http, 50000000)
    url = await fake.serve(aiohttp_server)
    client = await nls_client(aiohttp_client, engine, tmp_path, url)
    r = await client.get(tts(HELLO, "xiaoyun"))
    assert r.status == 502
    body = await r.json()
    assert body["code"] == "upstream_failed" and "nls" in body["message"]
    if http == 200:
        assert "50000000" in body["message"]  # the status code, never the message
    assert all(s not in body["message"] for s in (HELLO, *fake.issued))
    assert not fake.problems
    assert_nothing_secret(caplog, *fake.issued)


@pytest.mark.usefixtures("nls_env")
async def test_aliyun_refuses_a_bad_signature_and_the_gateway_answers_502(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HUIYIN_TEST_AK_SECRET", "not-the-secret")
    fake = Nls(engine)
    url = await fake.serve(aiohttp_server)
    client = await nls_client(aiohttp_client, engine, tmp_path, url)
    r = await client.get(tts(HELLO, "xiaoyun"))
    assert r.status == 502
    body = await r.json()
    assert "nls" in body["message"] and "CreateToken" in body["message"]
    assert fake.problems == ["SignatureDoesNotMatch"] and fake.asked == []
    assert_nothing_secret(caplog, "not-the-secret")


def test_the_signature_matches_aliyuns_published_example() -> None:
    params = {"AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML",
              "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
              "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26"}
    assert aliyun.string_to_sign("GET", params) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML"
        "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"
        "%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z"
        "%26Version%3D2014-05-26")
    assert aliyun.sign("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    assert aliyun.percent_encode("a b*c~d+é") == "a%20b%2Ac~d%2B%C3%A9"
    query = aliyun.create_token_query("id", "secret", nonce="n-1", now=0)
    received = dict(parse_qsl(query))
    signature = received.pop("Signature")
    assert received["Timestamp"] == "1970-01-01T00:00:00Z"
    assert signature == pop_signature("GET", received, "secret")


def test_the_token_is_cached_until_the_margin_and_fetched_once_by_many_threads() -> None:
    now = [0.0]
    count = itertools.count()

    given: list[float] = []

    def fetch(*, timeout: float) -> aliyun.Token:
        given.append(timeout)
        return aliyun.Token(f"t{next(count)}", 1000.0 + now[0])

    source = aliyun.TokenSource(fetch, margin=300.0, clock=lambda: now[0])
    assert source.get(4.0) == "t0"
    now[0] = 699.0
    assert source.get(4.0) == "t0"
    now[0] = 700.0  # ExpireTime less the margin
    assert source.get(2.5) == "t1" and source.fetched == 2
    assert given == [4.0, 2.5]  # each fetch has what is left of its call's time

    shared = aliyun.TokenSource(
        lambda *, timeout: aliyun.Token(f"s{next(count)}", time.time() + 3600))
    barrier = threading.Barrier(8)
    got: list[str] = []

    def worker() -> None:
        barrier.wait()
        got.append(shared.get(10.0))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shared.fetched == 1 and len(set(got)) == 1 and len(got) == 8


@pytest.mark.parametrize("missing", sorted(ENV))
def test_a_missing_credential_fails_startup_naming_the_variable_not_a_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, missing: str,
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    settings = settings_for(tmp_path, nls_backend("http://127.0.0.1:9"))
    with pytest.raises(SynthesisError) as caught:
        load_engines_for(settings)
    message = str(caught.value)
    assert missing in message and "nls" in message
    assert all(value not in message for value in ENV.values())


# The example settings files

EXAMPLES = REPO / "config" / "examples"


# Upstreams that cannot be asked without credentials: their example names the variables.
NEEDS_CREDENTIALS = {"aliyun": ("NLS_APPKEY", "ALIYUN_AK_ID", "ALIYUN_AK_SECRET")}


def test_there_is_an_example_settings_file_for_each_kind() -> None:
    from config.backends import KINDS

    assert sorted(p.stem for p in EXAMPLES.glob("*.yaml")) == sorted(KINDS)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_each_example_settings_file_starts_with_no_environment(
    example: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from synth.remote import load_backend

    settings = load_settings(EXAMPLES / example, environ={})
    kind = example.removesuffix(".yaml")
    assert settings.backends and all(b.kind == kind for b in settings.backends)
    assert all(b.fallback == "baker" for b in settings.backends)
    for entry in settings.backends:
        for name in ("api_key_env", "appkey_env", "access_key_id_env", "access_key_secret_env"):
            if getattr(entry, name):
                monkeypatch.delenv(getattr(entry, name), raising=False)
        # Startup without asking the upstream (a piper entry asks its server for a version).
        entry = dataclasses.replace(entry, version=entry.version or "reported")
        if kind in NEEDS_CREDENTIALS:
            with pytest.raises(SynthesisError, match=NEEDS_CREDENTIALS[kind][0]):
                load_backend(entry, lambda: lambda text: text)
            continue
        engines = load_backend(entry, lambda: lambda text: text)
        assert len(engines) == entry.concurrency
        for engine in engines:
            engine.close()


def test_backend_entries_refuse_what_they_cannot_use() -> None:
    from config.backends import BackendConfigError, parse_backends

    base = {"name": "b", "url": "http://127.0.0.1:1", "version": "1"}
    with pytest.raises(BackendConfigError, match="'zero_shot' is for kind 'cosyvoice' only"):
        parse_backends([{**base, "kind": "openai", "voices": {"a": "x"},
                         "zero_shot": {"c": {"clip": "c.wav", "transcript": "t"}}}], "t")
    with pytest.raises(BackendConfigError, match="voice name 'Bad Name'"):
        parse_backends([{**base, "kind": "cosyvoice", "sample_rate": 22050,
                         "zero_shot": {"Bad Name": {"clip": "c.wav", "transcript": "t"}}}], "t")
    with pytest.raises(BackendConfigError, match="'voices' is required"):
        parse_backends([{**base, "kind": "openai"}], "t")
    (only_cloned,) = parse_backends([{**base, "kind": "cosyvoice", "sample_rate": 22050,
                                      "zero_shot": {"c": {"clip": "c.wav", "transcript": "t"}}}], "t")
    assert not only_cloned.voices and set(only_cloned.zero_shot) == {"c"}


def test_an_openai_backend_sends_the_key_its_entry_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.backends import parse_backends
    from synth.remote.engine import auth_headers
    from synth.remote.kinds import KindStartError

    (entry,) = parse_backends([{"name": "cloud", "kind": "openai", "url": "http://127.0.0.1:1",
                                "version": "1", "voices": {"a": "alloy"},
                                "api_key_env": "CLOUD_TTS_KEY"}], "t")
    monkeypatch.delenv("CLOUD_TTS_KEY", raising=False)
    with pytest.raises(KindStartError, match="CLOUD_TTS_KEY"):
        auth_headers(entry)
    monkeypatch.setenv("CLOUD_TTS_KEY", "sk-test")
    assert auth_headers(entry) == {"Authorization": "Bearer sk-test"}


async def test_a_cosyvoice_stream_is_passed_on_as_it_arrives(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path,
) -> None:
    fake = Cosy(engine)
    fake.hold = asyncio.Event()
    url = await fake.serve(aiohttp_server)
    clip = tmp_path / "clone.wav"
    await write_clip(clip, Audio(engine))
    client = await app_client(aiohttp_client, engine, settings_for(tmp_path, cosy_backend(url, clip)))
    r = await client.get(f"/tts/stream.pcm?voice=zhongwen&text={quote(HELLO)}")
    assert r.status == 200 and r.headers["X-Cache"] == "MISS"
    first = await asyncio.wait_for(r.content.readany(), 30)
    # Audio reached the listener while the upstream still holds the rest back.
    assert first and fake.sent_first.is_set() and not fake.hold.is_set()
    fake.hold.set()
    rest = await r.read()
    assert len(first + rest) == len(await fake.audio.raw())
    whole = await client.get(tts(HELLO, "zhongwen"))
    assert whole.headers["X-Cache"] == "HIT" and len(fake.sft) == 1
