"""Builds the engines the `engines` setting names. An engine that cannot load stops startup
with its own message: there is no silent fallback to another engine."""

from __future__ import annotations

from collections.abc import Callable

from config import ConfigError, Settings
from config.settings import ENGINES
from synth.engine import Engine


def _fastspeech2(settings: Settings, threads: int) -> Engine:
    from synth.fastspeech2 import FastSpeech2Engine

    return FastSpeech2Engine.load(settings.models_dir, threads=threads, lexicon=settings.lexicon)


def _sambert(settings: Settings, threads: int) -> Engine:
    from synth.sambert import EngineUnavailableError, SambertEngine

    if settings.sambert_model_dir is not None:
        return SambertEngine(settings.sambert_model_dir, threads=threads)
    if settings.sambert_model_id is not None:
        return SambertEngine.from_cache(settings.sambert_model_id, threads=threads)
    raise EngineUnavailableError(
        "engine 'sambert' is configured but neither setting 'sambert_model_dir' nor "
        "'sambert_model_id' is set"
    )


# The engine names are listed once, in config.settings.ENGINES (settings check them before
# anything loads); each has its builder here, `_<name>`, and a name without one fails import.
BUILDERS: dict[str, Callable[[Settings, int], Engine]] = {
    name: globals()[f"_{name}"] for name in ENGINES
}


def load_engines(settings: Settings) -> list[Engine]:
    """Every configured engine, one instance per worker, in the order of the setting; then
    the voices are checked: none offered twice, the default voice offered by some engine."""
    threads = max(1, settings.resolved_threads() // settings.workers)
    engines: list[Engine] = []
    for name in settings.engines:
        if name not in BUILDERS:
            raise ConfigError(
                f"setting 'engines': unknown engine '{name}'; known: {', '.join(BUILDERS)}"
            )
        engines.extend(BUILDERS[name](settings, threads) for _ in range(settings.workers))
    offered: dict[str, str] = {}
    for engine in engines:
        for voice in engine.voices():
            owner = offered.setdefault(voice.name, engine.name)
            if owner != engine.name:
                raise ConfigError(
                    f"voice '{voice.name}' is offered by engines '{owner}' and '{engine.name}'; "
                    "configure only one of them"
                )
    if settings.default_voice is not None and settings.default_voice not in offered:
        raise ConfigError(
            f"setting 'default_voice': no configured engine offers '{settings.default_voice}'; "
            f"voices: {', '.join(offered)}"
        )
    return engines
