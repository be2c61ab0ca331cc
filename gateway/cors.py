"""CORS for the origins the `cors_origins` setting lists, and for no others: pages served
elsewhere may then call the API from a browser with a key. Without the setting the
gateway sends no CORS header, so browsers keep other origins' scripts out.

A preflight is allowed the methods the path's own route has (PUT and DELETE on
/admin/lexicon/{word}, GET and HEAD on /tts.wav), read from the router: a method no route
has for that path is never offered, and a path no route has is offered none: its preflight
goes on to be refused like any request for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import hdrs, web

ALLOWED_HEADERS = "Authorization, X-API-Key, Content-Type, X-Request-Id"
EXPOSED_HEADERS = "X-Cache, X-Request-Id, X-Huiyin-Fallback, Retry-After, Content-Length"
MAX_AGE = "600"


def route_methods(request: web.Request) -> frozenset[str]:
    """The methods the route for the request's path answers, OPTIONS among them (empty
    when no route has the path)."""
    match = request.match_info
    failure = match.http_exception
    if isinstance(failure, web.HTTPMethodNotAllowed):  # the path's route has no OPTIONS
        methods = set(failure.allowed_methods)
    elif failure is None and match.route.resource is not None:
        methods = {route.method for route in match.route.resource}
    else:
        return frozenset()
    return frozenset(methods | {hdrs.METH_OPTIONS})


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
            methods = route_methods(request)
            if methods:  # else refused as any request for the path: the browser gives up
                return web.Response(status=204, headers={
                    hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(sorted(methods)),
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
