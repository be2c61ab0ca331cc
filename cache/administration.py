"""What admin routes, commands and maintenance do with the stored phrases besides serving
them, none of it counted as a listener's hit: look a row up, name and pin, delete and purge,
search, follow the site's words, check, evict and report the counters. PromptStore
(cache/store.py) serves on top of it, with the parts both share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from cache.check import CheckReport, check
from cache.generations import Generations
from cache.index import Phrase
from cache.keeping import Keeper
from cache.keys import is_key
from cache.lexicon import LexiconChange, LexiconFollower
from cache.maintenance import Maintenance, Stats
from cache.purge import Purged, Selector, purge
from cache.retention import kept_text
from cache.rows import RowCache
from cache.storage import Storage
from cache.tenants import DEFAULT_TENANT
from cache.upkeep import Upkeep
from cache.variants import Encodings


class Administration:
    """The store's administration and maintenance, on the parts PromptStore makes."""

    # Made by PromptStore.__init__, shared with what it serves.

    _storage: Storage
    _rows: RowCache
    _keeper: Keeper
    _encodings: Encodings
    _generations: Generations
    _maintenance: Maintenance
    _stats: Stats
    _upkeep: Upkeep
    _lexicon: LexiconFollower

    # lookups, naming, deleting, searching

    async def lookup(
        self, key: str | None = None, *, phrase_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> Phrase | None:
        """For admin and maintenance, never counted as a hit: the row of a key, or of a phrase
        id's current phrase in `tenant`'s namespace (Index.named), as the index has it."""
        index = self._storage.index
        if phrase_id is not None:
            return await self._storage.read(lambda: index.named(phrase_id, tenant))
        if key is None or not is_key(key):
            return None
        return await self._storage.read(lambda: index.get(key))

    async def name(
        self, key: str, *, phrase_id: str | None, tags: Sequence[str] = (), pinned: bool = True,
        public: bool = False, text: str | None = None,
    ) -> bool:
        """Give a stored phrase its phrase id and tags, and pin it (another phrase of its
        tenant with that id loses it); `public`: other tenants may play it under that id.
        Its `text` is kept when `store_text` keeps named phrases' texts. False when the
        phrase is no longer stored."""
        index = self._storage.index
        kept = None if text is None else kept_text(
            self._keeper.store_text, text, named=phrase_id is not None)
        tenant = await self._storage.write(lambda: index.set_named(
            key, phrase_id=phrase_id, tags=tags, pinned=pinned, public=public, text=kept))
        if tenant is not None:
            self._rows.rename(key, tenant=tenant, phrase_id=phrase_id, tags=tags, pinned=pinned,
                              public=public)
        return tenant is not None

    async def unpin_except(self, keep: Sequence[str], tenant: str = DEFAULT_TENANT) -> int:
        """Unpin and unname every pinned phrase of the tenant whose key is not in keep."""
        index = self._storage.index
        gone = await self._storage.write(lambda: index.unpin_except(keep, tenant))
        self._rows.unpin(gone)
        return len(gone)

    async def delete(self, key: str) -> bool:
        """Remove a phrase and its variants (every replica forgets it); False if it was
        not stored."""
        if await self.lookup(key) is None:
            return False
        await self._upkeep.forget({key})
        await self._storage.remove([key], log=True)
        await self._upkeep.forget({key})
        return True

    async def purge(self, selector: Selector) -> Purged:
        """Remove the stored prompts a selector selects, and every copy of them this
        replica holds; the others forget theirs within a maintenance round."""
        return await purge(self._storage, selector, self._upkeep.forget)

    def _forget(self, key: str) -> None:
        self._rows.discard(key)
        self._encodings.forget(key)

    async def search(self, **kwargs: Any) -> tuple[int, list[Phrase]]:
        """Search the index (see Index.search)."""
        index = self._storage.index
        return await self._storage.read(lambda: index.search(**kwargs))

    # the site lexicon

    async def relexicon(self, *, rewarm: bool = True) -> LexiconChange:
        """Read with the index's site lexicon from now on; the stored phrases it reads
        differently are made again (pinned ones now, with `rewarm`; see cache/lexicon.py)."""
        return await self._lexicon.apply(rewarm=rewarm)

    async def rewarmed(self) -> None:
        """Wait for the pinned phrases a lexicon change is making again."""
        await self._lexicon.rewarmed()

    def on_forgotten(self, forget: Callable[[set[str]], None]) -> None:
        """Have `forget` called with the keys purged, expired or made again, here or on
        another replica: what the gateway keeps of them (its URL memo) goes too."""
        self._upkeep.callbacks.append(forget)

    async def upkeep(self) -> None:
        """A maintenance round's forgetting and tidying, now (see cache/upkeep.py)."""
        await self._upkeep.round()

    async def _follow_lexicon(self) -> None:
        """Each maintenance round: a lexicon changed elsewhere (another replica, the command
        line) is applied here too."""
        await self._lexicon.follow()

    # maintenance

    def stats(self, *, every_replica: bool = False) -> Stats:
        """A snapshot of this process's counters (the metrics: summed per replica), or with
        `every_replica` of all of them on a shared index (as of the last usage flush); and of
        the index's entries and bytes with the writes answered but not landed yet."""
        totals = self._storage.totals
        mine = dataclasses.replace(self._stats, entries=totals.entries, bytes=totals.bytes)
        return self._maintenance.every_replica(mine) if every_replica else mine

    async def evict(self) -> int:
        """Remove least recently used unpinned phrases until the store fits its byte budget."""
        return await self._maintenance.evict()

    async def settled(self) -> None:
        """Wait until the phrases and encodings answered so far are written."""
        await self._storage.settled()

    async def flush_usage(self) -> None:
        """Write the usage counted so far to the index now."""
        await self._maintenance.flush()

    async def check(self, *, fix: bool = False, grace: float = 60.0) -> CheckReport:
        """Reconcile index and files (see cache.check)."""
        return await check(
            self._storage, fix=fix, grace=grace, forget=self._forget,
            forget_variant=self._encodings.discard,
            busy=lambda key: key in self._generations,
        )
