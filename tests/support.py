"""Test helpers shared by several test modules."""

from __future__ import annotations

import asyncio

from cache.keys import SpeechRequest
from synth.engine import Pcm, Prosody
from synth.fastspeech2 import FastSpeech2Engine
from synth.worker import Priority


class CountingSynthesizer:
    """The real engine, one call at a time off the loop, counting calls."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        self.engine = engine
        self.calls = 0
        self.texts: list[str] = []
        self._lock = asyncio.Lock()

    def engine_version(self, engine: str) -> str:
        return self.engine.version

    async def synthesize(self, request: SpeechRequest, priority: Priority) -> Pcm:
        self.calls += 1
        self.texts.append(request.text)
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: self.engine.synthesize(
                    request.text, style=request.style,
                    prosody=Prosody(request.speed, request.pitch, request.volume),
                ),
            )
