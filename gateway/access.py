"""What a caller may do: the access policy, judged for every request before its handler.

The middleware finds who the request comes from (gateway/caller.py), refuses what its
scope does not allow (`play` hears stored audio, `synthesize` may make new audio, `admin`
may use /admin/*), and keeps the principal on the request; a stored route that anyone may
hear is told the caller's tenant too (its prompts and phrase ids are that tenant's). What
a speaking request may cost is judged later, by the store, through its admission
(gateway/admission.py); how its answer may be cached follows from the principal
(gateway/caching.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from cache.credentials import Credentials
from config import Settings
from gateway.admission import LIMITS, Limits
from gateway.caller import PRINCIPAL, Callers, Principal
from gateway.errors import Forbidden, Unauthorized, Unavailable
from gateway.logs import note
from gateway.state import CREDENTIALS, SETTINGS
from synth.request import DEFAULT_TENANT

# Routes by what they need: speaking routes synthesize misses (the pronunciation preview
# synthesizes nothing, but takes the frontend's time); stored routes only play.
SPEAKING = frozenset({"tts", "tts_stream", "api_tts", "openai_speech", "pronounce"})
STORED = frozenset({"prompt", "phrase"})


class Access:
    """The access policy of one application."""

    def __init__(self, settings: Settings) -> None:
        self.mode = settings.resolved_access()
        self.public_phrases = settings.public_phrases
        self.callers = Callers(settings, guarded=self.guarded)

    @property
    def guarded(self) -> bool:
        """Whether speaking needs a key or a signed URL."""
        return self.mode == "keys"

    def need(self, request: web.Request) -> str | None:
        """The scope a request needs at least (None: anyone may make it)."""
        route = request.match_info.route.name or ""
        if request.path.startswith("/admin/"):
            return "admin"
        if route in SPEAKING or (route in STORED and self.guarded and not self.public_phrases):
            return "play"
        return None

    def require(self, principal: Principal, need: str) -> None:
        """Refuse a request its principal may not make (401 without credentials, 403 with
        too small a scope)."""
        if principal.allows(need):
            return
        if principal.scope is None or (need == "admin" and principal.key is None):
            if need == "admin":
                raise Unauthorized("admin routes need a key with the admin scope "
                                   "('Authorization: Bearer <key>')")
            raise Unauthorized("this gateway needs an API key ('Authorization: Bearer <key>' "
                               "or 'X-API-Key') or a signed URL")
        raise Forbidden(f"the key '{principal.name}' has the scope {principal.scope}; this "
                        f"needs {need}")


ACCESS = web.AppKey("access", Access)


def add_access(app: web.Application, credentials: Callable[[], Credentials]) -> None:
    """The application's access policy, its limits, and the middleware that judges every
    request that needs a scope before its handler. `credentials` gives the API keys once
    the services are open (Unavailable while loading)."""
    settings = app[SETTINGS]
    app[ACCESS] = Access(settings)
    app[LIMITS] = Limits.of(settings)

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        access = request.app[ACCESS]
        need = access.need(request)
        stored = request.match_info.route.name in STORED
        if need is not None or stored:
            principal = await access.callers.principal(
                request, credentials(), strict=None if need is not None else False)
            note(client=principal.name)  # the access log names the key, never its secret
            if principal.tenant != DEFAULT_TENANT:
                note(tenant=principal.tenant)
            if need is not None:
                access.require(principal, need)
            request[PRINCIPAL] = principal
        return await handler(request)

    app.middlewares.append(middleware)


async def authorize(request: web.Request, secret: str | None, need: str = "play") -> Principal:
    """Judge a request of a front whose protocol carries its credential its own way (Aliyun's
    X-NLS-Token or `token`, a WebSocket's handshake): as the middleware judges the routes it
    knows, with `secret` taken when no key header is sent. The principal is kept on the
    request (admission reads it); refusals are Unauthorized or Forbidden, for the front to
    answer in its protocol's own shape."""
    access = request.app[ACCESS]
    if CREDENTIALS not in request.app:
        raise Unavailable("the gateway is still starting", retry_after=2)
    principal = await access.callers.principal(request, request.app[CREDENTIALS], given=secret)
    note(client=principal.name)
    if principal.tenant != DEFAULT_TENANT:
        note(tenant=principal.tenant)
    access.require(principal, need)
    request[PRINCIPAL] = principal
    return principal


def principal_of(request: web.Request) -> Principal:
    """The principal the middleware found for a speaking or stored route."""
    return request[PRINCIPAL]
