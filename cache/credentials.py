"""API keys in the index: only the SHA-256 of each secret is kept, beside the key's name,
scope, tenant and limits, and the characters each key has had synthesized per UTC day.

A key is one tenant's (cache/tenants.py): made without one, the `default` tenant's. An
admin key made without a tenant is the site's (tenant None): it administers every tenant.

Secrets are 32 random bytes (`hy_` and 43 base64url characters): a plain hash is enough
for a secret nobody chose. The calls block; `Credentials` runs them off the event loop.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cache.storage import Storage
from cache.tables import ApiKeyRow, KeyUsageRow
from synth.request import DEFAULT_TENANT

# What a key may do; each scope includes the ones before it.
SCOPES = ("play", "synthesize", "admin")
SECRET_PREFIX = "hy_"
SECRET = re.compile(r"hy_[A-Za-z0-9_-]{43}")
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")

_KEYS = cast(Table, ApiKeyRow.__table__)
_USAGE = cast(Table, KeyUsageRow.__table__)


class KeyFieldError(ValueError):
    """A key cannot be made or changed as asked; the message says why."""


@dataclass(frozen=True)
class ApiKey:
    """A key as the index has it (never its secret)."""

    id: int
    name: str
    prefix: str
    scope: str
    rate: int | None  # misses per minute; None: the settings' rate_limit_misses
    quota: int | None  # characters per UTC day; None: no quota
    created: float
    revoked: float | None
    tenant: str | None = DEFAULT_TENANT  # None: a site-wide admin key

    def as_dict(self) -> dict[str, object]:
        """The key for listings (no secret, no hash)."""
        return {"name": self.name, "prefix": self.prefix, "scope": self.scope,
                "tenant": self.tenant, "rate": self.rate, "quota": self.quota,
                "created": self.created, "revoked": self.revoked}


def secret_hash(secret: str) -> str:
    """What the index keeps of a secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A new key's secret: 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def today() -> str:
    """The UTC day quotas count in."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def _key_of(row: object) -> ApiKey:
    return ApiKey(row.id, row.name, row.prefix, row.scope, row.rate, row.quota,  # type: ignore[attr-defined]
                  row.created, row.revoked, row.tenant)  # type: ignore[attr-defined]


def key_tenant(scope: str, tenant: str | None) -> str | None:
    """The tenant a new key is made for: the one named, else the default tenant, but for
    an admin key, which is then the site's (None)."""
    if tenant is None:
        return None if scope == "admin" else DEFAULT_TENANT
    if not TENANT_NAME.fullmatch(tenant):
        raise KeyFieldError("tenant: 1 to 32 lower-case letters, digits, '_' or '-', "
                            "starting with a letter or digit")
    return tenant


def check_key_fields(name: str, scope: str, rate: int | None, quota: int | None) -> None:
    """Refuse a key's fields that cannot be stored (KeyFieldError names the field)."""
    if not KEY_NAME.fullmatch(name):
        raise KeyFieldError("name: 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                        "letter or digit")
    if scope not in SCOPES:
        raise KeyFieldError(f"scope: one of {', '.join(SCOPES)}")
    if rate is not None and not 1 <= rate <= 1_000_000:
        raise KeyFieldError("rate: misses per minute, 1 to 1000000")
    if quota is not None and not 1 <= quota <= 2_000_000_000:
        raise KeyFieldError("quota: characters per day, 1 to 2000000000")


class KeyTable:
    """Blocking queries on the keys' tables of one index."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self, name: str, scope: str, rate: int | None, quota: int | None,
        tenant: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once: only its hash is stored), for the tenant
        (see key_tenant)."""
        check_key_fields(name, scope, rate, quota)
        tenant = key_tenant(scope, tenant)
        secret = new_secret()
        values = {"name": name, "secret_hash": secret_hash(secret),
                  "prefix": secret[: len(SECRET_PREFIX) + 6], "scope": scope, "rate": rate,
                  "quota": quota, "created": time.time(), "revoked": None, "tenant": tenant}
        try:
            with self._engine.begin() as connection:
                key_id = connection.execute(insert(_KEYS).values(**values)).inserted_primary_key
        except IntegrityError:
            raise KeyFieldError(f"name: a key named '{name}' exists (revoked keys keep their "
                            "names)") from None
        assert key_id is not None
        return ApiKey(id=key_id[0], **{k: v for k, v in values.items() if k != "secret_hash"}), secret  # type: ignore[arg-type]

    def all(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key (of the tenant, when one is given), revoked ones included, oldest
        first."""
        query = select(_KEYS).order_by(_KEYS.c.id)
        if tenant is not None:
            query = query.where(_KEYS.c.tenant == tenant)
        with self._engine.connect() as connection:
            return [_key_of(r) for r in connection.execute(query)]

    def revoke(self, name: str, tenant: str | None = None) -> ApiKey | None:
        """Revoke a key by name (its row stays, so the name is not reused); None if there
        is none (of the tenant, when one is given)."""
        with self._engine.begin() as connection:
            row = connection.execute(select(_KEYS).where(_KEYS.c.name == name)).first()
            if row is None or tenant not in (None, row.tenant):
                return None
            if row.revoked is None:
                connection.execute(update(_KEYS).where(_KEYS.c.id == row.id)
                                   .values(revoked=time.time()))
            return _key_of(connection.execute(select(_KEYS).where(_KEYS.c.id == row.id)).one())

    def find(self, secret: str) -> ApiKey | None:
        """The live key with this secret, or None (unknown or revoked)."""
        with self._engine.connect() as connection:
            row = connection.execute(
                select(_KEYS).where(_KEYS.c.secret_hash == secret_hash(secret),
                                    _KEYS.c.revoked.is_(None))
            ).first()
        return None if row is None else _key_of(row)

    def used(self, key_id: int, day: str) -> int:
        """The characters the key has used on a day."""
        with self._engine.connect() as connection:
            used = connection.execute(select(_USAGE.c.characters).where(
                _USAGE.c.key_id == key_id, _USAGE.c.day == day)).scalar()
        return 0 if used is None else int(used)

    def charge(self, key_id: int, characters: int, quota: int, day: str) -> int | None:
        """Add characters to the key's use of the day if that stays within its quota: the
        new total, or None (refused, nothing added). One statement: replicas cannot both
        take the last characters."""
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(_USAGE).values(key_id=key_id, day=day, characters=characters)
        statement = statement.on_conflict_do_update(
            index_elements=[_USAGE.c.key_id, _USAGE.c.day],
            set_={"characters": _USAGE.c.characters + characters},
            where=_USAGE.c.characters + characters <= quota,
        ).returning(_USAGE.c.characters)
        if characters > quota:
            return None
        with self._engine.begin() as connection:
            total = connection.execute(statement).scalar()
        return None if total is None else int(total)


class Credentials:
    """The keys of the store's index, off the event loop."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def _table(self) -> KeyTable:
        return KeyTable(self._storage.index.engine)

    async def create(
        self, name: str, scope: str, *, rate: int | None = None, quota: int | None = None,
        tenant: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (see KeyTable.create)."""
        table = self._table()
        return await self._storage.write(lambda: table.create(name, scope, rate, quota, tenant))

    async def all(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key (of the tenant, when one is given)."""
        table = self._table()
        return await self._storage.run(lambda: table.all(tenant))

    async def revoke(self, name: str, tenant: str | None = None) -> ApiKey | None:
        """Revoke a key by name (of the tenant, when one is given)."""
        table = self._table()
        return await self._storage.write(lambda: table.revoke(name, tenant))

    async def find(self, secret: str) -> ApiKey | None:
        """The live key with this secret."""
        table = self._table()
        return await self._storage.run(lambda: table.find(secret))

    async def remaining(self, key: ApiKey) -> int | None:
        """The characters left of the key's quota today (None: it has no quota)."""
        if key.quota is None:
            return None
        table, quota, day = self._table(), key.quota, today()
        return quota - await self._storage.run(lambda: table.used(key.id, day))

    async def charge(self, key: ApiKey, characters: int) -> int | None:
        """Charge characters against the key's daily quota (see KeyTable.charge)."""
        if key.quota is None:
            return 0
        table, quota, day = self._table(), key.quota, today()
        return await self._storage.run(lambda: table.charge(key.id, characters, quota, day))
