"""Whose texts are being read: the frontend's memos (spoken forms, analyses, clauses,
normalized pieces, SSML scripts) keep each reading scope's entries apart, so that how fast
a text reads never tells one tenant that another read it a moment ago.

A scope is a tenant's name ("" for the default tenant, the site's: a site with one tenant
reads as it did). The voices set it around each reading and synthesis (`reading_as`); a
synthesis worker runs each job in the context it was asked in.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, Generic, ParamSpec, TypeVar

from synth.request import DEFAULT_TENANT

P = ParamSpec("P")
R = TypeVar("R")

READING_SCOPE: ContextVar[str] = ContextVar("reading_scope", default="")


def scope_for(tenant: str) -> str:
    """A tenant's reading scope: its name, or "" for the default tenant."""
    return "" if tenant == DEFAULT_TENANT else tenant


@contextlib.contextmanager
def reading_as(scope: str) -> Iterator[None]:
    """Read in a scope (a tenant's name; "" for the site's) within the block."""
    token = READING_SCOPE.set(scope)
    try:
        yield
    finally:
        READING_SCOPE.reset(token)


class ScopedCache(Generic[P, R]):
    """functools.lru_cache, with the reading scope part of every entry's key."""

    def __init__(self, fn: Callable[P, R], maxsize: int) -> None:
        self.__wrapped__ = fn
        self._cached = functools.lru_cache(maxsize=maxsize)(self._run)
        functools.update_wrapper(self, fn)

    def _run(self, scope: str, *args: Any, **kwargs: Any) -> R:
        return self.__wrapped__(*args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._cached(READING_SCOPE.get(), *args, **kwargs)  # type: ignore[arg-type]

    def cache_clear(self) -> None:
        """Forget every scope's entries."""
        self._cached.cache_clear()

    def cache_info(self) -> functools._CacheInfo:
        """Hits, misses and size, over every scope."""
        return self._cached.cache_info()


def scoped_cache(maxsize: int) -> Callable[[Callable[P, R]], ScopedCache[P, R]]:
    """A decorator: ScopedCache of `maxsize` entries."""
    return lambda fn: ScopedCache(fn, maxsize)
