"""Who may make the gateway speak: API keys, signed URLs, the access policy, and the rate
limits and quotas every miss is admitted under.

Each request is judged once, by the middleware, into a `Principal`: a key (from
`Authorization: Bearer` or `X-API-Key`), the bootstrap admin token, a signed URL, or an
anonymous client. Routes that speak hand the store `admit(request)`, which the store asks
only when a request finds no stored phrase: there the scope is checked (`play` keys hear
stored audio only), the client's token buckets are drawn from and the key's daily quota is
charged. Hits are never limited.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDictProxy

from cache.credentials import SCOPES, SECRET, ApiKey
from cache.keys import SpeechRequest
from cache.ratelimit import Draw
from cache.store import Admit, PromptStore
from config import Settings
from gateway.errors import BadRequest, Forbidden, QuotaExceeded, RateLimited, Unauthorized
from gateway.logs import note
from gateway.signing import SignatureError, is_signed, verify

log = logging.getLogger("huiyin.gateway")

# Routes by what they need: speaking routes synthesize misses; stored routes only play.
# (The pronunciation preview synthesizes nothing, but takes the frontend's time.)
SPEAKING = frozenset({"tts", "tts_stream", "api_tts", "openai_speech", "pronounce"})
STORED = frozenset({"prompt", "phrase"})
SIGNABLE = frozenset({"tts", "tts_stream", "prompt", "phrase"})  # GET routes: IVR fetches
# How long a key looked up in the index is trusted before it is looked up again: a key
# revoked by another process (`huiyin keys revoke`, another replica) is refused after this.
KEY_CACHE_SECONDS = 1.0
_KEY_CACHE_SIZE = 10_000
_SIGNED_MEMO = 20_000
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Caching:
    """How an answer may be cached: private when a header key allowed it, so that shared
    caches (the edge) never give it to a client without one; no longer than its signed
    URL is valid. The max-age is rounded down to a power of two seconds, so answers share a
    few sets of prebuilt headers."""

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
        return cache_control

    def key(self) -> tuple[bool, int | None]:
        """What tells one restriction's headers from another's (for prebuilt headers)."""
        left = None if self.expires is None else _power_of_two(self.expires - time.time())
        return self.private, left


def _power_of_two(seconds: float) -> int:
    """The largest power of two not above seconds (0 below one second)."""
    return 0 if seconds < 1 else 1 << (int(seconds).bit_length() - 1)


_MAX_AGE = re.compile(r"max-age=([0-9]+)")
PUBLIC = Caching()


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, what it may do, and the buckets its misses draw from."""

    name: str  # a key's name, "admin-token", "signed-url" or "anonymous"
    scope: str | None  # play, synthesize, admin; None: may do nothing that needs a scope
    bucket: str  # the rate limit's bucket name
    key: ApiKey | None = None
    by_header: bool = False  # answered to a header credential: shared caches must not keep it
    expires: int | None = None  # a signed URL's expiry: nobody keeps its answer past it

    def allows(self, scope: str) -> bool:
        """Whether the principal's scope includes `scope`."""
        return self.scope is not None and SCOPES.index(self.scope) >= SCOPES.index(scope)


PRINCIPAL = web.RequestKey("principal", Principal)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: web.BaseRequest, proxies: tuple[Network, ...] = ()) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the last
    address in X-Forwarded-For that is not one (proxies append the address they saw)."""
    peer = request.remote or "unknown"
    if not proxies or not _within(peer, proxies):
        return peer
    for hop in reversed(request.headers.get("X-Forwarded-For", "").split(",")):
        hop = hop.strip()
        if not hop:
            continue
        if not _within(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # not an address: the header is not to be trusted
    return peer


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def credential(headers: CIMultiDictProxy[str]) -> str | None:
    """The key a request carries: `Authorization: Bearer <key>` or `X-API-Key: <key>`
    (both given, they must agree)."""
    found = []
    header = headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("give the key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        found.append(token.strip())
    if "X-API-Key" in headers:
        found.append(headers["X-API-Key"].strip())
    if len(found) == 2 and found[0] != found[1]:
        raise BadRequest("Authorization and X-API-Key name different keys; give one", "X-API-Key")
    return found[0] if found else None


class Access:
    """The access policy of one application."""

    def __init__(self, settings: Settings) -> None:
        self.mode = settings.resolved_access()
        self.public_phrases = settings.public_phrases
        self.secrets = settings.url_signing_secret
        self._admin_token = settings.admin_token
        self._rate = settings.rate_limit_misses
        self._burst = settings.rate_limit_burst
        self._characters = settings.rate_limit_characters
        self._keys: OrderedDict[str, tuple[ApiKey | None, float]] = OrderedDict()
        self._proxies = tuple(ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies)
        # Revocations here: a lookup under way when one happens is not kept.
        self._epoch = 0
        self._revoked: set[str] = set()
        # Signed targets verified already, with their expiry: a repeat skips the HMAC.
        self._signed: OrderedDict[str, int] = OrderedDict()

    @property
    def guarded(self) -> bool:
        """Whether speaking needs a key or a signed URL."""
        return self.mode == "keys"

    # keys

    def cached_key(self, secret: str) -> tuple[bool, ApiKey | None]:
        """(known, key) from memory: known is False when the index must be asked."""
        found = self._keys.get(secret)
        if found is None or time.monotonic() - found[1] > KEY_CACHE_SECONDS:
            return False, None
        return True, found[0]

    async def key(self, store: PromptStore, secret: str) -> ApiKey | None:
        """The live key with this secret (memory for KEY_CACHE_SECONDS, then the index)."""
        known, key = self.cached_key(secret)
        if known:
            return key
        epoch = self._epoch
        key = await store.credentials.find(secret) if SECRET.fullmatch(secret) else None
        if epoch != self._epoch:  # a key was revoked while this looked: ask again next time
            return key if key is None or key.name not in self._revoked else None
        self._keys[secret] = (key, time.monotonic())
        self._keys.move_to_end(secret)
        while len(self._keys) > _KEY_CACHE_SIZE:
            self._keys.popitem(last=False)
        return key

    def forget(self, name: str) -> None:
        """Drop a key from memory (revoked here: refused from the next request on)."""
        self._epoch += 1
        self._revoked.add(name)
        for secret, (key, _) in list(self._keys.items()):
            if key is not None and key.name == name:
                del self._keys[secret]

    def verify_signed(self, method: str, target: str) -> int:
        """A signed GET or HEAD target's expiry, or SignatureError (verified targets are
        remembered until they expire)."""
        expires = self._signed.get(target)
        if expires is not None and method in ("GET", "HEAD"):
            if expires >= time.time():
                return expires
            del self._signed[target]
        expires = verify(method, target, self.secrets)
        if method in ("GET", "HEAD"):
            self._signed[target] = expires
            while len(self._signed) > _SIGNED_MEMO:
                self._signed.popitem(last=False)
        return expires

    def _is_admin_token(self, secret: str) -> bool:
        expected = self._admin_token
        if not expected:
            return False
        # Header bytes that are not UTF-8 come surrogate-escaped: compared as the bytes sent.
        return hmac.compare_digest(secret.encode("utf-8", "surrogateescape"), expected.encode())

    def _keyed(self, key: ApiKey) -> Principal:
        scope = key.scope if self.guarded or key.scope == "admin" else "synthesize"
        return Principal(key.name, scope, f"key:{key.id}", key, by_header=self.guarded)

    # judging a request

    async def principal(self, request: web.Request, store: PromptStore) -> Principal:
        """Who the request comes from: 401 for a credential that names no live key, 400/403
        for a malformed or refused signature, where they matter (under access: keys, and on
        /admin/*); under access: open anything else makes an anonymous speaker."""
        route = request.match_info.route.name or ""
        strict = self.guarded or request.path.startswith("/admin/")
        anonymous = Principal("anonymous", None if self.guarded else "synthesize",
                              f"addr:{client_address(request, self._proxies)}")
        try:
            secret = credential(request.headers)
            if secret is not None and (not _PRINTABLE.fullmatch(secret) or len(secret) > 256):
                raise Unauthorized("the API key is malformed")
        except (Unauthorized, BadRequest):
            if strict:
                raise
            return anonymous  # open: anyone may speak, whatever headers a proxy adds
        if secret is not None:
            if self._is_admin_token(secret):
                return Principal("admin-token", "admin", "admin-token", by_header=self.guarded)
            key = await self.key(store, secret)
            if key is not None:
                return self._keyed(key)
            if strict:
                raise Unauthorized("the API key is not valid (unknown or revoked)")
            return anonymous  # open: an unknown key changes nothing
        query = request.raw_path.partition("?")[2]
        if self.guarded and route in SIGNABLE and is_signed(query):
            try:
                expires = self.verify_signed(request.method, request.raw_path)
            except SignatureError as exc:
                if exc.status == 400:
                    raise BadRequest(str(exc), exc.field) from None
                raise Forbidden(str(exc), exc.field) from None
            return replace(anonymous, name="signed-url", scope="synthesize", expires=expires)
        return anonymous

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

    # admitting misses

    def draws(self, principal: Principal, characters: int) -> list[Draw]:
        """What one miss takes from the principal's buckets."""
        key = principal.key
        rate = key.rate if key is not None and key.rate is not None else self._rate
        draws = []
        if rate > 0:
            draws.append(Draw(f"{principal.bucket}:misses", min(self._burst, rate), rate, 1))
        if self._characters > 0:
            # A minute's characters may go at once; one text never needs more than that.
            capacity = max(self._characters, characters)
            draws.append(Draw(f"{principal.bucket}:chars", capacity, self._characters, characters))
        return draws

    def admit(self, store: PromptStore, principal: Principal) -> Admit:
        """What the store asks before a miss of this principal synthesizes."""

        async def admit(speech: SpeechRequest) -> None:
            if not principal.allows("synthesize"):
                raise Forbidden(f"the key '{principal.name}' has the scope play: it hears "
                                "stored audio only, and this text is not stored")
            characters = len(speech.text)
            wait = await store.buckets.take(self.draws(principal, characters))
            if wait > 0:
                raise RateLimited(f"too many syntheses for '{principal.name}'; retry later",
                                  retry_after=max(1, math.ceil(wait)))
            key = principal.key
            if key is not None and key.quota is not None:
                if await store.credentials.charge(key, characters) is None:
                    raise QuotaExceeded(
                        f"the key '{key.name}' has used its {key.quota} characters of today "
                        "(UTC)", retry_after=seconds_to_midnight())
        return admit


def seconds_to_midnight() -> int:
    """Seconds until the next UTC day, when daily quotas start again."""
    now = datetime.now(timezone.utc)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


ACCESS = web.AppKey("access", Access)


def access_middleware(store: Callable[[], PromptStore]) -> Middleware:
    """Judge every request that needs a scope before its handler; its principal is kept on
    the request (`principal_of`). `store` gives the open store (Unavailable while loading)."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        access = request.app[ACCESS]
        need = access.need(request)
        if need is not None:
            principal = await access.principal(request, store())
            note(client=principal.name)  # the access log names the key, never its secret
            access.require(principal, need)
            request[PRINCIPAL] = principal
        return await handler(request)

    return middleware


def principal_of(request: web.Request) -> Principal:
    """The principal the middleware found for a speaking or stored route."""
    return request[PRINCIPAL]


def admit_for(request: web.Request, store: PromptStore) -> Admit:
    """The admission of a speaking route's misses."""
    return request.app[ACCESS].admit(store, principal_of(request))


def caching_of(request: web.Request) -> Caching:
    """How the answer to a request may be cached (see Caching)."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        return PUBLIC
    return Caching(private=principal.by_header, expires=principal.expires)


def cache_control_for(request: web.Request, cache_control: str) -> str:
    """An audio answer's Cache-Control, as its request allows (see Caching)."""
    return caching_of(request).apply(cache_control)
