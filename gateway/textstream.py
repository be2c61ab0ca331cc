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
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import numpy as np

from cache.keys import SpeechRequest
from cache.store import Admission, Audio, PromptStore
from cache.storing import KEEP, Storing
from gateway.streaming import STREAMABLE, StreamEncoder, Whole, speech_pieces, streaming_wav_header
from synth import codecs
from synth.engine import SENTENCE_PAUSE, Pcm
from synth.frontend.pieces import SentenceCutter, speakable


class TextStreamClosed(Exception):
    """A piece came after the text was finished."""


@dataclass(frozen=True)
class SentenceMark:
    """Where a sentence's audio begins (`end` False) or ends in `SpokenText.events()`."""

    index: int  # from 0, in the order spoken
    text: str
    end: bool


class SpokenText:
    """One streamed text: `feed` its pieces, `finish` it, and read its audio from `audio()`.

    The audio is `fmt` at `rate`; a WAV is one header (with `wav_header`) and then its
    samples, so `wav` without the header is raw 16-bit PCM at any rate WAV is offered at.

    `request_for` turns a sentence into the store's request (the front's voice and settings;
    it raises as routes do for a bad voice or setting). `characters` bounds the whole text.
    `storing` is what the caller asks about keeping each sentence (no-store: nothing kept).
    """

    def __init__(
        self, store: PromptStore, request_for: Callable[[str], SpeechRequest], *,
        fmt: str, rate: int, native_rate: int, admission: Admission | None,
        characters: int, wav_header: bool = True, storing: Storing = KEEP,
    ) -> None:
        if fmt not in STREAMABLE:
            raise ValueError(f"format {fmt!r} cannot be streamed")
        self._store = store
        self._request_for = request_for
        self._fmt = fmt
        self._rate = rate
        self._native_rate = native_rate
        self._admission = admission
        self._storing = storing
        self._limit = characters
        self._received = 0
        self._wav_header = wav_header
        self._encoder = StreamEncoder(fmt, rate)
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

    def flush(self) -> list[str]:
        """The text received and not cut yet is a sentence now (the caller says it is one:
        a protocol's flush); the sentences so queued are returned."""
        if self._finished:
            raise TextStreamClosed("the text was finished; no more pieces")
        done = [s.strip() for s in self._cutter.finish() if speakable(s)]
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

    def finish_whole(self, text: str) -> None:
        """End the text with `text` said as one request, never cut (an SSML document, which
        only makes sense whole); the caller has bounded it."""
        self.flush()
        self._sentences.put_nowait(text)
        self.finish()

    async def audio(self) -> AsyncGenerator[bytes, None]:
        """The audio, encoded, in order, until the text is finished and spoken. Errors of a
        sentence's request (its voice, its settings, admission) and of synthesis propagate."""
        async with contextlib.aclosing(self.events()) as events:
            async for item in events:
                if isinstance(item, bytes):
                    yield item

    async def events(self) -> AsyncGenerator[bytes | SentenceMark, None]:
        """The audio as `audio()` gives it, each sentence's between its two marks (the pause
        that joins two sentences is outside them), for protocols that announce sentences."""
        if self._fmt == "wav" and self._wav_header:
            yield streaming_wav_header(self._rate)
        silence = Pcm(np.zeros(int(SENTENCE_PAUSE * self._native_rate), dtype=np.int16),
                      self._native_rate)
        # Encoded once, unless the encoder runs on from piece to piece (MP3).
        pause = None if self._encoder.continuous else await self._encoded(silence)
        try:
            while True:
                sentence = await self._sentences.get()
                if sentence is None:
                    tail = await asyncio.get_running_loop().run_in_executor(
                        None, self._encoder.finish)
                    if tail:
                        yield tail
                    return
                if self.spoken:
                    yield pause if pause is not None else await self._encoded(silence)
                index = self.spoken
                yield SentenceMark(index, sentence, end=False)
                # Closed at once when the reader leaves: the store's stream stops with it.
                async with contextlib.aclosing(self._speak(self._request_for(sentence))) as chunks:
                    async for chunk in chunks:
                        yield chunk
                self.spoken += 1
                yield SentenceMark(index, sentence, end=True)
        finally:
            self._encoder.release()

    async def _speak(self, request: SpeechRequest) -> AsyncGenerator[bytes, None]:
        """One sentence: whole from the store, or streamed as it is synthesized. Where one
        encoder runs through the stream (MP3), a whole sentence is read as its own samples
        and goes through it too."""
        whole = ("wav", None) if self._encoder.continuous else (self._fmt, self._rate)
        async with contextlib.aclosing(speech_pieces(
                self._store, request, *whole, admission=self._admission,
                storing=self._storing)) as pieces:
            async for piece in pieces:
                if isinstance(piece, Whole):
                    if piece.stored:
                        self.cached += 1
                    yield await self._whole(piece.audio)
                else:
                    yield await self._encoded(piece)

    async def _encoded(self, pcm: Pcm) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(None, self._encoder.encode, pcm)

    async def _whole(self, audio: Audio) -> bytes:
        """A sentence answered whole, as a piece of the stream: the store's encoding of it (a
        WAV's samples without its header), or its samples through the stream's encoder."""
        if not self._encoder.continuous:
            return codecs.wav_payload(audio.data) if self._fmt == "wav" else audio.data
        samples = np.frombuffer(codecs.wav_payload(audio.data), dtype="<i2")
        return await self._encoded(Pcm(samples, audio.rate))
