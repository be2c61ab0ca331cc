"""Aliyun NLS RESTful speech synthesis: POST and GET /stream/v1/tts, from the same store.

Code written for Aliyun's REST API changes only its URL. The token comes in the
`X-NLS-Token` header or as `token` (body or query), and is a Huiyin API key (anything under
`access: open`); `appkey` is taken and logged, never the token. The audio is answered with
`Content-Type: audio/mpeg` whatever its format, as Aliyun does: its samples (and the code
copied from them) take any other type for a failure. `pcm` is raw 16-bit little-endian
samples at `sample_rate`: the stored WAV at that rate without its header. Failures are
Aliyun's JSON, `{task_id, result: "", status: <8 digits>, message}`, with our 4xx status.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from cache.storing import Storing
from gateway import params
from gateway.access import authorize
from gateway.admission import admission_for, checked_speech
from gateway.aliyun import params as nls
from gateway.caching import cache_control_for
from gateway.jsonbody import json_response
from gateway.logs import note
from gateway.nostore import NO_STORE
from gateway.responses import public_cache_control
from gateway.routes import voices_of
from gateway.state import SETTINGS, STORE
from gateway.storing import STORING_FIELDS, kept_as, storing_of
from synth import codecs

FIELDS = ("appkey", "token", "text", "format", "sample_rate", "voice", "volume", "speech_rate",
          "pitch_rate", *STORING_FIELDS)


def error_response(request: web.Request, error: Exception) -> web.Response:
    """A failure in Aliyun's shape, with the HTTP status every route gives it."""
    http, status, message, headers = nls.failure(request, error)
    response = json_response({"task_id": uuid.uuid4().hex, "result": "", "status": status,
                              "message": message}, status=http, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


async def tts_get(request: web.Request) -> web.Response:
    """GET /stream/v1/tts?appkey=…&token=…&text=…: the text's audio."""
    try:
        values = params.query_values(request.query, FIELDS)
        cache_control = public_cache_control(request.app[SETTINGS].http_max_age)
        return await _speak(request, values, cache_control)
    except Exception as exc:  # every failure in Aliyun's shape
        return error_response(request, exc)


async def tts_post(request: web.Request) -> web.Response:
    """POST /stream/v1/tts with a JSON body: the text's audio."""
    try:
        body = params.json_object(await request.read(), FIELDS)
        return await _speak(request, body, "no-store")
    except Exception as exc:  # every failure in Aliyun's shape
        return error_response(request, exc)


async def _speak(request: web.Request, values: Mapping[str, Any], cache_control: str) -> web.Response:
    # Credentials first: a refused request costs no more than a hit.
    await authorize(request, request.headers.get(nls.TOKEN_HEADER) or params.string(values, "token"))
    appkey = params.string(values, "appkey")
    if appkey:
        note(appkey=appkey[:64])
    storing = storing_of(request, values)
    with kept_as(storing):
        return await _spoken(request, values, cache_control, storing)


async def _spoken(
    request: web.Request, values: Mapping[str, Any], cache_control: str, storing: Storing,
) -> web.Response:
    settings = request.app[SETTINGS]
    voices = voices_of(request)
    asked = nls.read(values, settings, voices)
    speech = await checked_speech(request, values.get("text"), lambda: asked.request(
        voices, params.text(values, settings.max_text_length)))
    if not storing.keep:
        cache_control = NO_STORE
    audio = await request.app[STORE].audio(speech, asked.stored_format, asked.rate,
                                           admission=admission_for(request), storing=storing)
    note(key=audio.key[:8], cached=audio.cached, format=asked.fmt)
    data = codecs.wav_payload(audio.data) if asked.fmt == "pcm" else audio.data
    return web.Response(body=data, headers={
        "Content-Type": "audio/mpeg",  # whatever the format: Aliyun's clients check for it
        "Cache-Control": cache_control_for(request, cache_control),
        "X-Cache": "HIT" if audio.cached else "MISS",
        "X-Audio-Duration": f"{audio.duration:.3f}",
    })


def add_rest_routes(app: web.Application) -> None:
    """Register POST and GET /stream/v1/tts (judged by their handlers, not the access
    middleware: their credential is Aliyun's)."""
    app.router.add_get("/stream/v1/tts", tts_get, name="aliyun_tts_get")
    app.router.add_post("/stream/v1/tts", tts_post, name="aliyun_tts")
