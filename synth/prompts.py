"""Prompts: what a request gives a voice beyond its name, for engines that take it.

A CosyVoice server clones a voice from a reference clip (with the clip's transcript, or
without it, across languages) and speaks one of its voices as an instruction describes.
Such a request names no configured voice: its prompt is adopted by an engine that can speak
it, under a voice name made from the prompt's digest. The name goes into the key like any
voice's, so two requests share stored audio only when their clips (byte for byte), their
transcripts and their instructions are the same.

An engine keeps the prompts it adopted on a `Shelf` until its workers have used them: held
as long as a request holds the prompt, and the most recent ones a while longer.
"""

from __future__ import annotations

import functools
import hashlib
import io
import threading
import weakref
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


class Shelf:
    """The prompts one engine adopted, by voice name (shared by its instances, used from the
    event loop and from worker threads)."""

    def __init__(self, recent: int = 64, recent_bytes: int = 32 << 20) -> None:
        self._held: weakref.WeakValueDictionary[str, Prompt] = weakref.WeakValueDictionary()
        self._recent: OrderedDict[str, Prompt] = OrderedDict()
        self._recent_count = recent
        self._recent_bytes = recent_bytes
        self._bytes = 0
        self._lock = threading.Lock()

    def keep(self, name: str, prompt: Prompt) -> Prompt:
        """Keep a prompt under its voice name; the one kept already under it, if any, is
        returned (the same prompt)."""
        with self._lock:
            kept = self._held.get(name)
            if kept is None:
                kept = prompt
                self._held[name] = prompt
            if name in self._recent:
                self._recent.move_to_end(name)
            else:
                self._recent[name] = kept
                self._bytes += len(kept.clip)
                while self._recent and (len(self._recent) > self._recent_count
                                        or self._bytes > self._recent_bytes):
                    _, dropped = self._recent.popitem(last=False)
                    self._bytes -= len(dropped.clip)
            return kept

    def get(self, name: str) -> Prompt | None:
        """The prompt kept under a voice name, while it is kept."""
        with self._lock:
            return self._held.get(name)
