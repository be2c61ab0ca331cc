"""Phrase rows known to be good, kept in memory so hits are answered without the index.

Renaming, pinning and unpinning update a row in place: the cache never has to drop a row to
stay true, and nothing else (usage, the hot set) depends on a row being here.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from cache.index import Phrase

Name = tuple[str, str]  # a phrase id in its tenant's namespace: (tenant, phrase id)


class RowCache:
    """The most recently used phrase rows by key, and the current key of each phrase id
    in each tenant."""

    def __init__(self, max_rows: int = 50_000) -> None:
        self._max_rows = max_rows
        self._rows: OrderedDict[str, Phrase] = OrderedDict()
        self._names: dict[Name, str] = {}  # (tenant, phrase id) -> key, of pinned named rows
        self._name_of: dict[str, Name] = {}  # the reverse: key -> (tenant, phrase id)

    def get(self, key: str) -> Phrase | None:
        """The row, marked most recently used."""
        row = self._rows.get(key)
        if row is not None:
            self._rows.move_to_end(key)
        return row

    def put(self, row: Phrase) -> None:
        """Keep a row (the oldest beyond the bound leaves)."""
        self._rows[row.key] = row
        self._rows.move_to_end(row.key)
        if row.pinned and row.phrase_id is not None and (row.tenant, row.phrase_id) not in self._names:
            self._set_name(row.key, (row.tenant, row.phrase_id))
        while len(self._rows) > self._max_rows:
            self._rows.popitem(last=False)

    def replace(self, row: Phrase) -> None:
        """A row held here changed in the index (its expiry, its text): hold the new one."""
        if row.key in self._rows:
            self._rows[row.key] = row

    def forget_texts(self, keep: Callable[[Phrase], bool]) -> None:
        """Drop the text of the rows held here whose text `keep` says is not kept."""
        dropped = [row for row in self._rows.values() if row.text is not None and not keep(row)]
        for row in dropped:
            self._rows[row.key] = dataclasses.replace(row, text=None)

    def named(self, tenant: str, phrase_id: str) -> str | None:
        """The key a phrase id of the tenant names, when known here."""
        return self._names.get((tenant, phrase_id))

    def rename(
        self, key: str, *, tenant: str, phrase_id: str | None, tags: Sequence[str],
        pinned: bool, public: bool = False,
    ) -> None:
        """A row of the tenant got a (new) phrase id, tags and pin: update it in place. A
        row that had the phrase id before loses it and its pin, as in the index."""
        previous = self._names.get((tenant, phrase_id)) if phrase_id is not None else None
        if previous is not None and previous != key:
            self.rename(previous, tenant=tenant, phrase_id=None, tags=self._tags(previous),
                        pinned=False)
        self._drop_name(key)
        if pinned and phrase_id is not None:
            self._set_name(key, (tenant, phrase_id))
        row = self._rows.get(key)
        if row is not None:
            self._rows[key] = dataclasses.replace(
                row, phrase_id=phrase_id, tags=tuple(tags), pinned=pinned,
                public=public and phrase_id is not None,
            )

    def unpin(self, keys: Iterable[str]) -> None:
        """Rows that lost their pin and their name."""
        for key in keys:
            named = self._name_of.get(key)
            row = self._rows.get(key)
            tenant = named[0] if named is not None else row.tenant if row is not None else ""
            self.rename(key, tenant=tenant, phrase_id=None, tags=self._tags(key), pinned=False)

    def _tags(self, key: str) -> tuple[str, ...]:
        row = self._rows.get(key)
        return row.tags if row is not None else ()

    def discard(self, key: str) -> None:
        """Forget a row that was deleted."""
        self._rows.pop(key, None)
        self._drop_name(key)

    def _set_name(self, key: str, name: Name) -> None:
        self._drop_name(key)
        previous = self._names.get(name)
        if previous is not None:
            self._name_of.pop(previous, None)
        self._names[name] = key
        self._name_of[key] = name

    def _drop_name(self, key: str) -> None:
        name = self._name_of.pop(key, None)
        if name is not None and self._names.get(name) == key:
            del self._names[name]

    def __len__(self) -> int:
        return len(self._rows)
