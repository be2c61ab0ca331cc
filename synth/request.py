"""What is asked of an engine: a text and every setting that changes its audio."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_SPACES = re.compile(r"\s+")
# Unicode's control characters (category Cc) and line and paragraph separators (Zl, Zp).
_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean_text(text: str) -> str:
    """The text as a request keeps it: NFC, control characters and runs of white space as
    one space, trimmed. Nothing that can change a reading is folded here (no NFKC)."""
    text = unicodedata.normalize("NFC", text)
    return _SPACES.sub(" ", _BREAKS.sub(" ", text)).strip()


def setting_text(value: float) -> str:
    """A setting as the key and the request keep it: three decimals (finer is inaudible,
    and 1, 1.0 and 1.0000001 must agree)."""
    return f"{round(float(value), 3):.3f}"


# Whose prompt a request is when nobody says: a site with one tenant has only this one.
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class SpeechRequest:
    """A text and every setting that changes its audio, except the engine version; and
    whose prompt it is (its tenant: part of its key, not of its audio), with the readings
    that tenant gives words of the text (`words`: word and toned pinyin, said as given)."""

    text: str
    engine: str
    voice: str
    style: str = "neutral"
    speed: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0
    tenant: str = DEFAULT_TENANT
    words: tuple[tuple[str, str], ...] = ()

    @classmethod
    def create(
        cls, text: str, *, engine: str, voice: str, style: str = "neutral",
        speed: float = 1.0, pitch: float = 1.0, volume: float = 1.0,
        tenant: str = DEFAULT_TENANT,
    ) -> SpeechRequest:
        """A request with cleaned text and rounded settings."""
        return cls(
            clean_text(text), engine, voice, style,
            float(setting_text(speed)), float(setting_text(pitch)), float(setting_text(volume)),
            tenant,
        )
