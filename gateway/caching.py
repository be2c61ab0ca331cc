"""How an audio answer may be cached: privately when a header key allowed it, so that
shared caches (the edge) never give it to a client without one, and no longer than its
signed URL is valid or its prompt is kept (a prompt that expires)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from aiohttp import web

from gateway.caller import PRINCIPAL

_MAX_AGE = re.compile(r"max-age=([0-9]+)")
_IMMUTABLE = re.compile(r",\s*immutable\b")


@dataclass(frozen=True)
class Caching:
    """The restriction of one request's answers. A signed URL's max-age is at most the
    seconds left until its `exp`, rounded down to a power of two (so answers share a few
    sets of prebuilt headers), and its answer is never `immutable`."""

    private: bool = False
    expires: int | None = None

    def apply(self, cache_control: str) -> str:
        """The Cache-Control given, restricted."""
        private, left = self.key()
        if private:
            cache_control = cache_control.replace("public", "private", 1)
        if left is not None:
            cache_control = _MAX_AGE.sub(lambda m: f"max-age={min(int(m[1]), left)}",
                                         cache_control, count=1)
            # The answer is good until the signature expires, not for ever: no cache may
            # take it for immutable (RFC 8246).
            cache_control = _IMMUTABLE.sub("", cache_control)
        return cache_control

    def until(self, expires: float | None) -> Caching:
        """This restriction, and no caching past `expires` (a prompt's expiry) either."""
        if expires is None:
            return self
        moment = int(expires)
        return Caching(self.private, moment if self.expires is None else min(self.expires, moment))

    def key(self) -> tuple[bool, int | None]:
        """What tells one restriction's headers from another's (for prebuilt headers)."""
        left = None if self.expires is None else _power_of_two(self.expires - time.time())
        return self.private, left


def _power_of_two(seconds: float) -> int:
    """The largest power of two not above seconds (0 below one second)."""
    return 0 if seconds < 1 else 1 << (int(seconds).bit_length() - 1)


PUBLIC = Caching()


def caching_of(request: web.Request) -> Caching:
    """How the answer to a request may be cached (see Caching)."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        return PUBLIC
    return Caching(private=principal.by_header, expires=principal.expires)


def cache_control_for(
    request: web.Request, cache_control: str, expires: float | None = None,
) -> str:
    """An audio answer's Cache-Control, as its request allows (see Caching), never kept
    past `expires` (its prompt's expiry)."""
    return caching_of(request).until(expires).apply(cache_control)
