"""The CosyVoice-Lite service's `POST /tts`, spoken from the store.

It takes JSON `{text, language, reference_audio, speed, emotion}` and answers the WAV:
`language` picks our voice that speaks it (the default voice first), `emotion` one of its
styles, `speed` our speed; `reference_audio`, a base64 WAV, clones the voice on a
`cosyvoice` backend whose `modes` include cross_lingual (a clip without its transcript).
Errors come in FastAPI's shape, as on the /inference_* routes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re

from aiohttp import web

from gateway import params
from gateway.access import authorize
from gateway.admission import admission_for, checked_speech
from gateway.cosyvoice_api import adopted_voice, checked_clip, fastapi_error, required
from gateway.errors import BadRequest, InvalidParameter
from gateway.forms import read_body
from gateway.nostore import NO_STORE
from gateway.responses import audio_response, public_cache_control
from gateway.routes import voices_of
from gateway.state import SETTINGS, STORE
from gateway.storing import STORING_FIELDS, kept_as, storing_of
from synth.prompts import CROSS_LINGUAL, Prompt
from synth.ssml.speaking import NEAREST_STYLE

FIELDS = ("text", "language", "reference_audio", "speed", "emotion", *STORING_FIELDS)
# What the store and the engines call a field, as this API calls it.
NAMES = {"style": "emotion"}
DEFAULT_LANGUAGE = "zh"
# A data URL's prefix, which some clients put before the base64 of a clip.
_DATA_URL = re.compile(r"^data:[\w/.+-]*(;[\w=.+-]+)*;base64,")


async def lite_tts(request: web.Request) -> web.StreamResponse:
    """POST /tts: the text spoken, as a WAV."""
    with contextlib.ExitStack() as held:  # a prompt is kept until it is spoken
        try:
            return await _speak(request, held)
        except Exception as exc:
            return fastapi_error(request, exc, NAMES)


async def _speak(request: web.Request, held: contextlib.ExitStack) -> web.StreamResponse:
    await authorize(request, None)  # before the body: a refusal costs what a hit costs
    settings = request.app[SETTINGS]
    if request.content_type != "application/json":
        raise BadRequest("send a JSON body with Content-Type: application/json")
    # Base64 takes four bytes for every three of the clip.
    raw = await read_body(request, settings.max_body_bytes + settings.max_clip_bytes * 4 // 3 + 4)
    body = params.json_object(raw, FIELDS)
    storing = storing_of(request, body)
    held.enter_context(kept_as(storing))  # a no-store request is fleeting until answered
    required(body, "text")
    voices = voices_of(request)
    language = params.string(body, "language") or DEFAULT_LANGUAGE
    voice = voices.speaking(language)
    if voice is None:
        raise InvalidParameter(f"language '{language[:20]}' is not spoken here; use one of: "
                               f"{', '.join(voices.languages())}", "language")
    clip = params.string(body, "reference_audio")
    if clip:
        data = await checked_clip(_base64(clip), "reference_audio", settings)
        voice = adopted_voice(voices, Prompt(CROSS_LINGUAL, clip=data), "reference_audio", held)
    styles = voices.resolve(voice).voice.styles
    emotion = params.string(body, "emotion")
    style = None
    if emotion:
        style = emotion if emotion in styles else NEAREST_STYLE.get(emotion.lower())
        if style not in styles:
            raise InvalidParameter(f"emotion '{emotion[:40]}' is not a style of voice "
                                   f"'{voice}'; use one of: {', '.join(styles)}", "emotion")
    speech = await checked_speech(request, body.get("text"), lambda: voices.request(
        params.text(body, settings.max_text_length), voice=voice, style=style,
        speed=params.number(body, "speed"), pitch=1.0, volume=1.0))
    audio = await request.app[STORE].audio(speech, "wav", admission=admission_for(request),
                                           storing=storing)
    cache_control = public_cache_control(settings.http_max_age) if storing.keep else NO_STORE
    return audio_response(request, audio, cache_control=cache_control)


def _base64(text: str) -> bytes:
    """A clip's bytes from its base64 (standard or URL-safe, a data URL's prefix allowed)."""
    text = _DATA_URL.sub("", text.strip(), count=1)
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter("reference_audio must be a WAV file in base64", "reference_audio") from None


def add_lite_routes(app: web.Application) -> None:
    """Register CosyVoice-Lite's POST /tts."""
    app.router.add_post("/tts", lite_tts, name="cosyvoice_lite")
