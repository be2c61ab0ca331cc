"""Remembered readings: the frontend's and the engines' results by text, kept up to a bound
(least recently used out first), as functools.lru_cache keeps them, apart for each reading
scope (synth/scope.py: a tenant's), unless the reading is fleeting.

How fast a text reads must tell no tenant that another read it a moment ago, so the reading
scope is part of every entry's key: the default tenant's is the site's, as before tenants.

A request that asks that nothing of it be kept (no-store) is read and spoken inside
`fleeting()`: every memo then answers from what it holds already and remembers nothing new,
so no piece of its text stays in memory once it is answered. The flag is a context
variable: the store sets it around its work for such a request, the synthesis worker and
the frontend's fair share carry the caller's context into their threads.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar
from typing import Any, Generic, NamedTuple, ParamSpec, TypeVar

from synth.scope import READING_SCOPE

P = ParamSpec("P")
T = TypeVar("T")

FLEETING: ContextVar[bool] = ContextVar("huiyin_fleeting", default=False)
_MEMOS: weakref.WeakSet[Memo[Any, Any]] = weakref.WeakSet()


@contextlib.contextmanager
def fleeting() -> Iterator[None]:
    """Within it (and the threads it hands work to), no memo remembers anything new."""
    token = FLEETING.set(True)
    try:
        yield
    finally:
        FLEETING.reset(token)


class CacheInfo(NamedTuple):
    """A memo's figures, as functools.lru_cache reports them."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class Memo(Generic[P, T]):
    """fn's results by reading scope and arguments, the newest `maxsize` kept (thread-safe)."""

    def __init__(self, fn: Callable[P, T], maxsize: int) -> None:
        self._fn = fn
        self.__wrapped__ = fn  # the function itself, as functools' wrappers name it
        self._maxsize = maxsize
        self._entries: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = 0
        _MEMOS.add(self)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        key: Hashable = (READING_SCOPE.get(), args, tuple(sorted(kwargs.items())))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self._hits += 1
                return self._entries[key]
            self._misses += 1
        value = self._fn(*args, **kwargs)
        if not FLEETING.get():
            with self._lock:
                self._entries[key] = value
                self._entries.move_to_end(key)
                while len(self._entries) > self._maxsize:
                    self._entries.popitem(last=False)
        return value

    def cache_clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()

    def cache_info(self) -> CacheInfo:
        """Hits, misses, bound and size."""
        with self._lock:
            return CacheInfo(self._hits, self._misses, self._maxsize, len(self._entries))

    def keys(self) -> list[Hashable]:
        """The scopes and arguments remembered (for tests that look for a text)."""
        with self._lock:
            return list(self._entries)


def memo(maxsize: int) -> Callable[[Callable[P, T]], Memo[P, T]]:
    """A decorator: `@memo(512)` as `@functools.lru_cache(maxsize=512)`."""
    def wrap(fn: Callable[P, T]) -> Memo[P, T]:
        return Memo(fn, maxsize)

    return wrap


def every_memo() -> list[Memo[Any, Any]]:
    """Every memo alive in this process."""
    return list(_MEMOS)
