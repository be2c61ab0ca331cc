"""Remote backends: the TTS services a site already runs, each behind the Engine protocol."""

from __future__ import annotations

import threading
from collections.abc import Callable

from config.backends import Backend
from synth.engine import SynthesisError, UpstreamError
from synth.remote.breaker import Breaker
from synth.remote.client import Caller
from synth.remote.engine import BackendState, RemoteEngine
from synth.remote.kinds import kind_for

__all__ = ["BackendState", "RemoteEngine", "load_backend"]


class BackendStartError(SynthesisError):
    """A backend cannot start: it does not say what startup needs to know."""


def load_backend(backend: Backend, normalizer: Callable[[], Callable[[str], str]]) -> list[RemoteEngine]:
    """The backend's instances, one per `concurrency` (blocking: may ask the upstream for
    its version and rate). `normalizer` gives the shared Mandarin normalizer when needed."""
    kind = kind_for(backend)
    version, rate = backend.version, backend.sample_rate
    if version is None or rate is None:
        probe = Caller(backend.name, backend.url, timeout=min(backend.timeout, 10), retries=1,
                       max_bytes=backend.max_answer_bytes)
        try:
            reported = kind.report(probe, backend)
        except UpstreamError as exc:
            if version is None:
                raise BackendStartError(
                    f"{exc}; its version comes from the upstream: set the entry's 'version' "
                    "to start while it is down"
                ) from None
            reported = None
        finally:
            probe.close()
        if reported is not None:
            version = version or reported.version
            rate = rate or reported.sample_rate
    if version is None:
        raise BackendStartError(f"backend '{backend.name}' reports no version; set 'version'")
    state = BackendState(Breaker(backend.breaker_failures, backend.breaker_cooldown))
    normalize = normalizer() if backend.normalize else None
    return [
        RemoteEngine(backend, kind, state, version=version, sample_rate=rate or kind.default_rate,
                     normalize=normalize)
        for _ in range(backend.concurrency)
    ]


_shared: dict[str, Callable[[str], str]] = {}
_shared_lock = threading.Lock()


def shared_normalizer() -> Callable[[str], str]:
    """One Mandarin text normalizer for every backend that asks for normalization."""
    with _shared_lock:
        if "zh" not in _shared:
            from synth.frontend import TextNormalizer

            _shared["zh"] = TextNormalizer().normalize
        return _shared["zh"]
