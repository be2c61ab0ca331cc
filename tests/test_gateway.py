"""The HTTP gateway, in process, with the real voice."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import soundfile as sf
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import load_settings
from gateway import create_app
from synth.fastspeech2 import FastSpeech2Engine

Client = TestClient[Any, web.Application]


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], engine: FastSpeech2Engine
) -> Client:
    settings = load_settings(environ={}, overrides={"max_text_length": 100})
    return await aiohttp_client(create_app(settings, engine=engine))


async def test_tts_wav_returns_speech(client: Client) -> None:
    response = await client.get("/tts.wav", params={"text": "您好，欢迎致电。"})
    assert response.status == 200
    assert response.content_type == "audio/wav"
    audio, rate = sf.read(io.BytesIO(await response.read()), dtype="int16")
    assert rate == 24000 and len(audio) / rate > 1.0


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({}, 422, "text"),
        ({"text": "您好", "speed": "fast"}, 422, "speed"),
        ({"text": "您好", "speed": "9"}, 422, "speed"),
        ({"text": "您好", "style": "angry"}, 422, "style"),
        ({"text": "您好", "colour": "red"}, 422, "colour"),
        ({"text": "您" * 101}, 400, "text"),
        ({"text": "。。。"}, 422, "text"),
    ],
)
async def test_bad_requests_get_json_naming_the_field(
    client: Client, params: dict[str, str], status: int, field: str
) -> None:
    response = await client.get("/tts.wav", params=params)
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["status"] == "error" and body["field"] == field


async def test_unknown_route_is_json_not_html(client: Client) -> None:
    response = await client.get("/nope")
    assert response.status == 404
    assert response.content_type == "application/json"


async def test_health_and_readiness(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "ready"
