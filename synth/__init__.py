"""Speech engines behind one Engine protocol, and the Mandarin text frontend."""

from synth.engine import (
    Engine,
    InvalidInputError,
    Pcm,
    Prosody,
    SettingRange,
    SynthesisError,
    VoiceInfo,
)

__all__ = [
    "Engine",
    "InvalidInputError",
    "Pcm",
    "Prosody",
    "SettingRange",
    "SynthesisError",
    "VoiceInfo",
]
