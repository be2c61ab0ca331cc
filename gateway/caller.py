"""Who a request comes from: a key (`Authorization: Bearer` or `X-API-Key`), the bootstrap
admin token, a signed URL, or an anonymous client known by its address. Each request is
judged once, by the access middleware, into a `Principal` kept on the request.

A principal is one tenant's (cache/tenants.py): its key's, the one its signed URL names
(`tenant=`, signed with the rest), else the `default` tenant. A site-wide admin (the admin
token, an admin key made without a tenant) speaks as the default tenant and administers
every tenant."""

from __future__ import annotations

import hmac
import ipaddress
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from aiohttp import web
from multidict import CIMultiDictProxy

from cache.credentials import SCOPES, SECRET, TENANT_NAME, ApiKey, Credentials
from config import Settings
from gateway.errors import BadRequest, Forbidden, Unauthorized
from gateway.nostore import says_no_store
from gateway.signing import SignatureError, is_signed, verify
from synth.request import DEFAULT_TENANT

# GET routes whose URLs may be signed: what IVR platforms fetch.
SIGNABLE = frozenset({"tts", "tts_stream", "prompt", "phrase"})
# How long a key looked up in the index is trusted before it is looked up again: a key
# revoked by another process (`huiyin keys revoke`, another replica) is refused after this.
KEY_CACHE_SECONDS = 1.0
_KEY_CACHE_SIZE = 10_000
_SIGNED_MEMO = 20_000
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, what it may do, and the buckets its misses draw from."""

    name: str  # a key's name, "admin-token", "signed-url" or "anonymous"
    scope: str | None  # play, synthesize, admin; None: may do nothing that needs a scope
    bucket: str  # the rate limit's bucket name, and whose share of the frontend it takes
    key: ApiKey | None = None
    by_header: bool = False  # answered to a header credential: shared caches must not keep it
    expires: int | None = None  # a signed URL's expiry: nobody keeps its answer past it
    tenant: str = DEFAULT_TENANT  # whose prompts it makes and hears
    site: bool = False  # a site-wide admin: it administers (and hears) every tenant

    def allows(self, scope: str) -> bool:
        """Whether the principal's scope includes `scope`."""
        return self.scope is not None and SCOPES.index(self.scope) >= SCOPES.index(scope)

    @property
    def hears(self) -> str | None:
        """The tenant whose stored prompts it may hear by key (None: every tenant's)."""
        return None if self.site else self.tenant


PRINCIPAL = web.RequestKey("principal", Principal)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: web.BaseRequest, proxies: tuple[Network, ...] = ()) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the last
    address in X-Forwarded-For that is not one. Proxies append the address they saw, to the
    last header line or on a line of their own: every line counts, in order."""
    peer = request.remote or "unknown"
    if not proxies or not _within(peer, proxies):
        return peer
    hops = ",".join(request.headers.getall("X-Forwarded-For", ())).split(",")
    for hop in reversed(hops):
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


class Callers:
    """Tells who a request comes from, under one application's settings."""

    def __init__(
        self, settings: Settings, guarded: bool, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.guarded = guarded  # speaking needs a key or a signed URL
        # Monotonic seconds, by which a key kept in memory ages (a test moves its own clock).
        self.clock = clock
        self.secrets = settings.url_signing_secret
        self._admin_token = settings.admin_token
        self._keys: OrderedDict[str, tuple[ApiKey | None, float]] = OrderedDict()
        self._proxies = tuple(ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies)
        # Revocations here: a lookup under way when one happens is not kept.
        self._epoch = 0
        self._revoked: set[str] = set()
        # Signed targets verified already, with their expiry: a repeat skips the HMAC.
        self._signed: OrderedDict[str, int] = OrderedDict()

    # keys

    def cached_key(self, secret: str) -> tuple[bool, ApiKey | None]:
        """(known, key) from memory: known is False when the index must be asked."""
        found = self._keys.get(secret)
        if found is None or self.clock() - found[1] > KEY_CACHE_SECONDS:
            return False, None
        return True, found[0]

    async def key(self, credentials: Credentials, secret: str) -> ApiKey | None:
        """The live key with this secret (memory for KEY_CACHE_SECONDS, then the index)."""
        known, key = self.cached_key(secret)
        if known:
            return key
        epoch = self._epoch
        key = await credentials.find(secret) if SECRET.fullmatch(secret) else None
        if epoch != self._epoch:  # a key was revoked while this looked: ask again next time
            return key if key is None or key.name not in self._revoked else None
        self._keys[secret] = (key, self.clock())
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

    def verify_signed(self, method: str, target: str, *, remember: bool = True) -> int:
        """A signed GET or HEAD target's expiry, or SignatureError (verified targets are
        remembered until they expire, unless `remember` is False: a no-store request's
        target carries a text nothing may keep)."""
        expires = self._signed.get(target)
        if expires is not None and method in ("GET", "HEAD"):
            if expires >= time.time():
                return expires
            del self._signed[target]
        expires = verify(method, target, self.secrets)
        if method in ("GET", "HEAD") and remember:
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
        tenant = DEFAULT_TENANT if key.tenant is None else key.tenant
        # Another tenant's answer to a URL anyone may ask is never a shared cache's to keep.
        return Principal(key.name, scope, f"key:{key.id}", key,
                         by_header=self.guarded or tenant != DEFAULT_TENANT, tenant=tenant,
                         site=key.tenant is None)

    async def principal(
        self, request: web.Request, credentials: Credentials, *, given: str | None = None,
        strict: bool | None = None,
    ) -> Principal:
        """Who the request comes from: 401 for a credential that names no live key, 400/403
        for a malformed or refused signature, where they matter (under access: keys, and on
        /admin/*, unless `strict` says otherwise); elsewhere anything else makes an
        anonymous caller. `given` is a credential a protocol carries elsewhere (a token
        header, field or message of its own), taken when the request has no key header. On
        a route whose URLs may be signed, a `tenant` parameter is taken only inside a signed
        URL (400 elsewhere)."""
        found = await self._principal(request, credentials, given, strict)
        signable = request.match_info.route.name in SIGNABLE
        if signable and found.name != "signed-url" and "tenant" in request.query:
            raise BadRequest("the tenant is the key's; a URL names one only when it is signed "
                             "(huiyin sign --tenant)", "tenant")
        return found

    async def _principal(
        self, request: web.Request, credentials: Credentials, given: str | None, strict: bool | None,
    ) -> Principal:
        route = request.match_info.route.name or ""
        if strict is None:
            strict = self.guarded or request.path.startswith("/admin/")
        anonymous = Principal("anonymous", None if self.guarded else "synthesize",
                              f"addr:{client_address(request, self._proxies)}")
        try:
            secret = credential(request.headers)
            if secret is None and given:
                secret = given.strip()
            if secret is not None and (not _PRINTABLE.fullmatch(secret) or len(secret) > 256):
                raise Unauthorized("the API key is malformed")
        except (Unauthorized, BadRequest):
            if strict:
                raise
            return anonymous  # open: anyone may speak, whatever headers a proxy adds
        if secret is not None:
            if self._is_admin_token(secret):
                return Principal("admin-token", "admin", "admin-token", by_header=self.guarded,
                                 site=True)
            key = await self.key(credentials, secret)
            if key is not None:
                return self._keyed(key)
            if strict:
                raise Unauthorized("the API key is not valid (unknown or revoked)")
            return anonymous  # open: an unknown key changes nothing
        query = request.raw_path.partition("?")[2]
        # Under access: open a signed URL is checked only when it names a tenant.
        if (route in SIGNABLE and is_signed(query)
                and (self.guarded or "tenant" in request.query)):
            try:
                expires = self.verify_signed(request.method, request.raw_path,
                                             remember=not says_no_store(request))
            except SignatureError as exc:
                if exc.status == 400:
                    raise BadRequest(str(exc), exc.field) from None
                raise Forbidden(str(exc), exc.field) from None
            return replace(anonymous, name="signed-url", scope="synthesize", expires=expires,
                           tenant=_signed_tenant(request))
        return anonymous


def _signed_tenant(request: web.Request) -> str:
    """The tenant a signed URL names (its signature covers it), else the default one."""
    named = request.query.getall("tenant", [])
    if len(named) > 1:
        raise BadRequest("a signed URL names one tenant", "tenant")
    if named and not TENANT_NAME.fullmatch(named[0]):
        raise BadRequest("tenant: 1 to 32 lower-case letters, digits, '_' or '-'", "tenant")
    return named[0] if named else DEFAULT_TENANT
