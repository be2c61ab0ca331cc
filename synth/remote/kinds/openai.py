"""Any server with OpenAI's speech endpoint as an upstream."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from config.backends import Backend
from synth.engine import Prosody, SettingRange
from synth.remote.audio import Samples, decode_wav
from synth.remote.client import Caller
from synth.remote.kinds.base import Unversioned
from synth.remote.kinds.registry import register


@register("openai", "/audio/speech")
class OpenAI(Unversioned):
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
