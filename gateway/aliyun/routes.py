"""The Aliyun front's routes and its voice names."""

from __future__ import annotations

from aiohttp import web

from gateway import fronts
from gateway.aliyun.params import voice_names
from gateway.aliyun.rest import add_rest_routes
from gateway.aliyun.websocket import nls_socket

ROUTES = ("/stream/v1/tts", "/ws/v1")


def add_aliyun_routes(app: web.Application) -> None:
    """Register POST and GET /stream/v1/tts and the WebSocket /ws/v1 (each judges its own
    credential, so none is a route the access middleware knows), and the front's voice names."""
    add_rest_routes(app)
    app.router.add_get("/ws/v1", nls_socket, name="aliyun_ws")
    fronts.register("aliyun", ROUTES, voice_names)
