"""Text streamed in, speech streamed out, sentence by sentence through the store.

The streaming-input fronts (Aliyun's FlowingSpeechSynthesizer, DashScope's CosyVoice duplex
task) give a reply in pieces as a language model writes it. Each complete sentence
(synth/frontend/pieces.py) is a request of its own to the store, as soon as it is complete:
a sentence already stored is a hit and costs nothing, a new one is streamed as it is
synthesized and stored whole, under the same key a /tts request for that sentence has.
Sentences are joined with the pause the engines put between the sentences of one text, so
a reply sounds the same streamed in pieces or sent whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable

import numpy as np

from cache.keys import SpeechRequest
from cache.store import Admission, Audio, PromptStore
from gateway.streaming import STREAMABLE, encode_chunk, streaming_wav_header
from synth import codecs
from synth.engine import SENTENCE_PAUSE, Pcm, UpstreamError
from synth.frontend.pieces import SentenceCutter, speakable


class TextStreamClosed(Exception):
    """A piece came after the text was finished."""


class SpokenText:
    """One streamed text: `feed` its pieces, `finish` it, and read its audio from `audio()`.

    The audio is `fmt` at `rate`; a WAV is one header (with `wav_header`) and then its
    samples, so `wav` without the header is raw 16-bit PCM at any rate WAV is offered at.

    `request_for` turns a sentence into the store's request (the front's voice and settings;
    it raises as routes do for a bad voice or setting). `characters` bounds the whole text.
    """

    def __init__(
        self, store: PromptStore, request_for: Callable[[str], SpeechRequest], *,
        fmt: str, rate: int, native_rate: int, admission: Admission | None,
        characters: int, wav_header: bool = True,
    ) -> None:
        if fmt not in STREAMABLE:
            raise ValueError(f"format {fmt!r} cannot be streamed")
        self._store = store
        self._request_for = request_for
        self._fmt = fmt
        self._rate = rate
        self._native_rate = native_rate
        self._admission = admission
        self._limit = characters
        self._received = 0
        self._wav_header = wav_header
        self._cutter = SentenceCutter()
        self._sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self._finished = False
        self.spoken = 0  # sentences sent so far
        self.cached = 0  # of which were already stored

    @property
    def finished(self) -> bool:
        """Whether the text has ended (no more pieces)."""
        return self._finished

    def feed(self, piece: str) -> list[str]:
        """Take a piece of text; the sentences it completes are queued (and returned).
        ValueError when the text grows past its bound."""
        if self._finished:
            raise TextStreamClosed("the text was finished; no more pieces")
        self._received += len(piece)
        if self._received > self._limit:
            raise ValueError(f"the text is longer than {self._limit} characters")
        done = [s.strip() for s in self._cutter.feed(piece) if speakable(s)]
        for sentence in done:
            self._sentences.put_nowait(sentence)
        return done

    def finish(self) -> list[str]:
        """No more pieces: the rest is the last sentence. Idempotent."""
        if self._finished:
            return []
        self._finished = True
        done = [s.strip() for s in self._cutter.finish() if speakable(s)]
        for sentence in done:
            self._sentences.put_nowait(sentence)
        self._sentences.put_nowait(None)
        return done

    async def audio(self) -> AsyncIterator[bytes]:
        """The audio, encoded, in order, until the text is finished and spoken. Errors of a
        sentence's request (its voice, its settings, admission) and of synthesis propagate."""
        loop = asyncio.get_running_loop()
        if self._fmt == "wav" and self._wav_header:
            yield streaming_wav_header(self._rate)
        pause = await loop.run_in_executor(None, encode_chunk, Pcm(
            np.zeros(int(SENTENCE_PAUSE * self._native_rate), dtype=np.int16),
            self._native_rate), self._fmt, self._rate)
        while True:
            sentence = await self._sentences.get()
            if sentence is None:
                return
            if self.spoken:
                yield pause
            async for chunk in self._speak(self._own(self._request_for(sentence))):
                yield chunk
            self.spoken += 1

    def _own(self, request: SpeechRequest) -> SpeechRequest:
        """The request as its caller's tenant's, for the store calls not admitted again."""
        if self._admission is None:
            return request
        return dataclasses.replace(request, tenant=self._admission.tenant)

    async def _speak(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        """One sentence: whole from the store, or streamed as it is synthesized."""
        store, fmt, rate = self._store, self._fmt, self._rate
        loop = asyncio.get_running_loop()
        try:
            sentences = await store.stream(request, admission=self._admission)
        except UpstreamError:
            sentences = None
        if sentences is None:  # the backend is down: its fallback voice, whole
            yield self._whole(await store.audio(request, fmt, rate))
            return
        try:
            if sentences.stored is not None:
                self.cached += 1
                yield self._whole(await store.variant(sentences.stored.phrase, fmt, rate))
                return
            try:
                first = await anext(sentences, None)
            except UpstreamError:
                yield self._whole(await store.audio(request, fmt, rate))
                return
            if first is None:  # stored whole while this joined
                phrase = (await sentences.result()).phrase
                yield self._whole(await store.variant(phrase, fmt, rate))
                return
            yield await loop.run_in_executor(None, encode_chunk, first, fmt, rate)
            async for pcm in sentences:
                yield await loop.run_in_executor(None, encode_chunk, pcm, fmt, rate)
        finally:
            await sentences.aclose()

    def _whole(self, audio: Audio) -> bytes:
        """A stored sentence as a piece of the stream: a WAV's samples without its header."""
        return codecs.wav_payload(audio.data) if self._fmt == "wav" else audio.data
