"""CORS for the origins the `cors_origins` setting lists, and for no others: pages served
elsewhere may then call the API from a browser with a key. Without the setting the
gateway sends no CORS header, so browsers keep other origins' scripts out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import hdrs, web

ALLOWED_HEADERS = "Authorization, X-API-Key, Content-Type, X-Request-Id"
EXPOSED_HEADERS = "X-Cache, X-Request-Id, X-Huiyin-Fallback, Retry-After, Content-Length"
ALLOWED_METHODS = "GET, HEAD, POST, DELETE"
MAX_AGE = "600"


def add_cors(app: web.Application, origins: Sequence[str]) -> None:
    """Answer preflights from the listed origins and mark every answer to them readable
    (streamed ones too: the headers go on as each response is prepared)."""
    allowed = frozenset(origins)

    @web.middleware
    async def preflight(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if (request.method == hdrs.METH_OPTIONS and request.headers.get(hdrs.ORIGIN) in allowed
                and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers):
            return web.Response(status=204, headers={
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOWED_METHODS,
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_HEADERS,
                hdrs.ACCESS_CONTROL_MAX_AGE: MAX_AGE,
            })
        return await handler(request)

    async def mark(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and origin in allowed:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            if request.method != hdrs.METH_OPTIONS:
                response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED_HEADERS
        response.headers.add(hdrs.VARY, "Origin")

    app.middlewares.append(preflight)
    app.on_response_prepare.append(mark)
