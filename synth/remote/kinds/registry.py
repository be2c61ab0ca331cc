"""The kinds by name: each kind's module adds its class here, and a backend entry's `kind`
picks one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from config.backends import Backend
from synth.engine import UpstreamError
from synth.remote.kinds.base import Kind

log = logging.getLogger("huiyin.remote")

# How a kind is built from its entry: its class.
_Builder = TypeVar("_Builder", bound=Callable[[Backend], Kind])

KINDS: dict[str, Callable[[Backend], Kind]] = {}
# The paths each kind adds to the entry's url: a url that ends in one names the endpoint,
# not the server, and every call would go to that path twice.
OWN_PATHS: dict[str, tuple[str, ...]] = {}


def register(name: str, *own_paths: str) -> Callable[[_Builder], _Builder]:
    """Class decorator: the kind that entries name `name`, and the paths it adds to their url."""

    def add(builder: _Builder) -> _Builder:
        KINDS[name] = builder
        OWN_PATHS[name] = own_paths
        return builder

    return add


def _warn_of_own_path(backend: Backend) -> None:
    given = urlsplit(backend.url).path.rstrip("/")
    for path in OWN_PATHS.get(backend.kind, ()):
        if given.endswith(path):
            log.warning("backend '%s': its url ends in %s, a path the %s kind adds itself; "
                        "give the server's base URL", backend.name, path, backend.kind)
            return


def kind_for(backend: Backend) -> Kind:
    """The kind named by a backend entry (blocking: may read the files it names)."""
    _warn_of_own_path(backend)
    build = KINDS.get(backend.kind)
    if build is None:
        raise UpstreamError(backend.name, f"kind '{backend.kind}' is not available in this build")
    return build(backend)
