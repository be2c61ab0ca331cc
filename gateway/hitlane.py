"""The gateway's connections: aiohttp's protocol with a deadline for request heads, JSON
answers to requests aiohttp refuses, and the hit lane.

The hit lane answers a repeat /tts URL whose audio is in memory as its request arrives,
before aiohttp builds a request object, a task and a response for it: for IVR platforms,
which fetch the same prompt URLs all day, that cycle costs more than sending the audio. It
answers only what the full path would answer the same: a strictly formed GET or HEAD in
HTTP/1.1 without a body, within aiohttp's parser limits, no header twice, no range or
condition but If-None-Match, for a URL answered before whose audio is still in the hot
set, while aiohttp has nothing in progress on the connection. Everything else reaches
aiohttp untouched and in order; a connection that sends anything the lane does not fully
understand stays with aiohttp for good, so the two parsers never disagree about where a
request ends.

This relies on a few RequestHandler internals (its idle request loop, keep-alive timer
and request count), so it loads only with the pinned aiohttp; tests/test_hitlane.py
checks every case against a live server.
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

import aiohttp
from aiohttp import http_parser, web, web_protocol
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_urldispatcher import AbstractRoute

from cache.store import Audio, PromptStore
from gateway.access import ACCESS, Access
from gateway.errors import OPENAI_PREFIX, unparsed_request_response
from gateway.logs import access, route_template
from gateway.metrics import Metrics
from gateway.middleware import request_id
from gateway.responses import etag_matches
from gateway.state import METRICS, STORE
from gateway.urlmemo import URL_MEMO, UrlMemo

AIOHTTP_VERSION = "3.14.5"
if aiohttp.__version__ != AIOHTTP_VERSION:
    raise RuntimeError(
        f"gateway.hitlane is written for aiohttp {AIOHTTP_VERSION} (pinned in pyproject.toml), "
        f"not {aiohttp.__version__}: install aiohttp=={AIOHTTP_VERSION}"
    )

log = logging.getLogger("huiyin.gateway")

# A request head larger than this, still incomplete, is aiohttp's to judge (and refuse).
MAX_HEAD_BYTES = 64 << 10
# With this much of earlier answers still unsent, aiohttp's flow control takes over.
MAX_UNSENT_BYTES = 4 << 20

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\t\x20-\x7e]*")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
# Headers that change what the answer is or how the connection goes on: aiohttp decides.
# (If-None-Match the lane answers itself: IVR platforms revalidate with it.)
# (Origin too: answers to other origins' pages carry CORS headers, which aiohttp adds.)
_ANSWER_CHANGING = frozenset({
    b"if-match", b"if-modified-since", b"if-unmodified-since", b"if-range", b"range",
    b"connection", b"origin",
})
# Headers that bring a body or change the protocol: the connection leaves the lane.
_LANE_ENDING = frozenset({b"content-length", b"transfer-encoding", b"upgrade", b"expect"})

ANSWER, PASS, LEAVE = "answer", "pass", "leave"


class Limits(NamedTuple):
    """aiohttp's parser limits (its defaults here): beyond them it refuses a request."""

    line: int = 8190  # bytes of the request target (max_line_size)
    field: int = 8190  # bytes of one header's name and value (max_field_size)
    headers: int = 128  # header lines (max_headers)


@dataclass(frozen=True)
class Head:
    """A strictly parsed request head the lane may answer."""

    method: bytes
    target: str
    request_id: str | None
    if_none_match: str | None = None
    credential: str | None = None  # an API key from Authorization: Bearer or X-API-Key


AIOHTTP_LIMITS = Limits()


def read_head(block: bytes, limits: Limits = AIOHTTP_LIMITS) -> tuple[str, Head | None]:
    """What to do with one request head (without its final blank line): ANSWER it if its
    audio is at hand, PASS it to aiohttp as it is, or LEAVE the lane for good."""
    lines = block.split(b"\r\n")
    parts = lines[0].split(b" ")
    if (len(parts) != 3 or parts[2] != b"HTTP/1.1" or parts[0] not in (b"GET", b"HEAD")
            or _TARGET.fullmatch(parts[1]) is None or len(parts[1]) > limits.line
            or len(lines) - 1 > limits.headers):
        return LEAVE, None
    method, target = parts[0], parts[1]
    given_id: str | None = None
    if_none_match: str | None = None
    credentials: list[str] = []
    verdict = ANSWER
    seen: set[bytes] = set()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if (not colon or len(line) > limits.field or _TOKEN.fullmatch(name) is None
                or _VALUE.fullmatch(value) is None):
            return LEAVE, None
        lowered = name.lower()
        if lowered in _LANE_ENDING:
            return LEAVE, None
        if lowered in seen:
            verdict = PASS  # aiohttp refuses some headers twice and merges others: it decides
        seen.add(lowered)
        if lowered in _ANSWER_CHANGING:
            verdict = PASS
        elif lowered == b"x-request-id":
            given_id = value.strip(b" \t").decode("ascii")
        elif lowered == b"if-none-match":
            if_none_match = value.strip(b" \t").decode("ascii")
        elif lowered == b"x-api-key":
            credentials.append(value.strip(b" \t").decode("ascii"))
        elif lowered == b"authorization":
            scheme, _, token = value.strip(b" \t").partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                verdict = PASS  # aiohttp's path answers the malformed header
            credentials.append(token.strip(b" \t").decode("ascii"))
    if not target.startswith(b"/tts."):
        return PASS, None
    if b"host" not in seen or b"sec-websocket-key1" in seen:
        verdict = PASS  # aiohttp refuses an HTTP/1.1 request without Host, and that header
    if len(set(credentials)) > 1:
        verdict = PASS  # two different keys: aiohttp's path refuses them
    return verdict, Head(method, target.decode("ascii"), given_id, if_none_match,
                         credentials[0] if credentials else None)


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
        self._access: Access = app[ACCESS]
        self._routes = _tts_routes(app)
        self._date_second = -1
        self._date = b""
        self.answered = 0  # requests the lane answered

    def answer(self, head: Head) -> Answer | None:
        """The response head and audio for a request, or None when aiohttp must answer."""
        caching = self._access.lane_verdict(head.method, head.target, head.credential)
        if caching is None:  # the access policy needs the full path (an index lookup, an error)
            return None
        hit = self._memo.find(head.target, self._store, caching)
        if hit is None:
            return None
        audio = hit.audio
        status = 200
        if head.if_none_match is not None and etag_matches(head.if_none_match, audio.etag):
            status = 304
        rid = request_id(head.request_id)
        self.answered += 1
        self._metrics.count(self._routes[head.method], status)
        response_head = b"".join((hit.prebuilt.lane_heads[status], b"Date: ", self._now(),
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
    """aiohttp's connection protocol, with a deadline for each request head, JSON answers to
    what its parser refuses, and (given a lane) the hit lane in front of that parser.

    A request head is due `head_timeout` seconds after its first byte arrives on an idle
    connection, the first one after the connection opens; between requests aiohttp's
    keep-alive timeout applies. Both close the connection through aiohttp's keep-alive
    timer, which closes only a connection still waiting for a request."""

    __slots__ = (
        "_head_mark",
        "_head_timeout",
        "_lane",
        "_lane_buffer",
        "_lane_fd",
        "_lane_limits",
        "_lane_on",
    )

    def __init__(
        self, manager: web.Server, *, lane: HitLane | None, head_timeout: float | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._lane = lane
        self._lane_on = False
        self._lane_buffer = bytearray()
        self._lane_fd = -1
        self._lane_limits = Limits(self.max_line_size, self.max_field_size, self.max_headers)
        self._head_timeout = head_timeout
        # The request count when the head now arriving began; None between heads.
        self._head_mark: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._lane is not None:
            sock = transport.get_extra_info("socket")
            self._lane_fd = sock.fileno() if sock is not None else -1
            # TLS or an unusual transport: the lane cannot write beside it.
            self._lane_on = self._lane_fd >= 0 and transport.get_extra_info("sslcontext") is None
        if self._head_timeout is not None:
            self._head_mark = 0
            self._set_deadline(self._loop.time() + self._head_timeout)

    def data_received(self, data: bytes) -> None:
        if not self._lane_on or not data:
            # b"" is aiohttp's own call, to parse pipelined requests its parser held back.
            super().data_received(data)
            if data and self._head_timeout is not None:
                self._watch_head(self._awaiting_head())
            return
        lane = self._lane
        assert lane is not None
        held = len(self._lane_buffer)
        if held:
            # A head arriving in pieces: appended in place and searched only where it is
            # new, so a head sent a byte at a time costs linear, not quadratic, time.
            self._lane_buffer += data
            buffer: bytes | bytearray = self._lane_buffer
        else:
            buffer = data
        start = 0
        search = max(0, held - 3)
        leaving = False
        while (end := buffer.find(b"\r\n\r\n", search)) >= 0:
            search = end + 4
            verdict, head = read_head(bytes(buffer[start:end]), self._lane_limits)
            if verdict == LEAVE:
                leaving = True
                break
            if head is not None and verdict == ANSWER and self._idle():
                started = time.perf_counter()
                answer = lane.answer(head)
                if answer is not None:
                    self._request_count += 1
                    self._send(answer.head, answer.body)
                    if access.isEnabledFor(logging.INFO):
                        lane.log(head, answer, started)
                    start = end + 4
                    continue
            super().data_received(bytes(buffer[start : end + 4]))  # one whole head, no body
            start = end + 4
        rest = bytes(buffer[start:])
        if leaving or len(rest) > MAX_HEAD_BYTES:
            # Not for the lane: aiohttp takes this connection from here on, as it comes.
            self._lane_on, self._lane_buffer = False, bytearray()
            super().data_received(rest)
        else:
            self._lane_buffer = bytearray(rest)  # the start of a head still arriving
        if self._head_timeout is not None:
            self._watch_head(bool(rest) and self._awaiting_head())

    def _awaiting_head(self) -> bool:
        """aiohttp's request loop waits for a request, with none parsed and queued."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self._messages

    def _idle(self) -> bool:
        """aiohttp's request loop waits for a request and has no answer still to write."""
        transport = self.transport
        return (
            self._awaiting_head() and not self._close and not self._force_close
            and transport is not None and not transport.is_closing()
            and transport.get_write_buffer_size() < MAX_UNSENT_BYTES
        )

    def _watch_head(self, partial: bool) -> None:
        """Give a head that has begun arriving on an idle connection its deadline, once."""
        assert self._head_timeout is not None
        if partial:
            if self._head_mark != self._request_count:
                self._head_mark = self._request_count
                self._set_deadline(self._loop.time() + self._head_timeout)
        elif self._head_mark is not None:
            self._head_mark = None
            handle = self._keepalive_handle
            if handle is not None and self._messages:
                # aiohttp has the request: its request loop sets the keep-alive deadline after.
                handle.cancel()
                self._keepalive_handle = None

    def _set_deadline(self, when: float) -> None:
        """Close the connection at `when` if it is waiting for a request then."""
        self._next_keepalive_close_time = when
        handle = self._keepalive_handle
        if handle is not None:
            if isinstance(handle, asyncio.TimerHandle) and handle.when() <= when:
                return  # it fires first and, finding the deadline later, waits for it
            handle.cancel()
        self._keepalive_handle = self._loop.call_at(when, self._process_keepalive)

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
            self._set_deadline(self._loop.time() + self._keepalive_timeout)

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        """aiohttp's answer to a request its parser refuses, or that fails outside every
        handler: our JSON error, logged without the request, whose URL may carry text."""
        if request.writer.output_size > 0:
            raise ConnectionError("a response has begun; no error answer can follow it")
        response = unparsed_request_response(
            status, exc, line_limit=self.max_line_size, field_limit=self.max_field_size,
            openai=request.path.startswith(OPENAI_PREFIX),
        )
        rid = request_id(None)
        response.headers["X-Request-Id"] = rid
        if response.status >= 500:
            log.error("error answering a request", exc_info=exc)
        elif access.isEnabledFor(logging.INFO):
            access.info("request", extra={"fields": {
                "request_id": rid, "route": "unparsed", "status": response.status,
                "error": type(exc).__name__,
            }})
        response.force_close()
        return response


class LaneServer(web.Server):
    """aiohttp's protocol factory, making LaneHandler connections."""

    def __init__(self, server: web.Server, lane: HitLane | None, head_timeout: float | None) -> None:
        super().__init__(
            server.request_handler, request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation, loop=server._loop,
            **server._kwargs,
        )
        self.lane = lane
        self._head_timeout = head_timeout

    def __call__(self) -> RequestHandler:
        return LaneHandler(self, lane=self.lane, head_timeout=self._head_timeout,
                           loop=self._loop, **self._kwargs)


def c_parser() -> bool:
    """Whether aiohttp's connections parse with its C parser, whose limits the lane follows."""
    used = getattr(web_protocol, "HttpRequestParser", None)  # what RequestHandler builds
    return bool(used is http_parser.HttpRequestParserC)


class LaneRunner(web.AppRunner):
    """An AppRunner whose connections are LaneHandlers: with `fast_hits`, they have the hit
    lane; with `header_timeout` (seconds), a deadline for each request head."""

    def __init__(
        self, app: web.Application, *, fast_hits: bool = True,
        header_timeout: float | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._fast_hits = fast_hits
        self._header_timeout = header_timeout
        self.lane: HitLane | None = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        if self._fast_hits and not c_parser():
            log.warning("aiohttp runs its pure-Python HTTP parser here (AIOHTTP_NO_EXTENSIONS, "
                        "or no C extension): the hit lane, which follows the C parser's "
                        "limits, is off")
            self._fast_hits = False
        self.lane = HitLane(self.app) if self._fast_hits else None
        return LaneServer(server, self.lane, self._header_timeout)
