"""What a request asks about keeping its prompt, as HTTP says it: `Cache-Control: no-store`
on the request (any route), `cache=no-store` in a /tts URL's query or `"cache": "no-store"`
in a JSON body; `ttl` (seconds, at most `max_ttl`); and `refresh` (made again in place: a
key with the admin scope only). The answer to a no-store request is `Cache-Control:
no-store` itself, and no part of the gateway keeps it (cache/storing.py for the store)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from cache.storing import KEEP, Storing
from gateway import params
from gateway.caller import PRINCIPAL
from gateway.errors import BadRequest, Forbidden, InvalidParameter
from gateway.nostore import NO_STORE, header_says_no_store
from gateway.state import SETTINGS
from synth.memo import fleeting

# The query parameters and JSON fields that say it.
STORING_FIELDS = ("cache", "ttl", "refresh")
_TRUE, _FALSE = ("1", "true"), ("0", "false")


def _flag(values: Mapping[str, Any], name: str) -> bool:
    raw = values.get(name)
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, int | str) and str(raw).lower() in _TRUE + _FALSE:
        return str(raw).lower() in _TRUE
    raise InvalidParameter(f"{name} must be 1 or 0 (true or false)", name)


def storing_of(request: web.Request, values: Mapping[str, Any]) -> Storing:
    """What a request asks about keeping its prompt, from its headers and `values` (its
    query or JSON body); a 4xx naming the field for what it may not ask."""
    cache = params.string(values, "cache")
    if cache is not None and cache != NO_STORE:
        raise InvalidParameter(f"cache must be '{NO_STORE}' (or left out)", "cache")
    keep = cache is None and not header_says_no_store(request)
    ttl = params.integer(values, "ttl")
    longest = request.app[SETTINGS].max_ttl
    if ttl is not None and not 1 <= ttl <= longest:
        raise InvalidParameter(f"ttl must be between 1 and {longest} seconds (max_ttl)", "ttl")
    refresh = _flag(values, "refresh")
    if refresh:
        principal = request.get(PRINCIPAL)
        if principal is None or not principal.allows("admin"):
            raise Forbidden("refresh makes a stored prompt again: it needs a key with the "
                            "admin scope", "refresh")
        if not keep:
            raise BadRequest("refresh replaces the stored prompt, no-store keeps nothing: "
                             "give one of them", "refresh")
    if keep and ttl is None and not refresh:
        return KEEP
    return Storing(keep=keep, ttl=ttl, refresh=refresh)


def kept_as(storing: Storing) -> contextlib.AbstractContextManager[None]:
    """The context a request is read and spoken in: fleeting() when it asks that nothing be
    kept (no memo remembers its text; tasks started within it inherit that), else none."""
    return contextlib.nullcontext() if storing.keep else fleeting()
