"""What each kind of upstream is asked, and how its answer becomes audio.

A kind turns (text, upstream voice id, style, prosody) into one HTTP exchange and decodes
the answer to mono int16 samples at a known rate. It also says which settings the upstream
can honour, and what the upstream reports about its voices (their version, their rate).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import soundfile as sf

from config.backends import Backend
from synth.engine import Prosody, SettingRange, UpstreamError
from synth.remote.client import Caller

Samples = npt.NDArray[np.int16]


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


def decode_wav(backend: str, data: bytes) -> tuple[Samples, int]:
    """Mono int16 samples of a WAV answer (the first channel of a multichannel one)."""
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        raise UpstreamError(backend, "answered something that is not a WAV file") from None
    mono: Samples = np.ascontiguousarray(samples[:, 0])
    return mono, int(rate)


def decode_pcm(backend: str, data: bytes, rate: int) -> tuple[Samples, int]:
    """Raw little-endian int16 mono PCM (an odd trailing byte is dropped)."""
    if len(data) < 2:
        raise UpstreamError(backend, "answered no audio")
    samples: Samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)
    return samples, rate


_SPEED = SettingRange(0.5, 2.0, 1.0)


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


class OpenAI:
    """Any server with OpenAI's POST /v1/audio/speech (another Huiyin, Kokoro-FastAPI, …),
    asked for WAV."""

    default_rate = 24000

    def __init__(self, model: str) -> None:
        self._model = model

    def ranges(self) -> Mapping[str, SettingRange]:
        """OpenAI's speed range."""
        return {"speed": SettingRange(0.25, 4.0, 1.0)}

    def styles(self) -> tuple[str, ...]:
        """One manner per voice."""
        return ("neutral",)

    def report(self, call: Caller, backend: Backend) -> Reported:
        """Nothing: the API has no voice versions (the entry's `version` is required)."""
        return Reported(None, None)

    def synthesize(
        self, call: Caller, text: str, voice_id: str, style: str, prosody: Prosody
    ) -> tuple[Samples, int]:
        """One WAV from /v1/audio/speech."""
        response = call.request("POST", "/v1/audio/speech", json={
            "model": self._model, "input": text, "voice": voice_id, "response_format": "wav",
            "speed": prosody.speed,
        })
        return decode_wav(call.backend, response.content)


def kind_for(backend: Backend) -> Kind:
    """The kind named by a backend entry."""
    if backend.kind == "piper":
        return Piper()
    if backend.kind == "openai":
        return OpenAI(backend.model)
    raise UpstreamError(backend.name, f"kind '{backend.kind}' is not available in this build")
