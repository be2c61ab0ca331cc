"""Aliyun's streaming-text synthesis (namespace FlowingSpeechSynthesizer) on /ws/v1.

StartSynthesis sets the voice and format (its payload spells volume `volumn`, as the SDK
sends it; `volume` is taken too) and is answered SynthesisStarted. RunSynthesis messages then
bring the text in pieces, as a language model writes it, and StopSynthesis ends it. Each
complete sentence is spoken as soon as it is complete, through the store (gateway/textstream.py:
a stored sentence is a hit): SentenceBegin, its audio in binary frames, SentenceSynthesis and
SentenceEnd (its text and, for pcm and wav, its times in ms), and after the last one
SynthesisCompleted.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from cache.storing import Storing
from gateway.admission import admission_for
from gateway.aliyun import params as nls
from gateway.aliyun.channel import Channel, Message, TaskFailed, authorized, checked_fields
from gateway.routes import voices_of
from gateway.state import SETTINGS, STORE
from gateway.storing import STORING_FIELDS, kept_as, storing_of
from gateway.textstream import SpokenText, TextStreamClosed

FLOWING = "FlowingSpeechSynthesizer"
FIELDS = ("session_id", "voice", "format", "sample_rate", "volumn", "volume", "speech_rate",
          "pitch_rate", "enable_subtitle", "enable_phoneme_timestamp", *STORING_FIELDS)
# How long a session may wait for its next piece of text.
PIECE_SECONDS = 60.0
# A session's text may be this many times a request's (Aliyun: 10,000 a piece, 100,000 in all).
SESSION_TEXTS = 10


async def flow(request: web.Request, channel: Channel, start: Message) -> None:
    """One streaming-text task, from its StartSynthesis to SynthesisCompleted."""
    await authorized(request, start)
    values = dict(start.payload)
    checked_fields(values, FIELDS)
    storing = storing_of(request, values)
    with kept_as(storing):  # the tasks below inherit it
        await _flow(request, channel, values, storing)


async def _flow(
    request: web.Request, channel: Channel, values: dict[str, Any], storing: Storing,
) -> None:
    if "volumn" in values:
        if "volume" in values:
            raise TaskFailed(nls.PARAMETER_INVALID, "give volumn or volume, not both")
        values["volume"] = values.pop("volumn")
    settings = request.app[SETTINGS]
    voices = voices_of(request)
    asked = nls.read(values, settings, voices)
    session = values.get("session_id")
    session_id = session[:64] if isinstance(session, str) and session else uuid.uuid4().hex
    text = SpokenText(
        request.app[STORE], lambda sentence: asked.request(voices, sentence),
        fmt=asked.stored_format, rate=asked.rate, native_rate=voices.native_rate(asked.engine),
        admission=admission_for(request), characters=SESSION_TEXTS * settings.max_text_length,
        wav_header=asked.fmt == "wav", storing=storing,
    )
    await channel.event("SynthesisStarted", {"session_id": session_id, "index": 1})
    reading = asyncio.ensure_future(_read(channel, text, settings.max_text_length))
    speaking = asyncio.ensure_future(_speak(channel, text, asked))
    try:
        await asyncio.wait({reading, speaking}, return_when=asyncio.FIRST_EXCEPTION)
        if reading.done():
            reading.result()  # a message that ends the task
        await speaking
    finally:
        for task in (reading, speaking):
            task.cancel()
        await asyncio.gather(reading, speaking, return_exceptions=True)
    await channel.event("SynthesisCompleted", {"session_id": session_id, "index": 1})


async def _read(channel: Channel, text: SpokenText, piece_limit: int) -> None:
    """The client's pieces into the text, until StopSynthesis."""
    while True:
        message = await channel.receive(PIECE_SECONDS)
        if message.name == "StopSynthesis":
            text.finish()
            return
        if message.name != "RunSynthesis":
            raise TaskFailed(nls.MESSAGE_INVALID, f"expected RunSynthesis or StopSynthesis, "
                                                  f"not '{message.name}'")
        piece = message.payload.get("text")
        if not isinstance(piece, str):
            raise TaskFailed(nls.PARAMETER_INVALID, "RunSynthesis needs a text (a string)")
        if len(piece) > piece_limit:
            raise TaskFailed(nls.PARAMETER_INVALID, f"text is longer than {piece_limit} "
                                                    f"characters ({len(piece)})")
        try:
            text.feed(piece)
        except TextStreamClosed as exc:
            raise TaskFailed(nls.MESSAGE_INVALID, str(exc)) from None
        except ValueError as exc:  # the session's text grew past its bound
            raise TaskFailed(nls.PARAMETER_INVALID, str(exc)) from None


async def _speak(channel: Channel, text: SpokenText, asked: nls.Asked) -> None:
    """The text's audio, each sentence between its SentenceBegin and SentenceEnd."""
    rate = asked.rate if asked.fmt != "mp3" else None  # raw samples: their count is time
    begun = False  # a WAV's header comes before the first sentence, and is no time
    samples = 0
    begins: dict[int, int] = {}
    async for event in text.events():
        if isinstance(event, bytes):
            if begun:
                samples += len(event) // 2
            await channel.audio(event)
        elif not event.end:
            begun = True
            begins[event.index] = samples
            await channel.event("SentenceBegin", {"index": event.index + 1})
        else:
            await _end(channel, event.text, begins.pop(event.index), samples, rate)


async def _end(
    channel: Channel, sentence: str, begin: int, samples: int, rate: int | None,
) -> None:
    """SentenceSynthesis and SentenceEnd of a sentence whose audio is out."""
    subtitle: dict[str, Any] = {"text": sentence, "sentence": True}
    if rate is not None:  # times in milliseconds (MP3 has none here)
        subtitle.update(begin_time=round(1000 * begin / rate), end_time=round(1000 * samples / rate))
    await channel.event("SentenceSynthesis", {"subtitles": [subtitle]})
    await channel.event("SentenceEnd", {"subtitles": [subtitle]})
