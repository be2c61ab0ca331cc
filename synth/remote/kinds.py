"""What each kind of upstream is asked, and how its answer becomes audio.

A kind turns (text, upstream voice id, style, prosody) into one HTTP exchange and decodes
the answer to mono int16 samples at a known rate. It also says which settings the upstream
can honour, and what the upstream reports about its voices (their version, their rate).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from config.backends import Backend
from synth.engine import Prosody, SettingRange, SynthesisError, UpstreamError
from synth.prompts import Prompt
from synth.remote import aliyun
from synth.remote.audio import Samples, decode_wav
from synth.remote.client import Caller

log = logging.getLogger("huiyin.remote")


@dataclass(frozen=True)
class Reported:
    """What an upstream says about itself at startup (None where it says nothing)."""

    version: str | None
    sample_rate: int | None


class Kind(Protocol):
    """One kind of upstream."""

    default_rate: int

    def ranges(self) -> Mapping[str, SettingRange]:
        """The settings the upstream honours (the rest must stay at 1)."""
        ...

    def styles(self) -> tuple[str, ...]:
        """Styles the upstream's voices take (neutral first)."""
        ...

    def report(self, call: Caller, backend: Backend) -> Reported:
        """Ask the upstream about its voices (blocking)."""
        ...

    def synthesize(
        self, call: Caller, text: str, voice_id: str, style: str, prosody: Prosody
    ) -> tuple[Samples, int]:
        """The upstream's audio for one text: samples and their rate (blocking)."""
        ...


@runtime_checkable
class Prompted(Protocol):
    """A kind that also speaks voices given by a prompt (synth/prompts.py): the entry's
    `zero_shot` voices, and the prompts of requests in the modes its entry names."""

    modes: tuple[str, ...]

    def clip_digest(self) -> str:
        """A hash of every configured clip's bytes and transcript: part of the engine's version."""
        ...

    def configured(self) -> Mapping[str, Prompt]:
        """The entry's own prompted voices (its `zero_shot` clips), by voice name."""
        ...

    def synthesize_prompted(
        self, call: Caller, text: str, prompt: Prompt, style: str, prosody: Prosody
    ) -> tuple[Samples, int]:
        """The prompted voice's audio for one text: samples and their rate (blocking)."""
        ...


class Streaming(Protocol):
    """A kind whose upstream sends audio as it is made: passed on chunk by chunk."""

    def stream(
        self, call: Caller, text: str, target: str | Prompt, style: str, prosody: Prosody,
    ) -> Iterator[tuple[Samples, int]]:
        """The audio in chunks as the upstream sends them (blocking); `target` is the
        upstream's voice id, or a prompt."""
        ...


class KindStartError(SynthesisError):
    """A kind cannot start: a file or a credential its entry names is missing."""


_SPEED = SettingRange(0.5, 2.0, 1.0)


class _Unversioned:
    """Voices of one manner, from an upstream that reports no version of them (the entry's
    `version` is required)."""

    def styles(self) -> tuple[str, ...]:
        """One manner per voice."""
        return ("neutral",)

    def report(self, call: Caller, backend: Backend) -> Reported:
        """Nothing to report."""
        return Reported(None, None)


class Piper:
    """Piper's own HTTP server (`python -m piper.http_server`): POST /synthesize, GET /voices."""

    default_rate = 22050

    def ranges(self) -> Mapping[str, SettingRange]:
        """Speed, through length_scale."""
        return {"speed": _SPEED}

    def styles(self) -> tuple[str, ...]:
        """Piper voices have one manner."""
        return ("neutral",)

    def report(self, call: Caller, backend: Backend) -> Reported:
        """The configured voices' configs: their hash versions the audio, and their rate."""
        voices = call.request("GET", "/voices").json()
        if not isinstance(voices, dict):
            raise UpstreamError(backend.name, "GET /voices did not answer a mapping")
        configs = []
        for name, voice_id in sorted(backend.voices.items()):
            config = voices.get(voice_id)
            if not isinstance(config, dict):
                raise UpstreamError(
                    backend.name, f"voice '{name}' maps to '{voice_id}', which the server "
                                  f"does not offer (it has: {', '.join(sorted(voices))})"
                )
            configs.append(config)
        rates = {int(c.get("audio", {}).get("sample_rate", self.default_rate)) for c in configs}
        digest = hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()[:12]
        return Reported(digest, rates.pop() if len(rates) == 1 else None)

    def synthesize(
        self, call: Caller, text: str, voice_id: str, style: str, prosody: Prosody
    ) -> tuple[Samples, int]:
        """One WAV from POST /synthesize; a faster speed is a shorter length_scale."""
        response = call.request("POST", "/synthesize", json={
            "text": text, "voice": voice_id, "length_scale": round(1.0 / prosody.speed, 4),
        })
        return decode_wav(call.backend, response.content)


class OpenAI(_Unversioned):
    """Any server with OpenAI's POST /v1/audio/speech (another Huiyin, Kokoro-FastAPI, …),
    asked for WAV. The url is the server's, or its API's ending in /v1 (as OpenAI's SDKs
    take it)."""

    default_rate = 24000

    def __init__(self, backend: Backend) -> None:
        self._model = backend.model
        given = urlsplit(backend.url).path.rstrip("/")
        self._speech = "/audio/speech" if given.endswith("/v1") else "/v1/audio/speech"

    def ranges(self) -> Mapping[str, SettingRange]:
        """OpenAI's speed range."""
        return {"speed": SettingRange(0.25, 4.0, 1.0)}

    def synthesize(
        self, call: Caller, text: str, voice_id: str, style: str, prosody: Prosody
    ) -> tuple[Samples, int]:
        """One WAV from /v1/audio/speech."""
        response = call.request("POST", self._speech, json={
            "model": self._model, "input": text, "voice": voice_id, "response_format": "wav",
            "speed": prosody.speed,
        })
        return decode_wav(call.backend, response.content)


def _json(backend: str, response: httpx.Response, what: str) -> object:
    try:
        return response.json()
    except ValueError:
        raise UpstreamError(backend, f"{what} answered something that is not JSON") from None


def _media_type(response: httpx.Response) -> str:
    value: str = response.headers.get("content-type", "")
    return value.split(";")[0].strip().lower()


# The emotions of ModelScope's multi-emotion Sambert voices (zhitian_emo, zhibei_emo,
# zhiyan_emo, zhizhe_emo all take these SSML emotion categories); neutral is the voice as
# it is, sent as no emotion at all.
SAMBERT_EMOTIONS = ("happy", "angry", "sad", "fear", "hate", "surprise")


class SambertFlask:
    """The ModelScope Sambert-HifiGAN Flask services: POST /api/tts (JSON, then the WAV
    fetched from its audio_url) or POST /tts (form fields, answering the WAV).

    The service speaks the one model it loaded, so the entry's upstream voice id is not
    sent; a style other than neutral is sent as the emotion.
    """

    default_rate = 16000

    def __init__(self, backend: Backend) -> None:
        self._form = backend.endpoint == "form"
        # Relative audio URLs resolve against the backend URL taken as a folder, as the
        # request paths do.
        self._base = backend.url.rstrip("/") + "/"
        self._origin = _origin(backend.url)

    def ranges(self) -> Mapping[str, SettingRange]:
        """None: the services take no speed, pitch or volume."""
        return {}

    def styles(self) -> tuple[str, ...]:
        """Neutral, then the emotions."""
        return ("neutral", *SAMBERT_EMOTIONS)

    def report(self, call: Caller, backend: Backend) -> Reported:
        """Nothing: the services report no version (the entry's `version` is required)."""
        return Reported(None, None)

    def synthesize(
        self, call: Caller, text: str, voice_id: str, style: str, prosody: Prosody
    ) -> tuple[Samples, int]:
        """One WAV, by the form endpoint or by the JSON one and its audio URL."""
        emotion = {} if style == "neutral" else {"emotion": style}
        if self._form:
            response = call.request("POST", "/tts", data={"text": text, **emotion})
            return decode_wav(call.backend, response.content)
        answer = _json(call.backend, call.request("POST", "/api/tts",
                                                  json={"text": text, **emotion}), "/api/tts")
        if not isinstance(answer, dict) or answer.get("status") != "success":
            status = answer.get("status") if isinstance(answer, dict) else None
            # The service's own message is left out: it may quote the text.
            said = f"status '{status}'" if isinstance(status, str) else "no status"
            raise UpstreamError(call.backend, f"/api/tts answered {said[:40]}")
        url = answer.get("audio_url") or answer.get("download_url")
        if not isinstance(url, str) or not url:
            raise UpstreamError(call.backend, "/api/tts answered no audio_url")
        wav = call.request("GET", str(self._audio_url(call.backend, url)))
        return decode_wav(call.backend, wav.content)

    def _audio_url(self, backend: str, url: str) -> httpx.URL:
        """The audio URL resolved against the backend's, refused on any other host: a
        hostile upstream must not make the gateway fetch what it names."""
        try:
            target = httpx.URL(self._base).join(url)
            same = _origin(target) == self._origin and not target.userinfo
        except (httpx.InvalidURL, ValueError):
            same = False
        if not same:
            raise UpstreamError(backend, "gave an audio_url on another host than the "
                                         "backend's; refused")
        return target


def _origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    return parsed.scheme, parsed.host.lower(), port


# Aliyun's published mapping of a speed factor onto speech_rate: -500, 0 and 500 are 0.5x,
# 1x and 2x, through s = (1 - 1/speed) / 0.002 below 1x and (1 - 1/speed) / 0.001 above,
# truncated as in its worked examples (0.8x is -125, 1.2x is 166). Aliyun publishes no such
# mapping for pitch_rate; the same formula maps a pitch factor onto it (0.5 to 2.0).
_RATE_FACTOR = SettingRange(0.5, 2.0, 1.0)
_VOLUME = SettingRange(0.0, 2.0, 1.0)


def aliyun_rate(factor: float) -> int:
    """speech_rate (or pitch_rate) for a factor of 0.5 to 2.0, 1.0 being 0."""
    scale = 0.002 if factor < 1.0 else 0.001
    value = math.trunc(round((1.0 - 1.0 / factor) / scale, 6))
    return max(-500, min(500, value))


def aliyun_volume(factor: float) -> int:
    """volume for a factor of 0 to 2: 50 per 1.0, so 1.0 is Aliyun's default of 50."""
    return max(0, min(100, round(factor * 50)))


class Aliyun(_Unversioned):
    """Aliyun NLS RESTful TTS: one POST of the text with a token from CreateToken, asked
    for 16 kHz WAV. The answer is audio, or JSON that describes an error."""

    default_rate = 16000

    def __init__(self, backend: Backend, environ: Mapping[str, str] = os.environ) -> None:
        self._url = backend.url
        self._appkey = _credential(backend, "appkey_env", environ)
        key_id = _credential(backend, "access_key_id_env", environ)
        secret = _credential(backend, "access_key_secret_env", environ)
        self.tokens = aliyun.TokenSource(functools.partial(
            aliyun.create_token, backend.name, backend.token_url, key_id, secret,
            retries=backend.retries,
        ))

    def __repr__(self) -> str:
        return f"Aliyun({self._url!r})"  # never the credentials

    def ranges(self) -> Mapping[str, SettingRange]:
        """Speed and pitch (0.5 to 2.0) and volume (0 to 2)."""
        return {"speed": _RATE_FACTOR, "pitch": _RATE_FACTOR, "volume": _VOLUME}

    def synthesize(
        self, call: Caller, text: str, voice_id: str, style: str, prosody: Prosody
    ) -> tuple[Samples, int]:
        """One WAV from the TTS URL; a JSON answer is an error, whatever its status."""
        token = self.tokens.get(call.seconds_left())  # a fetch spends this call's budget
        response = call.request("POST", self._url, json={
            "appkey": self._appkey, "token": token, "text": text, "format": "wav",
            "sample_rate": self.default_rate, "voice": voice_id,
            "volume": aliyun_volume(prosody.volume), "speech_rate": aliyun_rate(prosody.speed),
            "pitch_rate": aliyun_rate(prosody.pitch),
        })
        media = _media_type(response)
        if media == "application/json":
            answer = _json(call.backend, response, "the TTS URL")
            status = answer.get("status") if isinstance(answer, dict) else None
            # Only the status code: the message may quote the token or the text.
            code = f" (status {status})" if isinstance(status, int) else ""
            raise UpstreamError(call.backend, f"answered an error{code}")
        if not media.startswith("audio/"):
            raise UpstreamError(call.backend, f"answered {media[:60] or 'no content type'}, "
                                              "not audio")
        return decode_wav(call.backend, response.content)


def _credential(backend: Backend, field_name: str, environ: Mapping[str, str]) -> str:
    variable = getattr(backend, field_name)
    value = environ.get(variable, "") if variable else ""
    if not value:
        raise KindStartError(f"backend '{backend.name}': environment variable {variable} "
                             f"(field '{field_name}') is not set")
    return value


# The paths each kind adds to the entry's url: a url that ends in one names the endpoint,
# not the server, and every call would go to that path twice.
_OWN_PATHS: Mapping[str, tuple[str, ...]] = {
    "piper": ("/synthesize", "/voices"),
    "openai": ("/audio/speech",),
    "sambert_flask": ("/api/tts", "/tts"),
    "cosyvoice": ("/inference_sft", "/inference_zero_shot", "/inference_cross_lingual",
                  "/inference_instruct"),
}


def _warn_of_own_path(backend: Backend) -> None:
    given = urlsplit(backend.url).path.rstrip("/")
    for path in _OWN_PATHS.get(backend.kind, ()):
        if given.endswith(path):
            log.warning("backend '%s': its url ends in %s, a path the %s kind adds itself; "
                        "give the server's base URL", backend.name, path, backend.kind)
            return


def kind_for(backend: Backend) -> Kind:
    """The kind named by a backend entry (blocking: may read the files it names)."""
    _warn_of_own_path(backend)
    if backend.kind == "piper":
        return Piper()
    if backend.kind == "openai":
        return OpenAI(backend)
    if backend.kind == "sambert_flask":
        return SambertFlask(backend)
    if backend.kind == "cosyvoice":
        from synth.remote.cosyvoice import CosyVoice  # it builds on this module

        return CosyVoice(backend)
    if backend.kind == "aliyun":
        return Aliyun(backend)
    raise UpstreamError(backend.name, f"kind '{backend.kind}' is not available in this build")
