"""Aliyun NLS speech synthesis over WebSocket at /ws/v1, as its SDKs speak it.

The handshake always succeeds (the SDK reports nothing of a refused one); the token of its
`X-NLS-Token` header is judged at StartSynthesis, and every failure is a TaskFailed event,
which the SDK hands to `on_error`. The first message names the task:

- `SpeechSynthesizer` (and `SpeechLongSynthesizer`): StartSynthesis carries the whole text;
  its audio follows in binary frames as it is synthesized (a stored text is sent whole; a
  WAV is one header, then its samples), then SynthesisCompleted;
- `FlowingSpeechSynthesizer`: the text comes in pieces (flowing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from aiohttp import WSMsgType, web

from cache.storing import Storing
from gateway import params
from gateway.admission import admission_for, checked_speech
from gateway.aliyun import params as nls
from gateway.aliyun.channel import Channel, ClientGone, Message, TaskFailed, authorized, checked_fields
from gateway.aliyun.flowing import FLOWING, flow
from gateway.aliyun.rest import error_response
from gateway.errors import BadRequest
from gateway.logs import note
from gateway.routes import voices_of
from gateway.state import SETTINGS, STORE
from gateway.storing import STORING_FIELDS, kept_as, storing_of
from gateway.streaming import StreamEncoder, Whole, speech_pieces, streaming_wav_header
from synth import codecs
from synth.compat import timeout as time_limit

ONE_SHOT = frozenset({"SpeechSynthesizer", "SpeechLongSynthesizer"})
# How long a new connection may wait before its StartSynthesis.
START_SECONDS = 10.0
# How long a task's connection waits for its client to close it once the task has ended.
CLOSE_SECONDS = 5.0
# StartSynthesis's fields; the last ones change nothing here and are taken and ignored.
FIELDS = ("text", "voice", "format", "sample_rate", "volume", "speech_rate", "pitch_rate",
          "enable_subtitle", "enable_phoneme_timestamp", "enable_ptts", *STORING_FIELDS)


async def nls_socket(request: web.Request) -> web.StreamResponse:
    """GET /ws/v1: one synthesis task per connection."""
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(max_msg_size=2 * settings.max_body_bytes)
    if not ws.can_prepare(request).ok:
        return error_response(request, BadRequest("/ws/v1 is a WebSocket: connect with an NLS SDK"))
    await ws.prepare(request)
    channel = Channel(ws, settings.max_body_bytes)
    try:
        start = await channel.receive(START_SECONDS)
        channel.take(start)
        if start.name != "StartSynthesis":
            raise TaskFailed(nls.MESSAGE_INVALID,
                             f"the first message must be StartSynthesis, not '{start.name}'")
        note(task=start.namespace)
        if start.namespace in ONE_SHOT:
            await _one_shot(request, channel, start)
        elif start.namespace == FLOWING:
            await flow(request, channel, start)
        else:
            raise TaskFailed(nls.MESSAGE_INVALID, f"unknown namespace '{start.namespace}'")
    except TaskFailed as failed:
        await channel.failed(failed.status, nls.status_text(failed.status, str(failed)))
    except ClientGone:
        pass
    except Exception as exc:  # every failure of the task is its TaskFailed
        _, status, text, _ = nls.failure(request, exc)
        await channel.failed(status, text)
    finally:
        await _closing(ws)
    return ws


async def _closing(ws: web.WebSocketResponse) -> None:
    """Close once the task's last event is out: the client first (the SDK's own transport
    frees its socket only when it closes first: it calls shutdown() after
    SynthesisCompleted, and its users after on_error), within CLOSE_SECONDS."""
    try:
        async with time_limit(CLOSE_SECONDS):
            while not ws.closed:
                received = await ws.receive()
                if received.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                                     WSMsgType.ERROR):
                    break
    except TimeoutError:
        pass
    await ws.close()


async def _one_shot(request: web.Request, channel: Channel, start: Message) -> None:
    await authorized(request, start)
    payload = start.payload
    checked_fields(payload, FIELDS)
    storing = storing_of(request, payload)
    with kept_as(storing):
        await _speak_one(request, channel, payload, storing)


async def _speak_one(
    request: web.Request, channel: Channel, payload: Mapping[str, Any], storing: Storing,
) -> None:
    settings = request.app[SETTINGS]
    voices = voices_of(request)
    asked = nls.read(payload, settings, voices)
    speech = await checked_speech(request, payload.get("text"), lambda: asked.request(
        voices, params.text(payload, settings.max_text_length)))
    encoder = StreamEncoder(asked.stored_format, asked.rate)
    loop = asyncio.get_running_loop()
    first = True
    try:
        async with contextlib.aclosing(speech_pieces(
                request.app[STORE], speech, asked.stored_format, asked.rate,
                admission=admission_for(request), storing=storing)) as pieces:
            async for piece in pieces:
                if first:
                    note(cached=isinstance(piece, Whole) and piece.stored, format=asked.fmt)
                if isinstance(piece, Whole):  # a WAV whole is its header and its samples
                    data = piece.audio.data
                    await channel.audio(codecs.wav_payload(data) if asked.fmt == "pcm" else data)
                else:
                    if first and asked.fmt == "wav":  # a stream's header, before its samples
                        await channel.audio(streaming_wav_header(asked.rate))
                    await channel.audio(await loop.run_in_executor(None, encoder.encode, piece))
                first = False
        tail = await loop.run_in_executor(None, encoder.finish)
        if tail:
            await channel.audio(tail)
    finally:
        encoder.release()
    await channel.event("SynthesisCompleted", {})
