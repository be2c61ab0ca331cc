"""CosyVoice's FastAPI server (runtime/python/fastapi/server.py) as an upstream.

Its routes take form fields (and the prompt clip as a file) and answer raw int16 mono PCM
at the model's rate, streamed as it is made:

- /inference_sft: tts_text, spk_id (one of the model's own speakers);
- /inference_zero_shot: tts_text, prompt_text and the file prompt_wav (a cloned voice);
- /inference_cross_lingual: tts_text and prompt_wav (cloned without a transcript);
- /inference_instruct: tts_text, spk_id, instruct_text.

The entry's `voices` are speakers; its `zero_shot` voices are clips it reads at startup;
what its `modes` name, requests may ask for with a prompt of their own (synth/prompts.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from config.backends import Backend
from synth.engine import Prosody, SettingRange, UpstreamError
from synth.prompts import CROSS_LINGUAL, INSTRUCT, MODES, ZERO_SHOT, Prompt, clip_problem
from synth.remote.audio import Samples, decode_pcm
from synth.remote.client import Caller
from synth.remote.kinds.base import KindStartError, Reported, media_type
from synth.remote.kinds.registry import register

# A voice as the upstream is asked for it: a speaker id, or a prompt.
Target = str | Prompt


@register("cosyvoice", "/inference_sft", "/inference_zero_shot", "/inference_cross_lingual",
          "/inference_instruct")
class CosyVoice:
    """The kind: speakers by spk_id, voices cloned from clips, instructed speakers."""

    default_rate = 22050
    modes = MODES

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._rate = backend.sample_rate or self.default_rate
        self._clips = {name: _read_clip(backend.name, name, spec.clip, spec.transcript)
                       for name, spec in backend.zero_shot.items()}
        digest = hashlib.sha256()
        for name, clip in sorted(self._clips.items()):
            for part in (name, clip.transcript, hashlib.sha256(clip.clip).hexdigest()):
                digest.update(part.encode() + b"\0")
        self._digest = digest.hexdigest()[:12]

    def ranges(self) -> Mapping[str, SettingRange]:
        """None: these endpoints take no speed, pitch or volume."""
        return {}

    def styles(self) -> tuple[str, ...]:
        """One manner per voice."""
        return ("neutral",)

    def report(self, call: Caller, backend: Backend) -> Reported:
        """Nothing: the server reports no version (the entry's `version` is required)."""
        return Reported(None, None)

    def clip_digest(self) -> str:
        """A hash of every zero-shot voice's name, transcript and clip bytes."""
        return self._digest

    def configured(self) -> Mapping[str, Prompt]:
        """The entry's zero-shot voices, each a prompt read at startup."""
        return self._clips

    def synthesize(
        self, call: Caller, text: str, voice_id: str, style: str, prosody: Prosody
    ) -> tuple[Samples, int]:
        """A speaker, by its spk_id."""
        path, fields = self._form(text, voice_id)
        return self._pcm(call.backend, call.request("POST", path, **fields))

    def synthesize_prompted(
        self, call: Caller, text: str, prompt: Prompt, style: str, prosody: Prosody
    ) -> tuple[Samples, int]:
        """A cloned or instructed voice."""
        path, fields = self._form(text, prompt)
        return self._pcm(call.backend, call.request("POST", path, **fields))

    def stream(
        self, call: Caller, text: str, target: Target, style: str, prosody: Prosody,
    ) -> Iterator[tuple[Samples, int]]:
        """The PCM as the server streams it, each piece passed on as it arrives (a sample
        split between two reads is joined)."""
        path, fields = self._form(text, target)
        parts = call.stream("POST", path, **fields)
        response = next(parts)
        assert isinstance(response, httpx.Response)
        if media_type(response) == "application/json":
            raise UpstreamError(call.backend, "answered JSON, not audio")
        pending = b""
        for piece in parts:
            assert isinstance(piece, bytes)
            pending += piece
            if len(pending) >= 2:
                whole = len(pending) // 2 * 2
                yield decode_pcm(call.backend, pending[:whole], self._rate)
                pending = pending[whole:]
        if len(pending) >= 2:
            yield decode_pcm(call.backend, pending, self._rate)

    def _form(self, text: str, target: Target) -> tuple[str, dict[str, Any]]:
        """The path and the form fields (and file) that ask the server for a voice."""
        if isinstance(target, str):
            return "/inference_sft", {"data": {"tts_text": text, "spk_id": target}}
        clip = {"prompt_wav": ("prompt_wav.wav", target.clip, "audio/wav")}
        if target.mode == ZERO_SHOT:
            return "/inference_zero_shot", {
                "data": {"tts_text": text, "prompt_text": target.transcript}, "files": clip}
        if target.mode == CROSS_LINGUAL:
            return "/inference_cross_lingual", {"data": {"tts_text": text}, "files": clip}
        assert target.mode == INSTRUCT
        return "/inference_instruct", {"data": {
            "tts_text": text, "spk_id": self._backend.voices[target.voice],
            "instruct_text": target.instruction}}

    def _pcm(self, backend: str, response: httpx.Response) -> tuple[Samples, int]:
        if media_type(response) == "application/json":
            raise UpstreamError(backend, "answered JSON, not audio")
        return decode_pcm(backend, response.content, self._rate)


def _read_clip(backend: str, voice: str, path: Path, transcript: str) -> Prompt:
    where = f"backend '{backend}': zero-shot voice '{voice}'"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KindStartError(f"{where}: cannot read clip {path}: {exc.strerror or exc}") from None
    problem = clip_problem(data)
    if problem is not None:
        raise KindStartError(f"{where}: clip {path} {problem}")
    return Prompt(ZERO_SHOT, clip=data, transcript=transcript)
