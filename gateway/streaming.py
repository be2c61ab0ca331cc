"""Streaming: audio goes out sentence by sentence over chunked transfer as it is synthesized.

A phrase already in the store is sent whole. A miss streams; when the last sentence is
out, the store keeps the complete audio (identical to a whole synthesis). When every
client following a synthesis leaves early, and no whole request waits for it, the
synthesis stops and nothing partial is stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import numpy as np
from aiohttp import hdrs, web

from cache.keys import SpeechRequest
from cache.store import Admission, Audio, PromptStore
from cache.storing import KEEP, Storing
from gateway.admission import admission_for
from gateway.caching import cache_control_for
from gateway.errors import InvalidParameter
from gateway.logs import note
from gateway.responses import audio_response
from gateway.state import STORE
from synth import codecs
from synth.engine import Pcm, UpstreamError

# Formats that can be cut at any sentence and joined again by the player.
STREAMABLE = ("wav", "pcm", "sln", "sln16", "ulaw", "alaw", "mp3")


def streaming_wav_header(rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown length" (0xFFFFFFFF), as streams do."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF" + struct.pack("<I", unknown) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data" + struct.pack("<I", unknown)
    )


def encode_chunk(pcm: Pcm, fmt: str, rate: int) -> bytes:
    """One piece in the stream's encoding, alone (WAV sends raw samples after its header)."""
    if fmt == "wav":
        samples = codecs.resample(pcm.samples, pcm.sample_rate, rate)
        return np.asarray(samples, dtype="<i2").tobytes()
    return codecs.encode(pcm.samples, pcm.sample_rate, fmt, rate)


class StreamEncoder:
    """One stream's pieces in its format. Raw samples and G.711 are encoded piece by piece,
    since their pieces simply join; MP3 goes through one encoder for the whole stream, since
    MP3s made piece by piece would each carry a header and the encoder's delay. `encode`
    and `finish` block (run them off the loop)."""

    def __init__(self, fmt: str, rate: int) -> None:
        if fmt not in STREAMABLE:
            raise InvalidParameter(
                f"format '{fmt}' cannot be streamed; use one of: {', '.join(STREAMABLE)}", "format"
            )
        self.fmt = fmt
        self.rate = rate
        self._mp3: codecs.Mp3Encoder | None = None

    @property
    def continuous(self) -> bool:
        """Whether pieces must pass through `encode` in order (a stored phrase too)."""
        return self.fmt == "mp3"

    def encode(self, pcm: Pcm) -> bytes:
        """The next piece's bytes (an MP3 may hold some back until later pieces)."""
        if not self.continuous:
            return encode_chunk(pcm, self.fmt, self.rate)
        if self._mp3 is None:
            self._mp3 = codecs.Mp3Encoder(self.rate)
        return self._mp3.encode(codecs.resample(pcm.samples, pcm.sample_rate, self.rate))

    def finish(self) -> bytes:
        """What the stream still holds back, at its end."""
        return self._mp3.finish() if self._mp3 is not None else b""

    def release(self) -> None:
        """Release the encoder, whether the stream ended or was left: off the loop, once an
        encoding under way (in the executor still, if its stream was cancelled) is done."""
        if self._mp3 is not None:
            asyncio.get_running_loop().run_in_executor(None, self._mp3.close)


@dataclass(frozen=True)
class Whole:
    """A phrase's audio sent whole: stored already (`stored`), or complete before any of it
    could be streamed (joined at its end, or spoken by a fallback voice)."""

    audio: Audio
    stored: bool


class SpeechPieces:
    """One phrase for a stream: whole from the store (in `fmt` at `rate`), or its chunks as
    they are synthesized (PCM, for the stream's encoder). The first item comes before
    anything is sent, so a refusal is still an error answer; errors of admission and
    synthesis propagate. Close it when done: the synthesis stops when every stream following
    it left early and no whole request waits for it. Once chunks flow, `expires` is when
    their prompt expires (None: never), which no answer's max-age may outlive."""

    def __init__(
        self, store: PromptStore, speech: SpeechRequest, fmt: str, rate: int | None, *,
        admission: Admission | None, storing: Storing = KEEP,
    ) -> None:
        self.expires: float | None = None
        if admission is not None:  # the caller's tenant's, for the calls not admitted again
            speech = dataclasses.replace(speech, tenant=admission.tenant)
        self._items = self._pieces(store, speech, fmt, rate, admission, storing)

    def __aiter__(self) -> SpeechPieces:
        return self

    async def __anext__(self) -> Whole | Pcm:
        return await anext(self._items)

    async def aclose(self) -> None:
        await self._items.aclose()

    async def _pieces(
        self, store: PromptStore, speech: SpeechRequest, fmt: str, rate: int | None,
        admission: Admission | None, storing: Storing,
    ) -> AsyncGenerator[Whole | Pcm, None]:
        try:
            sentences = await store.stream(speech, admission=admission, storing=storing)
        except UpstreamError:
            sentences = None
        if sentences is None:  # the backend is down: its fallback voice, whole
            yield Whole(await store.audio(speech, fmt, rate, storing=storing), stored=False)
            return
        try:
            if sentences.stored is not None:
                audio = await store.encode(sentences.stored, fmt, rate, keep=storing.keep)
                yield Whole(audio, stored=True)
                return
            try:
                first = await anext(sentences, None)
            except UpstreamError:  # admitted above
                yield Whole(await store.audio(speech, fmt, rate, storing=storing), stored=False)
                return
            if first is None:  # stored whole while this joined
                audio = await store.encode(await sentences.result(), fmt, rate,
                                           keep=storing.keep)
                yield Whole(audio, stored=False)
                return
            self.expires = sentences.expires
            note(key=sentences.key[:8], cached=False, format=fmt, streamed=True)
            yield first
            async for pcm in sentences:
                yield pcm
        finally:
            await sentences.aclose()


def speech_pieces(
    store: PromptStore, speech: SpeechRequest, fmt: str, rate: int | None, *,
    admission: Admission | None, storing: Storing = KEEP,
) -> SpeechPieces:
    """A phrase's pieces for a stream (see SpeechPieces)."""
    return SpeechPieces(store, speech, fmt, rate, admission=admission, storing=storing)


async def stream_speech(
    request: web.Request, speech: SpeechRequest, fmt: str, rate: int, cache_control: str,
    storing: Storing = KEEP,
) -> web.StreamResponse:
    """Answer with the speech: whole from the store, or streamed as it is synthesized.

    The store's generation feeds this stream and every other request for the same phrase
    that comes while it runs; the store keeps the complete audio when it ends (unless
    `storing` asks that nothing be kept)."""
    encoder = StreamEncoder(fmt, rate)
    store = request.app[STORE]
    admission = admission_for(request)
    if request.method == hdrs.METH_HEAD:
        # A HEAD has no body to stream. It is answered as the GET after it will be, whole
        # from the store (a miss is synthesized now, as on /tts): the same ETag and length.
        audio = await store.audio(speech, fmt, rate, admission=admission, storing=storing)
        return audio_response(request, audio, cache_control=cache_control)
    pieces = speech_pieces(store, speech, fmt, rate, admission=admission, storing=storing)
    try:
        first = await anext(pieces)
        if isinstance(first, Whole):
            return audio_response(request, first.audio, cache_control=cache_control)
        loop = asyncio.get_running_loop()
        response = web.StreamResponse(headers={
            "Content-Type": codecs.content_type(fmt, rate),
            "Cache-Control": cache_control_for(request, cache_control, pieces.expires),
            "X-Cache": "MISS",
        })
        response.enable_chunked_encoding()
        await response.prepare(request)
        if fmt == "wav":
            await response.write(streaming_wav_header(rate))
        await response.write(await loop.run_in_executor(None, encoder.encode, first))
        async for pcm in pieces:
            assert isinstance(pcm, Pcm)
            await response.write(await loop.run_in_executor(None, encoder.encode, pcm))
        await response.write(await loop.run_in_executor(None, encoder.finish))
        await response.write_eof()
        return response
    finally:
        encoder.release()
        await pieces.aclose()
