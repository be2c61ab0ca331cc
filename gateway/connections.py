"""The gateway's connections: aiohttp's protocol with a deadline for each request head,
raw UTF-8 in request URLs read as percent-encoded UTF-8 (gateway/request_lines.py), and
JSON answers to the requests its parser refuses. A connection upgraded to a WebSocket (the
Aliyun front's /ws/v1) carries its frames past all of this, untouched.

aiohttp has no public hook for any of these. Its keep-alive timer closes a connection that
waits for a request, measured from the previous answer (and, in recent releases, from
opening); nothing bounds the time a head may take once it has begun; its C parser refuses
raw UTF-8 in a URL, which its Python parser takes; and its parser's refusals are
text/plain. So this module subclasses aiohttp's RequestHandler and touches the private
names below, checked at import; tests/test_connections.py checks the behaviour on a live
server, with either parser, so a release that changes them fails there, not in production.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from gateway.errors import OPENAI_PREFIX, unparsed_request_response
from gateway.logs import access, access_line
from gateway.middleware import request_id
from gateway.request_lines import RequestLines

log = logging.getLogger("huiyin.gateway")

# The private names this module relies on, and what each is.
PRIVATE_NAMES = (
    (web.AppRunner, "_make_server", "the runner's hook that builds its connection factory"),
    (RequestHandler, "_waiter", "the future its request loop awaits while it waits for a request"),
    (RequestHandler, "_messages", "its queue of parsed requests and their payloads"),
    (RequestHandler, "_max_msg_queue_size", "the queue length at which its parser stops"),
    (RequestHandler, "_upgraded", "whether the connection left HTTP (a WebSocket's upgrade)"),
    (RequestHandler, "_payload_parser", "the reader of an upgraded connection (a WebSocket's frames)"),
)
for _owner, _name, _what in PRIVATE_NAMES:
    if not hasattr(_owner, _name):
        raise AttributeError(
            f"aiohttp {aiohttp.__version__} has no {_owner.__name__}.{_name} ({_what}), which "
            "gateway.connections needs for its request-head deadline and JSON parser errors: "
            "install an aiohttp in the range pyproject.toml names"
        )


class Connection(RequestHandler):
    """One client connection: aiohttp's protocol, with a deadline for each request head, raw
    UTF-8 in request lines spelled as percent-encoded UTF-8, and our JSON error for what its
    parser refuses.

    Once it has switched protocols (a WebSocket), its bytes go to aiohttp untouched.

    A head is due `header_timeout` seconds after the connection opens (the first one) or
    after its first byte reaches an idle connection (a later one). Between requests,
    aiohttp's keep-alive timer applies; a head that has begun replaces it, so a client
    is never cut off mid-head by the keep-alive deadline, nor kept waiting past its own."""

    __slots__ = ("_header_timeout", "_head_timer", "_head_loop", "_lines")

    def __init__(
        self, manager: web.Server, *, header_timeout: float,
        loop: asyncio.AbstractEventLoop, **kwargs: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._header_timeout = header_timeout
        self._head_loop = loop
        self._head_timer: asyncio.TimerHandle | None = None
        self._lines = RequestLines(self.max_line_size)

    def waiting(self) -> bool:
        """Whether aiohttp's request loop waits for a request, none parsed and queued."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_head()

    def data_received(self, data: bytes) -> None:
        if self._upgraded or self._payload_parser is not None:
            # A WebSocket: its frames are not request lines, and pass as they came.
            super().data_received(data)
            return
        # b"" is aiohttp's own call, to parse pipelined requests its parser held back.
        fed = self._lines.feed(data)
        if fed or not data:  # nothing to parse while the whole of data is a line held back
            queued = len(self._messages)
            super().data_received(fed)
            messages = self._messages
            self._lines.follow(fed, messages, queued,
                               len(messages) >= self._max_msg_queue_size)
        if self.waiting():
            if data and self._head_timer is None:
                self._start_head()  # part of a head, on a connection with nothing in progress
        elif self._head_timer is not None:
            self._head_timer.cancel()  # the head is complete: aiohttp has the request
            self._head_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _start_head(self) -> None:
        # keep_alive(True) cancels aiohttp's keep-alive timer (its request loop starts a new
        # one after the answer): the head's own deadline governs until the head is complete.
        self.keep_alive(True)
        self._head_timer = self._head_loop.call_later(self._header_timeout, self._head_overdue)

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self.waiting():
            self.force_close()

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
            access_line({"request_id": rid, "route": "unparsed", "status": response.status,
                         "error": type(exc).__name__})
        response.force_close()
        return response


class ConnectionServer(web.Server):
    """aiohttp's protocol factory, making a Connection per client."""

    def __init__(
        self, server: web.Server, *, header_timeout: float, handler_kwargs: dict[str, Any],
    ) -> None:
        super().__init__(server.request_handler, request_factory=server.request_factory,
                         handler_cancellation=server.handler_cancellation, **handler_kwargs)
        self._connection_loop = asyncio.get_running_loop()
        self._connection_kwargs = {**handler_kwargs, "header_timeout": header_timeout}

    def __call__(self) -> Connection:
        return Connection(self, loop=self._connection_loop, **self._connection_kwargs)


class ConnectionRunner(web.AppRunner):
    """An AppRunner whose connections are Connections. `header_timeout` (seconds) bounds
    each request head; other keywords go to aiohttp's RequestHandler (keepalive_timeout,
    max_line_size, max_field_size, access_log, ...)."""

    def __init__(
        self, app: web.Application, *, header_timeout: float, handle_signals: bool = False,
        shutdown_timeout: float = 60.0, **handler_kwargs: Any,
    ) -> None:
        super().__init__(app, handle_signals=handle_signals, shutdown_timeout=shutdown_timeout,
                         **handler_kwargs)
        self._header_timeout = header_timeout
        self._handler_kwargs = handler_kwargs

    async def _make_server(self) -> web.Server:
        # The app's own server: its startup has run, and it names the request handler.
        server = await super()._make_server()
        return ConnectionServer(server, header_timeout=self._header_timeout,
                                handler_kwargs=self._handler_kwargs)
