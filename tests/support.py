"""Test helpers shared by several test modules."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cache.keys import SpeechRequest
from cache.objects import Bucket, ObjectStore
from cache.store import PromptStore
from synth.compat import timeout as time_limit
from synth.engine import Pcm, Prosody
from synth.fastspeech2 import FastSpeech2Engine
from synth.ssml import speaking
from synth.worker import Priority

REPO = Path(__file__).resolve().parents[1]
# Generous bound for waits on threads and processes, so a bug fails the test instead of hanging it.
PATIENCE = 20.0
# Seconds between a test store's maintenance rounds: usage flushes, eviction, expiry and the
# lexicon's follow-up run among a test's requests, as they would in a busy gateway.
MAINTENANCE = 0.005


def until_sync(
    condition: Callable[[], bool], timeout: float = PATIENCE, *, interval: float = 0.005,
    what: str = "the condition",
) -> None:
    """Wait, outside any event loop, until `condition` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(interval)


async def until(
    condition: Callable[[], bool], timeout: float = PATIENCE, *, interval: float = 0.005,
    what: str = "the condition",
) -> None:
    """Let the event loop run until `condition` holds; fail after `timeout` seconds."""
    try:
        async with time_limit(timeout):
            while not condition():
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"{what} did not hold within {timeout} s") from None


class Clock:
    """A clock that moves only when a test moves it, from the real monotonic clock's now:
    what ages by time is aged at once, with no waiting."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass."""
        self.now += seconds


class WrappedEngine:
    """The real engine behind a test's own hooks: a subclass overrides `stream` (and
    `synthesize`, which is the concatenation of `stream` unless overridden)."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        self._engine = engine
        self.name, self.version, self.sample_rate = engine.name, engine.version, engine.sample_rate

    def voices(self) -> Any:
        return self._engine.voices()

    def setting_ranges(self) -> Any:
        return self._engine.setting_ranges()

    def spoken_form(self, text: str) -> str:
        return self._engine.spoken_form(text)

    def synthesize(self, text: str, **kw: Any) -> Pcm:
        return Pcm.concat(list(self.stream(text, **kw)))

    def stream(self, text: str, **kw: Any) -> Iterator[Pcm]:
        return self._engine.stream(text, **kw)


class CountingSynthesizer:
    """The real engine, one call at a time off the loop, counting calls."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        self.engine = engine
        self.calls = 0
        self.texts: list[str] = []
        self._lock = asyncio.Lock()

    def engine_version(self, engine: str) -> str:
        return self.engine.version

    def spoken(self, request: SpeechRequest) -> str:
        return speaking.spoken_form(self.engine, request.text, request.voice, request.style,
                                    Prosody(request.speed, request.pitch, request.volume))

    def set_site_lexicon(self, entries: Mapping[str, str]) -> None:
        self.engine.set_site_lexicon(entries)  # a shared engine: tests put back what they set

    async def stream(self, request: SpeechRequest, priority: Priority) -> AsyncIterator[Pcm]:
        """Sentence by sentence, each off the loop; counted as one synthesis."""
        self.calls += 1
        self.texts.append(request.text)
        async with self._lock:
            loop = asyncio.get_running_loop()
            chunks = speaking.stream(
                self.engine, request.text, voice=request.voice, style=request.style,
                prosody=Prosody(request.speed, request.pitch, request.volume),
            )
            # In the caller's context, as the synthesis worker carries it to its thread (a
            # no-store request's text is remembered by no memo: synth/memo.py).
            context = contextvars.copy_context()
            while (chunk := await loop.run_in_executor(
                    None, context.run, next, chunks, None)) is not None:
                yield chunk

    async def synthesize(self, request: SpeechRequest, priority: Priority) -> Pcm:
        self.calls += 1
        self.texts.append(request.text)
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(
                None, contextvars.copy_context().run,
                lambda: speaking.synthesize(
                    self.engine, request.text, voice=request.voice, style=request.style,
                    prosody=Prosody(request.speed, request.pitch, request.volume),
                ),
            )


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_process(
    env: dict[str, str], *, command: list[str] | None = None, timeout: float = 60.0,
    log: Path | None = None, port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`huiyin serve` (or `command`) as a process on `port` (a free one by default); yields
    (base URL, process).

    Its stderr is a pipe to read after it exits, or the file `log` for a chatty server (a
    pipe nobody reads could fill up and stall it). Waits for /readyz; on exit sends SIGTERM
    and waits, killing it only if it hangs.
    """
    port = port or free_port()
    full_env = {**os.environ, "HUIYIN_PORT": str(port), "HUIYIN_HOST": "127.0.0.1", **env}
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(log.open("w")) if log is not None else subprocess.PIPE
        proc = subprocess.Popen(
            command or [sys.executable, "-m", "gateway.cli", "serve"], cwd=REPO, env=full_env,
            stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            if proc.poll() is not None:
                said = log.read_text() if log is not None else proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"the gateway exited: {said}") from None
            return False

    try:
        until_sync(ready, timeout, interval=0.1, what="the gateway's readiness")
        yield base, proc
    finally:
        stop_process(proc)
        if proc.stderr:
            proc.stderr.close()


def stop_process(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """SIGTERM, then wait; kill only a process that hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Backing:
    """What a store under test stands on: an index, and where its audio goes."""

    database_url: str | None
    bucket: Bucket | None

    def audio(self, data_dir: Path, cache_bytes: int = 1 << 30) -> ObjectStore | None:
        """A new handle on the bucket (blocking), or None for the local folder."""
        if self.bucket is None:
            return None
        return ObjectStore(self.bucket, data_dir / "bucket-cache", cache_bytes)


LOCAL = Backing(None, None)  # SQLite and a folder, both in the store's data folder


def new_store(data_dir: Path, synthesizer: Any, **options: Any) -> PromptStore:
    """A new (unopened) PromptStore: `options` as PromptStore takes them, maintenance every
    MAINTENANCE seconds unless they say otherwise."""
    options.setdefault("maintenance_interval", MAINTENANCE)
    return PromptStore(data_dir, synthesizer, **options)


class Stores:
    """Opens a test's stores on one backing (see `opening_stores`)."""

    def __init__(self, synthesizer: Any, backing: Backing, root: Path | None,
                 options: dict[str, Any]) -> None:
        self.synthesizer = synthesizer
        self.backing = backing
        self.opened: list[PromptStore] = []
        self._root = root
        self._options = options
        self._count = 0

    def folder(self) -> Path:
        """A data folder no store of this test has had yet."""
        if self._root is None:
            raise ValueError("these stores have no root folder: name each one's data folder")
        self._count += 1
        return self._root / f"store-{self._count}"

    async def open(self, data_dir: Path | None = None, synthesizer: Any = None,
                   **options: Any) -> PromptStore:
        """A store opened in `data_dir` (a new folder by default) on the backing, in front
        of `synthesizer` (the one given to all by default); `options` as PromptStore takes
        them, over the ones given to all (an `audio` of its own among them)."""
        data_dir = data_dir or self.folder()
        options = {"database_url": self.backing.database_url, **self._options, **options}
        if "audio" not in options:
            options["audio"] = await asyncio.to_thread(self.backing.audio, data_dir)
        store = new_store(data_dir, synthesizer or self.synthesizer, **options)
        await store.open()
        self.opened.append(store)
        return store


@contextlib.asynccontextmanager
async def opening_stores(
    synthesizer: Any, backing: Backing = LOCAL, root: Path | None = None, **options: Any
) -> AsyncIterator[Stores]:
    """Opens stores in front of `synthesizer` on `backing` (new data folders under `root`),
    each with maintenance every MAINTENANCE seconds unless `options` say otherwise; on exit
    closes every one, in the order they were opened."""
    stores = Stores(synthesizer, backing, root, options)
    try:
        yield stores
    finally:
        for store in stores.opened:
            await store.close()


async def same_store(store: PromptStore, synth: Any, **options: Any) -> PromptStore:
    """A new (unopened) PromptStore on the same data folder, index and audio as `store`, as
    after a restart."""
    audio = None
    if isinstance(store.files, ObjectStore):
        old = store.files
        audio = await asyncio.to_thread(ObjectStore, old.bucket, old.cache_dir, old.cache_bytes)
    return new_store(store.data_dir, synth, database_url=store.database_url, audio=audio,
                     **options)


class Admitting:
    """An admission for store tests: `admit` is the given coroutine; `before_reading`
    records the requests it is asked about and lets them go on."""

    def __init__(self, admit: Callable[[SpeechRequest], Awaitable[None]], client: str = "test",
                 tenant: str = "default") -> None:
        self.client = client
        self.tenant = tenant
        self._admit = admit
        self.admitted: list[SpeechRequest] = []
        self.read: list[SpeechRequest] = []

    async def before_reading(self, request: SpeechRequest) -> None:
        self.read.append(request)

    async def admit(self, request: SpeechRequest) -> None:
        self.admitted.append(request)
        await self._admit(request)
