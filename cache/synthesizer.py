"""What the store is handed to synthesize misses with: a protocol, implemented in `synth/`
(`synth.voices.Voices`), so the store never sees an engine."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Protocol

from cache.keys import SpeechRequest
from synth.engine import Pcm
from synth.worker import Priority, Urgency


class Synthesizer(Protocol):
    """What the store needs from the synthesis side; it never sees an engine."""

    def engine_version(self, engine: str) -> str:
        """Current version of the named engine (part of every key)."""
        ...

    def spoken(self, request: SpeechRequest) -> str:
        """What the engine will say for the request, canonically (blocking; part of the key)."""
        ...

    async def synthesize(self, request: SpeechRequest, priority: Priority | Urgency) -> Pcm:
        """Synthesize a request whole; an Urgency may rise while the request waits."""
        ...

    def set_site_lexicon(self, entries: Mapping[str, str]) -> None:
        """Read with the site's words (word -> 'pin1 yin1', kept in the index) from now on
        (blocking); engines without a lexicon ignore it."""
        ...

    def fallback(self, request: SpeechRequest) -> SpeechRequest | None:
        """What to synthesize instead while the request's engine (a backend) is down."""
        ...

    def stream(
        self, request: SpeechRequest, priority: Priority | Urgency
    ) -> AsyncGenerator[Pcm, None]:
        """Synthesize a request in chunks, each as soon as it is ready (aclose stops it)."""
        ...
