"""CORS preflights: a page on a listed origin is offered exactly the methods the route it
asks about has, so it may PUT and DELETE site words and is never told a method exists
that no route has."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from config import Settings
from gateway import create_app
from synth.fastspeech2 import FastSpeech2Engine

Client = TestClient[Any, web.Application]
ORIGIN = "https://console.example.com"
ADMIN = "cors-admin-token"


async def test_a_preflight_is_offered_the_methods_of_the_route_it_asks_about(
    aiohttp_client: Callable[..., Awaitable[Client]], engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(Settings(
        data_dir=tmp_path / "data", admin_token=ADMIN, cors_origins=(ORIGIN,)), engines=[engine]))

    async def preflight(path: str, method: str) -> tuple[int, set[str] | None]:
        answer = await client.options(path, headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization"})
        offered = answer.headers.get("Access-Control-Allow-Methods")
        return answer.status, None if offered is None else set(offered.split(", "))

    for method in ("PUT", "DELETE"):  # a site word is put and deleted from another origin
        assert await preflight("/admin/lexicon/汇音", method) == (204, {"PUT", "DELETE", "OPTIONS"})
    assert await preflight("/admin/lexicon", "GET") == (204, {"GET", "HEAD", "OPTIONS"})
    assert await preflight("/tts.wav", "GET") == (204, {"GET", "HEAD", "OPTIONS"})
    assert await preflight("/api/tts", "POST") == (204, {"POST", "OPTIONS"})
    # A method the path's route does not have is not offered (the browser then refuses).
    assert await preflight("/admin/lexicon/汇音", "PATCH") == (204, {"PUT", "DELETE", "OPTIONS"})
    assert await preflight("/api/tts", "PUT") == (204, {"POST", "OPTIONS"})
    # A path no route has is offered nothing.
    status, offered = await preflight("/admin/nothing-here", "GET")
    assert status >= 400 and offered is None
    # The call itself, after the preflight, is readable by the page.
    gone = await client.delete("/admin/lexicon/汇音", headers={
        "Origin": ORIGIN, "Authorization": f"Bearer {ADMIN}"})
    assert gone.status == 404 and gone.headers["Access-Control-Allow-Origin"] == ORIGIN
