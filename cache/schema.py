"""The index's schema revision: Alembic migrations (cache/migrations/), the same steps on
SQLite and PostgreSQL.

`huiyin db upgrade` applies them. At startup an index on SQLite (one machine, nothing else
uses the file) is upgraded in place; any other database is only checked, so that several
replicas never migrate one database at once: an index behind this program's revision stops
startup with the command to run. An index at a revision this program does not know (made by
a newer Huiyin) is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The newest revision in cache/migrations/versions/ (a test checks it against Alembic's
# head). An index already there opens without Alembic being imported: Alembic, Mako and
# Pygments would stay in the gateway's memory for good, about 10 MB, for one check.
HEAD = "0007_tenants"
# Before Alembic, the index kept its version in a table of its own; version 1 is "0001".
_LEGACY_TABLE = "huiyin_schema"
_LEGACY_REVISIONS = {1: "0001"}


class SchemaError(RuntimeError):
    """The index's schema cannot be used by this program as it is."""


@dataclass(frozen=True)
class Revision:
    """Where an index's schema is, and where this program needs it."""

    current: str | None  # None: an empty database
    head: str

    @property
    def up_to_date(self) -> bool:
        """Whether the schema is at this program's revision."""
        return self.current == self.head


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def head() -> str:
    """This program's schema revision."""
    revision = _scripts().get_current_head()
    assert revision is not None
    return revision


def _legacy(connection: Connection) -> str | None:
    """The revision an index from before Alembic is at (None: not such an index)."""
    if not inspect(connection).has_table(_LEGACY_TABLE):
        return None
    version = connection.execute(text(f"SELECT version FROM {_LEGACY_TABLE}")).scalar()
    revision = _LEGACY_REVISIONS.get(int(version or 0))
    if revision is None:
        raise SchemaError(f"the index is at schema version {version}, newer than this "
                          "program knows; upgrade Huiyin")
    return revision


def revision(connection: Connection) -> Revision:
    """The index's revision; SchemaError when it is one this program does not know."""
    from alembic.runtime.migration import MigrationContext

    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        current = _legacy(connection)
    elif current not in {s.revision for s in _scripts().walk_revisions()}:
        raise SchemaError(f"the index is at schema revision {current}, newer than this "
                          "program knows; upgrade Huiyin")
    return Revision(current, head())


def upgrade(engine: Engine) -> Revision:
    """Bring the index to this program's revision; returns where it was before."""
    from alembic import command

    with engine.begin() as connection:
        found = revision(connection)
        if found.current is not None and inspect(connection).has_table(_LEGACY_TABLE):
            command.stamp(_config(connection), found.current)  # adopted: Alembic's from now on
            connection.execute(text(f"DROP TABLE {_LEGACY_TABLE}"))
        if not found.up_to_date:
            command.upgrade(_config(connection), "head")
        return found


def _at_head(engine: Engine) -> bool:
    """Whether the index's Alembic revision is HEAD, read without Alembic (False when the
    index has no revision table yet, or cannot be read: the full check then says why)."""
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return False
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:
        return False
    return current == [HEAD]


def ensure(engine: Engine, *, upgrade_in_place: bool) -> None:
    """Open-time check: upgrade (SQLite) or insist on this program's revision."""
    if _at_head(engine):
        return
    if upgrade_in_place:
        upgrade(engine)
        return
    with engine.connect() as connection:
        found = revision(connection)
    if not found.up_to_date:
        raise SchemaError(
            f"the index is at schema revision {found.current or 'none (empty)'}, this "
            f"program needs {found.head}: run `huiyin db upgrade` once, then start the "
            "replicas"
        )
