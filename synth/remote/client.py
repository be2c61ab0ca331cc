"""HTTP calls to one upstream: a time budget for the whole call, bounded retries with
jittered backoff, a bounded answer, and every failure turned into an UpstreamError that
names the backend (never the text)."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from synth.engine import UpstreamError, UpstreamTimeoutError, UpstreamUnavailableError
from synth.remote.budget import Budget, BudgetTransport

log = logging.getLogger("huiyin.remote")

# First retry after about this long; each next one waits twice as long, within ±50%.
_BACKOFF = 0.1
_BACKOFF_CAP = 2.0


class Caller:
    """Blocking calls from one engine instance's worker thread to its upstream.

    Each call, its retries and their backoff included, ends within `timeout` seconds, and
    within the budget of an enclosing `within` block; an answer longer than `max_bytes` is
    refused as it arrives.
    """

    def __init__(
        self, backend: str, base_url: str, *, timeout: float, retries: int, max_bytes: int,
        headers: dict[str, str] | None = None, sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self._base = base_url
        self._timeout = timeout
        self._retries = retries
        self._max_bytes = max_bytes
        self._sleep = sleep
        self._budget = Budget(clock)
        self._client = httpx.Client(
            base_url=base_url, timeout=httpx.Timeout(timeout),
            # An answer is counted as it arrives: a compressed one could grow past the
            # limit many times over in one piece, so none is asked for.
            headers={**(headers or {}), "Accept-Encoding": "identity"},
            follow_redirects=False, trust_env=False, transport=BudgetTransport(self._budget),
        )

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    @contextlib.contextmanager
    def within(self, seconds: float | None = None) -> Iterator[None]:
        """Every call made inside the block ends within `seconds` (the timeout by default)
        of entering it: a budget for several calls that make one answer."""
        with self._budget.limit(self._timeout if seconds is None else seconds):
            yield

    def seconds_left(self) -> float:
        """What is left of the budget in force (the whole timeout outside any)."""
        left = self._budget.left()
        return self._timeout if left is None else max(0.0, left)

    def backoff(self, attempt: int) -> bool:
        """Wait before try `attempt + 1`: True once waited, False (without waiting) when the
        wait would leave the budget no time for that try."""
        delay = min(_BACKOFF_CAP, _BACKOFF * 2 ** attempt) * random.uniform(0.5, 1.5)
        left = self._budget.left()
        if left is not None and delay >= left:
            return False
        self._sleep(delay)
        return True

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The upstream's whole answer with a 2xx status, or an UpstreamError.

        A call is tried again only when it cannot have reached the upstream (the connection
        failed), or when it is a GET, which upstreams answer without side effects.
        """
        with self.within():
            attempt = 0
            while True:
                try:
                    with self._client.stream(method, url, **kwargs) as response:
                        if not (response.status_code >= 500 and method == "GET"
                                and attempt < self._retries):
                            self._check(response, url)
                            body = b"".join(self._body(response))
                            return httpx.Response(response.status_code, headers=response.headers,
                                                  content=body, request=response.request)
                except httpx.TimeoutException as exc:
                    if not (isinstance(exc, httpx.ConnectTimeout) and self._again(attempt)):
                        raise self._timed_out() from None
                except httpx.TransportError as exc:
                    retry = isinstance(exc, httpx.ConnectError) or method == "GET"
                    if not (retry and self._again(attempt)):
                        raise _failure(self.backend, exc) from None
                else:
                    if not self._again(attempt):  # a GET answered 5xx, and no time is left
                        raise UpstreamError(self.backend, f"answered HTTP {response.status_code}")
                attempt += 1

    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response | bytes]:
        """The upstream's answer as it arrives: first the response (headers only, a 2xx),
        then its body in pieces. Retried, like `request`, only before anything arrived."""
        with self.within():
            attempt = 0
            while True:
                started = False
                try:
                    with self._client.stream(method, url, **kwargs) as response:
                        self._check(response, url)
                        started = True
                        yield response
                        yield from self._body(response)
                    return
                except httpx.TimeoutException as exc:
                    if started or not (isinstance(exc, httpx.ConnectTimeout)
                                       and self._again(attempt)):
                        raise self._timed_out() from None
                except httpx.TransportError as exc:
                    if started or not (isinstance(exc, httpx.ConnectError)
                                       and self._again(attempt)):
                        raise _failure(self.backend, exc) from None
                attempt += 1

    def _again(self, attempt: int) -> bool:
        return attempt < self._retries and self.backoff(attempt)

    def _timed_out(self) -> UpstreamTimeoutError:
        return UpstreamTimeoutError(self.backend, "no answer in time")

    def _check(self, response: httpx.Response, url: str) -> None:
        """Refuse an error status, a compressed body, or one declared longer than allowed,
        before any of the body is read."""
        if response.status_code == 404 and (url == self._base
                                            or not httpx.URL(url).is_absolute_url):
            # A path of the kind's own, or the entry's url itself, is not there: the url is
            # wrong (a path the kind adds given in it too, say), not the upstream down.
            # Said each time: a breaker bounds how often, and a fallback voice hides it.
            log.warning("backend '%s': %s %s answered 404 Not Found: the entry's url (%s) "
                        "looks wrong", self.backend, response.request.method,
                        response.request.url.path, _without_userinfo(self._base))
            raise UpstreamError(self.backend, "answered HTTP 404: its url looks wrong")
        if response.status_code >= 400:
            # Only the status: an upstream's own message may quote the text.
            raise UpstreamError(self.backend, f"answered HTTP {response.status_code}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise UpstreamError(self.backend, f"answered a {encoding[:20]}-encoded body, "
                                              "though asked for none")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise self._too_long()

    def _body(self, response: httpx.Response) -> Iterator[bytes]:
        """The body as it arrives; refused as soon as it passes max_bytes (at most one
        network read past it is ever held)."""
        received = 0
        for piece in response.iter_raw():
            received += len(piece)
            if received > self._max_bytes:
                raise self._too_long()
            yield piece

    def _too_long(self) -> UpstreamError:
        return UpstreamError(self.backend, f"answered more than {self._max_bytes} bytes "
                                           "(max_answer_bytes); refused")


def _without_userinfo(url: str) -> str:
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url


def _failure(backend: str, exc: httpx.TransportError) -> UpstreamError:
    if isinstance(exc, httpx.ConnectError):
        return UpstreamUnavailableError(backend, "cannot connect")
    if isinstance(exc, httpx.RemoteProtocolError):
        return UpstreamError(backend, "closed the connection before answering")
    return UpstreamError(backend, f"transport error ({type(exc).__name__})")
