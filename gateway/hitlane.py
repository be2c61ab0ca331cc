"""The hit lane: a repeat /tts URL whose audio is in memory is answered as its request
arrives, before aiohttp builds a request object, a task and a response for it.

IVR platforms fetch the same prompt URLs all day, and for them aiohttp's request cycle
costs more than sending the audio. The lane answers only what it can answer exactly as
the full path would: a strictly formed GET or HEAD in HTTP/1.1 with no body and no range
header or condition other than If-None-Match, for a URL the gateway has answered before, whose audio is
still in the hot set, on a connection where aiohttp has nothing in progress. Everything
else reaches aiohttp untouched and in order. A connection that sends anything the lane
does not fully understand (a body, an upgrade, HTTP/1.0, a malformed line, odd bytes)
stays with aiohttp for good, so the two parsers never disagree about where a request ends.

The lane relies on a few of aiohttp's RequestHandler internals (whether its request loop
is idle, its keep-alive deadline). aiohttp is pinned, and tests/test_hitlane.py checks
every case against a live server.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_urldispatcher import AbstractRoute
from multidict import CIMultiDict

from cache.store import Audio, PromptStore
from gateway.logs import access, route_template
from gateway.metrics import Metrics
from gateway.middleware import request_id
from gateway.responses import etag_matches
from gateway.routes import TTS_CACHE_CONTROL, URL_MEMO, UrlMemo
from gateway.state import METRICS, STORE

# A request head larger than this, still incomplete, is aiohttp's to judge (and refuse).
MAX_HEAD_BYTES = 64 << 10
# With this much of earlier answers still unsent, aiohttp's flow control takes over.
MAX_UNSENT_BYTES = 4 << 20

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\t\x20-\x7e]*")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
# Headers that change what the answer is or how the connection goes on: aiohttp decides.
# (If-None-Match the lane answers itself: IVR platforms revalidate with it.)
_ANSWER_CHANGING = frozenset({
    b"if-match", b"if-modified-since", b"if-unmodified-since", b"if-range", b"range",
    b"connection",
})
# Headers that bring a body or change the protocol: the connection leaves the lane.
_LANE_ENDING = frozenset({b"content-length", b"transfer-encoding", b"upgrade", b"expect"})

ANSWER, PASS, LEAVE = "answer", "pass", "leave"


@dataclass(frozen=True)
class Head:
    """A strictly parsed request head the lane may answer."""

    method: bytes
    target: str
    request_id: str | None
    if_none_match: str | None = None


def read_head(block: bytes) -> tuple[str, Head | None]:
    """What to do with one request head (without its final blank line): ANSWER it if its
    audio is at hand, PASS it to aiohttp as it is, or LEAVE the lane for good."""
    lines = block.split(b"\r\n")
    parts = lines[0].split(b" ")
    if (len(parts) != 3 or parts[2] != b"HTTP/1.1" or parts[0] not in (b"GET", b"HEAD")
            or _TARGET.fullmatch(parts[1]) is None):
        return LEAVE, None
    method, target = parts[0], parts[1]
    given_id: str | None = None
    if_none_match: str | None = None
    verdict = ANSWER
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None or _VALUE.fullmatch(value) is None:
            return LEAVE, None
        lowered = name.lower()
        if lowered in _LANE_ENDING:
            return LEAVE, None
        if lowered in _ANSWER_CHANGING:
            verdict = PASS
        elif lowered == b"x-request-id":
            given_id = value.strip(b" \t").decode("ascii")
        elif lowered == b"if-none-match":
            if if_none_match is not None:
                verdict = PASS  # two of them: aiohttp decides
            if_none_match = value.strip(b" \t").decode("ascii")
    if not target.startswith(b"/tts."):
        return PASS, None
    return verdict, Head(method, target.decode("ascii"), given_id, if_none_match)


class Answer(NamedTuple):
    """A response the lane sends: status, head, body, the audio it is for, request id."""

    status: int
    head: bytes
    body: bytes
    audio: Audio
    request_id: str


class HitLane:
    """Answers for one application: the URL memo, the hot set, prebuilt response heads."""

    def __init__(self, app: web.Application) -> None:
        self._memo: UrlMemo = app[URL_MEMO]
        self._store: PromptStore = app[STORE]
        self._metrics: Metrics = app[METRICS]
        self._cache_control = app[TTS_CACHE_CONTROL]
        self._routes = _tts_routes(app)
        self._date_second = -1
        self._date = b""
        self.answered = 0  # requests the lane answered

    def answer(self, head: Head) -> Answer | None:
        """The response head and audio for a request, or None when aiohttp must answer."""
        seen = self._memo.get(head.target)
        if seen is None:
            return None
        audio = self._store.peek(seen.key, seen.format, seen.rate)
        if audio is None:
            return None
        if seen.audio is not audio:
            seen.refresh(audio, self._cache_control)
        if seen.lane_heads is None:
            seen.lane_heads = _response_heads(seen.headers, len(audio.data))
        status = 200
        if head.if_none_match is not None and etag_matches(head.if_none_match, audio.etag):
            status = 304
        rid = request_id(head.request_id)
        self.answered += 1
        self._metrics.count(self._routes[head.method], status)
        response_head = b"".join((seen.lane_heads[status], b"Date: ", self._now(),
                                  b"\r\nX-Request-Id: ", rid.encode("ascii"), b"\r\n\r\n"))
        body = audio.data if status == 200 and head.method == b"GET" else b""
        return Answer(status, response_head, body, audio, rid)

    def _now(self) -> bytes:
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self._date = email.utils.formatdate(second, usegmt=True).encode("ascii")
        return self._date

    def log(self, head: Head, answer: Answer, started: float) -> None:
        """The access log line of an answer sent."""
        audio = answer.audio
        fields: dict[str, Any] = {
            "request_id": answer.request_id, "key": audio.key[:8], "cached": True,
            "format": audio.format, "method": head.method.decode("ascii"),
            "route": route_template(self._routes[head.method]), "status": answer.status,
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
        if access.isEnabledFor(logging.DEBUG):
            # Customer text appears only when debug logging is switched on.
            fields["query"] = dict(parse_qsl(head.target.partition("?")[2]))
        access.info("request", extra={"fields": fields})


def _response_heads(headers: CIMultiDict[str], length: int) -> dict[int, bytes]:
    """Status line and fixed headers of a 200 and of a 304, from the headers aiohttp's own
    answers have: a 304 has neither Content-Type nor Content-Length."""
    fixed = [f"{name}: {value}" for name, value in headers.items() if name != "Content-Type"]
    server = f"Server: {SERVER_SOFTWARE}"
    ok = ["HTTP/1.1 200 OK", f"Content-Type: {headers['Content-Type']}", *fixed,
          f"Content-Length: {length}", server]
    not_modified = ["HTTP/1.1 304 Not Modified", *fixed, server]
    return {200: ("\r\n".join(ok) + "\r\n").encode("ascii"),
            304: ("\r\n".join(not_modified) + "\r\n").encode("ascii")}


def _tts_routes(app: web.Application) -> dict[bytes, AbstractRoute]:
    routes = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is not None and resource.name == "tts" and route.method in ("GET", "HEAD"):
            routes[route.method.encode("ascii")] = route
    if set(routes) != {b"GET", b"HEAD"}:
        raise RuntimeError("the hit lane needs the GET and HEAD routes of /tts.{ext}")
    return routes


class LaneHandler(RequestHandler):
    """aiohttp's connection protocol, with the hit lane in front of its parser."""

    __slots__ = ("_lane", "_lane_on", "_lane_buffer", "_lane_fd")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        self._lane_fd = sock.fileno() if sock is not None else -1
        # TLS or an unusual transport: the lane cannot write beside it.
        self._lane_on = self._lane_fd >= 0 and transport.get_extra_info("sslcontext") is None
        self._lane_buffer = b""

    def data_received(self, data: bytes) -> None:
        if not self._lane_on:
            super().data_received(data)
            return
        buffer = self._lane_buffer + data if self._lane_buffer else data
        start = 0
        leaving = False
        while (end := buffer.find(b"\r\n\r\n", start)) >= 0:
            verdict, head = read_head(buffer[start:end])
            if verdict == LEAVE:
                leaving = True
                break
            if head is not None and verdict == ANSWER and self._idle():
                started = time.perf_counter()
                answer = self._lane.answer(head)
                if answer is not None:
                    self._send(answer.head, answer.body)
                    if access.isEnabledFor(logging.INFO):
                        self._lane.log(head, answer, started)
                    start = end + 4
                    continue
            super().data_received(buffer[start : end + 4])  # one whole head, no body
            start = end + 4
        rest = buffer[start:]
        if leaving or len(rest) > MAX_HEAD_BYTES:
            # Not for the lane: aiohttp takes this connection from here on, as it comes.
            self._lane_on, self._lane_buffer = False, b""
            super().data_received(rest)
        else:
            self._lane_buffer = rest  # the start of a head still arriving

    def _idle(self) -> bool:
        """aiohttp's request loop waits for a request and has no answer still to write."""
        waiter = self._waiter
        transport = self.transport
        return (
            waiter is not None and not waiter.done() and not self._messages
            and not self._close and not self._force_close and transport is not None
            and not transport.is_closing() and transport.get_write_buffer_size() < MAX_UNSENT_BYTES
        )

    def _send(self, head: bytes, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if transport.get_write_buffer_size() == 0:
            # Straight to the socket: the head and the audio go out in one call, uncopied.
            try:
                sent = os.writev(self._lane_fd, (head, body))
            except OSError:  # would block, or broken: the transport queues it or meets the error
                sent = 0
            if sent < len(head):
                transport.write(head[sent:])
                sent = len(head)
            if sent - len(head) < len(body):
                transport.write(memoryview(body)[sent - len(head):])
        else:
            transport.write(head)
            if body:
                transport.write(body)
        if self._keepalive_timeout > 0:
            self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout


class LaneServer(web.Server):
    """aiohttp's protocol factory, making LaneHandler connections."""

    def __init__(self, lane: HitLane, server: web.Server) -> None:
        super().__init__(
            server.request_handler, request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation, loop=server._loop,
            **server._kwargs,
        )
        self._lane = lane

    def __call__(self) -> RequestHandler:
        handler = LaneHandler(self, loop=self._loop, **self._kwargs)
        handler._lane = self._lane
        return handler


class LaneRunner(web.AppRunner):
    """An AppRunner whose connections have the hit lane."""

    lane: HitLane | None = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        self.lane = HitLane(self.app)
        return LaneServer(self.lane, server)
