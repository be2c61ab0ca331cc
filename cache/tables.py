"""The index's tables as SQLAlchemy models (they mirror the Alembic head revision, which a
test checks), and the plain rows the store hands around."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, false
from sqlalchemy.engine import Row
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the index tables."""


class PhraseRow(Base):
    """A synthesized phrase and its master WAV file."""

    __tablename__ = "phrases"
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    # None where `store_text` keeps no text for it (cache/retention.py): its length stays.
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    engine: Mapped[str] = mapped_column(String(64))
    engine_version: Mapped[str] = mapped_column(String(128))
    voice: Mapped[str] = mapped_column(String(64))
    style: Mapped[str] = mapped_column(String(64))
    speed: Mapped[float] = mapped_column(Float)
    pitch: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)
    duration: Mapped[float] = mapped_column(Float)
    sample_rate: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(16))
    synth_seconds: Mapped[float] = mapped_column(Float)
    created: Mapped[float] = mapped_column(Float)
    last_used: Mapped[float] = mapped_column(Float, index=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    phrase_id: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    tags: Mapped[str] = mapped_column(Text, default="[]")
    text_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # When an unnamed, unpinned prompt is removed (epoch seconds; None: never).
    expires: Mapped[float | None] = mapped_column(Float, index=True, nullable=True)
    # Whose phrase it is (its key hashes the tenant too); `public`: named phrases any tenant
    # may play under their phrase id when it has none of its own (the phrase files').
    tenant: Mapped[str] = mapped_column(String(32), index=True, server_default="default")
    public: Mapped[bool] = mapped_column(Boolean, server_default=false())


class VariantRow(Base):
    """An encoded form of a phrase (format and rate) and its file."""

    __tablename__ = "variants"
    key: Mapped[str] = mapped_column(
        String(32), ForeignKey("phrases.key", ondelete="CASCADE"), primary_key=True
    )
    format: Mapped[str] = mapped_column(String(16), primary_key=True)
    rate: Mapped[int] = mapped_column(Integer, primary_key=True)
    file: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(16))


@dataclass(frozen=True)
class Phrase:
    """A phrase row as plain data."""

    key: str
    text: str | None  # None: the index keeps no text for it (the store_text setting)
    engine: str
    engine_version: str
    voice: str
    style: str
    speed: float
    pitch: float
    volume: float
    duration: float
    sample_rate: int
    bytes: int
    checksum: str
    synth_seconds: float
    created: float
    last_used: float
    hits: int
    pinned: bool
    phrase_id: str | None
    tags: tuple[str, ...]
    expires: float | None = None  # when it is removed, unless it is named or pinned
    text_length: int | None = None  # characters of its text, kept or not
    tenant: str = "default"
    public: bool = False

    @property
    def expiry(self) -> float | None:
        """When this phrase is removed: its `expires`, unless a name or a pin keeps it."""
        return None if self.pinned or self.phrase_id is not None else self.expires


@dataclass(frozen=True)
class Variant:
    """A variant row as plain data."""

    key: str
    format: str
    rate: int
    file: str
    size: int
    checksum: str


def phrase_of(row: PhraseRow | Row[Any]) -> Phrase:
    return Phrase(
        row.key, row.text, row.engine, row.engine_version, row.voice, row.style, row.speed,
        row.pitch, row.volume, row.duration, row.sample_rate, row.bytes, row.checksum,
        row.synth_seconds, row.created, row.last_used, row.hits, row.pinned, row.phrase_id,
        tuple(json.loads(row.tags or "[]")), row.expires, row.text_length, row.tenant,
        bool(row.public),
    )


# What a new synthesis of an existing key replaces; the rest of the row is the phrase's own
# (its text, name, pin, tags and usage; its expiry only comes sooner).
AUDIO_COLUMNS = (
    "engine", "engine_version", "voice", "style", "speed", "pitch", "volume",
    "duration", "sample_rate", "bytes", "checksum", "synth_seconds",
)


def variant_of(row: VariantRow | Row[Any]) -> Variant:
    return Variant(row.key, row.format, row.rate, row.file, row.size, row.checksum)


class WarmJobRow(Base):
    """A warm-up job's progress, as the replica running it last wrote it."""

    __tablename__ = "warm_jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    progress: Mapped[str] = mapped_column(Text)
    updated: Mapped[float] = mapped_column(Float, index=True)


class CounterRow(Base):
    """One of the store's counters, summed over the replicas that share the index."""

    __tablename__ = "store_counters"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class ApiKeyRow(Base):
    """An API key: its name, what it may do, its limits, and only the SHA-256 of its secret."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the secret's start, to recognise it
    scope: Mapped[str] = mapped_column(String(16))
    # The tenant whose prompts the key makes and hears; NULL: a site-wide admin key.
    tenant: Mapped[str | None] = mapped_column(String(32), nullable=True)
    rate: Mapped[int | None] = mapped_column(Integer, nullable=True)  # misses per minute
    quota: Mapped[int | None] = mapped_column(Integer, nullable=True)  # characters per day
    created: Mapped[float] = mapped_column(Float)
    revoked: Mapped[float | None] = mapped_column(Float, nullable=True)


class KeyUsageRow(Base):
    """Characters a key has had synthesized on one UTC day (its daily quota)."""

    __tablename__ = "key_usage"
    key_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    characters: Mapped[int] = mapped_column(Integer)


class RateBucketRow(Base):
    """A token bucket that replicas on a shared index draw from together."""

    __tablename__ = "rate_buckets"
    name: Mapped[str] = mapped_column(String(96), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float, index=True)


class PurgedKeyRow(Base):
    """A key whose prompt was purged, expired or made again: every replica forgets what it
    holds of it in memory (kept a day)."""

    __tablename__ = "purged_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(32))
    at: Mapped[float] = mapped_column(Float, index=True)


class LexiconWordRow(Base):
    """A word of the site's lexicon and its pinyin (they override the built-in words and the
    `lexicon` file), shared by every replica of the index."""

    __tablename__ = "lexicon_words"
    word: Mapped[str] = mapped_column(String(64), primary_key=True)
    pinyin: Mapped[str] = mapped_column(String(400))
    updated: Mapped[float] = mapped_column(Float)


class TenantWordRow(Base):
    """A word of one tenant's lexicon and its pinyin: said so in that tenant's prompts only,
    over the site's words."""

    __tablename__ = "tenant_words"
    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    word: Mapped[str] = mapped_column(String(64), primary_key=True)
    pinyin: Mapped[str] = mapped_column(String(400))
    updated: Mapped[float] = mapped_column(Float)


class TenantRow(Base):
    """A tenant's settings (a tenant needs none to exist: its keys name it)."""

    __tablename__ = "tenants"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    quota: Mapped[int | None] = mapped_column(Integer, nullable=True)  # characters per day
    created: Mapped[float] = mapped_column(Float)


class TenantUsageRow(Base):
    """Characters and syntheses a tenant's callers were charged for on one UTC day (its
    daily quota counts the characters)."""

    __tablename__ = "tenant_usage"
    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    characters: Mapped[int] = mapped_column(Integer)
    misses: Mapped[int] = mapped_column(Integer)
