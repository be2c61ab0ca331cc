"""What each kind of upstream is asked, and how its answer becomes audio.

A kind turns (text, upstream voice id, style, prosody) into one HTTP exchange and decodes
the answer to mono int16 samples at a known rate. It also says which settings the upstream
can honour, and what the upstream reports about its voices (their version, their rate).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import httpx

from config.backends import Backend
from synth.engine import Prosody, SettingRange, SynthesisError, UpstreamError
from synth.prompts import Prompt
from synth.remote.audio import Samples
from synth.remote.client import Caller


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


class Unversioned:
    """Voices of one manner, from an upstream that reports no version of them (the entry's
    `version` is required)."""

    def styles(self) -> tuple[str, ...]:
        """One manner per voice."""
        return ("neutral",)

    def report(self, call: Caller, backend: Backend) -> Reported:
        """Nothing to report."""
        return Reported(None, None)


def answer_json(backend: str, response: httpx.Response, what: str) -> object:
    """The answer's JSON; an answer that is not JSON is the upstream's error."""
    try:
        return response.json()
    except ValueError:
        raise UpstreamError(backend, f"{what} answered something that is not JSON") from None


def media_type(response: httpx.Response) -> str:
    """The answer's media type, lower case, without its parameters."""
    value: str = response.headers.get("content-type", "")
    return value.split(";")[0].strip().lower()
