"""Builds the engines the `engines` setting names. An engine that cannot load stops startup
with its own message: there is no silent fallback to another engine."""

from __future__ import annotations

from collections.abc import Callable

from config import ConfigError, Settings
from config.settings import ENGINES
from synth.engine import Engine, takes_concurrent_calls


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


def _piper(settings: Settings, threads: int) -> Engine:
    from synth.piper_voice import PiperEngine

    return PiperEngine(settings.piper_model, threads=threads)


# The engine names are listed once, in config.settings.ENGINES (settings check them before
# anything loads); each has its builder here, `_<name>`, and a name without one fails import.
BUILDERS: dict[str, Callable[[Settings, int], Engine]] = {
    name: globals()[f"_{name}"] for name in ENGINES
}


def _instances(settings: Settings, name: str) -> list[Engine]:
    """An engine's instances. One that takes concurrent calls is loaded once, whatever
    `workers` says (its worker runs that many lanes, see `lanes_for`); any other is loaded
    once per worker, the cores divided among the instances."""
    cores = settings.resolved_threads()
    if settings.workers <= 1:
        return [BUILDERS[name](settings, cores)]
    threads = max(1, cores // settings.workers)
    first = BUILDERS[name](settings, threads)
    if takes_concurrent_calls(first):
        return [first]
    return [first] + [BUILDERS[name](settings, threads) for _ in range(settings.workers - 1)]


def lanes_for(settings: Settings, engine: Engine) -> int:
    """Syntheses an instance's worker runs at once: `workers` (0 chooses one per thread the
    `threads` setting allows: every core by default) for an engine that takes concurrent
    calls; one for any other (it has instances instead)."""
    if not takes_concurrent_calls(engine):
        return 1
    return settings.workers or settings.resolved_threads()


def load_engines(settings: Settings) -> list[Engine]:
    """Every configured engine's instances, in the order of the setting; then the voices are
    checked: none offered twice, the default voice offered by some engine."""
    engines: list[Engine] = []
    for name in settings.engines:
        if name not in BUILDERS:
            raise ConfigError(
                f"setting 'engines': unknown engine '{name}'; known: {', '.join(BUILDERS)}"
            )
        engines.extend(_instances(settings, name))
    if settings.backends:
        from synth.remote import load_backend, shared_normalizer

        for backend in settings.backends:
            engines.extend(load_backend(backend, shared_normalizer))
    offered: dict[str, str] = {}
    for engine in engines:
        for voice in engine.voices():
            owner = offered.setdefault(voice.name, engine.name)
            if owner != engine.name:
                raise ConfigError(
                    f"voice '{voice.name}' is offered by engines '{owner}' and '{engine.name}'; "
                    "configure only one of them"
                )
    for backend in settings.backends:
        if backend.fallback is not None and offered.get(backend.fallback) in (None, backend.name):
            raise ConfigError(
                f"backend '{backend.name}': fallback '{backend.fallback}' must be a voice of "
                f"another engine; voices: {', '.join(v for v, e in offered.items() if e != backend.name)}"
            )
    if settings.default_voice is not None and settings.default_voice not in offered:
        raise ConfigError(
            f"setting 'default_voice': no configured engine offers '{settings.default_voice}'; "
            f"voices: {', '.join(offered)}"
        )
    return engines
