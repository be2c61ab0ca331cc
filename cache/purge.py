"""Purging: removing stored prompts on an operator's word, by what selects them.

A selector names prompts by their key, by an exact text and its voice settings (read into
its keys: one for each tenant it is read as, since a key hashes its tenant and a tenant's
words), by a tag, by a phrase file (its phrase ids, and the keys its texts read into), by
age or by tenant; every condition given must hold. The rows, their files or bucket objects
and their encodings are removed, and the keys go to the purge log in the same transaction,
so every replica forgets what it holds of them in memory within a maintenance round
(cache/forgetting.py); this replica forgets them at once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, or_, select
from sqlalchemy.engine import Engine

from cache.index import now
from cache.storage import Storage
from cache.tables import PhraseRow

_PHRASES: Table = PhraseRow.__table__  # type: ignore[assignment]
_BATCH = 1000  # keys removed per index transaction


@dataclass(frozen=True)
class Selector:
    """Which stored prompts a purge removes: those that meet every condition given."""

    key: str | None = None
    # The keys an exact text and its voice settings read into (one per tenant read as).
    text_keys: tuple[str, ...] | None = None
    tag: str | None = None
    phrase_ids: tuple[str, ...] | None = None  # a phrase file's ids,
    phrase_keys: tuple[str, ...] = ()  # and the keys its texts read into
    older_than: float | None = None  # seconds since the prompt was made
    tenant: str | None = None  # whose prompts (None: every tenant's)

    @property
    def given(self) -> list[str]:
        """The selectors given, by name (for the audit log: never a text)."""
        named = {"key": self.key, "text": self.text_keys, "tag": self.tag,
                 "phrase_file": self.phrase_ids, "older_than": self.older_than,
                 "tenant": self.tenant}
        return [name for name, value in named.items() if value is not None]

    def conditions(self, at: float) -> list[ColumnElement[bool]]:
        """The conditions on the phrases table, `at` being now."""
        c = _PHRASES.c
        found: list[ColumnElement[bool]] = []
        if self.key is not None:
            found.append(c.key == self.key)
        if self.text_keys is not None:
            found.append(c.key.in_(self.text_keys))
        if self.tag is not None:
            # Tags are a JSON list written with ensure_ascii=False: one tag is its JSON
            # string, quotes included, so "menu" never matches "menu_2".
            found.append(c.tags.contains(json.dumps(self.tag, ensure_ascii=False),
                                         autoescape=True))
        if self.phrase_ids is not None:
            found.append(or_(c.phrase_id.in_(self.phrase_ids), c.key.in_(self.phrase_keys)))
        if self.older_than is not None:
            found.append(c.created < at - self.older_than)
        if self.tenant is not None:
            found.append(c.tenant == self.tenant)
        return found

    def named_keys(self) -> set[str]:
        """Keys the selector names outright: forgotten from memory even when the index has
        no row for them (another replica removed it)."""
        named = set(self.text_keys or ())
        if self.key is not None:
            named.add(self.key)
        return named


@dataclass(frozen=True)
class Purged:
    """What a purge removed: prompts and bytes (audio and its encodings)."""

    prompts: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        """For answers and logs."""
        return {"prompts": self.prompts, "bytes": self.bytes}


def selected(engine: Engine, selector: Selector) -> list[str]:
    """Keys of the stored prompts the selector selects (blocking)."""
    conditions = selector.conditions(now())
    if not conditions:
        raise ValueError("a purge needs at least one selector")
    with engine.connect() as connection:
        return [str(k) for k in connection.execute(
            select(_PHRASES.c.key).where(and_(*conditions)).order_by(_PHRASES.c.key)).scalars()]


async def purge(
    storage: Storage, selector: Selector, forget: Callable[[set[str]], Awaitable[None]],
) -> Purged:
    """Remove what the selector selects, and forget it here; every replica forgets it
    through the purge log."""
    engine = storage.index.engine
    keys = await storage.read(lambda: selected(engine, selector))
    await forget(selector.named_keys() | set(keys))
    prompts = size = 0
    for start in range(0, len(keys), _BATCH):
        batch = keys[start:start + _BATCH]
        gone, freed = await storage.remove(batch, log=True)
        prompts, size = prompts + gone, size + freed
    await forget(set(keys))  # again: a hit read from the index meanwhile is let go too
    return Purged(prompts, size)
