"""HTTP handlers. Each turns its own input into a SpeechRequest and meets the same store."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from aiohttp import web

from cache.keys import SpeechRequest
from cache.store import Audio
from cache.storing import Storing
from config.phrases import PHRASE_ID
from gateway import fronts, params
from gateway.access import principal_of
from gateway.admission import admission_for, checked_speech
from gateway.caching import caching_of
from gateway.errors import BadRequest, InvalidParameter, NotFound, Unavailable
from gateway.jsonbody import json_response
from gateway.metrics import CONTENT_TYPE
from gateway.nostore import NO_STORE, header_says_no_store
from gateway.openapi import openapi_spec
from gateway.responses import IMMUTABLE, audio_response, public_cache_control
from gateway.signing import SIGNED_PARAMS
from gateway.state import METRICS, SETTINGS, STORE, VOICES
from gateway.storing import STORING_FIELDS, storing_of
from gateway.streaming import stream_speech
from gateway.urlmemo import URL_MEMO, UrlMemo
from synth import codecs
from synth.memo import fleeting
from synth.request import DEFAULT_TENANT
from synth.voices import Voices

# `tenant` is read only inside a signed URL (gateway/caller.py).
TTS_PARAMS = ("text", "voice", "style", "emotion", "speed", "pitch", "volume", "rate",
              "tenant", *STORING_FIELDS, *SIGNED_PARAMS)
API_FIELDS = (
    "text", "voice", "style", "emotion", "speed", "pitch", "volume", "format", "sample_rate",
    "output_wav_name", *STORING_FIELDS,
)


def voices_of(request: web.Request) -> Voices:
    """The engines, or a 503 while they are still loading."""
    voices = request.app.get(VOICES)
    if voices is None:
        raise Unavailable("the voice is still loading", retry_after=2)
    return voices


def _style(values: dict[str, Any]) -> str | None:
    style, emotion = params.string(values, "style"), params.string(values, "emotion")
    if style is not None and emotion is not None and style != emotion:
        raise BadRequest("give style or its alias emotion, not both", "emotion")
    return style if style is not None else emotion


async def tts(request: web.Request) -> web.StreamResponse:
    """GET|HEAD /tts.{ext}?text=…: the text's audio, from the store or synthesized now."""
    app = request.app
    memo = app[URL_MEMO]
    tenant = principal_of(request).tenant
    # One URL is one answer per tenant: never another tenant's from memory.
    target = request.raw_path if tenant == DEFAULT_TENANT else f"{tenant} {request.raw_path}"
    if not header_says_no_store(request):  # a no-store URL is never remembered
        hit = memo.find(target, app[STORE], caching_of(request))
        if hit is not None:
            return audio_response(request, hit.audio, cache_control=memo.cache_control,
                                  headers=hit.headers)
    speech, fmt, rate, storing = await _speech_from_query(request)
    store = app[STORE]
    epoch = store.reading_epoch
    audio = await store.audio(speech, fmt, rate, admission=admission_for(request), storing=storing)
    if not storing.keep:
        return audio_response(request, audio, cache_control=NO_STORE)
    if not storing.refresh:
        memo.remember(target, audio, store, epoch)
    return audio_response(request, audio, cache_control=memo.cache_control)


async def tts_stream(request: web.Request) -> web.StreamResponse:
    """GET /tts/stream.{ext}?text=…: audio sentence by sentence as it is synthesized."""
    speech, fmt, rate, storing = await _speech_from_query(request)
    cache_control = request.app[TTS_CACHE_CONTROL] if storing.keep else NO_STORE
    return await stream_speech(request, speech, fmt, rate, cache_control, storing)


async def _speech_from_query(request: web.Request) -> tuple[SpeechRequest, str, int, Storing]:
    """The checked request, format and rate a /tts URL asks for, and what it asks about
    keeping it (judged first: a refused refresh costs no reading)."""
    fmt = params.format_for_extension(request.match_info["ext"])
    values = params.query_values(request.query, TTS_PARAMS)
    storing = storing_of(request, values)

    def checked() -> tuple[SpeechRequest, int]:
        text = params.text(values, request.app[SETTINGS].max_text_length)
        voices = voices_of(request)
        speech = voices.request(
            text, voice=params.string(values, "voice"), style=_style(values),
            speed=params.number(values, "speed"), pitch=params.number(values, "pitch"),
            volume=params.number(values, "volume"),
        )
        return speech, params.check_rate(fmt, voices.native_rate(speech.engine),
                                         params.integer(values, "rate"))

    speech, rate = await checked_speech(request, values.get("text"), checked)
    return speech, fmt, rate, storing


async def prompt(request: web.Request) -> web.StreamResponse:
    """GET|HEAD /prompts/{key}.{ext}: stored audio by content key; immutable."""
    fmt = params.format_for_extension(request.match_info["ext"])
    values = params.query_values(request.query, ("rate", "download", "tenant", *SIGNED_PARAMS))
    key = request.match_info["key"]
    store = request.app[STORE]
    # Only the caller's tenant's prompts (a site-wide admin hears every tenant's).
    phrase = await store.hit(key, tenant=principal_of(request).hears)
    if phrase is None:
        raise NotFound(f"no stored prompt with key {key}", "key")
    rate = params.check_rate(fmt, phrase.sample_rate, params.integer(values, "rate"))
    audio = await store.variant(phrase, fmt, rate)
    return audio_response(request, audio, cache_control=IMMUTABLE, download=values.get("download"))


async def named_phrase(request: web.Request) -> web.StreamResponse:
    """GET|HEAD /phrases/{phrase_id}.{ext}: the current audio of a named phrase of the
    caller's tenant (else a public one, the phrase files'), no redirect."""
    fmt = params.format_for_extension(request.match_info["ext"])
    values = params.query_values(request.query, ("rate", "tenant", *SIGNED_PARAMS))
    phrase_id = request.match_info["phrase_id"]
    if not PHRASE_ID.fullmatch(phrase_id):
        raise NotFound(f"no phrase '{phrase_id[:64]}'", "phrase_id")
    store = request.app[STORE]
    current = await store.hit(phrase_id=phrase_id, tenant=principal_of(request).tenant)
    settings = request.app[SETTINGS]
    if current is None:
        if not settings.phrases:
            raise NotFound(
                f"no phrase '{phrase_id}': this gateway has no phrase files (set `phrases` in "
                "the settings or HUIYIN_PHRASES to YAML files of ids and texts)", "phrase_id",
            )
        raise NotFound(f"no phrase '{phrase_id}' in the phrase files (or not warmed yet)",
                       "phrase_id")
    rate = params.check_rate(fmt, current.sample_rate, params.integer(values, "rate"))
    audio = await store.variant(current, fmt, rate)
    # Short freshness: the phrase's text may change; the ETag follows the content.
    return audio_response(request, audio, cache_control=public_cache_control(settings.phrase_max_age))


async def api_tts(request: web.Request) -> web.Response:
    """POST /api/tts: synthesize (or find) and answer URLs to the audio."""
    if request.content_type != "application/json":
        raise BadRequest("send a JSON body with Content-Type: application/json")
    body = params.json_object(await request.read(), API_FIELDS)
    storing = storing_of(request, body)
    if not storing.keep:  # "cache": "no-store": no memo keeps its text (synth/memo.py)
        with fleeting():
            return await _api_tts(request, body, storing)
    return await _api_tts(request, body, storing)


async def _api_tts(request: web.Request, body: dict[str, Any], storing: Storing) -> web.Response:
    settings = request.app[SETTINGS]
    voices = voices_of(request)
    speech = await checked_speech(request, body.get("text"), lambda: voices.request(
        params.text(body, settings.max_text_length), voice=params.string(body, "voice"),
        style=_style(body), speed=params.number(body, "speed"),
        pitch=params.number(body, "pitch"), volume=params.number(body, "volume"),
    ))
    asked = params.string(body, "format") or "wav"
    try:
        fmt = params.format_for_extension(asked)
    except NotFound as exc:
        raise InvalidParameter(str(exc).replace("'.", "'"), "format") from None
    try:
        rate = params.check_rate(
            fmt, voices.native_rate(speech.engine), params.integer(body, "sample_rate")
        )
    except InvalidParameter as exc:
        raise InvalidParameter(str(exc), "sample_rate") from None
    store = request.app[STORE]
    audio: Audio = await store.audio(speech, fmt, rate, admission=admission_for(request),
                                     storing=storing)
    extension = params.url_extension(asked)
    if not storing.keep:
        # Nothing is stored to point a URL at: the audio comes in the answer, kept nowhere.
        return json_response({
            "status": "success", "key": audio.key, "audio_url": None, "download_url": None,
            "audio_base64": base64.b64encode(audio.data).decode("ascii"),
            "content_type": codecs.content_type(audio.format, audio.rate),
            "duration": round(audio.duration, 3), "cached": audio.cached, "format": fmt,
            "sample_rate": rate,
        }, headers={"Cache-Control": NO_STORE})
    url = request.url.origin().join(request.app.router["prompt"].url_for(key=audio.key, ext=extension))
    if rate != codecs.output_rate(fmt, voices.native_rate(speech.engine), None):
        url = url.with_query(rate=str(rate))
    download = params.string(body, "output_wav_name") or f"{audio.key}.{extension}"
    return json_response({
        "status": "success",
        "key": audio.key,
        "audio_url": str(url),
        "download_url": str(url.update_query(download=download)),
        "duration": round(audio.duration, 3),
        "cached": audio.cached,
        "format": fmt,
        "sample_rate": rate,
    })


async def api_pronounce(request: web.Request) -> web.Response:
    """GET /api/pronounce?text=…[&voice=]: what the voice will say, without synthesizing."""
    values = params.query_values(request.query, ("text", "voice"))
    voices = voices_of(request)
    speech = await checked_speech(request, values.get("text"), lambda: voices.request(
        params.text(values, request.app[SETTINGS].max_text_length),
        voice=params.string(values, "voice"), style=None, speed=1.0, pitch=1.0, volume=1.0))
    admission = admission_for(request)
    await admission.preview(speech)
    # With its tenant's words, on the frontend's fair share: never ahead of other clients.
    described = await request.app[STORE].pronounce(speech, admission, voices.pronounce)
    response = json_response(described)
    response.headers["Cache-Control"] = "no-store"
    return response


async def api_voices(request: web.Request) -> web.Response:
    """GET /api/voices: engines, voices, styles, setting ranges and formats."""
    described = voices_of(request).describe()
    described["formats"] = [
        {"name": f.name, "extension": f.extension, "extensions": params.extensions_of(f.name),
         "content_type": f.content_type,
         # The type at each rate a caller may choose, where it is not content_type.
         "content_types": {str(r): codecs.content_type(f.name, r) for r in f.allowed_rates
                           if codecs.content_type(f.name, r) != f.content_type},
         "sample_rate": f.sample_rate, "allowed_rates": list(f.allowed_rates),
         "description": f.description}
        for f in codecs.FORMATS.values()
    ]
    described["max_text_length"] = request.app[SETTINGS].max_text_length
    described["fronts"] = fronts.described(request.app[SETTINGS], voices_of(request))
    return json_response(described)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def _readiness(request: web.Request) -> tuple[Unavailable | None, bool]:
    """Why the gateway is not ready (None: it is), and whether its store took a write."""
    if request.app.get(VOICES) is None:
        return Unavailable("the voice is still loading", retry_after=2), False
    store = request.app[STORE]
    writable = await asyncio.get_running_loop().run_in_executor(None, store.files.writable)
    if not writable and not store.files.remote:
        return Unavailable("the store is not writable", retry_after=10), writable
    return None, writable


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every engine loaded and the store writable."""
    problem, writable = await _readiness(request)
    if problem is not None:
        raise problem
    store = request.app[STORE]
    # A backend or a bucket that is down leaves the gateway ready: stored prompts play, and
    # misses are synthesized (by a fallback voice; stored once the bucket is back).
    backends = {b["backend"]: b["state"] for b in request.app[VOICES].backends()}
    audio = {"audio_store": "up" if writable else "unreachable"} if store.files.remote else {}
    return json_response({"status": "ready", **({"backends": backends} if backends else {}),
                              **audio})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics (with readiness checked as /readyz checks it)."""
    collected = request.app[METRICS]
    collected.ready = (await _readiness(request))[0] is None
    response = web.Response(body=collected.render())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI description of these routes."""
    voices = voices_of(request)
    described = voices.describe()
    described["fronts"] = fronts.described(request.app[SETTINGS], voices)
    return json_response(openapi_spec(request.app[SETTINGS], described))


TTS_CACHE_CONTROL = web.AppKey("tts_cache_control", str)


def add_routes(app: web.Application) -> None:
    """Register every route; GET routes answer HEAD too."""
    app[TTS_CACHE_CONTROL] = public_cache_control(app[SETTINGS].http_max_age)
    app[URL_MEMO] = UrlMemo(app[TTS_CACHE_CONTROL])
    ext = r"{ext:[A-Za-z0-9]{1,8}}"
    app.router.add_get(f"/tts.{ext}", tts, name="tts")
    app.router.add_get(f"/tts/stream.{ext}", tts_stream, name="tts_stream")
    app.router.add_get(f"/prompts/{{key:[0-9a-f]{{32}}}}.{ext}", prompt, name="prompt")
    app.router.add_get(f"/phrases/{{phrase_id:[^/]+}}.{ext}", named_phrase, name="phrase")
    app.router.add_post("/api/tts", api_tts, name="api_tts")
    app.router.add_get("/api/voices", api_voices)
    app.router.add_get("/api/pronounce", api_pronounce, name="pronounce")
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
