"""Structured JSON logs: one line per request with its id, route, status, key prefix,
cache result, synthesis and queue milliseconds. Customer text is logged only at debug level.
The request middleware (gateway.middleware) opens each request's line and `access_line`
writes it.

A serving process hands its log to a writer thread (`written_off_loop`): the event loop
spells a request's line (and other loggers spell their records) into a burst, and the
thread writes each burst in one write, without blocking the loop. Leaving the block writes
every line gathered."""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_urldispatcher import AbstractRoute

access = logging.getLogger("huiyin.access")
audit = logging.getLogger("huiyin.audit")
# How long a line may wait in the queue for the lines after it, to be written with them.
WRITE_INTERVAL = 0.01
# The writer thread's burst while there is one (written_off_loop). Access lines go there
# spelled: no log record is made for them on the loop.
_writing: _Burst | None = None
# The current request's log fields; tasks started for the request share the same dict.
# Unset when the access log is off, so note() costs nothing then.
FIELDS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_fields", default=None)


def route_template(route: AbstractRoute) -> str:
    """A route's template (never the URL, which may carry customer text)."""
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


def access_line(fields: dict[str, Any]) -> None:
    """Write a request's access line (the caller has checked that info is enabled)."""
    burst = _writing
    if burst is not None:  # spelled now (the request's tasks may still note() after it)
        burst.add(burst.formatter.access(time.time(), fields))
        return
    # A record made directly: Logger.info would first walk the stack for the caller's file
    # and line, which this line never shows.
    access.handle(access.makeRecord(access.name, logging.INFO, "", 0, "request", (), None,
                                    extra={"fields": fields}))


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


# One encoder for every line: json.dumps with an option builds a new one at each call. A
# value JSON has no form for is spelled as str() spells it: a line is spelled where it is
# logged (on the loop, for a request's), and must not fail there.
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode


# What every access line says after its time, spelled once; fields named as these parts
# are spelled the general way (line), where a field takes its part's place.
_ACCESS_HEAD = _encode({"level": "info", "logger": access.name, "message": "request"})[1:-1]
_ACCESS_HEAD_KEYS = frozenset({"time", "level", "logger", "message"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any structured fields."""

    def __init__(self) -> None:
        super().__init__()
        # The time to the second, spelled once a second: (whole seconds, their spelling).
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        return self.line(
            record.created, record.levelname.lower(), record.name, record.getMessage(),
            getattr(record, "fields", None),
            self.formatException(record.exc_info) if record.exc_info else None,
        )

    def _time(self, created: float) -> str:
        second, spelled = self._second
        if int(created) != second:
            spelled = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(created))
            self._second = (int(created), spelled)
        return f"{spelled}.{int((created - int(created)) * 1000):03d}Z"

    def access(self, created: float, fields: dict[str, Any]) -> str:
        """An access line: line(created, "info", "huiyin.access", "request", fields), with
        only the fields encoded per line (its head is the same for every request)."""
        if not fields or not _ACCESS_HEAD_KEYS.isdisjoint(fields):
            return self.line(created, "info", access.name, "request", fields)
        return f'{{"time": "{self._time(created)}", {_ACCESS_HEAD}, {_encode(fields)[1:]}'

    def line(self, created: float, level: str, logger: str, message: str,
             fields: dict[str, Any] | None = None, error: str | None = None) -> str:
        """The line of a record made of these parts (created: seconds since the epoch)."""
        entry: dict[str, Any] = {
            "time": self._time(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        if fields:
            entry.update(fields)
        if error is not None:
            entry["error"] = error
        return _encode(entry)


def _utc_json() -> JsonFormatter:
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    return formatter


class _Burst:
    """The lines logged since the writer's last write, in the order they came. Any thread
    adds spelled lines; the writer thread takes them all at once."""

    def __init__(self, formatter: JsonFormatter) -> None:
        self.formatter = formatter
        self.waiting = threading.Event()  # set while there are lines to write
        self._lock = threading.Lock()
        self._lines: list[str] = []

    def add(self, line: str) -> None:
        """Add a spelled line."""
        with self._lock:
            self._lines.append(line)
            if len(self._lines) == 1:
                self.waiting.set()

    def take(self) -> list[str]:
        """Every line added since the last take."""
        with self._lock:
            lines, self._lines = self._lines, []
            self.waiting.clear()
        return lines


class _Handoff(logging.Handler):
    """Spells each record on the thread that logs it, and adds it to the burst."""

    def __init__(self, burst: _Burst) -> None:
        super().__init__()
        self.setFormatter(burst.formatter)
        self._burst = burst

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._burst.add(self.format(record))
        except Exception:  # as StreamHandler: a line that cannot be spelled is reported
            self.handleError(record)


class _Writer(threading.Thread):
    """The writer thread. Idle, it waits for a line; then it lets the lines that follow
    gather for `interval` seconds and writes them in one go: waking for every line would
    cost two thread switches each, on the loop's own core (a logged hit cost 1.8 times an
    unlogged one so). Lines are spelled where they are logged, so this thread holds the
    interpreter only to join a burst; the stream's write lets go of it."""

    def __init__(self, burst: _Burst, stream: IO[str], *, interval: float) -> None:
        super().__init__(name="log-writer", daemon=True)
        self._burst = burst
        self._stream = stream
        self._interval = interval
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._burst.waiting.wait()
            self._stopping.wait(self._interval)
            self.write(self._burst.take())

    def write(self, lines: list[str]) -> None:
        """Write lines, and flush them to the descriptor."""
        if lines:
            with contextlib.suppress(OSError, ValueError):  # stderr is gone (a closed pipe):
                self._stream.write("\n".join(lines) + "\n")  # the process serves on
                self._stream.flush()

    def stop(self) -> None:
        """Write what is gathered at once, end the thread, then write what came meanwhile."""
        self._stopping.set()
        self._burst.waiting.set()
        self.join()
        self.write(self._burst.take())


@contextlib.contextmanager
def written_off_loop() -> Iterator[None]:
    """For the block, the root logger's records (spelled as JSON lines where they are
    logged) go to a writer thread, which writes them to stderr in bursts; leaving the
    block, or the process, writes every line gathered and restores the handler."""
    global _writing
    root = logging.getLogger()
    previous = root.handlers[:]
    # stderr is line-buffered: a stream of its own buffers a burst into one write.
    try:
        stream: IO[str] = open(sys.stderr.fileno(), "w", encoding="utf-8",
                               errors="backslashreplace", closefd=False)
    except (AttributeError, OSError, ValueError):  # a stderr without a descriptor
        stream = sys.stderr
    burst = _Burst(_utc_json())
    writer = _Writer(burst, stream, interval=WRITE_INTERVAL)
    writer.start()
    stopped = False

    def stop() -> None:
        global _writing
        nonlocal stopped
        if not stopped:
            stopped = True
            _writing = None
            writer.stop()

    # Also at exit, should the process leave some other way than through this block.
    atexit.register(stop)
    root.handlers[:] = [_Handoff(burst)]
    _writing = burst
    try:
        yield
    finally:
        root.handlers[:] = previous
        stop()
        atexit.unregister(stop)
        if stream is not sys.stderr:
            stream.close()


def configure(level: str) -> None:
    """Send every log record to stderr as JSON lines, times in UTC."""
    handler = logging.StreamHandler()
    handler.setFormatter(_utc_json())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic says which dialect it drives each time an index opens: debug detail.
    logging.getLogger("alembic").setLevel("DEBUG" if level == "debug" else "WARNING")
