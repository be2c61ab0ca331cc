"""The Engine protocol every voice implements, and the values it exchanges."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

# Silence between sentences, in seconds, where an engine joins them itself (each sentence
# already starts and ends with its own short silence); text streamed in sentence by sentence
# is joined with the same pause.
SENTENCE_PAUSE = 0.12


class SynthesisError(Exception):
    """The engine could not produce audio for a request."""


# Audio whose loudest sample is below this (of 32768: about -60 dBFS) says nothing: the
# engines' own silence is 0, and the quietest speech at the lowest volume is far above it.
SILENCE_PEAK = 32


def audible(samples: npt.NDArray[np.int16]) -> bool:
    """Whether 16-bit samples hold anything louder than silence (none at all: False)."""
    if len(samples) == 0:
        return False
    return int(np.abs(samples.astype(np.int32)).max()) >= SILENCE_PEAK


class SilentAudioError(SynthesisError):
    """An engine answered no audio, or only silence: never stored, never a hit."""


class InvalidInputError(SynthesisError):
    """Input the engine cannot accept (unknown voice or style, a value out of range, nothing
    to say); `field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


class UpstreamFailure(enum.Enum):
    """How a remote backend failed: what the gateway tells its client depends on it."""

    # It answered, but not with audio: an error status, a body that is not audio or is too
    # long, or a connection broken off before the answer was whole.
    BAD_ANSWER = "bad_answer"
    # It cannot be reached, or its circuit breaker is open: it counts as down for now.
    UNREACHABLE = "unreachable"
    # It did not answer in time.
    TIMEOUT = "timeout"


class UpstreamError(SynthesisError):
    """A remote backend failed to answer with audio; `backend` names it, `kind` says how."""

    kind = UpstreamFailure.BAD_ANSWER

    def __init__(self, backend: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(f"backend '{backend}': {message}")
        self.backend = backend
        self.retry_after = retry_after


class UpstreamUnavailableError(UpstreamError):
    """A remote backend cannot be reached, or its circuit breaker is open."""

    kind = UpstreamFailure.UNREACHABLE


class UpstreamTimeoutError(UpstreamError):
    """A remote backend did not answer in time."""

    kind = UpstreamFailure.TIMEOUT


@dataclass(frozen=True)
class SettingRange:
    """The accepted range of one numeric setting and its default."""

    minimum: float
    maximum: float
    default: float

    def check(self, name: str, value: float) -> float:
        """Return value if it lies in range, else raise InvalidInputError naming `name`."""
        if not self.minimum <= value <= self.maximum:
            raise InvalidInputError(
                name, f"{name} must be between {self.minimum} and {self.maximum}, got {value}"
            )
        return value


@dataclass(frozen=True)
class VoiceInfo:
    """One voice an engine offers, with its styles."""

    name: str
    language: str
    styles: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Prosody:
    """Relative prosody controls; 1.0 is the voice's own manner.

    `intonation` scales how far pitch moves around its mean (used by style presets);
    `pitch` moves the mean itself.
    """

    speed: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0
    intonation: float = 1.0


@dataclass(frozen=True)
class Pcm:
    """Mono 16-bit PCM audio, with what the frontend could not read."""

    samples: npt.NDArray[np.int16]
    sample_rate: int
    unread: tuple[str, ...] = field(default=())

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate

    @staticmethod
    def concat(parts: list[Pcm]) -> Pcm:
        """Join chunks of one rate into one Pcm."""
        if not parts:
            raise ValueError("nothing to join")
        rate = parts[0].sample_rate
        if any(p.sample_rate != rate for p in parts):
            raise ValueError("chunks have different sample rates")
        unread = tuple(u for p in parts for u in p.unread)
        return Pcm(np.concatenate([p.samples for p in parts]), rate, unread)


@runtime_checkable
class Engine(Protocol):
    """A speech synthesizer. Callers serialize its use, unless its class sets
    `concurrent_calls = True` (see `takes_concurrent_calls`)."""

    @property
    def name(self) -> str:
        """Stable engine identifier, e.g. 'fastspeech2'."""
        ...

    @property
    def version(self) -> str:
        """Changes whenever the audio for the same request would change."""
        ...

    @property
    def sample_rate(self) -> int:
        """Native output rate in Hz."""
        ...

    def voices(self) -> tuple[VoiceInfo, ...]:
        """The voices this engine offers."""
        ...

    def setting_ranges(self) -> Mapping[str, SettingRange]:
        """The accepted range of speed, pitch and volume."""
        ...

    def spoken_form(self, text: str) -> str:
        """A canonical string of what the voice will say for text: equal only when the audio
        is (same settings and version). Deterministic, memoized, and safe to call while
        another thread synthesizes; InvalidInputError('text') when there is nothing to say."""
        ...

    def synthesize(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Pcm:
        """Synthesize the whole text."""
        ...

    def stream(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Iterator[Pcm]:
        """Synthesize sentence by sentence, yielding each as soon as it is ready."""
        ...


def check_request(engine: Engine, voice: str | None, style: str, prosody: Prosody) -> VoiceInfo:
    """The engine's voice for a request (None: its first), once the voice, the style and
    every setting are checked; InvalidInputError names what is wrong. Every engine and the
    gateway check with this one function."""
    voices = engine.voices()
    info = voices[0] if voice is None else next((v for v in voices if v.name == voice), None)
    adopted = getattr(engine, "adopted", None)  # a voice given by a request's prompt
    if info is None and voice is not None and adopted is not None:
        info = adopted(voice)
    if info is None:
        raise InvalidInputError(
            "voice", f"unknown voice '{str(voice)[:40]}'; choose one of: "
                     f"{', '.join(v.name for v in voices)}"
        )
    if style not in info.styles:
        raise InvalidInputError(
            "style", f"unknown style '{style[:40]}' for voice '{info.name}'; "
                     f"choose one of: {', '.join(info.styles)}"
        )
    ranges = engine.setting_ranges()
    for name in ("speed", "pitch", "volume"):
        value = getattr(prosody, name)
        allowed = ranges.get(name)
        if allowed is not None:
            allowed.check(name, value)
        elif value != 1.0:
            raise InvalidInputError(name, f"voice '{info.name}' has no {name} control; "
                                          f"leave {name} at 1")
    return info


def takes_concurrent_calls(engine: object) -> bool:
    """Whether one instance may run several syntheses at once, from different threads (its
    sessions are thread-safe and what is not is locked inside): then the workers of its
    engine share that instance and its memory instead of loading one each."""
    return bool(getattr(engine, "concurrent_calls", False))

