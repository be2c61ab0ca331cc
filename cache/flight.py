"""Single flight: concurrent callers for the same thing share one run of the work.

`SingleFlight` shares a coroutine's result. `Generation` is one synthesis of a phrase that
every consumer joins while it runs: whole requests wait for the stored phrase, streams read
its audio as it comes, from the first chunk on, however late they join.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from synth.engine import Pcm
from synth.worker import Urgency

T = TypeVar("T")
R = TypeVar("R")


class SingleFlight(Generic[T]):
    """Runs make() once per token at a time; a caller that leaves never cancels the others."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[T]] = {}

    def __contains__(self, token: Hashable) -> bool:
        return token in self._running

    async def run(self, token: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """The result of the one run of make() for this token."""
        task = self._running.get(token)
        if task is None:
            async def run() -> T:
                try:
                    return await make()
                finally:
                    self._running.pop(token, None)

            task = asyncio.create_task(run())
            self._running[token] = task
        return await asyncio.shield(task)

    async def wait(self) -> None:
        """Wait for every running task (their errors are their callers')."""
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)


class Generation(Generic[R]):
    """One synthesis of one phrase: chunks for streams as they come, a result for everyone.

    A whole request that joins holds the generation to its end (it is stored even if that
    caller leaves, as a shielded synthesis is). A generation followed only by streams stops
    when the last of them leaves, and nothing is stored.
    """

    def __init__(self, *, streamed: bool, urgency: Urgency) -> None:
        self.streamed = streamed
        self.urgency = urgency  # rises when a live caller joins a warm-up's generation
        self.chunks: list[Pcm] = []
        self.ended = False  # every chunk is in
        self.finished = False  # stored, failed or stopped
        self.error: BaseException | None = None
        self.result: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self._tick = asyncio.Event()
        self._streams = 0
        self._held = False

    def add(self, chunk: Pcm) -> None:
        """A chunk of audio is ready."""
        self.chunks.append(chunk)
        self._wake()

    def end(self) -> None:
        """The last chunk is in (storing may still be under way)."""
        self.ended = True
        self._wake()

    def finish(self, result: R) -> None:
        """The phrase is complete and stored."""
        self.finished = True
        if not self.result.done():
            self.result.set_result(result)
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The synthesis failed (or was stopped): every consumer sees the error."""
        self.finished = True
        self.error = error
        if not self.result.done():
            self.result.set_exception(error)
            self.result.exception()  # retrieved here: not every generation has a waiter
        self._wake()

    def stop(self) -> None:
        """Stopped before its end: nobody was left to hear it."""
        self.finished = True
        self.error = StreamStopped("the synthesis was stopped")
        self.result.cancel()
        self._wake()

    def _wake(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def changed(self) -> None:
        """Wait for the next chunk, the end, or a failure."""
        await self._tick.wait()

    def hold(self) -> None:
        """A whole request joined: the generation runs to its end."""
        self._held = True

    def follow(self) -> None:
        """A stream joined."""
        self._streams += 1

    def leave(self) -> bool:
        """A stream left; the last one stops an unheld generation (True when it did)."""
        self._streams -= 1
        if self._streams > 0 or self._held or self.ended or self.task is None:
            return False
        self.task.cancel()
        return True


class StreamStopped(Exception):
    """The generation was stopped because every stream following it left."""


class GenerationStream(Generic[R]):
    """One consumer's view of a generation: every chunk from the first, then the end.

    With `stored` set there is no generation to follow: the phrase is whole already.
    """

    def __init__(
        self, generation: Generation[R] | None, stored: R | None,
        on_stop: Callable[[], None] | None = None, key: str = "",
        expires: float | None = None,
    ) -> None:
        self.stored = stored
        self.key = key  # what it is the audio of
        self.expires = expires  # when what it makes expires, as its callers asked so far
        self._generation = generation
        self._on_stop = on_stop
        self._next = 0
        self._open = generation is not None

    def __aiter__(self) -> GenerationStream[R]:
        return self

    async def __anext__(self) -> Pcm:
        generation = self._generation
        if generation is None:
            raise StopAsyncIteration
        while True:
            if self._next < len(generation.chunks):
                chunk = generation.chunks[self._next]
                self._next += 1
                return chunk
            if generation.ended:
                self._open = False  # heard to the end: leaving now stops nothing
                # End once the phrase is stored, so the next request finds it; a failure to
                # store it is the store's to log, not this listener's.
                while not generation.finished:
                    await generation.changed()
                raise StopAsyncIteration
            if generation.error is not None:
                raise generation.error
            await generation.changed()

    async def result(self) -> R:
        """What the generation ended with (the stored phrase), once it has ended."""
        if self.stored is not None:
            return self.stored
        assert self._generation is not None
        return await asyncio.shield(self._generation.result)

    async def aclose(self) -> None:
        """Leave the generation (idempotent)."""
        if not self._open or self._generation is None:
            return
        self._open = False
        if self._generation.leave() and self._on_stop is not None:
            self._on_stop()
