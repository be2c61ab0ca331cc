"""CosyVoice's server routes (/inference_*) and CosyVoice-Lite's POST /tts, from the store.

Neither has an official client on PyPI: these are contract tests. The requests are exactly
what CosyVoice's runtime/python/fastapi/client.py sends (`requests` with `stream=True`, a
GET with a form-encoded body, multipart with the clip for zero-shot and cross-lingual,
the answer read with `iter_content`), and what CosyVoice-Lite's documented client sends
(a JSON POST, the WAV in the body). The PCM is decoded at cosyvoice_rate and compared
sample for sample with the WAV of /tts; a repeat is a hit; a clip or an instruction goes
to a cosyvoice backend (a small server following CosyVoice's published routes) that offers
the mode, and is refused, naming the field, where none does. Every error comes in FastAPI's
shape.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import requests
import soundfile as sf
from aiohttp import BodyPartReader, web

from config import Settings
from config.backends import BackendConfigError, parse_backends
from gateway import create_app
from gateway.state import STORE
from synth import codecs
from synth.fastspeech2 import FastSpeech2Engine
from synth.prompts import Prompt, Shelf, clip_problem
from tests.test_backend_contracts import Audio, Cosy, MakeServer
from tests.test_backends import Client, MakeClient, load_engines_for

HELLO = "您好，欢迎致电。"
WAIT = "请稍候，正在为您转接。"
ADMIN = "cosyvoice-admin-token-0123456789"


def settings_for(tmp_path: Path, *backends: dict[str, Any], **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", backends=parse_backends(list(backends), "test"),
                    **overrides)


async def gateway(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, settings: Settings
) -> tuple[Client, str]:
    """A gateway on a real socket, and its base URL for `requests`."""
    remote = await asyncio.to_thread(load_engines_for, settings)
    client = await aiohttp_client(create_app(settings, engines=[engine, *remote]))
    return client, str(client.server.make_url("")).rstrip("/")


async def in_thread(fn: Callable[[], Any]) -> Any:
    """`requests` is synchronous: it runs beside the gateway's loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def runtime_client(base: str, mode: str, **args: Any) -> tuple[int, Any, bytes]:
    """What CosyVoice's runtime client.py sends for a mode (its argparse names as keywords),
    and the bytes it reads: (status, headers, body)."""
    url = f"{base}/inference_{mode}"
    headers = args.pop("headers", None)  # the key a gateway under `access: keys` needs
    if mode == "sft":
        payload = {"tts_text": args["tts_text"], "spk_id": args["spk_id"]}
        response = requests.request("GET", url, data=payload, stream=True, headers=headers)
    elif mode == "zero_shot":
        payload = {"tts_text": args["tts_text"], "prompt_text": args["prompt_text"]}
        with open(args["prompt_wav"], "rb") as clip:
            files = [("prompt_wav", ("prompt_wav", clip, "application/octet-stream"))]
            response = requests.request("GET", url, data=payload, files=files, stream=True,
                                        headers=headers)
    elif mode == "cross_lingual":
        payload = {"tts_text": args["tts_text"]}
        with open(args["prompt_wav"], "rb") as clip:
            files = [("prompt_wav", ("prompt_wav", clip, "application/octet-stream"))]
            response = requests.request("GET", url, data=payload, files=files, stream=True,
                                        headers=headers)
    else:
        payload = {"tts_text": args["tts_text"], "spk_id": args["spk_id"],
                   "instruct_text": args["instruct_text"]}
        response = requests.request("GET", url, data=payload, stream=True, headers=headers)
    tts_audio = b""
    for r in response.iter_content(chunk_size=16000):
        tts_audio += r
    return response.status_code, response.headers, tts_audio


def samples(pcm: bytes) -> np.ndarray[Any, np.dtype[np.int16]]:
    """The client's reading of the answer: int16 samples."""
    assert len(pcm) % 2 == 0
    return np.frombuffer(pcm, dtype=np.int16)


def lite(base: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> requests.Response:
    """CosyVoice-Lite's documented call: the JSON POST, the WAV in the answer."""
    return requests.post(f"{base}/tts", json=body, headers=headers, timeout=60)


def wav_of(data: bytes) -> tuple[np.ndarray[Any, np.dtype[np.int16]], int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="int16")
    return audio, int(rate)


async def tts_wav(client: Client, text: str, **params: Any) -> tuple[bytes, str]:
    query = "".join(f"&{k}={v}" for k, v in params.items())
    r = await client.get(f"/tts.wav?text={quote(text)}{query}")
    assert r.status == 200
    return await r.read(), r.headers["X-Cache"]


# The runtime routes with the gateway's own voices


async def test_sft_streams_pcm_at_cosyvoice_rate_and_a_repeat_is_a_hit(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client, base = await gateway(aiohttp_client, engine, settings_for(tmp_path))
    store = client.app[STORE]
    status, headers, pcm = await in_thread(
        lambda: runtime_client(base, "sft", tts_text=HELLO, spk_id="中文女"))
    assert status == 200 and headers["X-Cache"] == "MISS"
    assert headers["Transfer-Encoding"] == "chunked"  # streamed as it was synthesized
    assert headers["Content-Type"] == "audio/pcm; rate=22050; channels=1"
    heard = samples(pcm)
    # The stored phrase's WAV at 22050 Hz, the rate the client assumes, holds the same
    # audio: each sentence was resampled as it streamed, so only the samples beside a
    # sentence's edge may differ.
    wav, cache = await tts_wav(client, HELLO, rate=22050)
    assert cache == "HIT"
    expected, rate = wav_of(wav)
    assert rate == 22050 and len(heard) == len(expected) and len(heard) / rate > 1.0
    assert np.mean(heard == expected) > 0.99
    status, headers, again = await in_thread(
        lambda: runtime_client(base, "sft", tts_text=HELLO, spk_id="中文女"))
    assert status == 200 and headers["X-Cache"] == "HIT"
    assert int(headers["Content-Length"]) == len(again)  # stored: sent whole
    assert np.array_equal(samples(again), expected)  # the WAV's samples, every one
    stats = store.stats()
    assert stats.misses == 1 and stats.hits == 2


async def test_the_same_text_by_tts_and_by_inference_sft_is_one_synthesis(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client, base = await gateway(aiohttp_client, engine, settings_for(tmp_path))
    # /tts first, then CosyVoice's route with a speaker that is the default voice.
    assert (await tts_wav(client, HELLO, voice="baker"))[1] == "MISS"
    status, headers, _ = await in_thread(
        lambda: runtime_client(base, "sft", tts_text=HELLO, spk_id="中文男"))
    assert status == 200 and headers["X-Cache"] == "HIT"
    # CosyVoice's route first (our own voice name as spk_id), then /tts.
    status, headers, _ = await in_thread(
        lambda: runtime_client(base, "sft", tts_text=WAIT, spk_id="baker"))
    assert status == 200 and headers["X-Cache"] == "MISS"
    assert (await tts_wav(client, WAIT, voice="baker"))[1] == "HIT"
    store = client.app[STORE]
    assert store.stats().misses == 2 and store.stats().entries == 2
    # POST takes the same fields.
    posted = await in_thread(lambda: requests.post(
        f"{base}/inference_sft", data={"tts_text": WAIT, "spk_id": "英文女"}, timeout=60))
    assert posted.status_code == 200 and posted.headers["X-Cache"] == "HIT"


async def test_cosyvoice_rate_sets_the_pcm_rate(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client, base = await gateway(aiohttp_client, engine, settings_for(tmp_path, cosyvoice_rate=16000))
    status, headers, pcm = await in_thread(
        lambda: runtime_client(base, "sft", tts_text=HELLO, spk_id="中文女"))
    assert status == 200 and headers["Content-Type"] == "audio/pcm; rate=16000; channels=1"
    expected, rate = wav_of((await tts_wav(client, HELLO, rate=16000))[0])
    heard = samples(pcm)  # resampled sentence by sentence as it streamed
    assert rate == 16000 and len(heard) == len(expected) and np.mean(heard == expected) > 0.99


async def test_voices_lists_cosyvoices_speakers(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client, _ = await gateway(aiohttp_client, engine, settings_for(
        tmp_path, cosyvoice_speakers="客服=baker"))
    fronts = (await (await client.get("/api/voices")).json())["fronts"]
    cosy = fronts["cosyvoice"]
    assert "/inference_sft" in cosy["routes"]
    assert cosy["voices"]["中文女"] == "baker" and cosy["voices"]["客服"] == "baker"
    assert set(cosy["voices"]) >= {"中文女", "中文男", "日语男", "粤语女", "英文女", "英文男", "韩语女"}


# Prompts on a cosyvoice backend


class CosyServer(Cosy):
    """CosyVoice's FastAPI server with every inference route, checking each request's fields."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        super().__init__(engine)
        self.cross_lingual: list[dict[str, str | bytes]] = []
        self.instruct: list[dict[str, str]] = []

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/inference_cross_lingual", self.inference_cross_lingual)
        app.router.add_post("/inference_instruct", self.inference_instruct)
        return app

    async def inference_cross_lingual(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != "multipart/form-data":
            return self.refuse(f"/inference_cross_lingual takes multipart, got {request.content_type}")
        fields: dict[str, str | bytes] = {}
        async for part in await request.multipart():
            assert isinstance(part, BodyPartReader) and part.name is not None
            raw = bytes(await part.read())
            fields[part.name] = raw if part.filename is not None else raw.decode()
        if set(fields) != {"tts_text", "prompt_wav"} or not isinstance(fields["prompt_wav"], bytes):
            return self.refuse(f"/inference_cross_lingual needs tts_text and the file "
                               f"prompt_wav, got {sorted(fields)}")
        self.cross_lingual.append(fields)
        return await self._pcm(request)

    async def inference_instruct(self, request: web.Request) -> web.StreamResponse:
        fields = {k: str(v) for k, v in (await request.post()).items()}
        if set(fields) != {"tts_text", "spk_id", "instruct_text"} or not all(fields.values()):
            return self.refuse(f"/inference_instruct needs tts_text, spk_id and "
                               f"instruct_text, got {sorted(fields)}")
        self.instruct.append(fields)
        return await self._pcm(request)


def cosy_entry(url: str, **fields: Any) -> dict[str, Any]:
    return {"name": "cosy", "kind": "cosyvoice", "url": url, "voices": {"zhongwen": "中文女"},
            "modes": ["zero_shot", "cross_lingual", "instruct"], "sample_rate": 22050,
            "version": "300m-1", "normalize": False, "retries": 0, **fields}


async def clip_file(tmp_path: Path, audio: Audio, name: str, rate: int | None = None) -> Path:
    path = tmp_path / name
    data = await audio.wav(rate)
    await asyncio.to_thread(path.write_bytes, data)
    return path


async def test_zero_shot_cross_lingual_and_instruct_go_to_the_cosyvoice_backend(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path,
) -> None:
    upstream = CosyServer(engine)
    url = await upstream.serve(aiohttp_server)
    client, base = await gateway(aiohttp_client, engine, settings_for(
        tmp_path, cosy_entry(url), cosyvoice_speakers="中文男=zhongwen"))
    clip = await clip_file(tmp_path, Audio(engine, "您好。"), "clip.wav")
    other = await clip_file(tmp_path, Audio(engine, "请稍候。"), "other.wav", rate=16000)
    clip_bytes = await asyncio.to_thread(clip.read_bytes)
    sent = await upstream.audio.raw()  # the upstream's PCM, at the rate cosyvoice_rate asks

    def zero_shot(prompt_wav: Path, prompt_text: str = "您好。") -> tuple[int, Any, bytes]:
        return runtime_client(base, "zero_shot", tts_text=HELLO, prompt_text=prompt_text,
                              prompt_wav=str(prompt_wav))

    status, headers, pcm = await in_thread(lambda: zero_shot(clip))
    assert status == 200 and headers["X-Cache"] == "MISS"
    assert pcm == sent  # passed on as it arrived, every byte
    assert upstream.zero_shot == [{"tts_text": HELLO, "prompt_text": "您好。", "prompt_wav": clip_bytes}]
    status, headers, again = await in_thread(lambda: zero_shot(clip))
    assert status == 200 and headers["X-Cache"] == "HIT" and again == pcm
    # The clip and its transcript are part of the key.
    assert (await in_thread(lambda: zero_shot(other)))[1]["X-Cache"] == "MISS"
    assert (await in_thread(lambda: zero_shot(clip, "你好。")))[1]["X-Cache"] == "MISS"
    assert len(upstream.zero_shot) == 3

    status, headers, pcm = await in_thread(lambda: runtime_client(
        base, "cross_lingual", tts_text=HELLO, prompt_wav=str(clip)))
    assert status == 200 and headers["X-Cache"] == "MISS" and len(pcm) > 0
    assert upstream.cross_lingual == [{"tts_text": HELLO, "prompt_wav": clip_bytes}]
    # CosyVoice-Lite's reference_audio is the same clone: the same key, a hit.
    answer = await in_thread(lambda: lite(base, {
        "text": HELLO, "reference_audio": base64.b64encode(clip_bytes).decode()}))
    assert answer.status_code == 200 and answer.headers["X-Cache"] == "HIT"
    audio, rate = wav_of(answer.content)
    assert rate == 22050 and audio.tobytes() == sent  # the backend's own rate, every sample
    assert len(upstream.cross_lingual) == 1

    instruction = "Theo 'Crimson', is a fiery, passionate rebel leader."
    status, headers, pcm = await in_thread(lambda: runtime_client(
        base, "instruct", tts_text=HELLO, spk_id="中文男", instruct_text=instruction))
    assert status == 200 and headers["X-Cache"] == "MISS" and len(pcm) > 0
    # 中文男 is mapped to the backend's voice zhongwen, which is its speaker 中文女.
    assert upstream.instruct == [{"tts_text": HELLO, "spk_id": "中文女", "instruct_text": instruction}]
    status, headers, _ = await in_thread(lambda: runtime_client(
        base, "instruct", tts_text=HELLO, spk_id="中文男", instruct_text=instruction))
    assert headers["X-Cache"] == "HIT" and len(upstream.instruct) == 1
    # The speaker itself, without the instruction, is the backend's sft route.
    status, headers, _ = await in_thread(
        lambda: runtime_client(base, "sft", tts_text=HELLO, spk_id="中文男"))
    assert status == 200 and upstream.sft == [{"tts_text": HELLO, "spk_id": "中文女"}]
    assert not upstream.problems


async def test_without_a_backend_for_the_mode_prompts_are_refused_naming_the_field(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, engine: FastSpeech2Engine,
    tmp_path: Path,
) -> None:
    upstream = CosyServer(engine)
    url = await upstream.serve(aiohttp_server)
    clip = await clip_file(tmp_path, Audio(engine), "clip.wav")
    clip_text = base64.b64encode(await asyncio.to_thread(clip.read_bytes)).decode()
    for label, entries in (("no backend", ()), ("no modes", (cosy_entry(url, modes=[]),))):
        _, base = await gateway(aiohttp_client, engine, settings_for(
            tmp_path / label, *entries, cosyvoice_speakers="中文男=zhongwen" if entries else ""))
        for mode, field, args in (
            ("zero_shot", "prompt_wav", {"prompt_text": "您好。", "prompt_wav": str(clip)}),
            ("cross_lingual", "prompt_wav", {"prompt_wav": str(clip)}),
            ("instruct", "instruct_text", {"spk_id": "中文男", "instruct_text": "calm"}),
        ):
            status, headers, body = await in_thread(
                lambda b=base, m=mode, a=args: runtime_client(b, m, tts_text=HELLO, **a))
            assert status == 422, (label, mode)
            (item,) = json.loads(body)["detail"]
            assert item["loc"] == ["body", field], (label, mode)
            assert "cosyvoice backend" in item["msg"] and mode in item["msg"]
        answer = await in_thread(
            lambda b=base: lite(b, {"text": HELLO, "reference_audio": clip_text}))
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "reference_audio"]
        assert "cross_lingual" in answer.json()["detail"][0]["msg"]
    assert upstream.zero_shot == upstream.cross_lingual == upstream.instruct == []


# CosyVoice-Lite


async def test_cosyvoice_lite_answers_a_wav_from_the_same_store(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client, base = await gateway(aiohttp_client, engine, settings_for(tmp_path))
    body = {"text": HELLO, "language": "zh", "speed": 1.2, "emotion": "cheerful"}
    first = await in_thread(lambda: lite(base, body))
    assert first.status_code == 200 and first.headers["Content-Type"] == "audio/wav"
    assert first.headers["X-Cache"] == "MISS"
    audio, rate = wav_of(first.content)
    assert rate == 24000 and len(audio) / rate > 1.0
    again = await in_thread(lambda: lite(base, body))
    assert again.headers["X-Cache"] == "HIT" and again.content == first.content
    # The same request as /tts's: one key.
    same, cache = await tts_wav(client, HELLO, style="cheerful", speed=1.2)
    assert cache == "HIT" and same == first.content
    # Defaults: Mandarin, the voice as it is, at its own pace; an emotion's common name.
    plain = await in_thread(lambda: lite(base, {"text": HELLO}))
    assert plain.status_code == 200 and plain.headers["X-Cache"] == "MISS"
    assert (await tts_wav(client, HELLO))[1] == "HIT"
    happy = await in_thread(lambda: lite(base, {"text": HELLO, "emotion": "happy"}))
    assert happy.status_code == 200
    assert (await tts_wav(client, HELLO, style="cheerful"))[1] == "HIT"


# Errors


def detail(response: requests.Response) -> Any:
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"
    return response.json()["detail"]


def field_of(response: requests.Response) -> str:
    (item,) = detail(response)
    assert item["loc"][0] == "body" and item["msg"]
    return str(item["loc"][1])


async def test_every_error_is_a_4xx_in_fastapis_shape_naming_the_field(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client, base = await gateway(aiohttp_client, engine, settings_for(
        tmp_path, max_text_length=24, max_body_bytes=4096, max_clip_bytes=100_000))
    sft = f"{base}/inference_sft"
    zero_shot = f"{base}/inference_zero_shot"
    eight_k = await Audio(engine).wav(8000)
    big = b"RIFF" + bytes(100_500)

    def call(method: str, url: str, **kw: Any) -> requests.Response:
        return requests.request(method, url, timeout=60, **kw)

    cases: list[tuple[str, Callable[[], requests.Response], int, str | None]] = [
        ("no tts_text", lambda: call("GET", sft, data={"spk_id": "中文女"}), 422, "tts_text"),
        ("empty spk_id", lambda: call("GET", sft, data={"tts_text": HELLO, "spk_id": ""}), 422, "spk_id"),
        ("unknown speaker", lambda: call("GET", sft, data={"tts_text": HELLO, "spk_id": "蒙语女"}),
         422, "spk_id"),
        ("text too long", lambda: call("GET", sft, data={"tts_text": "您好" * 13, "spk_id": "中文女"}),
         413, "tts_text"),
        ("nothing to say", lambda: call("GET", sft, data={"tts_text": "。", "spk_id": "中文女"}),
         422, "tts_text"),
        ("unknown field", lambda: call("GET", sft, data={"tts_text": HELLO, "spk_id": "中文女",
                                                         "stream": "1"}), 400, "stream"),
        ("repeated field", lambda: call("GET", sft, data=[("tts_text", HELLO), ("tts_text", HELLO),
                                                          ("spk_id", "中文女")]), 400, "tts_text"),
        ("in the query", lambda: call("GET", f"{sft}?tts_text=x", data={"spk_id": "中文女"}), 400,
         "tts_text"),
        ("JSON body", lambda: call("POST", sft, json={"tts_text": HELLO, "spk_id": "中文女"}), 400, None),
        ("not UTF-8", lambda: call("POST", sft, data=b"tts_text=%FF&spk_id=x", headers={
            "Content-Type": "application/x-www-form-urlencoded"}), 400, None),
        ("broken multipart", lambda: call("POST", sft, data=b"--x\r\nnot a part", headers={
            "Content-Type": "multipart/form-data; boundary=y"}), 400, None),
        ("chunked body", lambda: call("POST", sft, data=iter([b"tts_text=x&spk_id=y"]), headers={
            "Content-Type": "application/x-www-form-urlencoded"}), 411, None),
        ("body too large", lambda: call("POST", sft, data={"tts_text": "x" * 5000, "spk_id": "a"}),
         413, None),
        ("no prompt_wav", lambda: call("POST", zero_shot, data={"tts_text": HELLO, "prompt_text": "您好"}),
         422, "prompt_wav"),
        ("no prompt_text", lambda: call("POST", zero_shot, data={"tts_text": HELLO}, files={
            "prompt_wav": ("a.wav", eight_k)}), 422, "prompt_text"),
        ("not a WAV", lambda: call("GET", zero_shot, data={"tts_text": HELLO, "prompt_text": "您好"},
                                   files={"prompt_wav": ("a.wav", b"ID3 an mp3")}), 422, "prompt_wav"),
        ("an 8 kHz clip", lambda: call("GET", zero_shot, data={"tts_text": HELLO, "prompt_text": "您好"},
                                       files={"prompt_wav": ("a.wav", eight_k)}), 422, "prompt_wav"),
        ("clip too large", lambda: call("GET", zero_shot, data={"tts_text": HELLO, "prompt_text": "您好"},
                                        files={"prompt_wav": ("a.wav", big)}), 413, "prompt_wav"),
        ("Lite: not JSON", lambda: call("POST", f"{base}/tts", data={"text": HELLO}), 400, None),
        ("Lite: broken JSON", lambda: call("POST", f"{base}/tts", data=b"{", headers={
            "Content-Type": "application/json"}), 400, None),
        ("Lite: no text", lambda: lite(base, {"language": "zh"}), 422, "text"),
        ("Lite: unknown field", lambda: lite(base, {"text": HELLO, "voice": "x"}), 400, "voice"),
        ("Lite: text too long", lambda: lite(base, {"text": "您好" * 13}), 413, "text"),
        ("Lite: unknown emotion", lambda: lite(base, {"text": HELLO, "emotion": "smug"}), 422, "emotion"),
        ("Lite: unknown language", lambda: lite(base, {"text": HELLO, "language": "yue"}), 422,
         "language"),
        ("Lite: speed out of range", lambda: lite(base, {"text": HELLO, "speed": 9}), 422, "speed"),
        ("Lite: speed not a number", lambda: lite(base, {"text": HELLO, "speed": "fast"}), 422, "speed"),
        ("Lite: not base64", lambda: lite(base, {"text": HELLO, "reference_audio": "%%%"}), 422,
         "reference_audio"),
        ("Lite: base64 of no WAV", lambda: lite(base, {
            "text": HELLO, "reference_audio": base64.b64encode(b"not a wav").decode()}), 422,
         "reference_audio"),
    ]
    for label, send, status, field in cases:
        response = await in_thread(send)
        assert response.status_code == status, (label, response.text)
        if field is None:
            assert isinstance(detail(response), str), label
        else:
            assert field_of(response) == field, (label, response.text)
    # HEAD is not a route of CosyVoice's server either.
    head = await client.head("/inference_sft")
    assert head.status == 405


async def test_under_access_keys_a_key_header_is_needed(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client, base = await gateway(aiohttp_client, engine, settings_for(
        tmp_path, access="keys", admin_token=ADMIN))
    status, headers, body = await in_thread(
        lambda: runtime_client(base, "sft", tts_text=HELLO, spk_id="中文女"))
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert "API key" in json.loads(body)["detail"]
    refused = await in_thread(lambda: lite(base, {"text": HELLO}))
    assert refused.status_code == 401 and isinstance(refused.json()["detail"], str)
    wrong = await in_thread(lambda: runtime_client(
        base, "sft", tts_text=HELLO, spk_id="中文女", headers={"Authorization": "Bearer hy_nope"}))
    assert wrong[0] == 401
    status, headers, pcm = await in_thread(lambda: runtime_client(
        base, "sft", tts_text=HELLO, spk_id="中文女", headers={"Authorization": f"Bearer {ADMIN}"}))
    assert status == 200 and len(pcm) > 0
    answer = await in_thread(lambda: lite(base, {"text": HELLO}, {"X-API-Key": ADMIN}))
    assert answer.status_code == 200 and answer.headers["X-Cache"] == "HIT"


# What a prompt may be


def test_a_clip_is_a_wav_of_16_khz_or_more_and_at_most_30_seconds() -> None:
    def wav(seconds: float, rate: int) -> bytes:
        buffer = io.BytesIO()
        sf.write(buffer, np.zeros(int(seconds * rate), dtype=np.int16), rate, format="WAV")
        return buffer.getvalue()

    assert clip_problem(wav(3, 16000)) is None and clip_problem(wav(3, 48000)) is None
    assert "8000 Hz" in str(clip_problem(wav(3, 8000)))
    assert "30 s" in str(clip_problem(wav(31, 16000)))
    assert clip_problem(wav(0, 16000)) == "holds no audio"
    assert clip_problem(codecs.encode(np.ones(16000, dtype=np.int16), 16000, "mp3")) is not None


def test_modes_are_cosyvoices_and_for_its_kind_only() -> None:
    base = {"name": "cosy", "kind": "cosyvoice", "url": "http://127.0.0.1:9", "version": "1",
            "sample_rate": 22050, "voices": {"a": "中文女"}}
    (entry,) = parse_backends([{**base, "modes": ["zero_shot", "instruct"]}], "t")
    assert entry.modes == ("zero_shot", "instruct")
    with pytest.raises(BackendConfigError, match="unknown mode 'sft'"):
        parse_backends([{**base, "modes": ["sft"]}], "t")
    with pytest.raises(BackendConfigError, match="'modes' is for kind 'cosyvoice' only"):
        parse_backends([{**base, "kind": "piper", "modes": ["zero_shot"]}], "t")


def test_a_prompt_is_kept_while_held_and_the_recent_ones_a_while_longer() -> None:
    shelf = Shelf(recent=2, recent_bytes=10)
    prompts = [Prompt("cross_lingual", clip=bytes([i]) * 4) for i in range(4)]
    names = [p.voice_name("cosy") for p in prompts]
    assert len(set(names)) == 4 and names[0].startswith("cosy~cross_lingual~")
    for name, prompt in zip(names, prompts, strict=True):
        shelf.hold(name, prompt)
    shelf.hold(names[0], prompts[0])  # a second request for the first
    for name in names:
        shelf.release(name)
    # Held once more, the first stays; of the others, the two most recent (8 bytes) stay.
    assert [shelf.get(n) is not None for n in names] == [True, False, True, True]
    shelf.release(names[0])  # the first was asked for last: the third goes
    assert [shelf.get(n) is not None for n in names] == [True, False, False, True]
    same = Prompt("cross_lingual", clip=bytes([3]) * 4)
    assert same.voice_name("cosy") == names[3]  # the digest of what it gives, not the object
    assert Prompt("zero_shot", clip=b"x", transcript="a").digest != \
        Prompt("zero_shot", clip=b"x", transcript="b").digest
