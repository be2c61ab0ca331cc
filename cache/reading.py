"""The frontend's time, shared fairly between clients.

Reading a text into what the engine will say (normalizer, segmenter, pinyin) is the work a
request does before anyone knows whether it is a hit, and the frontend reads one text at a
time. `FairShare` runs such blocking jobs on threads of its own, taking the clients in
turn: each waiting client's oldest job next, one client after the other. However many long
texts one client sends, another client's text waits for at most one job of each client
ahead of it, never for the whole flood; and the store's I/O threads, which hits need, are
never taken by reading.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from synth.priority import run_in_background

T = TypeVar("T")

# Clients whose last turn is remembered (beyond it, only the waiting ones' are kept).
_REMEMBERED = 10_000

_Job = tuple[Callable[[], Any], "asyncio.Future[Any]", contextvars.Context]


class FairShare:
    """Blocking jobs on `threads` threads, the waiting clients served in turn."""

    def __init__(self, threads: int = 1, name: str = "reading") -> None:
        self._threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name,
                                            initializer=run_in_background)
        # Waiting jobs per client, and when each client was last served: of the waiting
        # ones, the one served longest ago (a newcomer: never) goes next.
        self._waiting: dict[str, deque[_Job]] = {}
        self._served: dict[str, int] = {}
        self._turn = 0
        self._running = 0

    @property
    def waiting(self) -> int:
        """Jobs waiting for a thread."""
        return sum(len(jobs) for jobs in self._waiting.values())

    async def run(self, client: str, fn: Callable[[], T]) -> T:
        """fn's result, run when the client's turn comes (a caller that leaves while its
        job waits takes nothing; one already running finishes unheard)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(client, deque()).append((fn, future, contextvars.copy_context()))
        self._next()
        return await future

    def _next(self) -> None:
        """Start the next clients' jobs while threads are free."""
        while self._running < self._threads and self._waiting:
            client = min(self._waiting, key=lambda c: self._served.get(c, -1))
            jobs = self._waiting[client]
            fn, future, context = jobs.popleft()
            if not jobs:
                del self._waiting[client]
            if future.done():  # its caller left
                continue
            self._turn += 1
            self._served[client] = self._turn  # its next job after the other clients'
            if len(self._served) > _REMEMBERED:
                self._served = {c: t for c, t in self._served.items() if c in self._waiting}
            self._running += 1
            # In its caller's context: a fleeting (no-store) reading remembers nothing.
            running = asyncio.get_running_loop().run_in_executor(self._executor, context.run, fn)
            running.add_done_callback(functools.partial(self._finished, future))

    def _finished(self, future: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
        self._running -= 1
        if not future.done():
            if done.cancelled():
                future.cancel()
            elif (error := done.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result())
        self._next()

    def close(self) -> None:
        """Stop the threads once the running jobs end (waiting jobs' callers are cancelled)."""
        for jobs in self._waiting.values():
            for _, future, _ in jobs:
                future.cancel()
        self._waiting.clear()
        self._served.clear()
        self._executor.shutdown(wait=False)
