"""Piper's own HTTP server as an upstream."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from config.backends import Backend
from synth.engine import Prosody, SettingRange, UpstreamError
from synth.remote.audio import Samples, decode_wav
from synth.remote.client import Caller
from synth.remote.kinds.base import Reported
from synth.remote.kinds.registry import register

_SPEED = SettingRange(0.5, 2.0, 1.0)


@register("piper", "/synthesize", "/voices")
class Piper:
    """Piper's own HTTP server (`python -m piper.http_server`): POST /synthesize, GET /voices."""

    default_rate = 22050

    def __init__(self, backend: Backend) -> None:
        """Nothing to keep from the entry: the caller holds its url, each call names the voice."""

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

