"""Aliyun NLS speech synthesis in our terms: its voice names, its parameters mapped onto a
SpeechRequest, and its 8-digit status codes for our failures. Shared by the REST routes
(rest.py) and the WebSocket (websocket.py, flowing.py).

Aliyun's speech_rate r is the speed factor 1/(1-0.001r) for r >= 0 and 1/(1-0.002r) below
(-500 half, 500 double); pitch_rate is read the same way, and volume 0..100 is a gain of
volume/50 (50 as is). Each factor is then held to the voice's own range (the default voice:
speed 0.5-2, pitch 0.7-1.4, volume 0.25-2), and a voice without a pitch control keeps its
own pitch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cache.keys import SpeechRequest
from config import Settings
from gateway import params
from gateway.errors import InvalidParameter, describe_failure
from synth.engine import InvalidInputError, SettingRange
from synth.ssml.values import aliyun_factor
from synth.voices import Voices

# Aliyun's published voice names (its NLS voice list); those `aliyun_voices` does not map
# speak with the default voice. longxiaochun is the streaming-text SDK's default.
ALIYUN_VOICES = (
    "xiaoyun", "xiaogang", "ruoxi", "siqi", "sijia", "sicheng", "aiqi", "aijia", "aicheng",
    "aida", "ninger", "ruilin", "siyue", "aiya", "aixia", "aimei", "aiyu", "aiyue", "aijing",
    "xiaomei", "aina", "yina", "sijing", "sitong", "xiaobei", "aitong", "aiwei", "aibao",
    "harry", "abby", "andy", "eric", "abin", "zhixiaobai", "zhixiaoxia", "zhixiaomei", "zhigui",
    "zhishuo", "cally", "zhifeng_emo", "zhibing_emo", "zhimiao_emo", "zhimi_emo", "zhiyan_emo",
    "zhibei_emo", "zhitian_emo", "longxiaochun",
)
DEFAULT_VOICE = "xiaoyun"
FORMATS = ("pcm", "wav", "mp3")
DEFAULT_FORMAT = "pcm"
TELEPHONE_RATES = (8000, 16000)
DEFAULT_RATE = 16000
TOKEN_HEADER = "X-NLS-Token"

# Aliyun's status codes (its published list), and the kind its status_text names.
SUCCESS = 20000000
TOKEN_INVALID = 40000001
MESSAGE_INVALID = 40000002
PARAMETER_INVALID = 40000003
IDLE_TIMEOUT = 40000004
TOO_MANY_REQUESTS = 40000005
SERVER_ERROR = 50000000
_KINDS = {
    SUCCESS: "SUCCESS", TOKEN_INVALID: "ACCESS_DENIED", MESSAGE_INVALID: "MESSAGE_INVALID",
    PARAMETER_INVALID: "PARAMETER_INVALID", IDLE_TIMEOUT: "IDLE_TIMEOUT",
    TOO_MANY_REQUESTS: "TOO_MANY_REQUESTS", SERVER_ERROR: "SERVER_ERROR",
}
# Our codes for a message that is not one Aliyun would take (its shape, not its values).
_MESSAGE_CODES = frozenset({"bad_request", "request_entity_too_large"})


def status_text(status: int, message: str) -> str:
    """Aliyun's form of a status message: `Gateway:<KIND>:<message>`."""
    return f"Gateway:{_KINDS.get(status, 'CLIENT_ERROR')}:{message}"


def nls_status(http: int, code: str) -> int:
    """The Aliyun status of a failure we answer with this HTTP status and code."""
    if http in (401, 403):
        return TOKEN_INVALID
    if http == 429:
        return TOO_MANY_REQUESTS
    if http >= 500:
        return SERVER_ERROR
    return MESSAGE_INVALID if code in _MESSAGE_CODES else PARAMETER_INVALID


def failure(request: web.Request, error: Exception) -> tuple[int, int, str, dict[str, str] | None]:
    """(HTTP status, Aliyun status, status text, headers) of a failure, as errors.describe_failure
    decides it for every route."""
    http, code, message, _, headers = describe_failure(request, error)
    status = nls_status(http, code)
    return http, status, status_text(status, message), headers


@dataclass(frozen=True)
class Asked:
    """What an Aliyun synthesis asks, in our terms."""

    voice: str  # ours
    engine: str
    fmt: str  # Aliyun's: pcm, wav or mp3
    rate: int
    speed: float
    pitch: float
    volume: float

    @property
    def stored_format(self) -> str:
        """The store's format the answer is made from (pcm: a WAV's samples)."""
        return "mp3" if self.fmt == "mp3" else "wav"

    def request(self, voices: Voices, text: str) -> SpeechRequest:
        """The store's request for a text said so."""
        return voices.request(text, voice=self.voice, style=None, speed=self.speed,
                              pitch=self.pitch, volume=self.volume)


def our_voice(settings: Settings, voices: Voices, asked: str | None) -> str:
    """The voice an Aliyun voice name speaks with: as `aliyun_voices` maps it, our own voice
    of that name, or the default voice for Aliyun's other names. Anything else is returned
    as is, for `Voices.resolve` to refuse."""
    name = asked or DEFAULT_VOICE
    mapped = settings.aliyun_voices.get(name) or settings.aliyun_voices.get(name.lower())
    if mapped:
        return mapped
    if _ours(voices, name):
        return name
    return voices.default_voice if name.lower() in ALIYUN_VOICES else name


def _ours(voices: Voices, name: str) -> bool:
    try:
        voices.resolve(name)
    except InvalidInputError:
        return False
    return True


def voice_names(settings: Settings, voices: Voices) -> dict[str, str]:
    """Every Aliyun voice name this front takes and the voice it speaks with."""
    names = [*ALIYUN_VOICES, *(n for n in settings.aliyun_voices if n not in ALIYUN_VOICES)]
    return {name: our_voice(settings, voices, name) for name in names}


def read(values: Mapping[str, Any], settings: Settings, voices: Voices) -> Asked:
    """The voice, format, rate and settings a request's values ask (all but its text), each
    checked: a 422 naming the field for a value Aliyun's API does not take."""
    choice = voices.resolve(our_voice(settings, voices, params.string(values, "voice")))
    fmt = params.string(values, "format")
    fmt = DEFAULT_FORMAT if fmt is None or fmt == "" else fmt.lower()
    if fmt not in FORMATS:
        raise InvalidParameter(f"format '{fmt[:20]}' is not offered; use one of: "
                               f"{', '.join(FORMATS)}", "format")
    native = voices.native_rate(choice.engine)
    rates = sorted({*TELEPHONE_RATES, native})
    rate = params.integer(values, "sample_rate")
    rate = DEFAULT_RATE if rate is None else rate
    if rate not in rates:
        raise InvalidParameter(f"sample_rate {rate} is not offered; use one of: "
                               f"{', '.join(map(str, rates))}", "sample_rate")
    volume = _whole(values, "volume", 0, 100, 50)
    speech_rate = _whole(values, "speech_rate", -500, 500, 0)
    pitch_rate = _whole(values, "pitch_rate", -500, 500, 0)
    ranges = voices.setting_ranges(choice.engine)
    return Asked(
        voice=choice.voice.name, engine=choice.engine, fmt=fmt, rate=rate,
        speed=_held(ranges, "speed", aliyun_factor(speech_rate)),
        pitch=_held(ranges, "pitch", aliyun_factor(pitch_rate)),
        volume=_held(ranges, "volume", volume / 50),
    )


def _whole(values: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = params.integer(values, name)
    if value is None:
        return default
    if not low <= value <= high:
        raise InvalidParameter(f"{name} must be from {low} to {high}, got {value}", name)
    return value


def _held(ranges: Mapping[str, SettingRange], name: str, factor: float) -> float:
    """A factor held to the voice's range (1: a voice without that control)."""
    allowed = ranges.get(name)
    if allowed is None:
        return 1.0
    return min(max(factor, allowed.minimum), allowed.maximum)
