"""Warm-up jobs: fill the store with named phrases at low priority, pin them, report progress.

A job's phrases are one tenant's (named in its namespace), and may be public (other tenants
play them by id when they have none of their own); the phrase files are the site's, the
default tenant's, public.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cache.keys import SpeechRequest
from cache.replicas import Replicas
from cache.store import PromptStore
from cache.tenants import DEFAULT_TENANT
from config.phrases import PhraseSpec
from synth.worker import Priority, QueueFullError

log = logging.getLogger("huiyin.warm")

# Turns a phrase into a checked request; raises an exception whose text says what is wrong.
RequestFactory = Callable[[PhraseSpec], SpeechRequest]
Progress = Callable[["WarmJob"], None]
_PUBLISH_EVERY = 1.0  # seconds between progress records in the index


@dataclass
class WarmJob:
    """One warm-up: its phrases, progress and failures."""

    id: str
    total: int
    replace_pins: bool
    tenant: str = DEFAULT_TENANT
    public: bool = False
    state: str = "queued"  # queued, running, done, failed
    done: int = 0
    synthesized: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # phrase id -> key
    started: float | None = None
    finished: float | None = None
    error: str | None = None

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the pace so far (None before the first phrase is done)."""
        if self.state != "running" or not self.started or not self.done:
            return None if self.state != "done" else 0.0
        pace = (time.time() - self.started) / self.done
        return round(pace * (self.total - self.done), 1)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready progress."""
        return {
            "job_id": self.id, "tenant": self.tenant, "public": self.public,
            "state": self.state, "total": self.total, "done": self.done,
            "synthesized": self.synthesized, "failed": self.failed, "eta_seconds": self.eta_seconds,
            "started": self.started, "finished": self.finished, "error": self.error,
        }


class Warmer:
    """Runs warm-up jobs against the store; keeps the recent ones for progress queries."""

    def __init__(
        self, store: PromptStore, make_request: RequestFactory, *, concurrency: int = 2,
        keep: int = 50, retry_delay: float = 0.5,
    ) -> None:
        self._store = store
        self._replicas = Replicas(store.storage)  # jobs' progress, for every replica
        self._make_request = make_request
        self._concurrency = concurrency
        self._keep = keep
        self._retry_delay = retry_delay
        self._jobs: dict[str, WarmJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pins_lock = asyncio.Lock()
        self._latest_replace: str | None = None
        self._published: dict[str, float] = {}  # job id -> when its progress was last recorded

    def get(self, job_id: str) -> WarmJob | None:
        """A job by id."""
        return self._jobs.get(job_id)

    def jobs(self) -> list[WarmJob]:
        """Recent jobs, newest first."""
        return sorted(self._jobs.values(), key=lambda j: j.started or time.time(), reverse=True)

    def start(
        self, phrases: Sequence[PhraseSpec], *, replace_pins: bool = False,
        progress: Progress | None = None, tenant: str = DEFAULT_TENANT, public: bool = False,
    ) -> WarmJob:
        """Start a job in the background, for the tenant. With replace_pins, the tenant's
        phrases that are not in this set lose their pin and name when it completes (the
        configured files changed)."""
        job = WarmJob(uuid.uuid4().hex, len(phrases), replace_pins, tenant, public)
        self._jobs[job.id] = job
        if replace_pins:
            self._latest_replace = job.id
        while len(self._jobs) > self._keep:
            oldest = min(self._jobs.values(), key=lambda j: j.finished or float("inf"))
            if oldest.finished is None:
                break
            del self._jobs[oldest.id]
        task = asyncio.create_task(self._run(job, list(phrases), progress), name=f"warm-{job.id[:8]}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))
        return job

    async def run(
        self, phrases: Sequence[PhraseSpec], *, replace_pins: bool = False,
        progress: Progress | None = None, public: bool = False,
    ) -> WarmJob:
        """Start a job (for the default tenant) and wait for it."""
        job = self.start(phrases, replace_pins=replace_pins, progress=progress, public=public)
        await self._tasks[job.id]
        return job

    async def wait(self, job_id: str) -> None:
        """Until a job started here has ended (at once when it has)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        """Stop running jobs."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, job: WarmJob, spec: PhraseSpec) -> None:
        try:
            request = dataclasses.replace(self._make_request(spec), tenant=job.tenant)
        except Exception as exc:  # the factory names the field; keep its message
            job.failed.append({"id": spec.id, "where": spec.where, "reason": str(exc)})
            return
        evicted = 0
        while True:
            try:
                stored = await self._store.get_or_synthesize(request, priority=Priority.WARM)
                # Pinned first, so eviction cannot take it while its encodings are made.
                if not await self._store.name(
                    stored.key, phrase_id=spec.id, tags=spec.tags, pinned=True,
                    public=job.public, text=request.text,
                ):
                    evicted += 1  # evicted between synthesis and pinning
                    if evicted < 3:
                        continue
                    raise RuntimeError("evicted before it could be pinned; is cache_max_bytes "
                                       "smaller than the pinned phrases?")
                for fmt in spec.formats:  # written, not only answered
                    await self._store.variant(stored.phrase, fmt, durable=True)
                job.keys[spec.id] = stored.key
                job.synthesized += 0 if stored.cached else 1
                return
            except QueueFullError as exc:
                # Live callers come first: wait our turn instead of failing the phrase.
                await asyncio.sleep(max(self._retry_delay, min(exc.retry_after, 5)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("warming %s failed: %s", spec.where, exc)
                job.failed.append({"id": spec.id, "where": spec.where,
                                   "reason": str(exc) or type(exc).__name__})
                return

    async def _replace_pins(self, job: WarmJob) -> None:
        """Unpin what the phrase files no longer name. A phrase that failed keeps the audio
        it had; a newer replacing job, started meanwhile, decides instead of this one."""
        async with self._pins_lock:
            if job.id != self._latest_replace:
                log.info("warm-up %s: a newer warm-up of the phrase files decides the pins",
                         job.id[:8])
                return
            keep = list(job.keys.values())
            for failure in job.failed:
                current = await self._store.lookup(phrase_id=failure["id"], tenant=job.tenant)
                if current is not None and current.tenant == job.tenant:
                    keep.append(current.key)
            unpinned = await self._store.unpin_except(keep, job.tenant)
        if unpinned:
            log.info("unpinned %d phrases no longer in the phrase files", unpinned)

    async def _publish(self, job: WarmJob, *, final: bool = False) -> None:
        """Record progress in the index (at most once a second until the end), so that any
        replica answers GET /admin/warm/{id}; a failure to record never stops the job."""
        now = time.monotonic()
        if not final and now - self._published.get(job.id, 0.0) < _PUBLISH_EVERY:
            return
        self._published[job.id] = now
        try:
            await self._replicas.record_job(job.id, job.state, job.as_dict())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("warm-up %s: progress not recorded (%s)", job.id[:8], type(exc).__name__)
        if final:
            self._published.pop(job.id, None)

    async def _run(self, job: WarmJob, phrases: list[PhraseSpec], progress: Progress | None) -> None:
        job.state, job.started = "running", time.time()
        await self._publish(job, final=True)
        pending = iter(phrases)

        async def lane() -> None:
            for spec in pending:
                await self._one(job, spec)
                job.done += 1
                if progress is not None:
                    progress(job)
                await self._publish(job)

        try:
            await asyncio.gather(*[lane() for _ in range(self._concurrency)])
            if job.replace_pins:
                await self._replace_pins(job)
            job.state = "done"
        except asyncio.CancelledError:
            job.state, job.error = "failed", "cancelled"
            raise
        except Exception as exc:
            log.exception("warm-up job %s failed", job.id)
            job.state, job.error = "failed", str(exc)
        finally:
            job.finished = time.time()
            await asyncio.shield(self._publish(job, final=True))
            log.info("warm-up %s: %d/%d phrases, %d synthesized, %d failed", job.id[:8],
                     job.done, job.total, job.synthesized, len(job.failed))
