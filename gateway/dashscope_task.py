"""What a DashScope CosyVoice `run-task` asks for, read strictly into this gateway's terms.

DashScope's parameters and ours: `voice` is a CosyVoice voice name (mapped by the
`dashscope_voices` setting; a known name left unmapped speaks with the default voice) or one
of this gateway's own voices. `rate` (0.5-2) is our speed and `pitch` (0.5-2) our pitch,
each clamped into what the voice allows (the default voice: speed 0.5-2, pitch 0.7-1.4);
`volume` (0-100, 50 the voice's own level) is our volume times 50, clamped the same way
(0.25-2: a volume of 0 is our quietest, not silence). Formats are DashScope's: `pcm` (raw
16-bit little-endian samples), `wav` (one header, then samples) and `mp3`, at 8000 to
48000 Hz; `opus` is refused, since an Ogg stream cannot be cut and joined sentence by
sentence. A value outside DashScope's own ranges is InvalidParameter, as DashScope says it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config import Settings
from gateway.dashscope_events import TaskFailure
from synth import codecs
from synth.engine import InvalidInputError, SettingRange
from synth.request import SpeechRequest
from synth.voices import Voices

# DashScope's CosyVoice models; every one speaks with this gateway's voices.
MODELS = (
    "cosyvoice-v1", "cosyvoice-v2", "cosyvoice-v3", "cosyvoice-v3-flash", "cosyvoice-v3-plus",
    "cosyvoice-v3.5-flash", "cosyvoice-v3.5-plus",
)
# DashScope's published CosyVoice system voices: cosyvoice-v1's names, cosyvoice-v2's (the
# same with `_v2`, and a few more) and cosyvoice-v3's (`_v3`, and longanyang).
_V1 = (
    "longwan", "longcheng", "longhua", "longxiaochun", "longxiaoxia", "longxiaocheng",
    "longxiaobai", "longlaotie", "longshu", "longshuo", "longjing", "longmiao", "longyue",
    "longyuan", "longfei", "longjielidou", "longtong", "longxiang", "loongstella", "loongbella",
)
_V2 = (*_V1, "longshao", "longyan", "loongtomoka", "loongdavid", "longanyang", "longtian")
_V3 = (
    "longxiaochun", "longwan", "longcheng", "longhua", "longshu", "longdaiyu", "longhuhu",
    "longjielidou", "longanxuan", "longxiaoxia", "longyingtao", "longshuo", "longanli",
    "loongtomoka", "longsanshu", "loongdavid", "longwanjun", "longyan", "longyuan",
    "longyingxiao", "longyue", "longyichen",
)
VOICE_NAMES = tuple(dict.fromkeys(
    (*_V1, *(f"{n}_v2" for n in _V2), *(f"{n}_v3" for n in _V3), "longanyang"),
))
# DashScope's format name -> (our format, a WAV header first); "Default" is DashScope's mp3.
FORMATS = {"pcm": ("wav", False), "wav": ("wav", True), "mp3": ("mp3", False),
           "Default": ("mp3", False)}
RATES = (8000, 16000, 22050, 24000, 44100, 48000)
DEFAULT_RATE = 22050  # what DashScope sends when asked for its default (sample_rate 0)
TEXT_TYPES = ("PlainText", "SSML")
# Where each DashScope setting may go: (low, high, default).
RANGES = {"rate": (0.5, 2.0, 1.0), "pitch": (0.5, 2.0, 1.0), "volume": (0.0, 100.0, 50.0)}
# Fixed values of a run-task's payload.
FIXED = (("task_group", "audio"), ("task", "tts"), ("function", "SpeechSynthesizer"))


def invalid(message: str) -> TaskFailure:
    """A bad parameter, as DashScope says it."""
    return TaskFailure("InvalidParameter", message)


@dataclass(frozen=True)
class TaskSettings:
    """A run-task read: our voice and settings, the stream's format, whether SSML may come."""

    model: str
    voice: str
    speed: float
    pitch: float
    volume: float
    fmt: str  # ours: wav (raw samples without the header) or mp3
    wav_header: bool
    rate: int
    native_rate: int
    ssml: bool  # a text that is an SSML document is said whole

    def request(self, voices: Voices, text: str) -> SpeechRequest:
        """The store's request for a sentence (or a whole document) of the task."""
        return voices.request(text, voice=self.voice, style=None, speed=self.speed,
                              pitch=self.pitch, volume=self.volume)


def read_run_task(payload: object, settings: Settings, voices: Voices) -> TaskSettings:
    """The task a run-task's payload asks for, or the TaskFailure DashScope would answer."""
    if not isinstance(payload, dict):
        raise invalid("payload must be a JSON object")
    for name, expected in FIXED:
        if payload.get(name, expected) != expected:
            raise invalid(f"payload.{name} must be '{expected}'")
    model = payload.get("model")
    if model is None or model == "":
        raise TaskFailure("BadRequest.EmptyModel",
                          'Required parameter "model" missing from request.')
    if not isinstance(model, str) or model not in MODELS:
        raise TaskFailure("ModelNotFound", f"Model not found ({str(model)[:40]}); use one of: "
                                           f"{', '.join(MODELS)}")
    parameters = payload.get("parameters")
    if parameters is None:
        raise TaskFailure("BadRequest.EmptyParameters",
                          'Required parameter "parameters" missing from request.')
    if not isinstance(parameters, dict):
        raise invalid("payload.parameters must be a JSON object")
    voice = our_voice(parameters.get("voice"), settings, voices)
    engine = voices.resolve(voice).engine
    native = voices.native_rate(engine)
    fmt, header, rate = _format(parameters, native)
    ranges = voices.setting_ranges(engine)
    speed = _clamped(_number(parameters, "rate"), ranges.get("speed"))
    pitch = _clamped(_number(parameters, "pitch"), ranges.get("pitch"))
    volume = _clamped(_number(parameters, "volume") / 50, ranges.get("volume"))
    text_type = parameters.get("text_type", "PlainText")
    if text_type not in TEXT_TYPES:
        raise invalid(f"parameters.text_type must be one of: {', '.join(TEXT_TYPES)}")
    ssml = parameters.get("enable_ssml", False)
    if not isinstance(ssml, bool):
        raise invalid("parameters.enable_ssml must be true or false")
    task = TaskSettings(model, voice, speed, pitch, volume, fmt, header, rate, native,
                        ssml or text_type == "SSML")
    try:
        task.request(voices, "您好。")  # the voice and settings as every sentence will have them
    except InvalidInputError as exc:
        raise invalid(str(exc)) from None
    return task


def our_voice(asked: object, settings: Settings, voices: Voices) -> str:
    """Our voice for a DashScope voice name: the setting's mapping, the default voice for a
    CosyVoice name it does not map, or one of our own names."""
    if not isinstance(asked, str) or not asked:
        raise invalid("parameters.voice is required")
    voice = settings.dashscope_voices.get(asked) or (
        voices.default_voice if asked in VOICE_NAMES else asked)
    try:
        voices.resolve(voice)
    except InvalidInputError:
        ours = ", ".join(v["name"] for e in voices.describe()["engines"] for v in e["voices"])
        raise invalid(f"voice '{asked[:40]}' is unknown: use a CosyVoice voice "
                      f"(longxiaochun, longxiaochun_v2, …), one mapped by the dashscope_voices "
                      f"setting, or one of this gateway's: {ours}") from None
    return voice


def voice_names(settings: Settings, voices: Voices) -> dict[str, str]:
    """Every DashScope voice name accepted, and our voice that speaks for it."""
    names = {name: voices.default_voice for name in VOICE_NAMES}
    return {**names, **settings.dashscope_voices}


def _format(parameters: Mapping[str, Any], native: int) -> tuple[str, bool, int]:
    asked = parameters.get("format", "Default")
    if asked == "opus":
        raise invalid("format opus is not offered: an Ogg stream cannot be cut sentence by "
                      "sentence; use pcm, wav or mp3")
    if not isinstance(asked, str) or asked not in FORMATS:
        raise invalid("parameters.format must be one of: pcm, wav, mp3")
    fmt, header = FORMATS[asked]
    rate = parameters.get("sample_rate", 0)
    if rate in (0, None):
        rate = DEFAULT_RATE
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in RATES:
        raise invalid(f"parameters.sample_rate must be one of: {', '.join(map(str, RATES))}")
    try:
        return fmt, header, codecs.output_rate(fmt, native, rate)
    except codecs.UnsupportedRateError as exc:
        raise invalid(f"parameters.sample_rate: {exc}") from None


def _number(parameters: Mapping[str, Any], name: str) -> float:
    low, high, default = RANGES[name]
    value = parameters.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(f"parameters.{name} must be a number")
    if not low <= value <= high:
        raise invalid(f"parameters.{name} must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _clamped(value: float, allowed: SettingRange | None) -> float:
    """A setting within what the voice allows (1, its own, when it has no such control)."""
    if allowed is None:
        return 1.0
    return min(max(value, allowed.minimum), allowed.maximum)
