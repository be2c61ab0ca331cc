"""The site's lexicon, kept in the index so that every replica reads with the same words,
and what a change of it does to the stored phrases.

Each tenant has words of its own over the site's (cache/overlays.py), followed here with
them. A key hashes what the engine says (its symbol ids), so a lexicon change, the site's
or a tenant's, re-keys exactly the prompts it reads differently: those are found by
reading every stored phrase again (the frontend is fast), pinned ones are made again in
the background under their phrase ids, and the others are made on their next request.
Phrases stored under their old readings stay until eviction (their /prompts/ URLs keep
playing what they played). A phrase whose text the index does not keep (`store_text`)
cannot be read again, so no change is known to affect it: it keeps its audio until it
expires or is evicted, and a request for its text (read with the new words) or a warm-up
of its phrase file makes the new reading under the new key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from cache.audio import StoredPhrase
from cache.index import Phrase
from cache.keys import SpeechRequest, phrase_key
from cache.overlays import (
    Overlays,
    put_tenant_word,
    remove_tenant_word,
    tenant_words,
    words_fingerprint,
)
from cache.storage import Storage
from cache.synthesizer import Synthesizer
from cache.tables import LexiconWordRow
from synth.engine import InvalidInputError, SynthesisError
from synth.worker import Priority

log = logging.getLogger("huiyin.cache")

_WORDS = cast(Table, LexiconWordRow.__table__)


@dataclass(frozen=True)
class LexiconChange:
    """What a lexicon change did: stored phrases that now read differently, and how many of
    them (the pinned ones) are being made again."""

    affected: int
    rewarming: int

    def as_dict(self) -> dict[str, int]:
        """For answers and logs."""
        return {"affected": self.affected, "rewarming": self.rewarming}


def site_words(engine: Engine) -> dict[str, str]:
    """Every site word and its pinyin (blocking)."""
    with engine.connect() as connection:
        return {r.word: r.pinyin for r in connection.execute(select(_WORDS).order_by(_WORDS.c.word))}


def check_entry(word: str, pinyin: str) -> None:
    """Refuse a word or reading that one line of a lexicon file cannot hold: the engines
    read the site's words as 'word<TAB>pin1 yin1' lines, where '#' starts a comment and
    whitespace ends the word (InvalidInputError names the field)."""
    if not word or any(c == "#" or c.isspace() for c in word):
        raise InvalidInputError(
            "word", "a word is Chinese characters or Latin letters, without '#' or spaces")
    if "#" in pinyin:
        raise InvalidInputError("pinyin", "pinyin is toned syllables, as 'chong2 qing4', without '#'")


def put_word(engine: Engine, word: str, pinyin: str) -> None:
    """Add or change a site word, once check_entry allows it (blocking)."""
    check_entry(word, pinyin)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_WORDS).values(word=word, pinyin=pinyin, updated=time.time())
    with engine.begin() as connection:
        connection.execute(statement.on_conflict_do_update(
            index_elements=[_WORDS.c.word],
            set_={"pinyin": statement.excluded.pinyin, "updated": statement.excluded.updated}))


def remove_word(engine: Engine, word: str) -> bool:
    """Remove a site word; False when it was not there (blocking)."""
    with engine.begin() as connection:
        return bool(connection.execute(delete(_WORDS).where(_WORDS.c.word == word)).rowcount)


def _fingerprint(engine: Engine) -> tuple[int, float, int, float]:
    """The site's and the tenants' words' counts and newest edits, on one connection."""
    with engine.connect() as connection:
        count, newest = connection.execute(
            select(func.count(), func.coalesce(func.max(_WORDS.c.updated), 0.0))).one()
        theirs, latest = words_fingerprint(connection)
    return int(count), float(newest), theirs, latest


class SiteLexicon:
    """The site's words in the index, and each tenant's (`tenant`: None for the site's),
    off the event loop."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.overlays = Overlays()  # every tenant's words, as last applied

    async def entries(self, tenant: str | None = None) -> dict[str, str]:
        """Every word of the site (or of a tenant) and its pinyin ('chong2 qing4')."""
        engine = self._storage.index.engine
        if tenant is not None:
            return (await self._storage.read(lambda: tenant_words(engine))).get(tenant, {})
        return await self._storage.read(lambda: site_words(engine))

    async def put(self, word: str, pinyin: str, tenant: str | None = None) -> None:
        """Add or change a word (checked by the engines first; check_entry refuses what
        the engines' lexicon lines cannot hold, which they would not see to check)."""
        check_entry(word, pinyin)
        engine = self._storage.index.engine
        if tenant is not None:
            await self._storage.write(lambda: put_tenant_word(engine, tenant, word, pinyin))
        else:
            await self._storage.write(lambda: put_word(engine, word, pinyin))

    async def remove(self, word: str, tenant: str | None = None) -> bool:
        """Remove a word; False when it was not there."""
        engine = self._storage.index.engine
        if tenant is not None:
            return await self._storage.write(lambda: remove_tenant_word(engine, tenant, word))
        return await self._storage.write(lambda: remove_word(engine, word))

    async def fingerprint(self) -> tuple[int, float, int, float]:
        """What changes whenever the site's or a tenant's words do (their counts, the
        newest edits' times)."""
        engine = self._storage.index.engine
        return await self._storage.read(lambda: _fingerprint(engine))

    async def apply(self, synthesizer: Synthesizer) -> dict[str, str]:
        """Read with the index's words from now on: the site's on the synthesizer, the
        tenants' here; the site's words are returned."""
        engine = self._storage.index.engine
        entries = await self._storage.read(lambda: site_words(engine))
        overlays = await self._storage.read(lambda: tenant_words(engine))
        await self._storage.run(lambda: synthesizer.set_site_lexicon(entries))
        self.overlays.set(overlays)
        return entries


class Phrases(Protocol):
    """What a lexicon change needs of the store."""

    @property
    def synthesizer(self) -> Synthesizer:
        """The synthesizer (it reads with the lexicon)."""
        ...

    async def get_or_synthesize(
        self, request: SpeechRequest, *, priority: Priority = Priority.LIVE
    ) -> StoredPhrase:
        """The stored phrase for a request, made when missing."""
        ...

    async def name(
        self, key: str, *, phrase_id: str | None, tags: Sequence[str] = (), pinned: bool = True,
        public: bool = False, text: str | None = None,
    ) -> bool:
        """Give a stored phrase its phrase id and pin (and keep its text)."""
        ...


class LexiconFollower:
    """Applies the index's site lexicon to the synthesizer, now and whenever it changes, and
    makes again what reads differently."""

    def __init__(
        self, words: SiteLexicon, storage: Storage, phrases: Phrases,
        forget_keys: Callable[[], None],
    ) -> None:
        self._words = words
        self._storage = storage
        self._phrases = phrases
        self._forget_keys = forget_keys
        self._seen: tuple[int, float, int, float] | None = None
        self._rewarming: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Read with the index's words from the start (none: nothing to do)."""
        seen = await self._words.fingerprint()
        if seen[0] or seen[2]:
            await self.apply(rewarm=False)
        else:
            self._seen = seen

    async def stop(self) -> None:
        """Stop making phrases again."""
        for task in list(self._rewarming):
            task.cancel()
        await asyncio.gather(*self._rewarming, return_exceptions=True)

    async def follow(self) -> None:
        """Apply the words if they changed since they were last read."""
        if await self._words.fingerprint() != self._seen:
            await self.apply()

    async def apply(self, *, rewarm: bool = True) -> LexiconChange:
        """Read with the index's words from now on, and find the stored phrases they read
        differently: pinned ones are made again in the background under their phrase ids
        (with `rewarm`), the others on their next request."""
        synthesizer = self._phrases.synthesizer
        seen = await self._words.fingerprint()
        entries = await self._words.apply(synthesizer)
        self._seen = seen
        self._forget_keys()  # requests' keys follow what is said
        index, overlays = self._storage.index, self._words.overlays
        rows = await self._storage.read(index.all_phrases)
        affected = await self._storage.run(lambda: _read_again(rows, synthesizer, overlays))
        pinned = [(row, request) for row, request in affected if row.pinned]
        if rewarm and pinned:
            task = asyncio.create_task(self._rewarm(pinned), name="lexicon-rewarm")
            self._rewarming.add(task)
            task.add_done_callback(self._rewarming.discard)
        change = LexiconChange(affected=len(affected), rewarming=len(pinned) if rewarm else 0)
        log.info("site lexicon: %d words (and tenants' own); %d stored phrases read differently, %d pinned "
                 "being made again", len(entries), change.affected, change.rewarming)
        return change

    async def rewarmed(self) -> None:
        """Wait for the pinned phrases being made again."""
        while self._rewarming:
            await asyncio.gather(*self._rewarming, return_exceptions=True)

    async def _rewarm(self, pinned: list[tuple[Phrase, SpeechRequest]]) -> None:
        for row, request in pinned:
            try:
                made = await self._phrases.get_or_synthesize(request, priority=Priority.WARM)
                await self._phrases.name(made.key, phrase_id=row.phrase_id, tags=row.tags,
                                         public=row.public, text=request.text)
                if made.key != row.key:
                    await self._phrases.name(row.key, phrase_id=None, tags=(), pinned=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("phrase %s… could not be made again for the new lexicon", row.key[:8])


def _read_again(
    rows: list[Phrase], synthesizer: Synthesizer, overlays: Overlays
) -> list[tuple[Phrase, SpeechRequest]]:
    """The stored phrases whose key, read again now (each with its tenant's words), is not
    theirs (blocking)."""
    out = []
    for row in rows:
        if row.engine_version != synthesizer.engine_version(row.engine):
            continue  # made by another engine version: no request reaches it now
        if row.text is None:
            # Its text is not kept (store_text): it cannot be read again, nor known to read
            # differently. It is kept as it is (its audio, its name and pin) until it expires
            # or is evicted; its text, asked again, reads into the new key and is made anew.
            continue
        request = overlays.scoped(SpeechRequest.create(
            row.text, engine=row.engine, voice=row.voice, style=row.style,
            speed=row.speed, pitch=row.pitch, volume=row.volume), row.tenant)
        try:
            spoken = synthesizer.spoken(request)
        except SynthesisError:
            continue
        if phrase_key(request, row.engine_version, spoken) != row.key:
            out.append((row, request))
    return out
