"""What a synthesis worker queues (synth/worker.py): a job, how urgent it is, and the errors
that tell its caller it will not be done. The worker takes, runs and measures jobs; this is
what a job is, apart from who runs it."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from synth.engine import Pcm, Prosody
from synth.memo import FLEETING, fleeting
from synth.scope import reading_as


class Priority(enum.IntEnum):
    """Who is asking; lower values are served first."""

    LIVE = 0  # a caller is waiting on the line
    WARM = 1  # background pre-warming of the cache


class Urgency:
    """A waiting job's priority, which may rise while it waits: a live caller who joins a
    warm-up's synthesis of the same phrase makes it live."""

    __slots__ = ("priority",)

    def __init__(self, priority: Priority) -> None:
        self.priority = priority

    def raise_to(self, priority: Priority) -> None:
        """At least this urgent from now on (a job not yet taken is served accordingly)."""
        if priority < self.priority:
            self.priority = priority


class QueueFullError(Exception):
    """The queue is full; `retry_after` estimates in seconds when there will be room."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the synthesis queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class DeadlineExceededError(Exception):
    """The request's deadline passed before its audio was ready."""


class WorkerClosedError(Exception):
    """The worker is closed and takes no more work."""


@dataclass(eq=False)
class Job:
    """One synthesis or stream, from its submission until the engine is done with it."""

    text: str
    voice: str | None
    style: str
    prosody: Prosody
    urgency: Urgency
    seq: int
    # A synthesis resolves to its Pcm; a stream resolves to None once it holds the engine.
    outcome: asyncio.Future[Pcm | None]
    # Streams only: chunks, then an exception or None (the end), and the consumer's stop flag.
    chunks: asyncio.Queue[Pcm | BaseException | None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    # Read inside fleeting() (a no-store request): the engine's memos remember nothing of it.
    fleeting: bool = field(default_factory=FLEETING.get)
    # Seconds the engine spent on it (a whole synthesis, or all of a stream), for the
    # caller's timing.
    engine_seconds: float = 0.0
    scope: str = ""  # whose text it is: the frontend's memos are read in that scope

    @property
    def priority(self) -> Priority:
        """How urgent the job is now."""
        return self.urgency.priority


@contextlib.contextmanager
def as_asked(job: Job) -> Iterator[None]:
    """On the engine's thread, read as the job's caller was: in its tenant's reading scope,
    and fleeting (no memo keeps its text) if it asked that nothing be kept."""
    with reading_as(job.scope), fleeting() if job.fleeting else contextlib.nullcontext():
        yield
