"""The browser page: GET / and its assets under /static/.

The assets are a fixed list of files in gateway/static, read once (off the event loop) on
the first request and kept in memory. The page links them with `?v=<hash>`, so a linked
asset may be cached for a year; the page itself is revalidated on every load.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDict

from gateway.errors import NotFound
from gateway.responses import IMMUTABLE, not_modified

STATIC = Path(__file__).resolve().parent / "static"
INDEX = "index.html"
# Every file /static/ serves, with its exact Content-Type; nothing else is reachable.
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
REVALIDATE = "no-cache"
# The page loads nothing from elsewhere; audio plays from this origin or a MediaSource (blob:),
# and the waveform reads the audio it plays (blob:).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    """One file's bytes, Content-Type and content hash (its ETag and version)."""

    body: bytes
    content_type: str
    version: str

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def _asset(body: bytes, content_type: str) -> Asset:
    return Asset(body, content_type, hashlib.sha256(body).hexdigest()[:16])


def load_assets(directory: Path = STATIC) -> dict[str, Asset]:
    """Read the assets and the page; the page's asset links get their versions (blocking)."""
    assets = {name: _asset((directory / name).read_bytes(), ctype) for name, ctype in ASSETS.items()}
    page = (directory / INDEX).read_text(encoding="utf-8")
    for name, asset in assets.items():
        page = page.replace(f'"/static/{name}"', f'"/static/{name}?v={asset.version}"')
    assets[INDEX] = _asset(page.encode("utf-8"), "text/html; charset=utf-8")
    return assets


class _Loaded:
    """The page and its assets, read once on first use (the app is frozen by then)."""

    def __init__(self) -> None:
        self.assets: dict[str, Asset] | None = None
        # Created on the thread that builds the app; the lock binds to the loop on first use.
        self.lock = asyncio.Lock()


PAGE_ASSETS = web.AppKey("page_assets", _Loaded)


async def _assets(app: web.Application) -> dict[str, Asset]:
    loaded = app[PAGE_ASSETS]
    if loaded.assets is None:
        async with loaded.lock:
            if loaded.assets is None:
                loop = asyncio.get_running_loop()
                loaded.assets = await loop.run_in_executor(None, load_assets)
    return loaded.assets


def _respond(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    headers = CIMultiDict({"Content-Type": asset.content_type, "ETag": asset.etag,
                           "Cache-Control": cache_control})
    if asset.content_type.startswith("text/html"):
        headers.update(SECURITY_HEADERS)
    else:
        headers["X-Content-Type-Options"] = "nosniff"
    unchanged = not_modified(request, asset.etag, headers)
    if unchanged is not None:
        return unchanged
    return web.Response(body=asset.body, headers=headers)


async def index(request: web.Request) -> web.Response:
    """GET|HEAD /: the page."""
    assets = await _assets(request.app)
    return _respond(request, assets[INDEX], REVALIDATE)


async def static(request: web.Request) -> web.Response:
    """GET|HEAD /static/{name}: an asset; immutable when asked for by its current version."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise NotFound(f"no file '{name[:64]}'", "name")
    asset = (await _assets(request.app))[name]
    versioned = request.query.get("v") == asset.version
    return _respond(request, asset, IMMUTABLE if versioned else REVALIDATE)


def add_page_routes(app: web.Application) -> None:
    """Register GET / and GET /static/{name}."""
    app[PAGE_ASSETS] = _Loaded()
    app.router.add_get("/", index, name="page")
    app.router.add_get("/static/{name}", static, name="static")
