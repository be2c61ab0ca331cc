"""Shared fixtures: the real default voice, loaded once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_settings
from synth.fastspeech2 import FastSpeech2Engine
from synth.frontend import Frontend
from tests.support import CountingSynthesizer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


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
