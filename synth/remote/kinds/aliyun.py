"""Aliyun NLS's RESTful TTS as an upstream."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping

from config.backends import Backend
from synth.engine import Prosody, SettingRange, UpstreamError
from synth.remote import aliyun
from synth.remote.audio import Samples, decode_wav
from synth.remote.client import Caller
from synth.remote.kinds.base import KindStartError, Unversioned, answer_json, media_type
from synth.remote.kinds.registry import register

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


@register("aliyun")
class Aliyun(Unversioned):
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
        media = media_type(response)
        if media == "application/json":
            answer = answer_json(call.backend, response, "the TTS URL")
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
