"""Aliyun's POP RPC signature, and the NLS token it buys from CreateToken, kept until
shortly before it expires.

The signature (SignatureVersion 1.0): HMAC-SHA1, keyed with the AccessKey secret and "&",
over "GET&%2F&" and the percent-encoded canonical query (parameters sorted by name, each
name and value encoded per RFC 3986: only A-Z a-z 0-9 - _ . ~ stay literal, a space is %20).
Neither the secret nor a token ever appears in a message or a log line.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from synth.engine import UpstreamError, UpstreamTimeoutError, UpstreamUnavailableError
from synth.remote.client import Caller

API_VERSION = "2019-02-28"
REGION = "cn-shanghai"
# A token is replaced this many seconds before its ExpireTime, so no request carries one
# that expires on its way.
REFRESH_MARGIN = 300.0
# CreateToken answers a few hundred bytes of JSON.
_TOKEN_ANSWER_BYTES = 64 * 1024


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding of the UTF-8 bytes (only A-Z a-z 0-9 - _ . ~ kept)."""
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The parameters sorted by name, each pair percent-encoded and joined with '&'."""
    return "&".join(
        f"{percent_encode(name)}={percent_encode(value)}" for name, value in sorted(params.items())
    )


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """What the signature covers: the method, the encoded path '/' and the encoded query."""
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def sign(method: str, params: Mapping[str, str], secret: str) -> str:
    """The Base64 HMAC-SHA1 signature of the parameters, keyed with the secret and '&'."""
    digest = hmac.new(
        f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def create_token_query(
    access_key_id: str, secret: str, *, nonce: str | None = None, now: float | None = None
) -> str:
    """The signed query of one CreateToken call (a fresh nonce and timestamp by default)."""
    stamp = datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.timezone.utc)
    params = {
        "AccessKeyId": access_key_id,
        "Action": "CreateToken",
        "Format": "JSON",
        "RegionId": REGION,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": nonce or str(uuid.uuid4()),
        "SignatureVersion": "1.0",
        "Timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": API_VERSION,
    }
    signature = sign("GET", params, secret)
    return f"{canonical_query(params)}&Signature={percent_encode(signature)}"


@dataclass(frozen=True)
class Token:
    """An NLS token and the Unix time it expires at."""

    value: str = field(repr=False)
    expires_at: float


def create_token(
    backend: str, token_url: str, access_key_id: str, secret: str, *, timeout: float,
    retries: int, sleep: Callable[[float], None] = time.sleep,
) -> Token:
    """A new token from CreateToken (blocking; every try within `timeout` seconds in all);
    UpstreamError names the backend."""
    call = Caller(backend, token_url, timeout=timeout, retries=0, max_bytes=_TOKEN_ANSWER_BYTES,
                  sleep=sleep)
    try:
        with call.within():
            attempt = 0
            while True:
                # Each try is signed afresh: Aliyun refuses a nonce it has seen, so a retry
                # of the same URL could fail where a new signature succeeds.
                url = f"{token_url}?{create_token_query(access_key_id, secret)}"
                try:
                    response = call.request("GET", url)
                    break
                except (UpstreamUnavailableError, UpstreamTimeoutError):
                    if attempt >= retries or not call.backoff(attempt):
                        raise
                    attempt += 1
    except UpstreamError as exc:
        raise type(exc)(backend, f"CreateToken {_reason(exc, backend)}") from None
    finally:
        call.close()
    try:
        answer = response.json()
    except ValueError:
        raise UpstreamError(backend, "CreateToken answered something that is not JSON") from None
    token = answer.get("Token") if isinstance(answer, dict) else None
    value = token.get("Id") if isinstance(token, dict) else None
    expires = token.get("ExpireTime") if isinstance(token, dict) else None
    if (not isinstance(value, str) or not value or not isinstance(expires, int | float)
            or isinstance(expires, bool)):
        raise UpstreamError(backend, "CreateToken answered no token")
    return Token(value, float(expires))


def _reason(exc: UpstreamError, backend: str) -> str:
    return str(exc).removeprefix(f"backend '{backend}': ")


class Fetch(Protocol):
    """Gets a new token within `timeout` seconds (create_token, its credentials given)."""

    def __call__(self, *, timeout: float) -> Token:
        """A new token (blocking)."""
        ...


class TokenSource:
    """One backend's token, shared by its worker threads: fetched when first needed and
    again once it comes within `margin` seconds of expiring. One thread fetches while the
    others wait for its token (no longer than the fetching call's budget, which began
    before theirs)."""

    def __init__(
        self, fetch: Fetch, *, margin: float = REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Token | None = None
        self.fetched = 0  # tokens fetched, for the tests and the curious

    def get(self, timeout: float) -> str:
        """A token valid now: the cached one, or a new one fetched within `timeout` seconds
        (blocking)."""
        with self._lock:
            token = self._token
            if token is None or self._clock() >= token.expires_at - self._margin:
                # A token fresh from CreateToken is used even when it is already within
                # the margin: it is the newest there is.
                token = self._token = self._fetch(timeout=timeout)
                self.fetched += 1
            return token.value
