"""The phrase index: blocking queries on SQLite or PostgreSQL (the tables: cache/tables.py;
what replicas share beyond the phrases, warm-up jobs and counters: cache/shared_rows.py).

Every method blocks; the store runs writes on its single writer thread and reads on its
I/O threads, never on the event loop. SQLite runs in WAL mode with a busy timeout;
PostgreSQL (`postgresql+psycopg://…`) through a bounded pool. The schema is Alembic's
(cache/schema.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from cache import schema
from cache.leases import Leases
from cache.tables import (
    AUDIO_COLUMNS,
    Base,
    Phrase,
    PhraseRow,
    PurgedKeyRow,
    Variant,
    VariantRow,
    phrase_of,
    variant_of,
)
from synth.request import DEFAULT_TENANT

__all__ = ["Base", "Index", "Phrase", "Pool", "Variant", "now", "sooner", "sqlite_url"]


def sqlite_url(data_dir: Path) -> str:
    """The index's URL when none is set: SQLite in the data folder."""
    return f"sqlite:///{data_dir / 'index.sqlite3'}"


@dataclass(frozen=True)
class Pool:
    """Connections to a database server (SQLite has none): how many, and how long to wait."""

    size: int = 5
    overflow: int = 5
    timeout: float = 10.0  # seconds to wait for a free connection
    connect_timeout: int = 5  # seconds to reach the server


_PHRASE_BY_KEY = select(PhraseRow.__table__).where(PhraseRow.__table__.c.key == bindparam("key"))
_VARIANT_BY_KEY = select(VariantRow.__table__).where(
    VariantRow.__table__.c.key == bindparam("key"),
    VariantRow.__table__.c.format == bindparam("format"),
    VariantRow.__table__.c.rate == bindparam("rate"),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # NORMAL in WAL mode survives a killed process; only power loss can undo the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Index:
    """Blocking access to the phrase index."""

    def __init__(
        self, url: str, *, pool: Pool | None = None, upgrade: bool | None = None,
        check: bool = True,
    ) -> None:
        """Open the index at a SQLAlchemy URL. Its schema is upgraded in place on SQLite and
        checked elsewhere (`upgrade` overrides; `check=False` leaves it to the caller, as
        `huiyin db` does); see cache/schema.py."""
        sqlite = url.startswith("sqlite")
        pool = pool or Pool()
        options: dict[str, Any] = {} if sqlite else {
            "pool_size": pool.size, "max_overflow": pool.overflow, "pool_timeout": pool.timeout,
            "pool_pre_ping": True, "pool_recycle": 1800,
        }
        connect_args: dict[str, Any] = (
            {"check_same_thread": False} if sqlite else {"connect_timeout": pool.connect_timeout}
        )
        self.engine: Engine = create_engine(url, connect_args=connect_args, **options)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # Leases hold a connection each while a key is synthesized: their own, unpooled, so
        # misses in flight never starve the index's pool (cache/leases.py).
        self.leases = Leases(self.engine if sqlite else create_engine(
            url, connect_args=connect_args, poolclass=NullPool))
        if not check:
            return
        try:
            schema.ensure(self.engine, upgrade_in_place=sqlite if upgrade is None else upgrade)
        except BaseException:
            self.engine.dispose()  # an index that cannot open holds no connection
            raise

    def close(self) -> None:
        """Give the leases back and release the connections."""
        self.leases.close()
        self.engine.dispose()

    # reads

    def get(self, key: str) -> Phrase | None:
        """The phrase row for key (a Core select: every miss asks, and the ORM's identity
        map costs four times the query)."""
        with self.engine.connect() as connection:
            row = connection.execute(_PHRASE_BY_KEY, {"key": key}).first()
            return phrase_of(row) if row is not None else None

    def variant(self, key: str, fmt: str, rate: int) -> Variant | None:
        """The variant row, if encoded before."""
        with self.engine.connect() as connection:
            row = connection.execute(
                _VARIANT_BY_KEY, {"key": key, "format": fmt, "rate": rate}
            ).first()
            return variant_of(row) if row is not None else None

    def variants(self, key: str) -> list[Variant]:
        """Every variant of a phrase."""
        with Session(self.engine) as session:
            return [variant_of(r) for r in session.scalars(select(VariantRow).where(VariantRow.key == key))]

    def all_phrases(self) -> list[Phrase]:
        """Every phrase row (for the integrity check)."""
        with Session(self.engine) as session:
            return [phrase_of(r) for r in session.scalars(select(PhraseRow))]

    def all_variants(self) -> list[Variant]:
        """Every variant row (for the integrity check)."""
        with Session(self.engine) as session:
            return [variant_of(r) for r in session.scalars(select(VariantRow))]

    def totals(self) -> tuple[int, int]:
        """(phrase count, bytes of phrases and variants)."""
        with Session(self.engine) as session:
            count, phrase_bytes = session.execute(
                select(func.count(PhraseRow.key), func.coalesce(func.sum(PhraseRow.bytes), 0))
            ).one()
            variant_bytes = session.execute(
                select(func.coalesce(func.sum(VariantRow.size), 0))
            ).scalar_one()
            return int(count), int(phrase_bytes) + int(variant_bytes)

    def eviction_candidates(self, limit: int) -> list[tuple[str, int]]:
        """Least recently used unpinned phrases: (key, bytes including variants)."""
        with Session(self.engine) as session:
            variant_bytes = (
                select(VariantRow.key, func.sum(VariantRow.size).label("size"))
                .group_by(VariantRow.key).subquery()
            )
            rows = session.execute(
                select(PhraseRow.key, PhraseRow.bytes + func.coalesce(variant_bytes.c.size, 0))
                .outerjoin(variant_bytes, variant_bytes.c.key == PhraseRow.key)
                .where(PhraseRow.pinned.is_(False))
                .order_by(PhraseRow.last_used)
                .limit(limit)
            ).all()
            return [(str(k), int(b)) for k, b in rows]

    def named(self, phrase_id: str, tenant: str = DEFAULT_TENANT) -> Phrase | None:
        """The pinned phrase with this phrase id in the tenant's namespace: its own, else
        a public one (the site's first), the newest (one indexed lookup)."""
        with Session(self.engine) as session:
            row = session.scalars(
                select(PhraseRow)
                .where(PhraseRow.phrase_id == phrase_id, PhraseRow.pinned.is_(True),
                       or_(PhraseRow.tenant == tenant, PhraseRow.public.is_(True)))
                .order_by(case((PhraseRow.tenant == tenant, 0),
                               (PhraseRow.tenant == DEFAULT_TENANT, 1), else_=2),
                          PhraseRow.created.desc()).limit(1)
            ).first()
            return phrase_of(row) if row else None

    def tenant_keys(self, tenant: str) -> list[str]:
        """The keys of every phrase of a tenant (to remove them all, say)."""
        with self.engine.connect() as connection:
            return list(connection.execute(
                select(PhraseRow.key).where(PhraseRow.tenant == tenant)).scalars())

    def search(
        self, *, query: str | None = None, tag: str | None = None, phrase_id: str | None = None,
        tenant: str | None = None, offset: int = 0, limit: int = 50,
    ) -> tuple[int, list[Phrase]]:
        """Phrases matching text or id (substring), tag, exact phrase id and tenant (None:
        every tenant's); (total, page)."""
        with Session(self.engine) as session:
            stmt = select(PhraseRow)
            if tenant is not None:
                stmt = stmt.where(PhraseRow.tenant == tenant)
            if query:
                stmt = stmt.where(or_(PhraseRow.text.contains(query, autoescape=True),
                                      PhraseRow.phrase_id.contains(query, autoescape=True)))
            if tag:
                # Tags are kept as a JSON list written with ensure_ascii=False: one tag is
                # its JSON string, quotes included, so "menu" never matches "menu_2".
                stmt = stmt.where(PhraseRow.tags.contains(json.dumps(tag, ensure_ascii=False),
                                                          autoescape=True))
            if phrase_id:
                stmt = stmt.where(PhraseRow.phrase_id == phrase_id)
            total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
            rows = session.scalars(
                stmt.order_by(PhraseRow.phrase_id, PhraseRow.created).offset(offset).limit(limit)
            )
            return int(total), [phrase_of(r) for r in rows]

    # writes (single writer thread)

    def put_phrase(self, phrase: Phrase) -> tuple[Phrase, int | None]:
        """Insert a phrase row, or refresh the audio of one that exists: its text, pin,
        name, tags, usage and encoded variants stay, and its expiry only comes sooner.
        Returns the row as stored, and the bytes of the master it replaced (None for a new
        phrase). Core statements: it runs once per miss, and the ORM's unit of work would
        hold the GIL four times as long."""
        with self.engine.begin() as connection:
            existing = connection.execute(_PHRASE_BY_KEY, {"key": phrase.key}).first()
            if existing is None:
                values = dict(phrase.__dict__)
                values["tags"] = json.dumps(list(phrase.tags), ensure_ascii=False)
                connection.execute(insert(PhraseRow), values)
                return phrase, None
            audio = {name: getattr(phrase, name) for name in AUDIO_COLUMNS}
            audio["last_used"] = max(existing.last_used, phrase.last_used)
            audio["expires"] = sooner(existing.expires, phrase.expires)
            if existing.text is None and phrase.text is not None:
                audio["text"] = phrase.text
            connection.execute(update(PhraseRow).where(PhraseRow.key == phrase.key).values(audio))
            stored = connection.execute(_PHRASE_BY_KEY, {"key": phrase.key}).first()
            assert stored is not None
            return phrase_of(stored), existing.bytes

    def drop_variants(self, key: str) -> list[Variant]:
        """Remove a phrase's variant rows (its audio is being made again); the rows removed,
        whose files are the caller's to delete."""
        with self.engine.begin() as connection:
            rows = connection.execute(
                delete(VariantRow).where(VariantRow.key == key).returning(*VariantRow.__table__.c)
            ).all()
        return [variant_of(r) for r in rows]

    def put_variant(self, variant: Variant) -> int | None:
        """Insert or replace a variant row; the size of the one it replaced (None: new)."""
        with Session(self.engine) as session, session.begin():
            old = session.get(VariantRow, (variant.key, variant.format, variant.rate))
            replaced = None if old is None else old.size
            session.merge(VariantRow(**variant.__dict__))
            return replaced

    def touch(self, usage: Iterable[tuple[str, float, int]]) -> None:
        """Record use: (key, last used, hits to add) for each phrase."""
        with Session(self.engine) as session, session.begin():
            for key, last_used, hits in usage:
                session.execute(
                    update(PhraseRow).where(PhraseRow.key == key)
                    .values(
                        last_used=case(
                            (PhraseRow.last_used < last_used, last_used),
                            else_=PhraseRow.last_used,
                        ),
                        hits=PhraseRow.hits + hits,
                    )
                )

    def set_named(
        self, key: str, *, phrase_id: str | None, tags: Sequence[str], pinned: bool,
        public: bool = False, text: str | None = None,
    ) -> str | None:
        """Name and pin (or unpin) a phrase, public or not, and keep its `text` when given; a
        phrase id names one phrase of a tenant, so another of the tenant's that had it loses
        it and its pin. The phrase's tenant, or None when there is no such phrase (evicted)."""
        with Session(self.engine) as session, session.begin():
            row = session.get(PhraseRow, key)
            if row is None:
                return None
            tenant = row.tenant
            if phrase_id is not None:
                session.execute(
                    update(PhraseRow)
                    .where(PhraseRow.phrase_id == phrase_id, PhraseRow.tenant == tenant,
                           PhraseRow.key != key)
                    .values(phrase_id=None, pinned=False, public=False)
                )
            values: dict[str, Any] = {
                "phrase_id": phrase_id, "pinned": pinned,
                "public": public and phrase_id is not None,
                "tags": json.dumps(list(tags), ensure_ascii=False),
            }
            if text is not None:
                values.update(text=text, text_length=len(text))
            session.execute(update(PhraseRow).where(PhraseRow.key == key).values(values))
            return tenant

    def unpin_except(self, keep: Iterable[str], tenant: str = DEFAULT_TENANT) -> list[str]:
        """Unpin and unname every pinned phrase of the tenant not in keep; returns their
        keys."""
        keep = set(keep)
        with Session(self.engine) as session, session.begin():
            pinned = session.scalars(select(PhraseRow.key).where(
                PhraseRow.pinned.is_(True), PhraseRow.tenant == tenant)).all()
            gone = [k for k in pinned if k not in keep]
            if gone:
                session.execute(
                    update(PhraseRow).where(PhraseRow.key.in_(gone))
                    .values(pinned=False, phrase_id=None, public=False)
                )
            return gone

    def delete_phrases(self, keys: Sequence[str], *, log: bool = False) -> tuple[int, int]:
        """Remove phrase rows and their variants; (phrases, bytes) removed, as the deletes
        themselves return them. With `log`, the keys go to the purge log in the same
        transaction, for every replica to forget them (cache/forgetting.py)."""
        if not keys:
            return 0, 0
        with self.engine.begin() as connection:
            variant_sizes = connection.execute(
                delete(VariantRow).where(VariantRow.key.in_(keys)).returning(VariantRow.size)
            ).scalars().all()
            phrase_sizes = connection.execute(
                delete(PhraseRow).where(PhraseRow.key.in_(keys)).returning(PhraseRow.bytes)
            ).scalars().all()
            if log:
                log_purged(connection, keys)
        return len(phrase_sizes), sum(phrase_sizes) + sum(variant_sizes)

    def note_purged(self, keys: Sequence[str]) -> None:
        """Add keys to the purge log: every replica forgets what it holds of them."""
        with self.engine.begin() as connection:
            log_purged(connection, keys)

    def delete_variant(self, key: str, fmt: str, rate: int) -> int:
        """Remove one variant row; the bytes removed (0: there was none)."""
        with self.engine.begin() as connection:
            sizes = connection.execute(
                delete(VariantRow).where(
                    VariantRow.key == key, VariantRow.format == fmt, VariantRow.rate == rate
                ).returning(VariantRow.size)
            ).scalars().all()
        return sum(sizes)


def now() -> float:
    """Wall-clock seconds, the index's time unit."""
    return time.time()


def sooner(a: float | None, b: float | None) -> float | None:
    """The earlier of two expiries (None: never)."""
    if a is None:
        return b
    return a if b is None else min(a, b)


def log_purged(connection: Connection, keys: Iterable[str]) -> None:
    """Add keys to the purge log, in the caller's transaction."""
    stamp = now()
    rows = [{"key": key, "at": stamp} for key in keys]
    if rows:
        connection.execute(insert(PurgedKeyRow), rows)
