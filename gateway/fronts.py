"""The other APIs the gateway speaks (Aliyun NLS, DashScope CosyVoice, CosyVoice's servers,
OpenAI): the voice names each accepts, for /api/voices and the page.

Each front registers a function of the settings and the voices that lists its names and
what each speaks with; `described` gathers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config import Settings
from synth.voices import Voices

# front name -> (route prefixes, a function listing {its voice name: our voice})
Lister = Callable[[Settings, Voices], dict[str, str]]
_FRONTS: dict[str, tuple[tuple[str, ...], Lister]] = {}


def register(name: str, routes: tuple[str, ...], voices: Lister) -> None:
    """Make a front's voice names known (once per front; a second call replaces it)."""
    _FRONTS[name] = (routes, voices)


def described(settings: Settings, voices: Voices) -> dict[str, Any]:
    """{front: {routes, voices: {name: our voice}}} for every registered front."""
    return {
        name: {"routes": list(routes), "voices": lister(settings, voices)}
        for name, (routes, lister) in sorted(_FRONTS.items())
    }
