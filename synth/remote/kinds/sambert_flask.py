"""The ModelScope Sambert-HifiGAN Flask services as an upstream."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from config.backends import Backend
from synth.engine import Prosody, SettingRange, UpstreamError
from synth.remote.audio import Samples, decode_wav
from synth.remote.client import Caller
from synth.remote.kinds.base import Reported, answer_json
from synth.remote.kinds.registry import register

# The emotions of ModelScope's multi-emotion Sambert voices (zhitian_emo, zhibei_emo,
# zhiyan_emo, zhizhe_emo all take these SSML emotion categories); neutral is the voice as
# it is, sent as no emotion at all.
SAMBERT_EMOTIONS = ("happy", "angry", "sad", "fear", "hate", "surprise")


@register("sambert_flask", "/api/tts", "/tts")
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
        answer = answer_json(call.backend, call.request("POST", "/api/tts",
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
