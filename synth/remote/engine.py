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
from synth.remote.audio import longest_seconds, refusal
from synth.remote.breaker import Breaker
from synth.remote.client import Caller
from synth.remote.kinds import Kind, KindStartError, ZeroShot
from synth.request import clean_text
from synth.scope import ScopedCache

# Bump when what this module sends upstream, or how it decodes, changes.
REMOTE_REVISION = "1"
_SPOKEN_FORMS_KEPT = 4096


@dataclass
class BackendState:
    """What one backend's instances share: the breaker, and figures for the metrics."""

    breaker: Breaker
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
        # A kind that clones voices speaks the entry's zero-shot voices too; their clips
        # are part of the version, so a changed clip or transcript changes every key.
        self._zero_shot = kind if isinstance(kind, ZeroShot) and backend.zero_shot else None
        clips = f".z{self._zero_shot.clip_digest()}" if self._zero_shot is not None else ""
        self._version = f"{backend.kind}.{version}.r{REMOTE_REVISION}{clips}"
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
            for name, spec in (backend.zero_shot.items() if self._zero_shot is not None else ())
        )
        self._call = Caller(backend.name, backend.url, timeout=backend.timeout,
                            retries=backend.retries, max_bytes=backend.max_answer_bytes,
                            headers=auth_headers(backend))
        self._spoken = ScopedCache(self._upstream_text, _SPOKEN_FORMS_KEPT)

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

    def _admit(
        self, text: str, voice: str | None, style: str, prosody: Prosody
    ) -> tuple[VoiceInfo, str]:
        """The checked voice and the text to send, if the breaker lets a call go out."""
        info = check_request(self, voice, style, prosody)
        sent = self.spoken_form(text)
        breaker = self.state.breaker
        if not breaker.allow():
            raise UpstreamUnavailableError(
                self.name, "is down (circuit breaker open)", retry_after=breaker.retry_after()
            )
        return info, sent

    def synthesize(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Pcm:
        """The upstream's audio for the text, at this engine's rate."""
        info, sent = self._admit(text, voice, style, prosody)
        breaker = self.state.breaker
        started = time.perf_counter()
        try:
            upstream = self.backend.voices.get(info.name)
            # One budget for the whole call: every request it takes, retries included.
            with self._call.within():
                if upstream is not None:
                    samples, rate = self._kind.synthesize(self._call, sent, upstream, style,
                                                          prosody)
                else:
                    assert self._zero_shot is not None  # only cloned voices are not in `voices`
                    samples, rate = self._zero_shot.synthesize_zero_shot(
                        self._call, sent, info.name, style, prosody
                    )
            self._refuse(len(samples), rate, self._longest(sent, prosody), sent)
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
        info, sent = self._admit(text, voice, style, prosody)
        breaker = self.state.breaker
        upstream = self.backend.voices.get(info.name)
        started = time.perf_counter()
        longest = self._longest(sent, prosody)
        heard = 0
        try:
            # One budget for the whole stream, as for a whole answer.
            with self._call.within():
                chunks = streaming(self._call, sent,
                                   upstream if upstream is not None else info.name,
                                   style, prosody, cloned=upstream is None)
                for samples, rate in chunks:
                    if len(samples) == 0:
                        continue
                    heard += len(samples)
                    self._refuse(heard, rate, longest, sent)
                    yield Pcm(codecs.resample(np.asarray(samples, dtype=np.int16), rate,
                                              self._rate), self._rate)
            if heard == 0:
                raise UpstreamError(self.name, "answered no audio")
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
