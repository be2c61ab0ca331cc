"""Signed prompt URLs: `exp` (a Unix time) and `sig` appended to a URL, so that an IVR
platform that sends no headers may fetch it.

`sig` is the unpadded base64url HMAC-SHA256, under a `url_signing_secret`, of

    GET\\n<path>\\n<canonical query>

where the path is the URL's path as sent, percent-decoded, and the canonical query is
every parameter but `sig`, percent-decoded, sorted by name then value, each encoded again
as name=value with only A-Z a-z 0-9 - . _ ~ left as they are (UTF-8, %XX upper case), and
joined with '&'. HEAD requests use the same signature as GET. URLs are signed with the
first secret and checked against each (rotation); comparisons are constant-time.

`exp` falls on the boundary of a time bucket (`url_signing_bucket` seconds), so that every
signing of one URL within a bucket gives the same signed URL, which a PBX that caches by
URL (Asterisk) finds in its cache: see `expiry`. A signed URL is written with every
parameter percent-encoded as UTF-8, '.' included (%2E), so no '.' follows the path's
extension: FreeSWITCH takes the file type from the last '.' of the whole URL.

A URL signed for a tenant other than `default` carries `tenant=<name>`, signed with the
rest: whoever fetches it is that tenant's caller, and nobody can change which
(`for_tenant`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from urllib.parse import quote, unquote, unquote_plus

from cache.credentials import TENANT_NAME

SIGNED_PARAMS = ("exp", "sig")
# Longest lifetime a signature may be given (ten years).
MAX_TTL = 10 * 365 * 86400
_EXP_DIGITS = 12  # a Unix time of up to 12 digits (year 33658): larger is malformed


class SignatureError(ValueError):
    """A signed URL that is not valid: `status` 400 (malformed) or 403 (refused)."""

    def __init__(self, message: str, status: int = 403, field: str = "sig") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def _pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote_plus(name, errors="strict"), unquote_plus(value, errors="strict")))
    return pairs


def _encode(text: str) -> str:
    return quote(text, safe="-._~", encoding="utf-8")


def wire(text: str) -> str:
    """A query name or value as a signed URL carries it: percent-encoded UTF-8, with only
    A-Z a-z 0-9 - _ ~ left as they are ('.' too is encoded, for FreeSWITCH)."""
    # quote() never encodes '.', whatever `safe` says.
    return quote(text, safe="-_~", encoding="utf-8").replace(".", "%2E")


def expiry(now: float, ttl: int, bucket: int) -> int:
    """The `exp` of a URL signed at `now` to be valid for `ttl` seconds: the end of the
    bucket that holds now + ttl, with ttl first rounded up to whole buckets.

    With buckets [kB, (k+1)B) and n = ceil(ttl / B), a signing at any moment of bucket k
    gets exp = (k + n + 1)·B: one URL for the whole bucket, valid for more than n·B ≥ ttl
    seconds and at most (n + 1)·B. When ttl is a multiple of B this is exactly the end of
    the bucket that holds now + ttl. A bucket of 1 gives exp = now + ttl + 1 (whole seconds).
    """
    if bucket < 1:
        raise ValueError("bucket: at least 1 second")
    return (int(now) // bucket + -(-ttl // bucket) + 1) * bucket


def canonical(method: str, path: str, pairs: Sequence[tuple[str, str]]) -> bytes:
    """The bytes that are signed (see the module's description)."""
    verb = "GET" if method.upper() in ("GET", "HEAD") else method.upper()
    query = "&".join(f"{_encode(n)}={_encode(v)}" for n, v in sorted(pairs) if n != "sig")
    return f"{verb}\n{unquote(path, errors='strict')}\n{query}".encode()


def signature(secret: str, message: bytes) -> str:
    """The unpadded base64url HMAC-SHA256 of a message."""
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(
    target: str, secret: str, ttl: int, *, bucket: int, method: str = "GET",
    now: float | None = None,
) -> str:
    """The target (path and query) with `exp` (see `expiry`) and `sig` appended."""
    if not 1 <= ttl <= MAX_TTL:
        raise ValueError(f"ttl: 1 to {MAX_TTL} seconds")
    path, _, query = target.partition("?")
    if not path.startswith("/"):
        raise ValueError("the URL to sign must be a path starting with '/', with its query")
    pairs = _pairs(query)
    if any(n in SIGNED_PARAMS for n, _ in pairs):
        raise ValueError("the URL is signed already (it has exp or sig)")
    expires = expiry(now if now is not None else time.time(), ttl, bucket)
    pairs.append(("exp", str(expires)))
    sig = signature(secret, canonical(method, path, pairs))
    query = "&".join(f"{wire(n)}={wire(v)}" for n, v in pairs)
    return f"{path}?{query}&sig={sig}"


def for_tenant(target: str, tenant: str | None) -> str:
    """The target (path and query) as a URL of the tenant's: `tenant=` appended for a
    tenant but the default one. ValueError when it names another tenant already."""
    if tenant is not None and not TENANT_NAME.fullmatch(tenant):
        raise ValueError("tenant: 1 to 32 lower-case letters, digits, '_' or '-', starting "
                         "with a letter or digit")
    path, _, query = target.partition("?")
    named = [v for n, v in _pairs(query) if n == "tenant"]
    if tenant is None or (not named and tenant == "default"):
        return target
    if named:
        if named != [tenant]:
            raise ValueError(f"the URL names the tenant {named[0][:32]!r}; it is signed for "
                             f"{tenant!r}")
        return target
    return f"{path}?{query}&tenant={wire(tenant)}" if query else f"{path}?tenant={wire(tenant)}"


def is_signed(query: str) -> bool:
    """Whether a raw query has a `sig` parameter (cheap: no decoding)."""
    return any(part.startswith("sig=") for part in query.split("&"))


def verify(method: str, target: str, secrets: Sequence[str], *, now: float | None = None) -> int:
    """Accept a signed target (path and raw query, as sent): its expiry (a Unix time), or
    SignatureError."""
    if "#" in target:
        # A fragment is never sent; one in the target would part what is signed from what
        # the handler reads.
        raise SignatureError("a signed URL has no '#' (send it as %23)", 400, "query")
    path, _, query = target.partition("?")
    try:
        pairs = _pairs(query)
        message = canonical(method, path, pairs)
    except UnicodeError:
        raise SignatureError("the URL is not valid UTF-8", 400, "query") from None
    sigs = [v for n, v in pairs if n == "sig"]
    exps = [v for n, v in pairs if n == "exp"]
    if len(sigs) != 1 or len(exps) != 1:
        field = "sig" if len(sigs) != 1 else "exp"
        raise SignatureError(f"a signed URL has exactly one exp and one sig ({field})", 400, field)
    exp = exps[0]
    if not (exp.isascii() and exp.isdigit()) or len(exp) > _EXP_DIGITS:
        raise SignatureError("exp must be a Unix time in seconds", 400, "exp")
    if not secrets:
        raise SignatureError("this server accepts no signed URLs (no url_signing_secret)")
    sent = sigs[0].encode("utf-8", "surrogateescape")
    # Every secret is tried, a match or not, so the time taken tells nothing.
    good = False
    for secret in secrets:
        good |= hmac.compare_digest(sent, signature(secret, message).encode("ascii"))
    if not good:
        raise SignatureError("the URL's signature does not match")
    if int(exp) < (now if now is not None else time.time()):
        raise SignatureError("the signed URL has expired", 403, "exp")
    return int(exp)
