"""Whether a request asks that nothing of it be kept: `Cache-Control: no-store` on the
request, or `cache=no-store` in its query (gateway/storing.py reads the rest of what a
request asks about keeping its prompt). Read before anything else, by whatever would keep
part of the request: the URL memo, the signed-URL memo, the debug access log."""

from __future__ import annotations

from aiohttp import web

NO_STORE = "no-store"


def header_says_no_store(request: web.BaseRequest) -> bool:
    """Whether the request's Cache-Control header says no-store."""
    return any(token.strip().lower() == NO_STORE
               for line in request.headers.getall("Cache-Control", ())
               for token in line.split(","))


def says_no_store(request: web.BaseRequest) -> bool:
    """Whether a request asks that nothing of it be kept, in its header or its query (the
    query parsed only when it may say so: every request passes here)."""
    if header_says_no_store(request):
        return True
    return NO_STORE in request.raw_path and request.query.get("cache") == NO_STORE
