"""The syntheses under way, one per key: each a `Making` (a `Generation`, cache/flight.py)
that whole requests, streams and warm-ups join, run as a task that synthesizes and keeps
the result (cache/keeping.py). The store starts one once it has looked the key up and, on a
shared index, taken its lease so that one replica synthesizes it (cache/store.py).

Its callers say what they ask of the result (cache/storing.py): it is kept when any of them
wants it kept, until the soonest expiry any of them asks; when none does (no-store), it is
answered from memory and nothing of it stays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

from cache.audio import StoredPhrase
from cache.flight import Generation
from cache.index import Phrase, sooner
from cache.keeping import Keeper
from cache.keys import SpeechRequest
from cache.storage import Storage
from cache.synthesizer import Synthesizer
from synth.engine import Pcm, SilentAudioError, audible
from synth.memo import FLEETING
from synth.worker import Priority, Urgency

log = logging.getLogger("huiyin.cache")

# What the index had for a key: its row, and its master bytes when they are intact.
Lookup = tuple[Phrase | None, bytes | None]


class Making(Generation[StoredPhrase]):
    """One synthesis of a key, and what its callers ask of its result: kept or not, until
    when, and whether it replaces the stored phrase's audio and encodings (`fresh`)."""

    def __init__(self, *, streamed: bool, urgency: Urgency, fresh: bool) -> None:
        super().__init__(streamed=streamed, urgency=urgency)
        self.fresh = fresh
        self.keep = False
        self.expires: float | None = None

    def want(self, keep: bool, expires: float | None) -> None:
        """A caller joined: kept if it wants it kept, by the soonest expiry asked."""
        if not keep:
            return
        self.expires = expires if not self.keep else sooner(self.expires, expires)
        self.keep = True


class Generations:
    """The generations under way, by key."""

    def __init__(
        self, storage: Storage, keeper: Keeper, synthesizer: Callable[[], Synthesizer]
    ) -> None:
        self._storage = storage
        self._keeper = keeper
        self._synthesizer = synthesizer
        self._running: dict[str, Making] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._running

    def __len__(self) -> int:
        return len(self._running)

    def get(self, key: str) -> Making | None:
        """The generation of a key under way, or None."""
        return self._running.get(key)

    def values(self) -> Iterator[Making]:
        """Every generation under way."""
        return iter(list(self._running.values()))

    def unkeep(self, key: str) -> None:
        """The key was purged: a synthesis of it under way answers its callers but keeps
        nothing."""
        making = self._running.get(key)
        if making is not None:
            making.keep = False

    def start(
        self, request: SpeechRequest, key: str, priority: Priority, *, streamed: bool,
        found: Lookup, leased: bool, fresh: bool = False,
    ) -> Making:
        """Start the generation of a key the index has no good phrase of (`found`: what it
        had; `leased`: this process holds the key's lease, given back when it ends;
        `fresh`: it replaces the stored phrase, encodings included). Kept only once a
        caller wants it kept (Making.want)."""
        generation = Making(streamed=streamed, urgency=Urgency(priority), fresh=fresh)
        self._running[key] = generation
        generation.task = asyncio.create_task(
            self._generate(generation, request, key, found, leased), name=f"synthesize-{key[:8]}"
        )
        # A task cancelled before its first step never runs its own clean-up: done here.
        generation.task.add_done_callback(
            lambda done: self._unstarted(done, generation, key, leased))
        return generation

    def _unstarted(self, done: asyncio.Task[None], generation: Making, key: str,
                   leased: bool) -> None:
        if done.cancelled() and not generation.finished:  # its coroutine never ran
            self.drop(key, generation)
            generation.stop()
            if leased:
                self._storage.leases.release_after(key, None)

    def drop(self, key: str, generation: Generation[StoredPhrase]) -> None:
        """Forget a generation (a stopped stream's) unless another took its place."""
        if self._running.get(key) is generation:
            del self._running[key]

    async def _generate(
        self, generation: Making, request: SpeechRequest, key: str, found: Lookup, leased: bool,
    ) -> None:
        row = found[0]  # a damaged phrase's row, replaced by the new one
        if not generation.keep:
            # Its first caller wants nothing kept: the engine's memos keep nothing of its
            # text either (this task's own context; the worker carries it to its thread).
            FLEETING.set(True)
        try:
            started = time.perf_counter()
            if generation.streamed:
                chunks = self._synthesizer().stream(request, generation.urgency)
                try:
                    async for chunk in chunks:
                        generation.add(chunk)
                finally:
                    await chunks.aclose()
                if not generation.chunks:
                    raise SilentAudioError("the engine returned no audio")
                pcm = Pcm.concat(generation.chunks)
            else:
                pcm = await self._synthesizer().synthesize(request, generation.urgency)
            if not audible(pcm.samples):  # nothing said: never stored, never a hit
                raise SilentAudioError(f"the {request.engine} engine returned only silence")
            generation.end()
            seconds = time.perf_counter() - started
            version = self._synthesizer().engine_version(request.engine)
            data = await self._keeper.encode(pcm)
            if generation.keep:  # read once its audio is whole: every caller so far is in
                stored = await self._keeper.keep(
                    request, key, pcm, data, seconds, engine_version=version,
                    replacing=row is not None, expires=generation.expires,
                    fresh=generation.fresh,
                )
            else:
                stored = self._keeper.fleeting(request, key, pcm, data, seconds,
                                               engine_version=version)
            generation.finish(stored)
            if leased:  # kept until its row is in the index, where the others look
                leased = False
                self._storage.leases.release_after(key, stored.saved)
        except asyncio.CancelledError:
            generation.stop()
            raise
        except Exception as exc:
            if generation.ended:  # the audio was heard; only storing it failed
                log.exception("phrase %s… was synthesized but could not be stored", key[:8])
            generation.fail(exc)
        finally:
            self.drop(key, generation)
            if leased:
                await asyncio.shield(self._storage.leases.release(key))
