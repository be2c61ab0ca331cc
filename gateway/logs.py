"""Structured JSON logs: one line per request with its id, route, status, key prefix,
cache result, synthesis and queue milliseconds. Customer text is logged only at debug level.
The request middleware (gateway.middleware) opens and writes each request's line."""

from __future__ import annotations

import contextvars
import json
import logging
import time
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_urldispatcher import AbstractRoute

access = logging.getLogger("huiyin.access")
audit = logging.getLogger("huiyin.audit")
# The current request's log fields; tasks started for the request share the same dict.
# Unset when the access log is off, so note() costs nothing then.
FIELDS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_fields", default=None)


def route_template(route: AbstractRoute) -> str:
    """A route's template (never the URL, which may carry customer text)."""
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


def note(**fields: Any) -> None:
    """Add fields to the current request's log line (no-op outside a request)."""
    current = FIELDS.get()
    if current is not None:
        current.update(fields)


def audit_log(who: str, action: str, target: str, **details: Any) -> None:
    """One audit line: who (a key's name), the action, its target (a key, a job, a route),
    never a secret or customer text."""
    audit.info("audit", extra={"fields": {"who": who, "action": action, "target": target,
                                          **details}})


class NoRequestText(logging.Filter):
    """Keeps request text out of a logger's records at info and above: aiohttp's parser
    errors quote the offending request line or header, customer text included. Such a
    record keeps its message and names the error's class, without the error itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Strip a quoted request from the record; never drop the record."""
        error = record.exc_info[1] if record.exc_info else None
        if record.levelno >= logging.INFO and isinstance(error, HttpProcessingError):
            record.msg = f"{record.getMessage()} ({type(error).__name__})"
            record.args = None
            record.exc_info = record.exc_text = None
        return True

    @classmethod
    def install(cls, logger: logging.Logger) -> None:
        """Add the filter to a logger, once."""
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())


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
    # Alembic says which dialect it drives each time an index opens: debug detail.
    logging.getLogger("alembic").setLevel("DEBUG" if level == "debug" else "WARNING")
