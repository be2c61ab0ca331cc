"""Whose texts are being read: the frontend's and the engines' memos (synth/memo.py: spoken
forms, analyses, clauses, normalized pieces, SSML scripts) keep each reading scope's entries
apart, so that how fast a text reads never tells one tenant that another read it a moment ago.

A scope is a tenant's name ("" for the default tenant, the site's: a site with one tenant
reads as it did). The voices set it around each reading and synthesis (`reading_as`); a
synthesis worker runs each job in the scope it was asked in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from synth.request import DEFAULT_TENANT

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
