"""Admission: what a request may cost, judged in the order of cost.

Credentials, scope and signature are judged first, by the access middleware, before the
handler reads anything. A speaking request then meets the store with an `Admitted` (the
store's `Admission`): before its text is read into a key (when the key is not known
already), its client's rate limit must have room for one more miss and its key's quota
room for what the text could say, and so its tenant's quota; only when it starts a
synthesis is it charged, a miss token, its characters per minute, its tenant's day (every
synthesis is counted there, for the tenant's stats, and against its quota if it has one)
and its key's quota. A request that finds stored audio, or
joins a synthesis under way, is never charged. Characters are the characters said: an SSML
document's markup is not counted, as the length limit does not count it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from aiohttp import web

from cache.credentials import Credentials
from cache.keys import SpeechRequest
from cache.ratelimit import Buckets, Draw
from cache.tenants import Tenants
from config import Settings
from gateway.caller import PRINCIPAL, Principal
from gateway.errors import Forbidden, QuotaExceeded, RateLimited
from gateway.state import CREDENTIALS, STORE, TENANTS
from synth.memo import memo
from synth.scope import reading_as, scope_for
from synth.ssml import is_ssml, parse_document

T = TypeVar("T")
# How long a request refused before any work waits for its answer (seconds).
REFUSAL_PAUSE = 1.0
# An SSML document's markup, for what its text could say at most before it is parsed.
_MARKUP = re.compile(r"<[^>]*>")


def said_characters(text: str) -> int:
    """The characters a text says: an SSML document's text, its markup not counted (a
    plain text is only counted: no copy of it is kept; a document's count is remembered in
    the caller's reading scope: synth/scope.py)."""
    return _document_characters(text) if is_ssml(text) else len(text)


@memo(256)
def _document_characters(document: str) -> int:
    return parse_document(document).spoken_chars


def seconds_to_midnight() -> int:
    """Seconds until the next UTC day, when daily quotas start again."""
    now = datetime.now(timezone.utc)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


@dataclass(frozen=True)
class Limits:
    """The rate limits of misses: per client and minute (a key's own rate first)."""

    misses: int
    burst: int
    characters: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits the settings give."""
        return cls(settings.rate_limit_misses, settings.rate_limit_burst,
                   settings.rate_limit_characters)

    def draws(self, principal: Principal, characters: int) -> list[Draw]:
        """What one miss takes from the principal's buckets."""
        key = principal.key
        rate = key.rate if key is not None and key.rate is not None else self.misses
        draws = []
        if rate > 0:
            draws.append(Draw(f"{principal.bucket}:misses", min(self.burst, rate), rate, 1))
        if self.characters > 0:
            # A minute's characters may go at once; one text never needs more than that.
            capacity = max(self.characters, characters)
            draws.append(Draw(f"{principal.bucket}:chars", capacity, self.characters, characters))
        return draws


@contextlib.asynccontextmanager
async def _paused_refusals() -> AsyncIterator[None]:
    """A request refused before any work is answered after a pause (never past its
    Retry-After): a client that asks again at once is refused at most once a REFUSAL_PAUSE
    per connection, not as fast as it can send. The pause holds nothing but the connection."""
    try:
        yield
    except (RateLimited, QuotaExceeded) as refused:
        await asyncio.sleep(min(REFUSAL_PAUSE, refused.retry_after or REFUSAL_PAUSE))
        raise


class Admitted:
    """One principal's requests before the store (cache.store.Admission)."""

    def __init__(
        self, limits: Limits, buckets: Buckets, credentials: Credentials, tenants: Tenants,
        principal: Principal,
    ) -> None:
        self._limits = limits
        self._buckets = buckets
        self._credentials = credentials
        self._tenants = tenants
        self._principal = principal

    @property
    def client(self) -> str:
        """Whose share of the frontend's time its texts take: its rate limit's bucket."""
        return self._principal.bucket

    @property
    def tenant(self) -> str:
        """Whose prompts its requests are."""
        return self._principal.tenant

    async def before_reading(self, request: SpeechRequest) -> None:
        """Refuse, before its text is read, a request that could not be synthesized now:
        no room in its rate limit, or less quota left than its text could say."""
        await self._may_cost(lambda: self._said(request.text))

    async def before_parsing(self, document: str) -> None:
        """The same for an SSML document before it is parsed: what it could say is its
        length with the markup stripped."""
        await self._may_cost(lambda: len(_MARKUP.sub("", document)))

    async def _may_cost(self, count: Callable[[], int]) -> None:
        if not self._principal.allows("synthesize"):
            return  # it may hear stored audio only: it never draws, and reads in its turn
        async with _paused_refusals():
            buckets = self._buckets
            # The miss count first: a client out of misses is refused before its text is counted.
            self._rate_limited(await buckets.peek(self._draws(0)[:1]))
            characters = count()
            self._rate_limited(await buckets.peek(self._draws(characters)))
            key = self._principal.key
            if key is not None and key.quota is not None:
                left = await self._credentials.remaining(key)
                if left is not None and left < characters:
                    self._quota_exceeded()
            left = await self._tenants.remaining(self.tenant)
            if left is not None and left < characters:
                self._tenant_quota_exceeded()

    async def admit(self, request: SpeechRequest) -> None:
        """Charge a request that starts a synthesis: the quota is judged before any rate
        token is taken, and a request refused after it drew gives its tokens back."""
        principal = self._principal
        if not principal.allows("synthesize"):
            raise Forbidden(f"the key '{principal.name}' has the scope play: it hears "
                            "stored audio only, and this text is not stored")
        characters = self._said(request.text)
        key = principal.key
        quota = key is not None and key.quota is not None
        if quota:
            assert key is not None
            left = await self._credentials.remaining(key)
            if left is not None and left < characters:
                self._quota_exceeded()
        draws = self._draws(characters)
        self._rate_limited(await self._buckets.take(draws))
        tenants = self._tenants
        if await tenants.charge(self.tenant, characters) is None:  # its quota is used up
            await self._buckets.give(draws)
            self._tenant_quota_exceeded()
        if quota:
            assert key is not None
            if await self._credentials.charge(key, characters) is None:  # taken meanwhile
                await self._buckets.give(draws)
                await tenants.give_back(self.tenant, characters)
                self._quota_exceeded()

    async def preview(self, request: SpeechRequest) -> None:
        """Admit a pronunciation preview as a miss of the rate limits (no quota: nothing is
        synthesized)."""
        async with _paused_refusals():
            self._rate_limited(await self._buckets.take(
                self._draws(self._said(request.text))))

    def _said(self, text: str) -> int:
        with reading_as(scope_for(self.tenant)):
            return said_characters(text)

    def _draws(self, characters: int) -> list[Draw]:
        return self._limits.draws(self._principal, characters)

    def _rate_limited(self, wait: float) -> None:
        if wait > 0:
            raise RateLimited(f"too many syntheses for '{self._principal.name}'; retry later",
                              retry_after=max(1, math.ceil(wait)) if math.isfinite(wait) else 60)

    def _quota_exceeded(self) -> None:
        key = self._principal.key
        assert key is not None
        raise QuotaExceeded(f"the key '{key.name}' has used its {key.quota} characters of today "
                            "(UTC)", retry_after=seconds_to_midnight())

    def _tenant_quota_exceeded(self) -> None:
        raise QuotaExceeded(f"the tenant '{self.tenant}' has used its characters of today (UTC)",
                            retry_after=seconds_to_midnight())


LIMITS = web.AppKey("limits", Limits)


async def checked_speech(request: web.Request, text: object, build: Callable[[], T]) -> T:
    """What `build` makes of a speaking request's input (its text checked, its SpeechRequest
    made): here for plain text, whose checks are cheap; for an SSML document, whose parsing
    is not, only once its caller may cost that much, and then on the frontend's fair share,
    off the event loop."""
    if not (isinstance(text, str) and is_ssml(text)):
        return build()
    admission = admission_for(request)
    await admission.before_parsing(text)
    scope = scope_for(admission.tenant)  # parsed documents are remembered per tenant

    def scoped() -> T:
        with reading_as(scope):
            return build()

    return await request.app[STORE].reading.run(admission.client, scoped)


def admission_for(request: web.Request) -> Admitted:
    """The admission of a speaking route's requests."""
    app = request.app
    return Admitted(app[LIMITS], app[STORE].buckets, app[CREDENTIALS], app[TENANTS],
                    request[PRINCIPAL])
