"""Text streamed in pieces, spoken sentence by sentence through the store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import Settings
from gateway import create_app
from gateway.state import STORE, VOICES
from gateway.textstream import SentenceMark, SpokenText, TextStreamClosed
from synth.fastspeech2 import FastSpeech2Engine
from synth.frontend.pieces import SentenceCutter
from tests.support import until

Client = TestClient[Any, web.Application]
REPLY = ("您好，这里是客户服务中心。您尾号3821的信用卡本期应还5,260.50元。"
         "请问还有什么可以帮您？")


def pieces_of(text: str, sizes: tuple[int, ...] = (2, 5, 3, 8, 4)) -> list[str]:
    out, i, k = [], 0, 0
    while i < len(text):
        n = sizes[k % len(sizes)]
        out.append(text[i:i + n])
        i, k = i + n, k + 1
    return out


def test_pieces_are_cut_at_sentence_ends_never_inside_a_number_or_an_address() -> None:
    cutter = SentenceCutter()
    got: list[str] = []
    for piece in ["应还5,2", "60.", "50元。请访问www.", "example.com！”", "好的", "? ", "OK"]:
        got += cutter.feed(piece)
    got += cutter.finish()
    assert got == ["应还5,260.50元。", "请访问www.example.com！”", "好的?", " OK"]


def test_a_long_stretch_without_a_full_stop_is_cut_after_a_clause() -> None:
    cutter = SentenceCutter(longest=10)
    assert cutter.feed("一二三四五，六七八九十十一") == ["一二三四五，"]
    assert cutter.pending == "六七八九十十一"
    assert SentenceCutter(longest=4).feed("12,345,678") == []  # never inside a number


@pytest.fixture
async def client(aiohttp_client: Any, engine: FastSpeech2Engine, tmp_path: Path) -> Client:
    app = create_app(Settings(data_dir=tmp_path / "data"), engines=[engine])
    client: Client = await aiohttp_client(app)
    await until(lambda: VOICES in client.app)
    return client


def spoken(client: Client, fmt: str = "pcm", rate: int = 24000) -> SpokenText:
    voices = client.app[VOICES]

    def request_for(sentence: str) -> Any:
        return voices.request(sentence, voice=None, style=None, speed=1.0, pitch=1.0, volume=1.0)

    return SpokenText(client.app[STORE], request_for, fmt=fmt, rate=rate,
                      native_rate=24000, admission=None, characters=1000)


async def read_all(text: SpokenText) -> bytes:
    return b"".join([chunk async for chunk in text.audio()])


async def test_a_reply_streamed_in_pieces_sounds_as_the_whole_reply(client: Client) -> None:
    text = spoken(client)
    reading = asyncio.ensure_future(read_all(text))
    for piece in pieces_of(REPLY):
        text.feed(piece)
    text.finish()
    streamed = np.frombuffer(await reading, dtype="<i2")
    whole = await client.get("/tts.pcm", params={"text": REPLY})
    assert whole.status == 200
    expected = np.frombuffer(await whole.read(), dtype="<i2")
    assert text.spoken == 3 and text.cached == 0
    assert len(streamed) == len(expected)
    assert np.array_equal(streamed, expected)


async def test_sentences_already_stored_are_hits(client: Client) -> None:
    first = await client.get("/tts.pcm", params={"text": "请问还有什么可以帮您？"})
    assert first.status == 200 and first.headers["X-Cache"] == "MISS"
    text = spoken(client, fmt="wav", rate=8000)
    reading = asyncio.ensure_future(read_all(text))
    for piece in pieces_of("好的，已为您办理。请问还有什么可以帮您？"):
        text.feed(piece)
    text.finish()
    audio = await reading
    assert audio[:4] == b"RIFF" and len(audio) > 44
    assert (text.spoken, text.cached) == (2, 1)
    again = await client.get("/tts.pcm", params={"text": "好的，已为您办理。"})
    assert again.headers["X-Cache"] == "HIT"
    with pytest.raises(TextStreamClosed):
        text.feed("还有")


async def test_a_text_past_its_bound_is_refused(client: Client) -> None:
    text = spoken(client)
    with pytest.raises(ValueError, match="longer than 1000"):
        text.feed("好" * 1001)


async def test_sentences_are_marked_a_flush_cuts_and_a_document_is_said_whole(client: Client) -> None:
    text = spoken(client)
    assert text.feed("好的，已为您办理") == []
    assert text.flush() == ["好的，已为您办理"]  # the caller knows it is a sentence
    document = "<speak>请稍候。<break time=\"300ms\"/>马上为您转接。</speak>"
    text.finish_whole(document)
    items = [item async for item in text.events()]
    marks = [item for item in items if isinstance(item, SentenceMark)]
    assert marks == [SentenceMark(0, "好的，已为您办理", False), SentenceMark(0, "好的，已为您办理", True),
                     SentenceMark(1, document, False), SentenceMark(1, document, True)]
    audio = b"".join(item for item in items if isinstance(item, bytes))
    whole = await client.get("/tts.pcm", params={"text": document})
    assert whole.headers["X-Cache"] == "HIT"  # said whole: the document's own key
    assert audio.endswith(await whole.read())
