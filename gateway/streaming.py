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

import numpy as np
from aiohttp import hdrs, web

from cache.keys import SpeechRequest
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
    """One sentence in the stream's encoding (WAV sends raw samples after its header)."""
    if fmt == "wav":
        samples = codecs.resample(pcm.samples, pcm.sample_rate, rate)
        return np.asarray(samples, dtype="<i2").tobytes()
    return codecs.encode(pcm.samples, pcm.sample_rate, fmt, rate)


async def stream_speech(
    request: web.Request, speech: SpeechRequest, fmt: str, rate: int, cache_control: str,
) -> web.StreamResponse:
    """Answer with the speech: whole from the store, or streamed as it is synthesized.

    The store's generation feeds this stream and every other request for the same phrase
    that comes while it runs; the store keeps the complete audio when it ends."""
    if fmt not in STREAMABLE:
        raise InvalidParameter(
            f"format '{fmt}' cannot be streamed; use one of: {', '.join(STREAMABLE)}", "format"
        )
    store = request.app[STORE]
    admission = admission_for(request)
    # The caller's tenant's, for the calls below that are not admitted again.
    speech = dataclasses.replace(speech, tenant=admission.tenant)
    if request.method == hdrs.METH_HEAD:
        # A HEAD has no body to stream. It is answered as the GET after it will be, whole
        # from the store (a miss is synthesized now, as on /tts): the same ETag and length.
        audio = await store.audio(speech, fmt, rate, admission=admission)
        return audio_response(request, audio, cache_control=cache_control)
    sentences = await store.stream(speech, admission=admission)
    try:
        if sentences.stored is not None:
            audio = await store.variant(sentences.stored.phrase, fmt, rate)
            return audio_response(request, audio, cache_control=cache_control)
        loop = asyncio.get_running_loop()
        # The first chunk comes before the headers, so a refusal is still a JSON error.
        try:
            first = await anext(sentences, None)
        except UpstreamError:
            # The voice's backend is down: answered whole, by its fallback voice if it has one.
            audio = await store.audio(speech, fmt, rate)  # admitted above
            return audio_response(request, audio, cache_control=cache_control)
        if first is None:  # stored whole while this request joined: no chunks to follow
            audio = await store.variant((await sentences.result()).phrase, fmt, rate)
            return audio_response(request, audio, cache_control=cache_control)
        response = web.StreamResponse(headers={
            "Content-Type": codecs.content_type(fmt, rate),
            "Cache-Control": cache_control_for(request, cache_control),
            "X-Cache": "MISS",
        })
        response.enable_chunked_encoding()
        note(key=(await store.key_for(speech))[:8], cached=False, format=fmt, streamed=True)
        await response.prepare(request)
        if fmt == "wav":
            await response.write(streaming_wav_header(rate))
        await response.write(await loop.run_in_executor(None, encode_chunk, first, fmt, rate))
        async for pcm in sentences:
            await response.write(await loop.run_in_executor(None, encode_chunk, pcm, fmt, rate))
        await response.write_eof()
        return response
    finally:
        await sentences.aclose()
