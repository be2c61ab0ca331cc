"""SSML spoken by the real default voice: breaks, prosody spans, readings and emotions
measured on the audio and heard by the recognizer, and SSML through every route."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from aiohttp import web
from aiohttp.test_utils import TestClient

from bench.listen import Listener
from config import Settings
from gateway import create_app
from synth.engine import Pcm, Prosody
from synth.fastspeech2 import FastSpeech2Engine
from synth.ssml import parse_document, speaking
from synth.ssml.speaking import JOIN_MARGIN, SILENCE_LEVEL

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
_TO_ARABIC = str.maketrans("零〇一幺二两三四五六七八九", "0011223456789")


def say(engine: FastSpeech2Engine, text: str, **settings: Any) -> Pcm:
    """The engine's audio for a text (an SSML document in its canonical form)."""
    if text.startswith("<speak"):
        text = parse_document(text).canonical
    return speaking.synthesize(engine, text, voice=None, style=settings.pop("style", "neutral"),
                               prosody=Prosody(**settings))


def voiced(pcm: Pcm) -> float:
    """Seconds from the first sound to the last (the silence at the edges left out)."""
    loud = np.flatnonzero(np.abs(pcm.samples.astype(np.int32)) > SILENCE_LEVEL * 32767)
    return float(loud[-1] - loud[0]) / pcm.sample_rate


def longest_silence(pcm: Pcm) -> float:
    """The longest run of silent samples inside the audio, in seconds."""
    loud = np.flatnonzero(np.abs(pcm.samples.astype(np.int32)) > SILENCE_LEVEL * 32767)
    return float(np.diff(loud).max() - 1) / pcm.sample_rate


@pytest.mark.parametrize("time_ms", [300, 1000, 2500])
def test_a_break_lengthens_the_audio_by_its_time(engine: FastSpeech2Engine, time_ms: int) -> None:
    without = say(engine, '<speak>请稍候<break time="0ms"/>正在为您转接</speak>')
    with_break = say(engine, f'<speak>请稍候<break time="{time_ms}ms"/>正在为您转接</speak>')
    assert with_break.duration - without.duration == pytest.approx(time_ms / 1000, abs=0.03)
    # Measured on the audio itself: the silence between the words is the break (the voice's
    # own edges kept to a few milliseconds).
    assert longest_silence(with_break) == pytest.approx(time_ms / 1000 + 2 * JOIN_MARGIN, abs=0.03)


def test_break_strengths_and_seconds_agree(engine: FastSpeech2Engine) -> None:
    strong = say(engine, '<speak>您好<break strength="strong"/>再见</speak>')
    timed = say(engine, '<speak>您好<break time="0.7s"/>再见</speak>')
    assert np.array_equal(strong.samples, timed.samples)


def test_a_prosody_span_changes_only_its_own_words(engine: FastSpeech2Engine) -> None:
    def spoken(rate: str) -> Pcm:
        return say(engine, f'<speak>请稍候<prosody rate="{rate}">正在为您转接人工服务</prosody>'
                           "感谢您的耐心</speak>")

    fast, slow = spoken("fast"), spoken("x-slow")
    head = say(engine, "请稍候").samples
    tail = say(engine, "感谢您的耐心").samples
    # The words around the span are the same samples; only the span is longer.
    edge = len(head) // 2
    assert np.array_equal(fast.samples[:edge], slow.samples[:edge])
    assert np.array_equal(fast.samples[-len(tail) // 2:], slow.samples[-len(tail) // 2:])
    # ... longer by what the span alone takes longer, from its first sound to its last.
    span_fast = voiced(say(engine, "正在为您转接人工服务", speed=1.25))
    span_slow = voiced(say(engine, "正在为您转接人工服务", speed=0.6))
    assert slow.duration - fast.duration == pytest.approx(span_slow - span_fast, abs=0.03)


def test_joins_have_no_click(engine: FastSpeech2Engine) -> None:
    """No jump at a join larger than the voice's own largest sample-to-sample step."""
    plain = say(engine, "请稍候正在为您转接人工服务").samples.astype(np.int32)
    joined = say(engine, '<speak>请稍候<prosody volume="loud" rate="fast">正在为您转接</prosody>'
                         "人工服务</speak>").samples.astype(np.int32)
    assert np.abs(np.diff(joined)).max() <= np.abs(np.diff(plain)).max() * 1.5


def test_a_volume_span_is_louder_and_the_rest_is_as_loud_as_before(engine: FastSpeech2Engine) -> None:
    def rms(samples: npt.NDArray[np.int16]) -> float:
        return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))

    alone = say(engine, "请稍候").samples
    soft = say(engine, '<speak>请稍候<prosody volume="-6dB">正在为您转接</prosody></speak>')
    loud = say(engine, '<speak>请稍候<prosody volume="+6dB">正在为您转接</prosody></speak>')
    head = len(alone) // 2
    assert rms(loud.samples[:head]) == pytest.approx(rms(alone[:head]), rel=0.01)
    assert rms(soft.samples[:head]) == pytest.approx(rms(alone[:head]), rel=0.01)
    span = len(alone)
    assert rms(loud.samples[span:]) > 2.5 * rms(soft.samples[span:])


def test_a_phoneme_changes_the_reading(engine: FastSpeech2Engine) -> None:
    said = speaking.spoken_form(engine, parse_document("<speak>我在重庆</speak>").canonical)
    given = speaking.spoken_form(engine, parse_document(
        '<speak>我在<phoneme alphabet="py" ph="zhong4 qing4">重庆</phoneme></speak>').canonical)
    assert said != given
    preview = speaking.pronounce(engine, parse_document(
        '<speak>我在<phoneme alphabet="py" ph="zhong4 qing4">重庆</phoneme></speak>').canonical)
    words = [w for s in preview["sentences"] for c in s["clauses"] for w in c["words"]]
    assert {"text": "重庆", "pinyin": ["zhong4", "qing4"], "source": "ssml"} in words


def test_a_phoneme_the_voice_cannot_say_is_refused(engine: FastSpeech2Engine) -> None:
    from synth.engine import InvalidInputError

    with pytest.raises(InvalidInputError, match="'zzz1'"):
        speaking.spoken_form(engine, parse_document(
            '<speak><phoneme ph="zzz1">重</phoneme></speak>').canonical)


def test_every_reading_is_synthesized_with_nothing_unread(engine: FastSpeech2Engine) -> None:
    spans = {
        "digits": "2025", "telephone": "400-811-0510", "cardinal": "2025", "ordinal": "2",
        "characters": "AB_12", "date": "2025-03-01", "time": "14:05", "currency": "¥12.50",
        "id": "11010519491231002X", "name": "单田芳", "address": "深南大道100号3单元304",
        "punctuation": "，。",
    }
    for kind, span in spans.items():
        pcm = say(engine, f'<speak>请听<say-as interpret-as="{kind}">{span}</say-as></speak>')
        plain = say(engine, "请听")
        assert pcm.duration > plain.duration + 0.2 and not pcm.unread, kind


def test_an_emotion_is_said_in_the_nearest_style(engine: FastSpeech2Engine) -> None:
    happy = say(engine, '<speak><emotion category="happy">感谢您的来电</emotion></speak>')
    cheerful = say(engine, "感谢您的来电", style="cheerful")
    assert np.array_equal(happy.samples, cheerful.samples)
    mild = say(engine, '<speak><emotion category="happy" intensity="0.5">感谢您的来电</emotion>'
                       "</speak>")
    assert not np.array_equal(mild.samples, happy.samples)
    assert len(say(engine, "感谢您的来电").samples) != len(mild.samples)


def test_the_stream_is_the_same_audio_as_the_whole(engine: FastSpeech2Engine) -> None:
    text = parse_document('<speak>您好<break time="400ms"/>请稍候，<prosody rate="slow">正在为您'
                          "转接人工服务，请不要挂机</prosody>谢谢</speak>").canonical
    whole = speaking.synthesize(engine, text, voice=None, style="neutral", prosody=Prosody())
    chunks = list(speaking.stream(engine, text, voice=None, style="neutral", prosody=Prosody()))
    assert len(chunks) > 1
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), whole.samples)


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    yield Listener()


@pytest.mark.listen
def test_sub_speaks_the_alias_and_telephone_is_heard_digit_by_digit(
    engine: FastSpeech2Engine, listener: Listener
) -> None:
    alias = say(engine, '<speak>欢迎致电<sub alias="世界贸易组织">WTO</sub></speak>')
    heard = listener.transcribe(alias.samples, alias.sample_rate)
    assert "贸易组织" in heard, heard
    phone = say(engine, '<speak>请拨打<say-as interpret-as="telephone">4008110510</say-as>'
                        "</speak>")
    heard = listener.transcribe(phone.samples, phone.sample_rate)
    digits = "".join(c for c in heard.translate(_TO_ARABIC) if c.isdigit())
    assert digits == "4008110510", heard


# --- through the routes ---------------------------------------------------------------


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(**{"data_dir": tmp_path / "data", "max_text_length": 200, **overrides})


@pytest.fixture
async def client(aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path) -> Client:
    return await aiohttp_client(create_app(settings_for(tmp_path, openai_voices="nova=baker"),
                                           engines=[engine]))


DOCUMENT = ('<speak>您好<break time="500ms"/>您的号码是<say-as interpret-as="telephone">'
            "13800138000</say-as></speak>")


def decode(data: bytes) -> tuple[npt.NDArray[np.int16], int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="int16")
    return audio, int(rate)


async def test_ssml_plays_through_tts_stream_api_and_openai(
    client: Client, engine: FastSpeech2Engine
) -> None:
    expected = await asyncio.to_thread(say, engine, DOCUMENT)
    got = await client.get(f"/tts.wav?text={quote(DOCUMENT)}")
    assert got.status == 200
    audio, rate = decode(await got.read())
    assert rate == expected.sample_rate and np.array_equal(audio, expected.samples)
    streamed = await client.get(f"/tts/stream.pcm?text={quote(DOCUMENT)}")
    assert streamed.status == 200
    pcm = np.frombuffer(await streamed.read(), dtype="<i2")
    assert np.array_equal(pcm, expected.samples)
    api = await client.post("/api/tts", json={"text": DOCUMENT})
    body = await api.json()
    assert api.status == 200 and body["cached"] is True
    openai = await client.post("/v1/audio/speech", json={
        "model": "tts-1", "voice": "nova", "input": DOCUMENT, "response_format": "wav"})
    assert openai.status == 200
    assert np.array_equal(decode(await openai.read())[0], expected.samples)


async def test_two_spellings_of_a_document_are_one_prompt(client: Client) -> None:
    one = await (await client.post("/api/tts", json={
        "text": '<speak><prosody rate="slow" volume="loud">请稍候</prosody></speak>'})).json()
    two = await (await client.post("/api/tts", json={
        "text": '<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis">\n'
                '  <prosody volume="loud"  rate="slow">请稍候</prosody>\n</speak>'})).json()
    assert one["key"] == two["key"] and two["cached"] is True


async def test_ssml_errors_are_json_naming_what_is_wrong(client: Client) -> None:
    cases = [
        ("<speak>你好<voice>x</voice></speak>", 422, "<voice>"),
        ('<speak><break time="1s" color="red"/></speak>', 422, "'color'"),
        ("<speak>你好<s>再见</speak>", 400, "line 1, column"),
        ('<speak><emotion category="furious">你好</emotion></speak>', 422, "furious"),
        ('<speak><say-as interpret-as="date">tomorrow</say-as></speak>', 422, "date"),
    ]
    for document, status, named in cases:
        got = await client.get(f"/tts.wav?text={quote(document)}")
        body = await got.json()
        assert got.status == status, (document, body)
        assert named in body["message"] and body["field"] == "text", body
    openai = await client.post("/v1/audio/speech", json={
        "model": "tts-1", "voice": "nova", "input": "<speak>你好<b></speak>"})
    assert openai.status == 400
    assert (await openai.json())["error"]["param"] == "input"


HOSTILE = {
    "billion-laughs": ('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                       '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
                       '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><speak>&c;</speak>'),
    "external-entity": ('<!DOCTYPE speak [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                        "<speak>&x;</speak>"),
    "deep": "<speak>" + "<s>" * 10_000 + "深" + "</s>" * 10_000 + "</speak>",
    "deep-short": "<speak>" + "<p>" * 100 + "深" + "</p>" * 100 + "</speak>",
    "endless-break": '<speak>一<break time="1000000000s"/>二</speak>',
    "many-breaks": "<speak>" + '一<break time="9s"/>' * 20 + "</speak>",
}


async def test_a_lone_surrogate_is_refused_by_name(client: Client) -> None:
    for text in ("<speak>\ud800</speak>", "您好\ud800"):
        got = await client.post("/api/tts", data=json.dumps({"text": text}),
                                headers={"Content-Type": "application/json"})
        body = await got.json()
        assert got.status == 422 and body["field"] == "text" and "surrogate" in body["message"]


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_documents_get_a_clean_4xx(client: Client, name: str) -> None:
    got = await client.post("/api/tts", json={"text": HOSTILE[name]})
    assert 400 <= got.status < 500
    body = await got.json()
    assert body["status"] == "error" and "Traceback" not in body["message"]
    assert "root:" not in body["message"]  # nothing of /etc/passwd


async def test_the_preview_of_a_document_shows_breaks_readings_and_voicing(
    client: Client, engine: FastSpeech2Engine
) -> None:
    document = ('<speak>我在<phoneme alphabet="py" ph="zhong4 qing4">重庆</phoneme>'
                '<break time="300ms"/><prosody rate="slow">号码<say-as interpret-as="digits">'
                "110</say-as></prosody></speak>")
    got = await client.get(f"/api/pronounce?text={quote(document)}")
    assert got.status == 200
    preview = await got.json()
    assert preview["ssml"] is True
    entries = preview["sentences"]
    assert {"break": 0.3} in entries
    words = [(w["text"], w["source"]) for s in entries if "clauses" in s
             for c in s["clauses"] for w in c["words"]]
    assert ("重庆", "ssml") in words and ("一", "ssml") in words
    slow = [s for s in entries if "voicing" in s]
    assert slow and slow[0]["voicing"]["speed"] == 0.8
    # What the preview shows is what the model is given, segment by segment.
    seen: list[tuple[int, ...]] = []
    real = engine._mel

    def spy(ids: tuple[int, ...], prosody: Prosody) -> Any:
        seen.append(tuple(ids))
        return real(ids, prosody)

    engine._mel = spy  # type: ignore[method-assign]
    try:
        await asyncio.to_thread(say, engine, document)
    finally:
        del engine._mel
    assert seen == [tuple(s["ids"]) for s in entries if "ids" in s]


def test_readings_side_by_side_and_characters_beyond_the_basic_plane_are_kept(
    engine: FastSpeech2Engine,
) -> None:
    preview = speaking.pronounce(engine, parse_document(
        '<speak><phoneme ph="chong2">重</phoneme><phoneme ph="qing4">庆</phoneme>火锅'
        "<phoneme ph='zhong4'>重</phoneme>\U00020bb7野家\ue000好</speak>").canonical)
    said = [p for s in preview["sentences"] for c in s["clauses"] for w in c["words"]
            for p in w["pinyin"]]
    assert said[:5] == ["chong2", "qing4", "huo3", "guo1", "zhong4"]
    assert "ye3" in said and "hao3" in said
    assert "\U00020bb7" in preview["normalized"] and "\ue000" in preview["normalized"]


def test_a_request_clamped_twice_is_keyed_by_what_is_said(engine: FastSpeech2Engine) -> None:
    """The key follows the prosody a segment is said in: the request's and the span's
    together, held to the voice's range."""
    def form(rate: str, speed: float) -> str:
        text = parse_document(f'<speak><prosody rate="{rate}">您好</prosody></speak>').canonical
        return speaking.spoken_form(engine, text, None, "neutral", Prosody(speed=speed))

    assert form("400%", 0.5) != form("200%", 0.5)  # said at 2.0 and at 1.0
    assert form("400%", 1.0) == form("200%", 1.0)  # both held at 2.0
