"""Requests read into keys: on the frontend's fair share (cache/reading.py), remembered so
that a repeated request skips the engine's reading of its text, and forgotten when texts
may read differently (a lexicon change: the reading epoch moves) or when their prompts are
purged (the memo holds the requests, and so their texts)."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable

from cache.admission import Admission
from cache.keys import SpeechRequest, phrase_key
from cache.reading import FairShare
from cache.synthesizer import Synthesizer
from synth.memo import fleeting

# Requests remembered: a repeated request skips the engine's reading of its text.
_KEY_MEMO = 20_000
# Whose share of the frontend's time reading is when no caller is named (warm-ups, the lexicon).
INTERNAL = "internal"


class Keying:
    """Reads requests into keys, and remembers the keys of the requests it read."""

    def __init__(self, synthesizer: Callable[[], Synthesizer]) -> None:
        self._synthesizer = synthesizer
        self._keys: OrderedDict[SpeechRequest, str] = OrderedDict()
        self.epoch = 0
        self.reading = FairShare()

    def read_anew(self) -> None:
        """Texts may read differently from now on: every remembered key is forgotten."""
        self._keys.clear()
        self.epoch += 1

    def forget(self, keys: set[str]) -> None:
        """Forget the requests that read into these keys (their prompts were purged)."""
        for request in [r for r, k in self._keys.items() if k in keys]:
            del self._keys[request]

    async def key_for(
        self, request: SpeechRequest, admission: Admission | None, *, remember: bool,
    ) -> str:
        """The request's key (see PromptStore.key_for)."""
        key = self._keys.get(request)
        if key is not None:
            self._keys.move_to_end(request)
            return key
        if admission is not None:
            await admission.before_reading(request)
        synthesizer = self._synthesizer()
        epoch = self.epoch
        with contextlib.nullcontext() if remember else fleeting():  # no memo keeps its text
            spoken = await self.reading.run(
                INTERNAL if admission is None else admission.client,
                lambda: synthesizer.spoken(request))
        key = phrase_key(request, synthesizer.engine_version(request.engine), spoken)
        if remember and epoch == self.epoch:  # read with the lexicon still in force
            self._keys[request] = key
            if len(self._keys) > _KEY_MEMO:
                self._keys.popitem(last=False)
        return key
