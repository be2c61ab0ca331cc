"""A request's text spoken by an engine: plain text as the engine reads it; an SSML
document segment by segment, each in its own voicing, joined without a click.

Every caller that hands an engine a request's text (the worker, the store's key, the
preview, the command line) goes through here, so SSML means the same everywhere.

At a join the silence the voice leaves at the end of one segment and the start of the
next is trimmed to a few milliseconds, a break's silence goes between, and the two edges
fade over a few milliseconds (crossfaded where no break stands), so a span said faster or
louder joins its neighbours as one utterance.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from synth.engine import Engine, InvalidInputError, Pcm, Prosody, VoiceInfo, check_request
from synth.ssml.document import is_ssml
from synth.ssml.script import Pause, Script, Segment, build_script
from synth.styles import PRESETS

# Below this level (of full scale, about -70 dBFS) a sample is silence, for trimming at a
# join: low enough that a quiet span keeps its first consonant (a voice's silence is 0).
SILENCE_LEVEL = 0.0003
# Silence kept on each side of a join, and the fade over each edge.
JOIN_MARGIN = 0.010
FADE = 0.005
# The end of a segment waits this long for what follows it (its silence may be trimmed).
HOLD = 0.5

# An emotion a voice does not have is said in the nearest style preset it does.
NEAREST_STYLE = {
    "happy": "cheerful", "surprise": "cheerful", "excited": "cheerful", "cheerful": "cheerful",
    "gentle": "calm", "calm": "calm", "fear": "calm", "neutral": "neutral",
    "sad": "apologetic", "apologetic": "apologetic", "sorry": "apologetic",
    "angry": "serious", "hate": "serious", "serious": "serious",
}


def voice_of(engine: Engine, voice: str | None) -> VoiceInfo:
    """The engine's voice for a request (None: its first)."""
    voices = engine.voices()
    return next((v for v in voices if v.name == voice), voices[0])


def script_for(engine: Engine, voice: str | None, text: str) -> Script:
    """The SSML document's script for the voice's language: something to say, its
    emotions checked."""
    info = voice_of(engine, voice)
    script = build_script(text, info.language)
    if not script.segments:
        raise InvalidInputError("text", "the text has nothing to say")
    for category in sorted(script.emotions):
        if category not in info.styles and category not in NEAREST_STYLE:
            raise InvalidInputError(
                "text", f"SSML: <emotion category='{category}'>: voice '{info.name}' has "
                        f"{', '.join(info.styles)}; other voices also take "
                        f"{', '.join(sorted(NEAREST_STYLE))}")
    return script


def _held(engine: Engine, prosody: Prosody) -> Prosody:
    """Prosody held to the engine's ranges; a setting it has no control of stays at 1."""
    ranges = engine.setting_ranges()

    def hold(name: str, value: float) -> float:
        allowed = ranges.get(name)
        if allowed is None:
            return 1.0
        return min(max(value, allowed.minimum), allowed.maximum)

    return Prosody(hold("speed", prosody.speed), hold("pitch", prosody.pitch),
                   hold("volume", prosody.volume), prosody.intonation)


def _asked(
    engine: Engine, info: VoiceInfo, segment: Segment, style: str, prosody: Prosody
) -> tuple[Any, str, Prosody]:
    """What the engine is asked for one segment: its text (or pieces), style, prosody."""
    said = segment.voicing
    scaled = Prosody(prosody.speed * said.rate, prosody.pitch * said.pitch,
                     prosody.volume * said.volume, prosody.intonation)
    if said.emotion is not None:
        if said.emotion in info.styles and said.emotion not in PRESETS:
            style = said.emotion  # the engine's own emotion
        else:
            preset_name = NEAREST_STYLE.get(said.emotion, said.emotion)
            preset = PRESETS.get(preset_name)
            if preset_name in info.styles and preset is not None:
                # The preset at the emotion's intensity: its distance from neutral scaled.
                k = said.intensity

                def at(value: float) -> float:
                    return 1.0 + (value - 1.0) * k

                style = "neutral"
                scaled = Prosody(scaled.speed * at(preset.speed), scaled.pitch * at(preset.pitch),
                                 scaled.volume * at(preset.volume),
                                 scaled.intonation * at(preset.intonation))
    text: Any = segment.pieces if getattr(engine, "reads_pieces", False) else segment.plain(info.language)
    return text, style, _held(engine, scaled)


def spoken_form(
    engine: Engine, text: str, voice: str | None = None, style: str = "neutral",
    prosody: Prosody = Prosody(),
) -> str:
    """What the engine will say for a request's text, canonically (part of the key): for
    SSML, each segment's reading with the style and prosody it is said in, as `stream`
    derives them from the request's."""
    if not is_ssml(text):
        return engine.spoken_form(text)
    info = voice_of(engine, voice)
    script = script_for(engine, voice, text)
    parts = []
    request_style, request_prosody = style, prosody
    for item in script.items:
        if isinstance(item, Pause):
            parts.append(f"#{round(item.seconds * 1000)}")
            continue
        asked, style, prosody = _asked(engine, info, item, request_style, request_prosody)
        parts.append(f"{style};{prosody.speed:.3f},{prosody.pitch:.3f},{prosody.volume:.3f},"
                     f"{prosody.intonation:.3f};{engine.spoken_form(asked)}")
    return "ssml\n" + "\n".join(parts)


def stream(
    engine: Engine, text: str, *, voice: str | None, style: str, prosody: Prosody,
    whole: bool = False,
) -> Iterator[Pcm]:
    """The request's audio in chunks as they are made (`whole`: each segment synthesized
    in one call, which gives the same samples)."""
    if not is_ssml(text):
        if whole:
            yield engine.synthesize(text, voice=voice, style=style, prosody=prosody)
        else:
            yield from engine.stream(text, voice=voice, style=style, prosody=prosody)
        return
    info = check_request(engine, voice, style, prosody)
    script = script_for(engine, voice, text)
    joiner = Joiner(engine.sample_rate)
    for item in script.items:
        if isinstance(item, Pause):
            joiner.pause(item.seconds)
            continue
        asked, segment_style, segment_prosody = _asked(engine, info, item, style, prosody)
        joiner.start_segment()
        if whole:
            chunks: Iterator[Pcm] = iter([engine.synthesize(
                asked, voice=voice, style=segment_style, prosody=segment_prosody)])
        else:
            chunks = engine.stream(asked, voice=voice, style=segment_style, prosody=segment_prosody)
        for chunk in chunks:
            ready = joiner.feed(chunk)
            if ready is not None:
                yield ready
    last = joiner.finish()
    if last is not None:
        yield last


def synthesize(
    engine: Engine, text: str, *, voice: str | None, style: str, prosody: Prosody
) -> Pcm:
    """The request's whole audio: exactly the concatenation of `stream`."""
    return Pcm.concat(list(stream(engine, text, voice=voice, style=style, prosody=prosody,
                                  whole=True)))


def pronounce(engine: Engine, text: str, voice: str | None = None) -> dict[str, Any]:
    """What the voice will say, for a person to read (engines with a preview only)."""
    preview = getattr(engine, "pronounce", None)
    if preview is None:
        raise InvalidInputError(
            "voice", f"the voice '{voice_of(engine, voice).name}' offers no pronunciation preview")
    if not is_ssml(text):
        described: dict[str, Any] = preview(text)
        return described
    info = voice_of(engine, voice)
    script = script_for(engine, voice, text)
    sentences: list[dict[str, Any]] = []
    normalized: list[str] = []
    unread: list[str] = []
    for item in script.items:
        if isinstance(item, Pause):
            sentences.append({"break": round(item.seconds, 3)})
            continue
        asked, style, prosody = _asked(engine, info, item, "neutral", Prosody())
        part = preview(asked)
        normalized.append(part["normalized"])
        unread.extend(part["unread"])
        for sentence in part["sentences"]:
            if (style, prosody) != ("neutral", Prosody()):
                sentence["voicing"] = {"style": style, "speed": round(prosody.speed, 3),
                                       "pitch": round(prosody.pitch, 3),
                                       "volume": round(prosody.volume, 3)}
            sentences.append(sentence)
    return {"text": text, "ssml": True, "normalized": "".join(normalized),
            "sentences": sentences, "unread": unread}


class Joiner:
    """Segments' audio joined as one: the silence at each join trimmed to JOIN_MARGIN, a
    pause's silence between, the edges faded (crossfaded where no pause stands). The
    result depends only on each segment's samples, never on how they were chunked."""

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._level = int(SILENCE_LEVEL * 32767)
        self._margin = int(JOIN_MARGIN * rate)
        self._fade = int(FADE * rate)
        self._hold = int(HOLD * rate)
        self._pending: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)
        self._segments = 0
        self._trimming_head = False
        # A segment's start, gathered until it holds its first sound and a fade after it.
        self._head: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)
        self._pause = 0.0
        self._unread: list[str] = []

    def pause(self, seconds: float) -> None:
        """A pause before the next segment (added to any pause already there)."""
        self._pause += seconds

    def start_segment(self) -> None:
        """The next samples fed begin a new segment."""
        self._flush_head()
        self._segments += 1
        self._trimming_head = self._segments > 1
        self._head = np.zeros(0, dtype=np.int16)
        if self._segments == 1 and self._pause:  # a pause before the first words
            self._pending = np.concatenate([self._pending, self._silence(self._pause)])
            self._pause = 0.0

    def feed(self, pcm: Pcm) -> Pcm | None:
        """A segment's next samples; returns what is ready to play, if anything."""
        self._unread.extend(pcm.unread)
        samples: npt.NDArray[np.int16] = pcm.samples
        if self._trimming_head:
            self._head = np.concatenate([self._head, samples])
            loud = np.flatnonzero(np.abs(self._head.astype(np.int32)) > self._level)
            if loud.size == 0:  # still the voice's silence: keep only a margin of it
                self._head = self._head[-self._margin:]
                return None
            self._head = self._head[max(0, int(loud[0]) - self._margin):]
            if len(self._head) < self._margin + self._fade:  # a whole fade, however chunked
                return None
            samples = self._joined_head()
        return self._keep(samples)

    def _keep(self, samples: npt.NDArray[np.int16]) -> Pcm | None:
        combined = np.concatenate([self._pending, samples])
        ready, self._pending = combined[: -self._hold], combined[-self._hold:]
        return self._out(ready)

    def _joined_head(self) -> npt.NDArray[np.int16]:
        joined = self._join(self._head)
        self._head = np.zeros(0, dtype=np.int16)
        self._trimming_head = False
        return joined

    def _flush_head(self) -> None:
        """A segment that ended before its start was joined: join what it had (if it made
        no sound at all, it adds nothing)."""
        if self._trimming_head and np.any(np.abs(self._head.astype(np.int32)) > self._level):
            self._pending = np.concatenate([self._pending, self._joined_head()])
        self._trimming_head = False

    def finish(self) -> Pcm | None:
        """Everything still held (and a pause after the last words)."""
        self._flush_head()
        tail = self._pending
        if self._pause:
            tail = np.concatenate([tail, self._silence(self._pause)])
            self._pause = 0.0
        self._pending = np.zeros(0, dtype=np.int16)
        return self._out(tail)

    def _out(self, samples: npt.NDArray[np.int16]) -> Pcm | None:
        if samples.size == 0 and not self._unread:
            return None
        pcm = Pcm(samples, self._rate, tuple(self._unread))
        self._unread = []
        return pcm

    def _silence(self, seconds: float) -> npt.NDArray[np.int16]:
        return np.zeros(int(round(seconds * self._rate)), dtype=np.int16)

    def _join(self, head: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """The held end of the previous segment, trimmed, and the next segment's trimmed
        start: returns the samples that replace both (the held part is consumed)."""
        tail = self._pending
        loud = np.flatnonzero(np.abs(tail.astype(np.int32)) > self._level)
        # Nothing loud held (a pause before the first words, a silent segment): all kept.
        end = int(loud[-1]) + 1 + self._margin if loud.size else len(tail)
        tail_f: npt.NDArray[np.float32] = tail[: min(end, len(tail))].astype(np.float32)
        nxt: npt.NDArray[np.float32] = head.astype(np.float32)
        fade = min(self._fade, len(tail_f), len(nxt))
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        if fade:
            tail_f[len(tail_f) - fade:] *= ramp[::-1]
            nxt[:fade] *= ramp
        if self._pause:
            middle = self._silence(self._pause).astype(np.float32)
            joined = np.concatenate([tail_f, middle, nxt])
        else:  # crossfade: the faded edges overlap
            overlap = tail_f[len(tail_f) - fade:] + nxt[:fade]
            joined = np.concatenate([tail_f[: len(tail_f) - fade], overlap, nxt[fade:]])
        self._pause = 0.0
        self._pending = np.zeros(0, dtype=np.int16)
        out: npt.NDArray[np.int16] = np.clip(np.rint(joined), -32768, 32767).astype(np.int16)
        return out
