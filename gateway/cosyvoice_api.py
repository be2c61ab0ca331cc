"""CosyVoice's FastAPI server, spoken from the store: /inference_sft, /inference_zero_shot,
/inference_cross_lingual and /inference_instruct (runtime/python/fastapi/server.py).

Each takes form fields, by GET (as CosyVoice's own client.py sends them: a form-encoded
body, multipart with the clip) or by POST, and answers raw 16-bit little-endian mono PCM at
the `cosyvoice_rate` setting: streamed as it is synthesized, or sent whole when stored. A
speaker id maps to a voice through `cosyvoice_speakers`; a clip or an instruction goes to a
`cosyvoice` backend whose `modes` offer it, under a voice named by the prompt's digest, so
a repeat is a hit. Errors come in FastAPI's shape, `{"detail": …}`.

CosyVoice's server has no credentials of its own: a key travels as on every other route,
`Authorization: Bearer <key>` (or X-API-Key), judged before the body is read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from cache.keys import SpeechRequest
from cache.storing import Storing
from config import Settings
from gateway import fronts, params
from gateway.access import authorize
from gateway.admission import admission_for, checked_speech
from gateway.cosyvoice_speakers import speaker_names, speaker_voice
from gateway.errors import BadRequest, InvalidParameter, TooLarge, describe_failure
from gateway.forms import read_form
from gateway.jsonbody import json_response
from gateway.logs import note
from gateway.routes import voices_of
from gateway.state import SETTINGS, STORE
from gateway.storing import STORING_FIELDS, kept_as, storing_of
from gateway.streaming import Whole, encode_chunk, speech_pieces
from synth import codecs
from synth.engine import Pcm
from synth.prompts import CROSS_LINGUAL, INSTRUCT, ZERO_SHOT, Prompt, clip_problem
from synth.voices import Voices

# Each route's form fields, and the one that is a file.
FIELDS = {
    "sft": ("tts_text", "spk_id", *STORING_FIELDS),
    ZERO_SHOT: ("tts_text", "prompt_text", *STORING_FIELDS),
    CROSS_LINGUAL: ("tts_text", *STORING_FIELDS),
    INSTRUCT: ("tts_text", "spk_id", "instruct_text", *STORING_FIELDS),
}
CLIP = "prompt_wav"
# What a CosyVoice client is answered with: samples, no header.
PCM = "audio/pcm; rate={rate}; channels=1"


class Missing(InvalidParameter):
    """A required field that is absent or empty (FastAPI's `missing`)."""

    code = "missing"


# What the store and the engines call a field, as CosyVoice's routes call it.
FIELD_NAMES = {"text": "tts_text", "voice": "spk_id"}


def fastapi_error(
    request: web.Request, error: Exception, names: Mapping[str, str] = FIELD_NAMES,
) -> web.Response:
    """A failure in FastAPI's shape: `{"detail": [{"type", "loc": ["body", field], "msg"}]}`
    for a field (called as `names` says), `{"detail": message}` otherwise; the status and
    headers as on every route."""
    status, code, message, field, headers = describe_failure(request, error)
    field = names.get(field, field) if field is not None else None
    detail: object = ([{"type": code, "loc": ["body", field], "msg": message}]
                      if field is not None else message)
    response = json_response({"detail": detail}, status=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def required(values: dict[str, Any], name: str) -> Any:
    """A field that must be given and not empty (FastAPI's Form() reads "" as absent)."""
    value = values.get(name)
    if value is None or value in ("", b""):
        raise Missing(f"{name} is required", name)
    return value


def bounded_text(values: dict[str, Any], name: str, settings: Settings) -> str:
    """A text field other than the one spoken (a transcript, an instruction): required,
    at most max_text_length characters."""
    value = required(values, name)
    if not isinstance(value, str) or not value.strip():
        raise Missing(f"{name} is required", name)
    if len(value) > settings.max_text_length:
        raise TooLarge(f"{name} is longer than {settings.max_text_length} characters "
                       f"({len(value)})", name)
    return value


async def checked_clip(data: Any, field: str, settings: Settings) -> bytes:
    """A reference clip, refused (naming `field`) when it is too large or no usable WAV."""
    if not isinstance(data, bytes):
        raise InvalidParameter(f"{field} must be a WAV file", field)
    if len(data) > settings.max_clip_bytes:
        raise TooLarge(f"{field} is larger than {settings.max_clip_bytes} bytes "
                       "(max_clip_bytes)", field)
    problem = await asyncio.get_running_loop().run_in_executor(None, clip_problem, data)
    if problem is not None:
        raise InvalidParameter(f"{field} {problem}", field)
    return data


def adopted_voice(voices: Voices, prompt: Prompt, field: str, held: contextlib.ExitStack,
                  engine: str | None = None) -> str:
    """The voice that speaks a prompt, kept until `held` closes; or a 422 naming `field`
    and what is missing."""
    voice = held.enter_context(voices.adopting(prompt, engine))
    if voice is None:
        raise InvalidParameter(
            f"{field} needs a cosyvoice backend that offers {prompt.mode} (a `backends` entry "
            f"of kind cosyvoice whose `modes` include {prompt.mode}"
            + (", and spk_id mapped to one of its voices" if prompt.mode == INSTRUCT else "")
            + "); this gateway has none", field)
    return voice


async def _speech(
    request: web.Request, mode: str, held: contextlib.ExitStack,
) -> tuple[SpeechRequest, Storing]:
    """The request's speech, and what it asks about keeping it; a prompt it gives is kept
    until `held` closes (and a no-store request is fleeting until then)."""
    await authorize(request, None)  # before the body: a refusal costs what a hit costs
    if request.query:
        name = next(iter(request.query))
        raise BadRequest(f"send '{name[:40]}' as a form field in the body, not in the query",
                         name[:40])
    settings = request.app[SETTINGS]
    clip = mode in (ZERO_SHOT, CROSS_LINGUAL)
    values = await read_form(
        request, fields=FIELDS[mode], files=(CLIP,) if clip else (),
        limit=settings.max_body_bytes + (settings.max_clip_bytes if clip else 0))
    storing = storing_of(request, values)
    held.enter_context(kept_as(storing))
    voices = voices_of(request)
    text = required(values, "tts_text")
    if mode == "sft":
        voice = speaker_voice(settings, voices, required(values, "spk_id"))
    elif mode == INSTRUCT:
        speaker = speaker_voice(settings, voices, required(values, "spk_id"))
        prompt = Prompt(INSTRUCT, voice=speaker,
                        instruction=bounded_text(values, "instruct_text", settings))
        voice = adopted_voice(voices, prompt, "instruct_text", held,
                              voices.resolve(speaker).engine)
    else:
        transcript = bounded_text(values, "prompt_text", settings) if mode == ZERO_SHOT else ""
        data = await checked_clip(required(values, CLIP), CLIP, settings)
        prompt = Prompt(mode, clip=data, transcript=transcript)
        voice = adopted_voice(voices, prompt, CLIP, held)
    speech = await checked_speech(request, text, lambda: voices.request(
        params.text(values, settings.max_text_length, "tts_text"), voice=voice, style=None,
        speed=1.0, pitch=1.0, volume=1.0))
    return speech, storing


async def _answer(
    request: web.Request, speech: SpeechRequest, storing: Storing,
) -> web.StreamResponse:
    """Raw PCM at cosyvoice_rate: whole when stored, else streamed as synthesized."""
    rate = request.app[SETTINGS].cosyvoice_rate
    headers = {"Content-Type": PCM.format(rate=rate), "Cache-Control": "no-store"}
    pieces = speech_pieces(request.app[STORE], speech, "wav", rate,
                           admission=admission_for(request), storing=storing)
    try:
        try:
            first = await anext(pieces)
        except Exception as exc:  # refused or failed before any audio: an answer still
            return fastapi_error(request, exc)
        if isinstance(first, Whole):
            whole = first.audio
            note(key=whole.key[:8], cached=whole.cached, format="pcm")
            return web.Response(body=codecs.wav_payload(whole.data), headers={
                **headers, "X-Cache": "HIT" if whole.cached else "MISS",
                **({"X-Huiyin-Fallback": whole.fallback} if whole.fallback else {})})
        response = web.StreamResponse(headers={**headers, "X-Cache": "MISS"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        await response.write(await loop.run_in_executor(None, encode_chunk, first, "wav", rate))
        async for pcm in pieces:
            assert isinstance(pcm, Pcm)
            await response.write(await loop.run_in_executor(None, encode_chunk, pcm, "wav", rate))
        await response.write_eof()
        return response
    finally:
        await pieces.aclose()


def _route(mode: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def inference(request: web.Request) -> web.StreamResponse:
        with contextlib.ExitStack() as held:  # a prompt is kept until it is spoken
            try:
                speech, storing = await _speech(request, mode, held)
            except Exception as exc:
                return fastapi_error(request, exc)
            return await _answer(request, speech, storing)

    inference.__doc__ = f"GET|POST /inference_{mode}: the text in CosyVoice's raw PCM."
    return inference


ROUTES = tuple(f"/inference_{mode}" for mode in FIELDS)
fronts.register("cosyvoice", ROUTES, speaker_names)


def add_cosyvoice_routes(app: web.Application) -> None:
    """Register CosyVoice's /inference_* routes, by GET (as its client sends) and POST."""
    for mode in FIELDS:
        handler = _route(mode)
        app.router.add_route("GET", f"/inference_{mode}", handler, name=f"cosyvoice_{mode}")
        app.router.add_post(f"/inference_{mode}", handler)
