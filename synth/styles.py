"""Speaking styles for engines without emotion control: prosody presets, not emotion models.

A preset scales the request's speed, pitch and volume; it cannot add feeling the voice
was not trained with.
"""

from __future__ import annotations

from collections.abc import Mapping

from synth.engine import InvalidInputError, Prosody

PRESETS: Mapping[str, Prosody] = {
    "neutral": Prosody(),
    "cheerful": Prosody(speed=1.06, pitch=1.08, volume=1.10, intonation=1.25),
    "calm": Prosody(speed=0.92, pitch=0.97, volume=0.90, intonation=0.85),
    "serious": Prosody(speed=0.95, pitch=0.93, volume=1.0, intonation=0.8),
    "apologetic": Prosody(speed=0.90, pitch=0.96, volume=0.85, intonation=0.9),
}


def apply_style(style: str, prosody: Prosody) -> Prosody:
    """Combine a preset with the request's own settings (multiplicatively)."""
    preset = PRESETS.get(style)
    if preset is None:
        raise InvalidInputError(
            "style", f"unknown style '{style}'; choose one of: {', '.join(PRESETS)}"
        )
    return Prosody(
        speed=preset.speed * prosody.speed,
        pitch=preset.pitch * prosody.pitch,
        volume=preset.volume * prosody.volume,
        intonation=preset.intonation * prosody.intonation,
    )
