"""A gateway served on a free loopback port as `huiyin serve` serves it (its runner, parser
limits and timeouts), and raw HTTP/1.1 on sockets to talk to it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from config import Settings
from gateway import create_app
from gateway.app import make_runner
from gateway.connections import Connection, ConnectionRunner
from synth.fastspeech2 import FastSpeech2Engine
from tests.support import free_port

TEXT = "您好，请按一号键。"
URL = "/tts.wav?text=" + quote(TEXT)


class Server:
    """A live gateway on a local port."""

    def __init__(self, runner: ConnectionRunner, port: int) -> None:
        self.runner, self.port = runner, port

    @property
    def app(self) -> web.Application:
        return self.runner.app

    def connection_of(self, writer: asyncio.StreamWriter) -> Connection:
        """The server side of a client connection."""
        port = writer.get_extra_info("sockname")[1]
        assert self.runner.server is not None
        (handler,) = [h for h in self.runner.server.connections
                      if h.transport is not None and h.transport.get_extra_info("peername")[1] == port]
        assert isinstance(handler, Connection)
        return handler

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def fetch(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection."""
        reader, writer = await self.connect()
        try:
            writer.write(request)
            return await read_response(reader, head_only=request.startswith(b"HEAD"))
        finally:
            writer.close()


async def read_response(
    reader: asyncio.StreamReader, *, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and body of one response."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = 0 if head_only or status == 304 else int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 30)
    return status, headers, body


def get(target: str = URL, *extra: str, method: str = "GET") -> bytes:
    """A request head: the method, the target, Host and the extra header lines."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@contextlib.asynccontextmanager
async def live(engine: FastSpeech2Engine, data_dir: Path, **overrides: Any) -> AsyncIterator[Server]:
    """A gateway served as `huiyin serve` serves it, with these settings."""
    settings = Settings(data_dir=data_dir, **overrides)
    runner = make_runner(create_app(settings, engines=[engine]), settings)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Server(runner, port)
    finally:
        await runner.cleanup()
