"""A bounded priority queue in front of an engine, run by one thread per lane: one lane for
an engine that takes one call at a time, several for one that takes concurrent calls (what
it queues, and how urgent each is: synth/jobs.py)."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

from synth.compat import timeout
from synth.engine import Engine, Pcm, Prosody, takes_concurrent_calls
from synth.jobs import (
    DeadlineExceededError,
    Job,
    Priority,
    QueueFullError,
    Urgency,
    WorkerClosedError,
    as_asked,
)
from synth.priority import run_in_background
from synth.ssml import speaking

# The jobs' language, for callers that import it with the worker.
__all__ = [
    "DeadlineExceededError", "Priority", "QueueFullError", "SynthesisWorker", "Urgency",
    "WorkerClosedError",
]

# Weight of the newest measurement in the moving mean of synthesis seconds.
_EMA_WEIGHT = 0.2
# Until something has been measured, assume half a second per job: a prompt of several
# seconds at the default voice's speed, with headroom. Only retry_after uses it.
_FIRST_GUESS_SECONDS = 0.5


class SynthesisWorker:
    """Runs at most `lanes` syntheses at a time on one engine, each lane in its own thread,
    from one queue: LIVE before WARM, and whichever lane is free takes the next job.

    A deadline covers the wait in the queue and, for `synthesize`, the synthesis itself.
    A running engine call cannot be interrupted: when its deadline passes the caller gets
    DeadlineExceededError at once, while the call finishes in the background, holding the
    engine, and its audio is discarded.
    """

    def __init__(
        self, engine: Engine, *, max_queue: int = 32, deadline: float = 30.0, lanes: int = 1,
        after_job: Callable[[], object] | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if lanes < 1:
            raise ValueError("lanes must be at least 1")
        if lanes > 1 and not takes_concurrent_calls(engine):
            raise ValueError(f"engine '{engine.name}' takes one call at a time: one lane")
        self._engine = engine
        self._lanes = lanes
        # Called on the lane's thread after each job, done or failed (the gateway gives the
        # allocator's freed pages back there).
        self._after_job = after_job
        self._max_queue = max_queue
        self._deadline = deadline
        self._waiting: list[Job] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._dispatchers: list[asyncio.Task[None]] = []
        self._closed = False
        self._running = 0
        self._completed = 0
        self._mean = 0.0
        self._synthesis_seconds = 0.0
        self._audio_seconds = 0.0

    @property
    def engine(self) -> Engine:
        """The wrapped engine; read only its name, version and voices from outside."""
        return self._engine

    @property
    def queue_depth(self) -> int:
        """Jobs waiting for the engine."""
        return sum(not job.outcome.done() for job in self._waiting)

    @property
    def max_queue(self) -> int:
        """How many jobs may wait (more are refused with QueueFullError)."""
        return self._max_queue

    @property
    def busy(self) -> bool:
        """Whether the engine is working (possibly on an abandoned job)."""
        return self._running > 0

    @property
    def running(self) -> int:
        """Jobs the engine is working on now (abandoned ones included)."""
        return self._running

    @property
    def lanes(self) -> int:
        """Jobs the engine may work on at once."""
        return self._lanes

    @property
    def load(self) -> float:
        """Waiting and running jobs per lane: where a new job would wait least."""
        return (self.queue_depth + self._running) / self._lanes

    @property
    def completed(self) -> int:
        """Syntheses and streams the engine finished."""
        return self._completed

    @property
    def mean_seconds(self) -> float:
        """Moving mean of seconds per finished job; 0.0 before the first."""
        return self._mean

    @property
    def synthesis_seconds(self) -> float:
        """Total seconds the engine spent synthesizing."""
        return self._synthesis_seconds

    @property
    def audio_seconds(self) -> float:
        """Total seconds of audio the engine produced."""
        return self._audio_seconds

    async def start(self) -> None:
        """Start the lanes: a thread and a dispatcher each."""
        if self._dispatchers:
            return
        # A thread per lane: one lane when the engine takes one call at a time.
        self._executor = ThreadPoolExecutor(max_workers=self._lanes, thread_name_prefix="synth-worker",
                                            initializer=run_in_background)
        self._dispatchers = [asyncio.create_task(self._dispatch(), name=f"synth-worker-{n}")
                             for n in range(self._lanes)]

    async def close(self) -> None:
        """Refuse new work, fail the waiting jobs, let the running ones finish, stop the threads."""
        self._closed = True
        for job in self._waiting:
            if not job.outcome.done():
                job.outcome.set_exception(WorkerClosedError("the synthesis worker closed"))
        self._waiting.clear()
        self._wakeup.set()
        await asyncio.gather(*self._dispatchers)
        if self._executor is not None:
            # The dispatchers have awaited their last engine calls, so the threads are idle.
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> SynthesisWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def synthesize(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(), priority: Priority | Urgency = Priority.LIVE,
        deadline: float | None = None, timing: dict[str, float] | None = None,
        scope: str = "",
    ) -> Pcm:
        """Queue one synthesis and return its audio; engine errors are raised unchanged.

        `timing`, when given, receives `queue_seconds` and `engine_seconds`. `scope`: the
        reading scope the text is read in (synth/scope.py).
        """
        job = self._submit(text, voice, style, prosody, priority, streaming=False, scope=scope)
        limit = self._deadline if deadline is None else deadline
        within = timeout(limit)
        started = time.perf_counter()
        try:
            async with within:
                pcm = cast(Pcm, await job.outcome)
            if timing is not None:
                timing["engine_seconds"] = job.engine_seconds
                timing["queue_seconds"] = max(0.0, time.perf_counter() - started - job.engine_seconds)
            return pcm
        except TimeoutError:
            if not within.expired():
                raise  # the engine's own TimeoutError, passed on unchanged
            raise DeadlineExceededError(f"no audio within the {limit} s deadline") from None
        finally:
            self._withdraw(job)

    async def stream(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(), priority: Priority | Urgency = Priority.LIVE,
        deadline: float | None = None, timing: dict[str, float] | None = None,
        scope: str = "",
    ) -> AsyncGenerator[Pcm, None]:
        """Yield the audio sentence by sentence; the deadline bounds the wait for the engine.

        Close the iterator (aclose, or `contextlib.aclosing` around an early break) to free
        the engine at once: the worker then pulls no further sentences. `timing`, when
        given, receives `queue_seconds` once the engine is held and `engine_seconds` at the
        end (the engine's time on the whole stream). `scope` as in synthesize.
        """
        job = self._submit(text, voice, style, prosody, priority, streaming=True, scope=scope)
        assert job.chunks is not None
        limit = self._deadline if deadline is None else deadline
        started = time.perf_counter()
        try:
            try:
                async with timeout(limit):
                    await job.outcome
            except TimeoutError:
                raise DeadlineExceededError(
                    f"the engine was not free within the {limit} s deadline"
                ) from None
            if timing is not None:
                timing["queue_seconds"] = time.perf_counter() - started
            while (item := await job.chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
            if timing is not None:
                timing["engine_seconds"] = job.engine_seconds
        finally:
            job.stop.set()
            self._withdraw(job)

    def _submit(
        self, text: str, voice: str | None, style: str, prosody: Prosody,
        priority: Priority | Urgency, *, streaming: bool, scope: str = "",
    ) -> Job:
        urgency = priority if isinstance(priority, Urgency) else Urgency(priority)
        if self._closed:
            raise WorkerClosedError("the synthesis worker is closed")
        if not self._dispatchers:
            raise RuntimeError("start() the worker before submitting work")
        if self.queue_depth >= self._max_queue:
            self._make_room(urgency.priority)
        job = Job(
            text, voice, style, prosody, urgency, next(self._seq),
            asyncio.get_running_loop().create_future(),
            asyncio.Queue() if streaming else None, scope=scope,
        )
        self._waiting.append(job)
        self._wakeup.set()
        return job

    def _make_room(self, priority: Priority) -> None:
        """Displace the newest waiting WARM job for a LIVE one; otherwise refuse."""
        warm = [j for j in self._waiting if j.priority == Priority.WARM and not j.outcome.done()]
        if priority != Priority.LIVE or not warm:
            raise QueueFullError(self._retry_after())
        newest = max(warm, key=lambda j: j.seq)
        self._waiting.remove(newest)
        newest.outcome.set_exception(QueueFullError(self._retry_after()))

    def _retry_after(self) -> int:
        per_job = self._mean if self._completed else _FIRST_GUESS_SECONDS
        return max(1, math.ceil(self.load * per_job))

    def _withdraw(self, job: Job) -> None:
        """Drop a job its caller no longer waits for, if the engine has not taken it."""
        if job in self._waiting:
            self._waiting.remove(job)
        if job.outcome.done() and not job.outcome.cancelled():
            job.outcome.exception()  # mark it retrieved: nobody may be left to see it

    def _take(self) -> Job | None:
        while self._waiting:
            job = min(self._waiting, key=lambda j: (j.priority, j.seq))
            self._waiting.remove(job)
            # A cancelled caller's future is done before its cleanup runs; skip it.
            if not job.outcome.done():
                return job
        return None

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = self._take()
            if job is None:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._running += 1
            try:
                if job.chunks is None:
                    await self._run_synthesis(loop, job)
                else:
                    await self._run_stream(loop, job)
            finally:
                self._running -= 1

    async def _run_synthesis(self, loop: asyncio.AbstractEventLoop, job: Job) -> None:
        try:
            pcm, seconds = await loop.run_in_executor(self._executor, self._synthesize_in_thread, job)
        except Exception as exc:
            if not job.outcome.done():
                job.outcome.set_exception(exc)
            return
        self._record(seconds, pcm.duration, True)
        job.engine_seconds = seconds
        if not job.outcome.done():  # else the caller gave up: the audio is discarded
            job.outcome.set_result(pcm)

    def _synthesize_in_thread(self, job: Job) -> tuple[Pcm, float]:
        started = time.perf_counter()
        try:
            with as_asked(job):
                pcm = speaking.synthesize(self._engine, job.text, voice=job.voice,
                                          style=job.style, prosody=job.prosody)
            return pcm, time.perf_counter() - started
        finally:
            self._job_done()

    async def _run_stream(self, loop: asyncio.AbstractEventLoop, job: Job) -> None:
        job.outcome.set_result(None)
        await loop.run_in_executor(self._executor, self._stream_in_thread, loop, job)

    def _stream_in_thread(self, loop: asyncio.AbstractEventLoop, job: Job) -> None:
        try:
            with as_asked(job):  # the chunks are read (each next()) in the job's scope
                self._stream_chunks(loop, job)
        finally:
            self._job_done()

    def _job_done(self) -> None:
        if self._after_job is not None:
            self._after_job()

    def _stream_chunks(self, loop: asyncio.AbstractEventLoop, job: Job) -> None:
        assert job.chunks is not None
        put = job.chunks.put_nowait
        started = time.perf_counter()
        audio, finished = 0.0, False
        end: BaseException | None = None  # the consumer's last item: an error, or None for the end
        try:
            chunks = speaking.stream(self._engine, job.text, voice=job.voice, style=job.style,
                                     prosody=job.prosody)
            try:
                # Check the consumer's flag before each sentence, so leaving early frees the engine.
                while not job.stop.is_set():
                    try:
                        pcm = next(chunks)
                    except StopIteration:
                        finished = True
                        break
                    audio += pcm.duration
                    loop.call_soon_threadsafe(put, pcm)
            finally:
                close = getattr(chunks, "close", None)  # generators release their state now
                if close is not None:
                    close()
        except Exception as exc:
            end = exc
        # Callbacks run in order: the figures are up to date when the consumer sees the end.
        loop.call_soon_threadsafe(self._record_stream, job, time.perf_counter() - started,
                                  audio, finished)
        loop.call_soon_threadsafe(put, end)

    def _record_stream(self, job: Job, seconds: float, audio: float, finished: bool) -> None:
        job.engine_seconds = seconds
        self._record(seconds, audio, finished)

    def _record(self, seconds: float, audio: float, finished: bool) -> None:
        if audio == 0.0:
            return  # failed before any audio: nothing to measure speed by
        self._synthesis_seconds += seconds
        self._audio_seconds += audio
        if finished:
            self._mean = seconds if self._completed == 0 else (
                _EMA_WEIGHT * seconds + (1 - _EMA_WEIGHT) * self._mean
            )
            self._completed += 1
