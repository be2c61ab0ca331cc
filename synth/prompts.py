"""Prompts: what a request gives a voice beyond its name, for engines that take it.

A CosyVoice server clones a voice from a reference clip (with the clip's transcript, or
without it, across languages) and speaks one of its voices as an instruction describes.
Such a request names no configured voice: its prompt is adopted by an engine that can speak
it, under a voice name made from the prompt's digest. The name goes into the key like any
voice's, so two requests share stored audio only when their clips (byte for byte), their
transcripts and their instructions are the same.

An engine keeps the prompts it adopted on a `Shelf` until its workers have used them: as
long as a request holds the prompt, and the most recent ones a while longer.
"""

from __future__ import annotations

import functools
import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

import soundfile as sf

from config.backends import PROMPT_MODES

# The inference modes a prompt asks for (CosyVoice's names).
MODES = PROMPT_MODES
ZERO_SHOT, CROSS_LINGUAL, INSTRUCT = MODES
# CosyVoice reads a clip at 16 kHz (a lower rate it cannot use) and extracts speech tokens
# from at most 30 seconds of it.
CLIP_MIN_RATE = 16000
CLIP_MAX_SECONDS = 30.0
# Marks an adopted voice's name: configured voice names are lowercase letters, digits, - and _.
_MARK = "~"


@dataclass(frozen=True, eq=False)
class Prompt:
    """A clip, its transcript, or an instruction for one of a backend's voices."""

    mode: str
    clip: bytes = b""  # a WAV file (zero_shot, cross_lingual)
    transcript: str = ""  # what the clip says (zero_shot)
    voice: str = ""  # the voice instructed, by our name (instruct)
    instruction: str = ""  # how it is to speak (instruct)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown prompt mode {self.mode!r}")

    @functools.cached_property
    def digest(self) -> str:
        """A hash of everything the prompt gives the voice."""
        hashed = hashlib.sha256()
        for part in (self.mode, hashlib.sha256(self.clip).hexdigest(), self.transcript,
                     self.voice, self.instruction):
            hashed.update(part.encode("utf-8", "surrogatepass") + b"\0")
        return hashed.hexdigest()

    def voice_name(self, engine: str) -> str:
        """The name the prompt is spoken under by `engine` (part of the key)."""
        return f"{engine}{_MARK}{self.mode}{_MARK}{self.digest[:32]}"


def is_adopted(voice: str) -> bool:
    """Whether a voice name is an adopted prompt's."""
    return _MARK in voice


def engine_of(voice: str) -> str:
    """The engine an adopted prompt's voice name belongs to."""
    return voice.partition(_MARK)[0]


def clip_problem(data: bytes) -> str | None:
    """Why `data` cannot be a reference clip (None: it can): a WAV file, recorded at 16 kHz
    or more, holding some audio and at most CLIP_MAX_SECONDS of it. Reads only its header."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OverflowError):
        return "is not a WAV file"
    if info.format not in ("WAV", "WAVEX"):
        return f"is {info.format} audio, not a WAV file"
    if info.samplerate < CLIP_MIN_RATE:
        return (f"is recorded at {info.samplerate} Hz; CosyVoice needs at least "
                f"{CLIP_MIN_RATE} Hz")
    if info.frames <= 0:
        return "holds no audio"
    if info.frames / info.samplerate > CLIP_MAX_SECONDS:
        return (f"lasts {info.frames / info.samplerate:.1f} s; CosyVoice takes at most "
                f"{CLIP_MAX_SECONDS:.0f} s")
    return None


@dataclass
class _Kept:
    prompt: Prompt
    holds: int = 0


class Shelf:
    """The prompts one engine adopted, by voice name (shared by its instances, used from the
    event loop and from worker threads). A prompt is kept while a request holds it, and,
    once none does, among the most recent until `recent` prompts or `recent_bytes` of
    clips are kept without a holder."""

    def __init__(self, recent: int = 64, recent_bytes: int = 32 << 20) -> None:
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._recent = recent
        self._recent_bytes = recent_bytes
        self._lock = threading.Lock()

    def hold(self, name: str, prompt: Prompt) -> None:
        """Keep a prompt under its voice name until it is released (as often as held)."""
        with self._lock:
            kept = self._kept.get(name)
            if kept is None:
                kept = self._kept[name] = _Kept(prompt)
            kept.holds += 1
            self._kept.move_to_end(name)

    def release(self, name: str) -> None:
        """A holder of the prompt is done with it."""
        with self._lock:
            kept = self._kept.get(name)
            if kept is not None and kept.holds > 0:
                kept.holds -= 1
            free = [n for n, k in self._kept.items() if k.holds == 0]
            count, size = len(free), sum(len(self._kept[n].prompt.clip) for n in free)
            for unheld in free:  # the oldest first
                if count <= self._recent and size <= self._recent_bytes:
                    break
                size -= len(self._kept.pop(unheld).prompt.clip)
                count -= 1

    def get(self, name: str) -> Prompt | None:
        """The prompt kept under a voice name, while it is kept."""
        with self._lock:
            kept = self._kept.get(name)
            return kept.prompt if kept is not None else None
