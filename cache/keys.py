"""What a phrase is: a normalized text and the voice settings, and the key derived from them."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import xxhash

from synth.frontend import canonical_text

KEY_PATTERN = re.compile(r"^[0-9a-f]{32}$")
# Bump when the canonical encoding below changes.
KEY_SCHEME = "huiyin-key-1"

# Full-width and CJK punctuation that NFKC leaves alone, mapped to one spelling each.
# Only marks that the frontend treats identically are merged.
_PUNCTUATION = str.maketrans({
    "\u3000": " ",  # ideographic space
    "\uff61": "。",  # halfwidth ideographic full stop
    "\uff64": "、",  # halfwidth ideographic comma
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
})


def normalize_for_key(text: str) -> str:
    """The text as the cache sees it: NFKC, canonical punctuation, collapsed whitespace.

    Nothing here can change what is spoken: the frontend applies the same canonicalization
    before reading.
    """
    return canonical_text(unicodedata.normalize("NFKC", text).translate(_PUNCTUATION))


def _setting(value: float) -> str:
    # Three decimals: finer steps are inaudible, and 1, 1.0 and 1.0000001 must agree.
    return f"{round(float(value), 3):.3f}"


@dataclass(frozen=True)
class SpeechRequest:
    """A normalized text and every setting that changes its audio, except the engine version."""

    text: str
    engine: str
    voice: str
    style: str = "neutral"
    speed: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0

    @classmethod
    def create(
        cls, text: str, *, engine: str, voice: str, style: str = "neutral",
        speed: float = 1.0, pitch: float = 1.0, volume: float = 1.0,
    ) -> SpeechRequest:
        """A request with normalized text and rounded settings."""
        return cls(
            normalize_for_key(text), engine, voice, style,
            float(_setting(speed)), float(_setting(pitch)), float(_setting(volume)),
        )

    def key(self, engine_version: str) -> str:
        """xxh3-128 hex of a canonical encoding of the text, engine, version and settings."""
        fields = (
            KEY_SCHEME, self.text, self.engine, engine_version, self.voice, self.style,
            _setting(self.speed), _setting(self.pitch), _setting(self.volume),
        )
        # The unit separator cannot occur in normalized text, so fields cannot run together.
        return xxhash.xxh3_128_hexdigest("\x1f".join(fields).encode("utf-8"))


def is_key(value: str) -> bool:
    """Whether value has the shape of a phrase key (checked before it names a file)."""
    return bool(KEY_PATTERN.match(value))
