"""Tenants: sites that share one gateway and cannot see each other's prompts.

A tenant exists by being named (on a key, a signed URL, a lexicon word): it needs no row.
Each has its own keys (cache/keys.py hashes it), its own lexicon words over the site's
(cache/overlays.py), its own phrase ids, and its own daily use, counted here per UTC day
against an optional quota its callers share. The `default` tenant is the site's: anonymous
callers, keys made without a tenant, and every prompt from before tenants are its.

The calls of `TenantTable` block; `Tenants` runs them off the event loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, select, union
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from cache.credentials import TENANT_NAME, today
from cache.storage import Storage
from cache.tables import (
    ApiKeyRow,
    PhraseRow,
    TenantRow,
    TenantUsageRow,
    TenantWordRow,
    VariantRow,
)
from synth.request import DEFAULT_TENANT

__all__ = ["DEFAULT_TENANT", "TENANT_NAME", "TenantError", "TenantStats", "TenantTable",
           "Tenants", "check_tenant"]

# How long a tenant's quota is trusted in memory before it is read again.
QUOTA_CACHE_SECONDS = 1.0

_TENANTS = cast(Table, TenantRow.__table__)
_USAGE = cast(Table, TenantUsageRow.__table__)
_PHRASES = cast(Table, PhraseRow.__table__)
_VARIANTS = cast(Table, VariantRow.__table__)
_KEYS = cast(Table, ApiKeyRow.__table__)
_WORDS = cast(Table, TenantWordRow.__table__)


class TenantError(ValueError):
    """A tenant name or setting that cannot be; the message says why."""


def check_tenant(name: str) -> str:
    """A tenant's name as given, or TenantError: 1 to 32 of a-z, 0-9, '_' and '-'."""
    if not TENANT_NAME.fullmatch(name):
        raise TenantError("tenant: 1 to 32 lower-case letters, digits, '_' or '-', starting "
                          "with a letter or digit")
    return name


@dataclass(frozen=True)
class TenantStats:
    """One tenant's share of the store (from the index, so every replica's) and its use
    today (UTC)."""

    tenant: str
    entries: int
    bytes: int
    pinned: int
    public: int
    hits: int  # hits recorded on its phrases (usage reaches the index every few seconds)
    keys: int  # live keys
    characters_today: int
    misses_today: int
    quota: int | None

    def as_dict(self) -> dict[str, object]:
        """For answers."""
        return dict(self.__dict__)


class TenantTable:
    """Blocking queries on the tenants' tables of one index."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def quota(self, tenant: str) -> int | None:
        """The tenant's characters per UTC day (None: no quota)."""
        with self._engine.connect() as connection:
            found = connection.execute(
                select(_TENANTS.c.quota).where(_TENANTS.c.name == tenant)).scalar()
        return None if found is None else int(found)

    def set_quota(self, tenant: str, quota: int | None) -> None:
        """Give the tenant a daily quota of characters, or none."""
        check_tenant(tenant)
        if quota is not None and not 1 <= quota <= 2_000_000_000:
            raise TenantError("quota: characters per day, 1 to 2000000000")
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(_TENANTS).values(name=tenant, quota=quota, created=time.time())
        with self._engine.begin() as connection:
            connection.execute(statement.on_conflict_do_update(
                index_elements=[_TENANTS.c.name], set_={"quota": statement.excluded.quota}))

    def used(self, tenant: str, day: str) -> int:
        """The characters the tenant's callers were charged for on a day."""
        with self._engine.connect() as connection:
            used = connection.execute(select(_USAGE.c.characters).where(
                _USAGE.c.tenant == tenant, _USAGE.c.day == day)).scalar()
        return 0 if used is None else int(used)

    def charge(self, tenant: str, characters: int, quota: int | None, day: str) -> int | None:
        """Count one synthesis of `characters` for the tenant's day, if that stays within
        its quota: the day's new total, or None (refused, nothing counted). One statement:
        replicas cannot both take the last characters."""
        if quota is not None and characters > quota:
            return None
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(_USAGE).values(
            tenant=tenant, day=day, characters=characters, misses=1)
        statement = statement.on_conflict_do_update(
            index_elements=[_USAGE.c.tenant, _USAGE.c.day],
            set_={"characters": _USAGE.c.characters + characters, "misses": _USAGE.c.misses + 1},
            where=None if quota is None else _USAGE.c.characters + characters <= quota,
        ).returning(_USAGE.c.characters)
        with self._engine.begin() as connection:
            total = connection.execute(statement).scalar()
        return None if total is None else int(total)

    def give_back(self, tenant: str, characters: int, day: str) -> None:
        """Undo one charge (its request was refused after it was counted)."""
        with self._engine.begin() as connection:
            connection.execute(_USAGE.update().where(
                _USAGE.c.tenant == tenant, _USAGE.c.day == day).values(
                characters=_USAGE.c.characters - characters, misses=_USAGE.c.misses - 1))

    def names(self) -> list[str]:
        """Every tenant the index names (on a key, a phrase, a word or a quota), default
        first."""
        named = union(
            select(_PHRASES.c.tenant), select(_KEYS.c.tenant).where(_KEYS.c.tenant.is_not(None)),
            select(_WORDS.c.tenant), select(_TENANTS.c.name),
        )
        with self._engine.connect() as connection:
            found = {str(n) for n in connection.execute(named).scalars()}
        return [DEFAULT_TENANT, *sorted(found - {DEFAULT_TENANT})]

    def stats(self, tenant: str, day: str) -> TenantStats:
        """The tenant's phrases, keys and use of the day."""
        mine = _PHRASES.c.tenant == tenant
        with self._engine.connect() as connection:
            entries, phrase_bytes, pinned, public, hits = connection.execute(select(
                func.count(), func.coalesce(func.sum(_PHRASES.c.bytes), 0),
                func.count().filter(_PHRASES.c.pinned.is_(True)),
                func.count().filter(_PHRASES.c.public.is_(True)),
                func.coalesce(func.sum(_PHRASES.c.hits), 0),
            ).where(mine)).one()
            variant_bytes = connection.execute(
                select(func.coalesce(func.sum(_VARIANTS.c.size), 0)).select_from(
                    _VARIANTS.join(_PHRASES, _VARIANTS.c.key == _PHRASES.c.key)).where(mine)
            ).scalar_one()
            keys = connection.execute(select(func.count()).where(
                _KEYS.c.tenant == tenant, _KEYS.c.revoked.is_(None))).scalar_one()
            usage = connection.execute(select(_USAGE.c.characters, _USAGE.c.misses).where(
                _USAGE.c.tenant == tenant, _USAGE.c.day == day)).first()
        return TenantStats(
            tenant, int(entries), int(phrase_bytes) + int(variant_bytes), int(pinned),
            int(public), int(hits), int(keys), 0 if usage is None else int(usage[0]),
            0 if usage is None else int(usage[1]), self.quota(tenant))


class Tenants:
    """The tenants of the store's index, off the event loop; quotas are remembered for
    QUOTA_CACHE_SECONDS, as keys are."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._quotas: dict[str, tuple[int | None, float]] = {}

    def _table(self) -> TenantTable:
        return TenantTable(self._storage.index.engine)

    async def quota(self, tenant: str) -> int | None:
        """The tenant's daily quota of characters (None: none)."""
        known = self._quotas.get(tenant)
        if known is not None and time.monotonic() - known[1] <= QUOTA_CACHE_SECONDS:
            return known[0]
        table = self._table()
        quota = await self._storage.run(lambda: table.quota(tenant))
        if len(self._quotas) > 10_000:
            self._quotas.clear()
        self._quotas[tenant] = (quota, time.monotonic())
        return quota

    async def set_quota(self, tenant: str, quota: int | None) -> None:
        """Give the tenant a daily quota (None: none)."""
        table = self._table()
        await self._storage.write(lambda: table.set_quota(tenant, quota))
        self._quotas.pop(tenant, None)

    async def remaining(self, tenant: str) -> int | None:
        """The characters left of the tenant's quota today (None: it has no quota)."""
        quota = await self.quota(tenant)
        if quota is None:
            return None
        table, day = self._table(), today()
        return quota - await self._storage.run(lambda: table.used(tenant, day))

    async def charge(self, tenant: str, characters: int) -> int | None:
        """Count a synthesis against the tenant's day (see TenantTable.charge)."""
        quota = await self.quota(tenant)
        table, day = self._table(), today()
        return await self._storage.run(lambda: table.charge(tenant, characters, quota, day))

    async def give_back(self, tenant: str, characters: int) -> None:
        """Undo a charge."""
        table, day = self._table(), today()
        await self._storage.run(lambda: table.give_back(tenant, characters, day))

    async def names(self) -> list[str]:
        """Every tenant the index names, default first."""
        table = self._table()
        return await self._storage.read(table.names)

    async def stats(self, tenant: str) -> TenantStats:
        """The tenant's share of the store and its use today."""
        table, day = self._table(), today()
        return await self._storage.read(lambda: table.stats(tenant, day))
