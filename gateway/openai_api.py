"""OpenAI-compatible speech: POST /v1/audio/speech and GET /v1/models, from the same store."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cache.storing import Storing
from config import Settings
from gateway import fronts, params
from gateway.admission import admission_for, checked_speech
from gateway.errors import InvalidParameter, NotFound
from gateway.jsonbody import json_response
from gateway.nostore import NO_STORE
from gateway.responses import audio_response, public_cache_control
from gateway.routes import voices_of
from gateway.state import SETTINGS, STORE
from gateway.storing import STORING_FIELDS, kept_as, storing_of
from gateway.streaming import stream_speech
from synth.voices import Voices

# Model ids OpenAI clients send; every one speaks with this gateway's voices.
MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "huiyin")
# OpenAI's voice names; the `openai_voices` setting maps them, the rest go to the default voice.
OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
)
# response_format -> our format
RESPONSE_FORMATS = {"mp3": "mp3", "opus": "ogg", "flac": "flac", "wav": "wav", "pcm": "pcm"}
FIELDS = ("model", "input", "voice", "response_format", "speed", "instructions", "stream_format",
          *STORING_FIELDS)


async def speech(request: web.Request) -> web.StreamResponse:
    """POST /v1/audio/speech: the input spoken in the requested format."""
    body = params.json_object(await request.read(), FIELDS, noun="parameter")
    # `Cache-Control: no-store` on the request (the SDK's extra_headers) or `"cache":
    # "no-store"` in the body (its extra_body): nothing is kept, and nothing of its text is
    # remembered while it is read and spoken.
    storing = storing_of(request, body)
    with kept_as(storing):
        return await _speech(request, body, storing)


async def _speech(
    request: web.Request, body: dict[str, Any], storing: Storing,
) -> web.StreamResponse:
    model = params.string(body, "model")
    if model is None:
        raise InvalidParameter("model is required", "model")
    if model not in MODELS:
        raise NotFound(f"the model '{model[:40]}' does not exist; use one of: {', '.join(MODELS)}", "model")
    settings = request.app[SETTINGS]
    voices = voices_of(request)
    asked = params.string(body, "voice")
    if asked is None:
        raise InvalidParameter("voice is required", "voice")
    voice = settings.openai_voices.get(asked) or (
        voices.default_voice if asked in OPENAI_VOICES else asked
    )
    response_format = params.string(body, "response_format") or "mp3"
    fmt = RESPONSE_FORMATS.get(response_format)
    if fmt is None:
        raise InvalidParameter(
            f"response_format '{response_format[:20]}' is not offered; use one of: "
            f"{', '.join(RESPONSE_FORMATS)}", "response_format",
        )
    request_speech = await checked_speech(request, body.get("input"), lambda: voices.request(
        params.text(body, settings.max_text_length, "input"), voice=voice, style=None,
        speed=params.number(body, "speed"), pitch=1.0, volume=1.0))
    rate = params.check_rate(fmt, voices.native_rate(request_speech.engine), None)
    cache_control = public_cache_control(settings.http_max_age)
    stream_format = params.string(body, "stream_format")
    if stream_format not in (None, "audio"):
        raise InvalidParameter("stream_format must be 'audio' (server-sent events are not offered)",
                               "stream_format")
    if not storing.keep:
        cache_control = NO_STORE
    if stream_format == "audio":
        return await stream_speech(request, request_speech, fmt, rate, cache_control, storing)
    store = request.app[STORE]
    audio = await store.audio(request_speech, fmt, rate, admission=admission_for(request),
                              storing=storing)
    return audio_response(request, audio, cache_control=cache_control)


async def models(request: web.Request) -> web.Response:
    """GET /v1/models: the model ids /v1/audio/speech accepts."""
    return json_response({
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 0, "owned_by": "huiyin"} for m in MODELS],
    })


def _voice_names(settings: Settings, voices: Voices) -> dict[str, str]:
    return {name: settings.openai_voices.get(name, voices.default_voice) for name in OPENAI_VOICES}


fronts.register("openai", ("/v1/audio/speech",), _voice_names)


def add_openai_routes(app: web.Application) -> None:
    """Register the OpenAI-compatible routes."""
    app.router.add_post("/v1/audio/speech", speech, name="openai_speech")
    app.router.add_get("/v1/models", models)
