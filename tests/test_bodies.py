"""JSON bodies that nest without end are refused with a 400, never a 500."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import Settings
from gateway import create_app
from synth.fastspeech2 import FastSpeech2Engine

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def client(aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path) -> Client:
    return await aiohttp_client(create_app(Settings(data_dir=tmp_path / "data"), engines=[engine]))


@pytest.mark.parametrize("path", ["/api/tts", "/v1/audio/speech"])
async def test_deeply_nested_json_is_a_400(client: Client, path: str) -> None:
    depth = 30_000  # within the body limit, far beyond the JSON decoder's recursion
    body = b"[" * depth + b"]" * depth
    r = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert r.status == 400
    answer = await r.json()
    message = answer["message"] if "message" in answer else answer["error"]["message"]
    assert "nests too deeply" in message
