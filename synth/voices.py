"""Every engine's workers behind one name space of voices: the store's synthesizer.

The store hands `Voices` SpeechRequests and never sees an engine. Timing reaches whoever
wants it (the gateway's metrics and logs) through observers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from synth.engine import (
    Engine,
    InvalidInputError,
    Pcm,
    Prosody,
    SettingRange,
    VoiceInfo,
    check_request,
)
from synth.prompts import Prompt, engine_of, is_adopted
from synth.request import SpeechRequest, clean_text
from synth.scope import reading_as, scope_for
from synth.ssml import is_ssml, parse_document, speaking
from synth.ssml.readings import with_readings
from synth.worker import Priority, SynthesisWorker, Urgency


@dataclass(frozen=True)
class Timing:
    """One synthesis as measured: wall, queue and engine seconds, and the audio's length."""

    wall_seconds: float
    queue_seconds: float
    engine_seconds: float
    audio_seconds: float


Observer = Callable[[Timing], None]


def scope_of(request: SpeechRequest) -> str:
    """The reading scope of a request (synth/scope.py): its tenant's."""
    return scope_for(request.tenant)


@dataclass(frozen=True)
class VoiceChoice:
    """A voice resolved to the engine that speaks it."""

    engine: str
    voice: VoiceInfo


class Voices:
    """Every engine's workers, keyed by engine name; every voice, keyed by voice name."""

    def __init__(self, workers: Sequence[SynthesisWorker], default_voice: str | None = None) -> None:
        if not workers:
            raise ValueError("at least one engine is needed")
        # Several workers may share an engine name: instances of one engine, load-balanced.
        self._workers: dict[str, list[SynthesisWorker]] = {}
        for worker in workers:
            self._workers.setdefault(worker.engine.name, []).append(worker)
        self._voices: dict[str, VoiceChoice] = {}
        for name, group in self._workers.items():
            for voice in group[0].engine.voices():
                if voice.name in self._voices:
                    raise ValueError(f"voice '{voice.name}' is offered by two engines")
                self._voices[voice.name] = VoiceChoice(name, voice)
        self.default_voice = default_voice or next(iter(self._voices))
        if self.default_voice not in self._voices:
            raise ValueError(f"default voice '{self.default_voice}' is not offered by any engine")
        self.observers: list[Observer] = []

    @property
    def workers(self) -> Sequence[SynthesisWorker]:
        """Every worker of every engine."""
        return [w for group in self._workers.values() for w in group]

    def _engine(self, name: str) -> Engine:
        return self._workers[name][0].engine

    def _worker(self, engine: str) -> SynthesisWorker:
        # The least loaded instance of the engine (per lane).
        return min(self._workers[engine], key=lambda w: w.load)

    def resolve(self, voice: str | None) -> VoiceChoice:
        """The engine and voice for a requested voice name (None: the default voice), or
        for the name of a prompt an engine adopted (see `adopt`)."""
        choice = self._voices.get(voice or self.default_voice)
        if choice is None and voice is not None and is_adopted(voice):
            engine = engine_of(voice)
            adopted = getattr(self._engine(engine), "adopted", None) \
                if engine in self._workers else None
            info = adopted(voice) if adopted is not None else None
            choice = VoiceChoice(engine, info) if info is not None else None
        if choice is None:
            raise InvalidInputError(
                "voice",
                f"unknown voice '{str(voice)[:40]}'; choose one of: {', '.join(self._voices)}",
            )
        return choice

    def request(
        self, text: str, *, voice: str | None, style: str | None, speed: float, pitch: float,
        volume: float,
    ) -> SpeechRequest:
        """A checked SpeechRequest: known voice and style, every setting within its range."""
        choice = self.resolve(voice)
        style = style or "neutral"
        check_request(self._engine(choice.engine), choice.voice.name, style,
                      Prosody(speed, pitch, volume))
        text = clean_text(text)
        if not text:
            raise InvalidInputError("text", "text is required")
        if is_ssml(text):
            # The document in its one canonical form (NFC first, as the request keeps it):
            # its spellings are one request.
            text = parse_document(text).canonical
            speaking.script_for(self._engine(choice.engine), choice.voice.name, text)
        return SpeechRequest.create(
            text, engine=choice.engine, voice=choice.voice.name, style=style,
            speed=speed, pitch=pitch, volume=volume,
        )

    def speaking(self, language: str) -> str | None:
        """The voice for a language (its primary subtag: zh, en, …): the default voice when
        it speaks it, else the first voice that does; None when none does."""
        wanted = language.split("-")[0].lower()
        choices = [self._voices[self.default_voice], *self._voices.values()]
        return next((c.voice.name for c in choices
                     if c.voice.language.split("-")[0].lower() == wanted), None)

    def languages(self) -> list[str]:
        """The languages the voices speak (primary subtags), in the voices' order."""
        return list(dict.fromkeys(c.voice.language.split("-")[0].lower()
                                  for c in self._voices.values()))

    @contextlib.contextmanager
    def adopting(self, prompt: Prompt, engine: str | None = None) -> Iterator[str | None]:
        """The voice name `prompt` is spoken under by the first engine that takes it (or by
        `engine`), for `request(voice=…)`, kept by that engine until the block ends: hold
        it until the request is spoken. None when no engine takes it."""
        for name, group in self._workers.items():
            found = group[0].engine
            adopt, release = getattr(found, "adopt", None), getattr(found, "release", None)
            if adopt is None or release is None or engine not in (None, name):
                continue
            voice: str | None = adopt(prompt)
            if voice is not None:
                try:
                    yield voice
                finally:
                    release(voice)
                return
        yield None

    def fallback(self, request: SpeechRequest) -> SpeechRequest | None:
        """What to synthesize instead while the request's engine is down: its backend's
        fallback voice, neutral, at the request's speed where that voice allows it."""
        voice = getattr(self._engine(request.engine), "fallback_voice", None)
        if voice is None:
            return None
        for speed in (request.speed, 1.0):
            try:
                return self.request(request.text, voice=voice, style=None, speed=speed,
                                    pitch=1.0, volume=1.0)
            except InvalidInputError:
                continue
        return None

    def backends(self) -> list[dict[str, Any]]:
        """Each remote backend's state and figures (one entry per backend)."""
        seen: list[dict[str, Any]] = []
        for group in self._workers.values():
            describe = getattr(group[0].engine, "describe", None)
            if describe is not None:
                seen.append(describe())
        return seen

    def engine_version(self, engine: str) -> str:
        """The named engine's current version."""
        return self._engine(engine).version

    def native_rate(self, engine: str) -> int:
        """The named engine's output rate."""
        return self._engine(engine).sample_rate

    def setting_ranges(self, engine: str) -> Mapping[str, SettingRange]:
        """The named engine's accepted speed, pitch and volume (a setting it lacks is absent)."""
        return self._engine(engine).setting_ranges()

    def said(self, request: SpeechRequest) -> str:
        """The request's text as its engine is asked to say it: with the words its tenant
        gives readings of (`words`) in <phoneme>s, for an engine that reads with a lexicon."""
        if request.words and hasattr(self._engine(request.engine), "set_site_lexicon"):
            with reading_as(scope_of(request)):
                return with_readings(request.text, request.words)
        return request.text

    def spoken(self, request: SpeechRequest) -> str:
        """What the request's engine will say for its text (blocking: the engine reads it,
        in its tenant's reading scope)."""
        said = self.said(request)
        with reading_as(scope_of(request)):
            return speaking.spoken_form(
                self._engine(request.engine), said, request.voice, request.style,
                Prosody(request.speed, request.pitch, request.volume))

    def _lexical_engines(self) -> list[Any]:
        """Every engine instance that reads with a lexicon (each worker has its own)."""
        return [w.engine for w in self.workers if hasattr(w.engine, "set_site_lexicon")]

    def check_site_lexicon(self, entries: Mapping[str, str]) -> None:
        """Refuse site words an engine cannot say (LexiconError names the bad one)."""
        for engine in self._lexical_engines()[:1]:
            engine.site_lexicon(entries)

    def set_site_lexicon(self, entries: Mapping[str, str]) -> None:
        """Read with the site's words (word -> 'pin1 yin1') from now on, on every engine that
        has a lexicon (blocking: each rebuilds its segmenter's additions)."""
        for engine in self._lexical_engines():
            engine.set_site_lexicon(entries)

    def pronounce(self, request: SpeechRequest) -> dict[str, Any]:
        """What the request's voice will say, for a person to read (blocking: the engine
        reads it); engines that cannot show it refuse, naming the voice."""
        said = self.said(request)
        with reading_as(scope_of(request)):
            described = speaking.pronounce(self._engine(request.engine), said, request.voice)
        return {"engine": request.engine, "voice": request.voice, **described}

    async def synthesize(self, request: SpeechRequest, priority: Priority | Urgency) -> Pcm:
        """Synthesize on the request's engine, in its queue."""
        started = time.perf_counter()
        timing: dict[str, float] = {}
        pcm = await self._worker(request.engine).synthesize(
            self.said(request), voice=request.voice, style=request.style,
            prosody=Prosody(request.speed, request.pitch, request.volume), priority=priority,
            timing=timing, scope=scope_of(request),
        )
        measured = Timing(
            time.perf_counter() - started, timing.get("queue_seconds", 0.0),
            timing.get("engine_seconds", 0.0), pcm.duration,
        )
        for observe in self.observers:
            observe(measured)
        return pcm

    async def stream(
        self, request: SpeechRequest, priority: Priority | Urgency = Priority.LIVE
    ) -> AsyncGenerator[Pcm, None]:
        """Synthesize sentence by sentence on the request's engine; a stream heard to its
        end is reported to the observers like a whole synthesis."""
        started = time.perf_counter()
        audio = 0.0
        timing: dict[str, float] = {}
        chunks = self._worker(request.engine).stream(
            self.said(request), voice=request.voice, style=request.style,
            prosody=Prosody(request.speed, request.pitch, request.volume), priority=priority,
            timing=timing, scope=scope_of(request),
        )
        try:
            async for chunk in chunks:
                audio += chunk.duration
                yield chunk
        finally:
            await chunks.aclose()
        measured = Timing(time.perf_counter() - started, timing.get("queue_seconds", 0.0),
                          timing.get("engine_seconds", 0.0), audio)
        for observe in self.observers:
            observe(measured)

    def describe(self) -> dict[str, Any]:
        """Engines, voices, styles and setting ranges, for /api/voices."""
        engines = []
        for name, group in self._workers.items():
            engine = group[0].engine
            engines.append({
                "name": name,
                "workers": len(group),
                "lanes": sum(w.lanes for w in group),
                "version": engine.version,
                "sample_rate": engine.sample_rate,
                "settings": {
                    key: {"min": r.minimum, "max": r.maximum, "default": r.default}
                    for key, r in engine.setting_ranges().items()
                },
                "voices": [
                    {"name": v.name, "language": v.language, "styles": list(v.styles),
                     "description": v.description}
                    for v in engine.voices()
                ],
            })
        return {"default_voice": self.default_voice, "engines": engines,
                "backends": self.backends()}
