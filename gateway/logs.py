"""Structured JSON logs: one line per request with its id, route, status, key prefix,
cache result, synthesis and queue milliseconds. Customer text is logged only at debug level."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from typing import Any

from aiohttp import web

from gateway.errors import Handler

access = logging.getLogger("huiyin.access")
# The current request's log fields; tasks started for the request share the same dict.
_FIELDS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_fields", default=None)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def route_template(request: web.Request) -> str:
    """The matched route's template (never the URL, which may carry customer text)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def note(**fields: Any) -> None:
    """Add fields to the current request's log line (no-op outside a request)."""
    current = _FIELDS.get()
    if current is not None:
        current.update(fields)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str) -> None:
    """Send every log record to stderr as JSON lines, times in UTC."""
    handler = logging.StreamHandler()
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log each request once it is answered; echo or assign an X-Request-Id."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
    fields: dict[str, Any] = {"request_id": request_id}
    token = _FIELDS.set(fields)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        _FIELDS.reset(token)
        fields.update(
            method=request.method,
            route=route_template(request),
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        if access.isEnabledFor(logging.DEBUG):
            # Customer text appears only when debug logging is switched on.
            fields["query"] = dict(request.query)
        access.info("request", extra={"fields": fields})
