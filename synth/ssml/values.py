"""The values of SSML attributes: break lengths, prosody factors (W3C's and Aliyun's),
emotions, say-as readings and pinyin, each read or refused by name (SsmlError)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from synth.ssml.nodes import Node, SsmlError

MAX_BREAK_SECONDS = 10.0

INTERPRET_AS = (
    "digits", "telephone", "cardinal", "ordinal", "characters", "date", "time", "currency",
    "id", "name", "address", "punctuation",
)
# Other names for the same readings, as other SSML dialects write them.
INTERPRET_ALIASES = {"verbatim": "characters", "spell-out": "characters", "number": "cardinal"}

# Pause lengths by strength (W3C names them; their lengths are the voice's to choose).
STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.2, "medium": 0.4, "strong": 0.7,
             "x-strong": 1.2}
_RATES = {"x-slow": 0.6, "slow": 0.8, "medium": 1.0, "fast": 1.25, "x-fast": 1.5,
          "default": 1.0}
_PITCHES = {"x-low": 0.85, "low": 0.92, "medium": 1.0, "high": 1.08, "x-high": 1.16,
            "default": 1.0}
_VOLUMES = {"x-soft": 0.4, "soft": 0.7, "medium": 1.0, "loud": 1.4, "x-loud": 1.8,
            "default": 1.0}
# Relative settings accepted at all (a voice then holds them to its own range).
_FACTOR_RANGE = (0.25, 4.0)

_TIME = re.compile(r"(\d{1,12}(?:\.\d{1,6})?)\s*(ms|s)")
_PERCENT = re.compile(r"([+-]?)(\d{1,4}(?:\.\d{1,4})?)%")
_NUMBER = re.compile(r"[+-]?\d{1,4}(?:\.\d{1,6})?")
_SEMITONES = re.compile(r"([+-]?\d{1,3}(?:\.\d{1,3})?)st")
_DECIBELS = re.compile(r"([+-]?\d{1,3}(?:\.\d{1,3})?)dB")
_EMOTION = re.compile(r"[a-z][a-z_-]{0,31}")
_PINYIN = re.compile(r"[a-zü]{1,6}[1-5]")


def break_seconds(node: Node) -> float:
    """A <break>'s length in seconds: its time, else its strength's (medium without either)."""
    time = node.get("time")
    if time is not None:
        match = _TIME.fullmatch(time)
        if match is None:
            raise SsmlError(f"<break time='{time[:40]}'>: give milliseconds or seconds "
                            "('500ms', '1.5s')")
        seconds = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
        if seconds > MAX_BREAK_SECONDS:
            raise SsmlError(f"<break time='{time[:40]}'> is longer than "
                            f"{MAX_BREAK_SECONDS:g} s")
        return seconds
    strength = node.get("strength") or "medium"
    if strength not in STRENGTHS:
        raise SsmlError(f"<break strength='{strength[:40]}'>: one of {', '.join(STRENGTHS)}")
    return STRENGTHS[strength]


def aliyun_factor(rate: float) -> float:
    """Aliyun's -500..500 speech or pitch rate as a factor: 1/(1-0.001r) for r >= 0 and
    1/(1-0.002r) below, so -500 is half, 0 as is and 500 double (Aliyun's NLS documents
    speech_rate so; its pitch_rate is read the same way)."""
    return 1.0 / (1.0 - rate * (0.001 if rate >= 0 else 0.002))


def _aliyun_rate(value: str, where: str) -> float:
    """An attribute in Aliyun's -500..500 as a factor (see aliyun_factor)."""
    if _NUMBER.fullmatch(value) is None or not -500 <= float(value) <= 500:
        raise SsmlError(f"{where}: an integer from -500 to 500")
    return aliyun_factor(float(value))


def _factor(value: str, names: Mapping[str, float], where: str, *, units: str = "") -> float:
    """A W3C prosody value as a factor: a name, a percentage, a relative percentage, a
    plain multiplier, or semitones (pitch) or decibels (volume)."""
    if value in names:
        return names[value]
    factor: float | None = None
    if (match := _PERCENT.fullmatch(value)) is not None:
        amount = float(match.group(2)) / 100
        factor = {"+": 1 + amount, "-": 1 - amount}.get(match.group(1), amount)
    elif units == "st" and (match := _SEMITONES.fullmatch(value)) is not None:
        factor = 2 ** (float(match.group(1)) / 12)
    elif units == "dB" and (match := _DECIBELS.fullmatch(value)) is not None:
        factor = 10 ** (float(match.group(1)) / 20)
    elif _NUMBER.fullmatch(value) is not None and not value.startswith(("+", "-")):
        factor = float(value)
    if factor is None:
        extra = {"st": ", semitones ('+2st')", "dB": ", decibels ('-3dB')"}.get(units, "")
        raise SsmlError(f"{where}: one of {', '.join(names)}, a percentage ('120%', '+20%')"
                        f"{extra} or a multiplier ('1.2')")
    low, high = _FACTOR_RANGE
    if not low <= factor <= high:
        raise SsmlError(f"{where} is out of range ({low:g}× to {high:g}×)")
    return factor


@dataclass(frozen=True)
class Voicing:
    """How a span is said, relative to the request: speed, pitch and volume factors, and
    an emotion with its intensity."""

    rate: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0
    emotion: str | None = None
    intensity: float = 1.0

    def within(self, inner: Voicing) -> Voicing:
        """This voicing with an inner span's on top (factors multiply; the inner emotion wins)."""
        inner_emotion = inner.emotion is not None
        return Voicing(self.rate * inner.rate, self.pitch * inner.pitch,
                       self.volume * inner.volume,
                       inner.emotion if inner_emotion else self.emotion,
                       inner.intensity if inner_emotion else self.intensity)


def voicing(node: Node) -> Voicing:
    """The voicing a <prosody>, <speak> or <emotion> node sets."""
    if node.tag == "emotion":
        category, intensity = emotion(node)
        return Voicing(emotion=category, intensity=intensity)
    rate, pitch, volume = node.get("rate"), node.get("pitch"), node.get("volume")
    if node.tag == "speak":  # Aliyun's attributes: -500..500, and volume 0..100 (50 as is)
        return Voicing(
            _aliyun_rate(rate, "<speak rate>") if rate is not None else 1.0,
            _aliyun_rate(pitch, "<speak pitch>") if pitch is not None else 1.0,
            _speak_volume(volume) if volume is not None else 1.0,
        )
    return Voicing(
        _factor(rate, _RATES, f"<prosody rate='{rate[:40]}'>") if rate is not None else 1.0,
        _factor(pitch, _PITCHES, f"<prosody pitch='{pitch[:40]}'>", units="st")
        if pitch is not None else 1.0,
        _factor(volume, _VOLUMES, f"<prosody volume='{volume[:40]}'>", units="dB")
        if volume is not None else 1.0,
    )


def _speak_volume(value: str) -> float:
    if _NUMBER.fullmatch(value) is None or not 1 <= float(value) <= 100:
        raise SsmlError("<speak volume>: a number from 1 to 100 (50 is the voice's own)")
    return float(value) / 50


def emotion(node: Node) -> tuple[str, float]:
    """An <emotion>'s category and intensity (0.01 to 2.0, 1 by default)."""
    category = node.get("category") or ""
    if _EMOTION.fullmatch(category) is None:
        raise SsmlError(f"<emotion category='{category[:40]}'> is not an emotion's name")
    raw = node.get("intensity", "1.0") or "1.0"
    if _NUMBER.fullmatch(raw) is None or not 0.01 <= float(raw) <= 2.0:
        raise SsmlError(f"<emotion intensity='{raw[:40]}'>: a number from 0.01 to 2.0")
    return category, float(raw)


def interpret_as(node: Node) -> str:
    """A <say-as>'s reading, by its canonical name."""
    raw = node.get("interpret-as") or ""
    name = INTERPRET_ALIASES.get(raw, raw)
    if name not in INTERPRET_AS:
        raise SsmlError(f"<say-as interpret-as='{raw[:40]}'>: one of {', '.join(INTERPRET_AS)}")
    return name


def phoneme_syllables(node: Node) -> tuple[str, ...]:
    """A <phoneme>'s toned pinyin syllables (alphabet 'py'), one per Han character."""
    alphabet = node.get("alphabet", "py")
    if alphabet not in ("py", "pinyin"):
        raise SsmlError(f"<phoneme alphabet='{(alphabet or '')[:40]}'>: Huiyin reads 'py' "
                        "(toned pinyin, as 'chong2 qing4')")
    ph = (node.get("ph") or "").lower().replace("v", "ü").replace("u:", "ü")
    syllables = tuple(ph.split())
    bad = next((s for s in syllables if _PINYIN.fullmatch(s) is None), None)
    if bad is not None or not syllables:
        raise SsmlError(f"<phoneme ph='{(node.get('ph') or '')[:60]}'>: toned pinyin "
                        "syllables, as 'chong2 qing4' (5 is the neutral tone)")
    characters = [c for c in node.text if not c.isspace()]
    if len(characters) != len(syllables):
        raise SsmlError(f"<phoneme ph='{ph[:60]}'> has {len(syllables)} "
                        f"syllables for {len(characters)} characters")
    return tuple(s.replace("ü", "v") for s in syllables)
