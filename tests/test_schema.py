"""The index's schema is Alembic's: a new index is at the head revision, an index from
before Alembic is adopted with its rows, a newer revision is refused, a database server's
index is only checked at startup, and the tables the code queries match the migrations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, Table, create_engine, inspect, text

from cache import schema
from cache.index import Base, Index, Phrase, now
from tests.servers import Postgres
from tests.support import REPO


def url_in(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'index.sqlite3'}"


def phrase(key: str) -> Phrase:
    stamp = now()
    return Phrase(key, "您好。", "fastspeech2", "v1", "baker", "neutral", 1.0, 1.0, 1.0, 1.2,
                  24000, 100, "0" * 16, 0.1, stamp, stamp, 0, False, None, ())


def test_a_new_index_is_at_the_head_revision(tmp_path: Path) -> None:
    index = Index(url_in(tmp_path))
    try:
        with index.engine.connect() as connection:
            found = schema.revision(connection)
            assert found.up_to_date and found.current == schema.head()
        # Opening again changes nothing.
        index.put_phrase(phrase("a" * 32))
    finally:
        index.close()
    again = Index(url_in(tmp_path))
    try:
        assert again.get("a" * 32) is not None
    finally:
        again.close()


def test_the_head_named_in_the_code_is_alembics_and_an_index_there_opens_without_alembic(
    tmp_path: Path,
) -> None:
    """schema.HEAD is the newest migration (a new migration must name itself there), and a
    gateway opening an index at it never imports Alembic, which would stay in its memory."""
    assert schema.HEAD == schema.head()
    Index(url_in(tmp_path)).close()  # made, and upgraded to the head
    opened = subprocess.run(
        [sys.executable, "-c", "import sys; from cache.index import Index; "
         f"Index({url_in(tmp_path)!r}).close(); "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))"],
        cwd=REPO, capture_output=True, text=True, check=True)
    assert opened.stdout.strip() == "[]", opened.stdout + opened.stderr


def test_the_tables_the_code_queries_match_the_migrations(tmp_path: Path) -> None:
    index = Index(url_in(tmp_path))
    try:
        with index.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == [], diff
    finally:
        index.close()


def first_release_tables() -> MetaData:
    """The phrases and variants tables as the first release made them (before 0006 added
    columns to phrases and let its text be NULL, and 0007 named each phrase's tenant)."""
    metadata = MetaData()
    later = {"expires", "text_length", "tenant", "public"}
    phrases = Base.metadata.tables["phrases"]
    Table("phrases", metadata, *[
        Column(c.name, c.type, primary_key=c.primary_key, nullable=c.primary_key or c.name == "phrase_id")
        for c in phrases.columns if c.name not in later])
    Base.metadata.tables["variants"].to_metadata(metadata)
    return metadata


def test_an_index_from_before_alembic_is_adopted_with_its_rows(tmp_path: Path) -> None:
    engine = create_engine(url_in(tmp_path))
    with engine.begin() as connection:
        first = first_release_tables()
        first.create_all(connection)
        connection.execute(text("CREATE TABLE huiyin_schema (id INTEGER PRIMARY KEY, version INTEGER)"))
        connection.execute(text("INSERT INTO huiyin_schema VALUES (1, 1)"))
        row = {k: v for k, v in phrase("b" * 32).__dict__.items() if k in first.tables["phrases"].c}
        connection.execute(first.tables["phrases"].insert(), [{**row, "tags": "[]"}])
        connection.execute(first.tables["variants"].insert(), [{
            "key": "b" * 32, "format": "ulaw", "rate": 8000, "file": f"{'b' * 32}-ulaw-8000.ulaw",
            "size": 10, "checksum": "0" * 16}])
    engine.dispose()
    index = Index(url_in(tmp_path))
    try:
        adopted = index.get("b" * 32)
        assert adopted is not None and adopted.text == "您好。" and adopted.text_length == 3
        assert adopted.expires is None
        # The phrase is the default tenant's, as every phrase from before tenants is.
        assert adopted.tenant == "default" and not adopted.public
        # Rebuilding the phrases table on SQLite (its text became nullable) kept the variants.
        assert [v.format for v in index.variants("b" * 32)] == ["ulaw"]
        with index.engine.connect() as connection:
            assert schema.revision(connection).up_to_date
            assert not inspect(connection).has_table("huiyin_schema")
    finally:
        index.close()


def test_a_newer_revision_is_refused_and_left_alone(tmp_path: Path) -> None:
    Index(url_in(tmp_path)).close()
    engine = create_engine(url_in(tmp_path))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    engine.dispose()
    with pytest.raises(schema.SchemaError, match="newer than this program knows"):
        Index(url_in(tmp_path))
    engine = create_engine(url_in(tmp_path))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "ffff"
    engine.dispose()


def test_an_index_that_is_only_checked_names_the_command_to_run(tmp_path: Path) -> None:
    with pytest.raises(schema.SchemaError, match="run `huiyin db upgrade`"):
        Index(url_in(tmp_path), upgrade=False)


def test_the_db_commands_upgrade_and_report(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"data_dir: {tmp_path / 'data'}\n", encoding="utf-8")

    def huiyin(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(settings),
                               "db", *argv], cwd=REPO, capture_output=True, text=True,
                              timeout=60)

    behind = huiyin("revision")
    assert behind.returncode == 1 and "index schema: empty" in behind.stdout
    upgraded = huiyin("upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"empty -> {schema.head()}" in upgraded.stdout
    again = huiyin("upgrade")
    assert again.returncode == 0 and "up to date" in again.stdout
    current = huiyin("revision")
    assert current.returncode == 0 and f"index schema: {schema.head()}" in current.stdout


def test_a_postgresql_index_is_checked_at_startup_and_upgraded_by_the_command(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.database()
    with pytest.raises(schema.SchemaError, match="run `huiyin db upgrade`"):
        Index(url)  # replicas never migrate a shared database on their own
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"data_dir: {tmp_path / 'data'}\ndatabase_url: {url}\n", encoding="utf-8")
    upgraded = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--config", str(settings), "db", "upgrade"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert "127.0.0.1" not in upgraded.stdout + upgraded.stderr  # the URL is not echoed
    index = Index(url)
    try:
        index.put_phrase(phrase("c" * 32))
        assert index.get("c" * 32) is not None
        with index.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == [], diff
    finally:
        index.close()


def test_going_back_to_the_release_before_customer_data_keeps_phrases_and_variants(
    tmp_path: Path,
) -> None:
    index = Index(url_in(tmp_path))
    index.put_phrase(phrase("f" * 32))
    with index.engine.begin() as connection:
        connection.execute(text("INSERT INTO variants VALUES (:key, 'ulaw', 8000, 'f.ulaw', 10, :sum)"),
                           {"key": "f" * 32, "sum": "0" * 16})
        config = Config()
        config.set_main_option("script_location", str(schema.MIGRATIONS))
        config.attributes["connection"] = connection
        # Both rebuild the phrases table on SQLite (foreign keys on: a dropped table's
        # variants would go with it).
        for revision in ("0006", "0005"):
            command.downgrade(config, revision)
            kept = connection.execute(text("SELECT count(*) FROM variants")).scalar()
            assert kept == 1, revision
            assert connection.execute(text("SELECT count(*) FROM phrases")).scalar() == 1
    index.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_phrases_and_keys_from_before_tenants_are_the_default_tenants(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (url_in(tmp_path) if database == "sqlite"
           else request.getfixturevalue("postgres").database())
    engine = create_engine(url)
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(schema.MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")  # as the release before tenants left it
        columns = {k: v for k, v in phrase("d" * 32).__dict__.items()
                   if k not in ("tenant", "public")}
        columns["tags"] = "[]"
        connection.execute(text(f"INSERT INTO phrases ({', '.join(columns)}) VALUES "
                                f"({', '.join(':' + k for k in columns)})"), columns)
        for name, scope in (("ivr", "synthesize"), ("ops", "admin")):
            connection.execute(text(
                "INSERT INTO api_keys (name, secret_hash, prefix, scope, created) "
                "VALUES (:name, :hash, 'hy_x', :scope, 0)"), {"name": name, "hash": name, "scope": scope})
    engine.dispose()
    index = Index(url, upgrade=True)
    try:
        moved = index.get("d" * 32)
        assert moved is not None and moved.tenant == "default" and not moved.public
        with index.engine.connect() as connection:
            tenants = dict(connection.execute(text("SELECT name, tenant FROM api_keys")).all())
        # Keys are the default tenant's; admin keys stay site-wide, as they were.
        assert tenants == {"ivr": "default", "ops": None}
    finally:
        index.close()
