"""A remote backend as an engine: the same protocol as an in-process voice, so the store,
the worker, the routes and warm-up treat an upstream like any other engine.

The instances of one backend (one per `concurrency`) share its circuit breaker and its
figures. What the key hashes is the text as sent upstream: after Huiyin's normalization,
or as written where the entry says `normalize: false`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from config.backends import Backend
from synth import codecs
from synth.engine import (
    InvalidInputError,
    Pcm,
    Prosody,
    SettingRange,
    UpstreamError,
    UpstreamUnavailableError,
    VoiceInfo,
    check_request,
)
from synth.memo import Memo
from synth.prompts import Prompt, Shelf
from synth.remote.audio import SILENT, longest_seconds, refusal, silence
from synth.remote.breaker import Breaker
from synth.remote.client import Caller
from synth.remote.kinds import Kind, KindStartError, Prompted
from synth.request import clean_text

# Bump when what this module sends upstream, or how it decodes, changes.
REMOTE_REVISION = "1"
_SPOKEN_FORMS_KEPT = 4096


@dataclass
class BackendState:
    """What one backend's instances share: the breaker, and figures for the metrics."""

    breaker: Breaker
    prompts: Shelf = field(default_factory=Shelf)  # the requests' prompts it adopted
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, seconds: float, failed: bool) -> None:
        """One upstream call, answered or failed."""
        with self._lock:
            self.requests += 1
            self.seconds += seconds
            if failed:
                self.errors += 1


def auth_headers(backend: Backend) -> dict[str, str]:
    """The bearer token an entry names by its environment variable (`api_key_env`); read at
    startup, never from the settings file, never logged."""
    if backend.api_key_env is None:
        return {}
    key = os.environ.get(backend.api_key_env, "")
    if not key:
        raise KindStartError(f"backend '{backend.name}': environment variable "
                             f"{backend.api_key_env} (field 'api_key_env') is not set")
    return {"Authorization": f"Bearer {key}"}


class RemoteEngine:
    """One instance of a remote backend; calls run on its worker's thread."""

    def __init__(
        self, backend: Backend, kind: Kind, state: BackendState, *, version: str,
        sample_rate: int, normalize: Callable[[str], str] | None,
    ) -> None:
        self.backend = backend
        self.state = state
        self.fallback_voice = backend.fallback
        self._kind = kind
        # A kind that takes prompts speaks the entry's zero-shot voices too; their clips
        # are part of the version, so a changed clip or transcript changes every key.
        prompted = kind if isinstance(kind, Prompted) else None
        self._prompted = prompted
        self._configured = prompted.configured() if prompted is not None else {}
        clips = f".z{prompted.clip_digest()}" if prompted is not None and backend.zero_shot else ""
        self._version = f"{backend.kind}.{version}.r{REMOTE_REVISION}{clips}"
        # The modes requests may ask for: what the upstream offers (the entry's `modes`) and
        # this kind can ask of it.
        self.modes = tuple(m for m in backend.modes if prompted is not None and m in prompted.modes)
        self._rate = sample_rate
        self._normalize = normalize
        self._voices = tuple(
            VoiceInfo(name, backend.language, kind.styles(),
                      f"{backend.kind} voice '{upstream}' of backend '{backend.name}'")
            for name, upstream in backend.voices.items()
        ) + tuple(
            VoiceInfo(name, backend.language, kind.styles(),
                      f"{backend.kind} voice cloned from '{spec.clip.name}' of backend "
                      f"'{backend.name}'")
            for name, spec in backend.zero_shot.items() if name in self._configured
        )
        self._call = Caller(backend.name, backend.url, timeout=backend.timeout,
                            retries=backend.retries, max_bytes=backend.max_answer_bytes,
                            headers=auth_headers(backend))
        self._spoken = Memo(self._upstream_text, _SPOKEN_FORMS_KEPT)

    @property
    def name(self) -> str:
        """The backend's name."""
        return self.backend.name

    @property
    def version(self) -> str:
        """The kind, the upstream's version and this module's revision."""
        return self._version

    @property
    def sample_rate(self) -> int:
        """The rate audio is stored at."""
        return self._rate

    def voices(self) -> tuple[VoiceInfo, ...]:
        """The voices this backend offers here."""
        return self._voices

    def setting_ranges(self) -> Mapping[str, SettingRange]:
        """The settings the upstream honours."""
        return self._kind.ranges()

    def spoken_form(self, text: str) -> str:
        """The text exactly as the upstream receives it."""
        return self._spoken(text)

    def _upstream_text(self, text: str) -> str:
        sent = clean_text(self._normalize(text) if self._normalize is not None else text)
        if not sent:
            raise InvalidInputError("text", "the text has nothing to say")
        return sent

    def close(self) -> None:
        """Release the connections."""
        self._call.close()

    def describe(self) -> dict[str, Any]:
        """State and figures, for /readyz, /api/voices and the metrics."""
        state = self.state
        return {
            "backend": self.backend.name, "kind": self.backend.kind,
            "state": state.breaker.state, "requests": state.requests, "errors": state.errors,
            "seconds": round(state.seconds, 3), "breaker_opened": state.breaker.opened,
        }

    def _longest(self, sent: str, prosody: Prosody) -> float:
        """Seconds of audio the text sent may plausibly take to say."""
        return longest_seconds(len(sent), prosody.speed, self.backend.seconds_per_character,
                               self.backend.seconds_margin)

    def _refuse(self, samples: int, rate: int, longest: float, sent: str) -> None:
        """Raise an UpstreamError for audio that cannot be the answer to the text sent
        (checked before any of it is resampled)."""
        reason = refusal(samples, rate, longest, len(sent))
        if reason is not None:
            raise UpstreamError(self.name, reason)

    def adopt(self, prompt: Prompt) -> str | None:
        """The voice name a request's prompt is spoken under here, held until `release`;
        None when the upstream is not asked for its mode (the entry's `modes`), or when it
        instructs a voice that is not one of this backend's speakers."""
        if prompt.mode not in self.modes or (prompt.voice and prompt.voice not in self.backend.voices):
            return None
        name = prompt.voice_name(self.name)
        self.state.prompts.hold(name, prompt)
        return name

    def release(self, voice: str) -> None:
        """A request that adopted a prompt is done with it (see `adopt`)."""
        self.state.prompts.release(voice)

    def adopted(self, voice: str) -> VoiceInfo | None:
        """The voice of a prompt adopted here, while it is kept (see check_request)."""
        prompt = self.state.prompts.get(voice)
        if prompt is None:
            return None
        return VoiceInfo(voice, self.backend.language, ("neutral",),
                         f"{self.backend.kind} {prompt.mode} voice of backend '{self.name}'")

    def _target(self, voice: str) -> str | Prompt:
        """What the upstream is asked for: a speaker id, or a prompt."""
        upstream = self.backend.voices.get(voice)
        if upstream is not None:
            return upstream
        prompt = self._configured.get(voice) or self.state.prompts.get(voice)
        if prompt is None:  # let go of since the request was checked
            raise InvalidInputError("voice", f"the prompt of voice '{voice}' is no longer kept; "
                                             "send the request again")
        return prompt

    def _admit(
        self, text: str, voice: str | None, style: str, prosody: Prosody
    ) -> tuple[str | Prompt, str]:
        """What to ask the upstream for and the text to send, if the breaker lets a call
        go out."""
        info = check_request(self, voice, style, prosody)
        target = self._target(info.name)
        sent = self.spoken_form(text)
        breaker = self.state.breaker
        if not breaker.allow():
            raise UpstreamUnavailableError(
                self.name, "is down (circuit breaker open)", retry_after=breaker.retry_after()
            )
        return target, sent

    def synthesize(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Pcm:
        """The upstream's audio for the text, at this engine's rate."""
        target, sent = self._admit(text, voice, style, prosody)
        breaker = self.state.breaker
        started = time.perf_counter()
        try:
            # One budget for the whole call: every request it takes, retries included.
            with self._call.within():
                if isinstance(target, str):
                    samples, rate = self._kind.synthesize(self._call, sent, target, style,
                                                          prosody)
                else:
                    assert self._prompted is not None  # only its kind gives prompts
                    samples, rate = self._prompted.synthesize_prompted(
                        self._call, sent, target, style, prosody
                    )
            self._refuse(len(samples), rate, self._longest(sent, prosody), sent)
            quiet = silence(np.asarray(samples, dtype=np.int16))
            if quiet is not None:
                raise UpstreamError(self.name, quiet)
        except UpstreamError:
            breaker.failed()
            self.state.record(time.perf_counter() - started, failed=True)
            raise
        except BaseException:
            breaker.abandon()  # not the upstream's failure; a probe may go again
            raise
        breaker.succeeded()
        self.state.record(time.perf_counter() - started, failed=False)
        resampled = codecs.resample(np.asarray(samples, dtype=np.int16), rate, self._rate)
        return Pcm(resampled, self._rate)

    def stream(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Iterator[Pcm]:
        """The upstream's audio as it arrives, where its kind streams; else the whole answer
        as one chunk. Closing the iterator closes the upstream connection."""
        streaming = getattr(self._kind, "stream", None)
        if streaming is None:
            yield self.synthesize(text, voice=voice, style=style, prosody=prosody)
            return
        target, sent = self._admit(text, voice, style, prosody)
        breaker = self.state.breaker
        started = time.perf_counter()
        longest = self._longest(sent, prosody)
        heard = 0
        said = False  # anything louder than silence yet
        try:
            # One budget for the whole stream, as for a whole answer.
            with self._call.within():
                chunks = streaming(self._call, sent, target, style, prosody)
                for samples, rate in chunks:
                    if len(samples) == 0:
                        continue
                    heard += len(samples)
                    self._refuse(heard, rate, longest, sent)
                    said = said or silence(np.asarray(samples, dtype=np.int16)) is None
                    yield Pcm(codecs.resample(np.asarray(samples, dtype=np.int16), rate,
                                              self._rate), self._rate)
            if heard == 0:
                raise UpstreamError(self.name, "answered no audio")
            if not said:
                raise UpstreamError(self.name, SILENT)
        except UpstreamError:
            breaker.failed()
            self.state.record(time.perf_counter() - started, failed=True)
            raise
        except BaseException:  # the listener left (the generator was closed), or worse
            if heard:
                breaker.succeeded()
            else:
                breaker.abandon()
            raise
        breaker.succeeded()
        self.state.record(time.perf_counter() - started, failed=False)
