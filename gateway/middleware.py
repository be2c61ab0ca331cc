"""The one middleware every request passes: request id, JSON errors, metrics, access log.

One layer instead of three, and no work for a log line nobody writes: a cache hit spends
most of its time here and in aiohttp, so this stays short."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.errors import error_response_for
from gateway.logs import FIELDS, access, access_line, route_template
from gateway.metrics import Metrics
from gateway.nostore import says_no_store
from synth.memo import fleeting

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_GIVEN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Our own ids: 8 hex digits fixed for the process, then a counter (16 characters in all).
_ID_PREFIX = os.urandom(4).hex()
_ids = itertools.count(1)


def request_id(given: str | None) -> str:
    """The client's X-Request-Id when it is a plain token, else a new one."""
    if given is not None and _GIVEN_ID.match(given):
        return given
    return f"{_ID_PREFIX}{next(_ids) & 0xFFFFFFFF:08x}"


def request_middleware(metrics: Metrics) -> Middleware:
    """The middleware: answers failures as JSON, counts and logs every response."""
    count = metrics.count

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request_id(request.headers.get("X-Request-Id"))
        fields: dict[str, Any] | None = None
        if access.isEnabledFor(logging.INFO):
            fields = {"request_id": rid}
            token = FIELDS.set(fields)
            started = time.perf_counter()
        status = 500
        try:
            try:
                # A no-store request's text is remembered by no memo (synth/memo.py).
                with fleeting() if says_no_store(request) else contextlib.nullcontext():
                    response = await handler(request)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                response = error_response_for(request, exc)
            status = response.status
            response.headers["X-Request-Id"] = rid
            count(request.match_info.route, status)
            return response
        except web.HTTPException as exc:  # a redirect, passed on to aiohttp
            status = exc.status
            raise
        finally:
            if fields is not None:
                FIELDS.reset(token)
                fields.update(
                    method=request.method, route=route_template(request.match_info.route),
                    status=status, ms=round((time.perf_counter() - started) * 1000, 1),
                )
                if access.isEnabledFor(logging.DEBUG) and not says_no_store(request):
                    # Customer text appears only when debug logging is switched on, and
                    # never the text of a request that asked that nothing of it be kept.
                    fields["query"] = dict(request.query)
                access_line(fields)

    return middleware
