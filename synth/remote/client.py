"""HTTP calls to one upstream: timeouts, bounded retries with jittered backoff, and every
failure turned into an UpstreamError that names the backend (never the text)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from synth.engine import UpstreamError, UpstreamTimeoutError, UpstreamUnavailableError

# First retry after about this long; each next one waits twice as long, within ±50%.
_BACKOFF = 0.1
_BACKOFF_CAP = 2.0


class Caller:
    """Blocking calls from one engine instance's worker thread to its upstream."""

    def __init__(
        self, backend: str, base_url: str, *, timeout: float, retries: int,
        headers: dict[str, str] | None = None, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.backend = backend
        self._retries = retries
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=base_url, timeout=httpx.Timeout(timeout), headers=headers or {},
            follow_redirects=False, trust_env=False,
        )

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The upstream's answer with a 2xx status, or an UpstreamError.

        A call is tried again only when it cannot have reached the upstream (the connection
        failed), or when it is a GET, which upstreams answer without side effects.
        """
        attempt = 0
        while True:
            try:
                response = self._client.request(method, url, **kwargs)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout) and attempt < self._retries:
                    attempt = self._wait(attempt)
                    continue
                raise UpstreamTimeoutError(self.backend, "no answer in time") from None
            except httpx.TransportError as exc:
                retry = isinstance(exc, httpx.ConnectError) or method == "GET"
                if retry and attempt < self._retries:
                    attempt = self._wait(attempt)
                    continue
                kind = UpstreamUnavailableError if isinstance(exc, httpx.ConnectError) else UpstreamError
                raise kind(self.backend, _describe(exc)) from None
            if response.status_code >= 500 and method == "GET" and attempt < self._retries:
                attempt = self._wait(attempt)
                continue
            if response.status_code >= 400:
                # Only the status: an upstream's own message may quote the text.
                raise UpstreamError(self.backend, f"answered HTTP {response.status_code}")
            return response

    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response | bytes]:
        """The upstream's answer as it arrives: first the response (headers only, a 2xx),
        then its body in pieces. Retried, like `request`, only before anything arrived."""
        attempt = 0
        while True:
            started = False
            try:
                with self._client.stream(method, url, **kwargs) as response:
                    if response.status_code >= 400:
                        raise UpstreamError(self.backend, f"answered HTTP {response.status_code}")
                    started = True
                    yield response
                    yield from response.iter_bytes()
                return
            except httpx.TimeoutException as exc:
                if not started and isinstance(exc, httpx.ConnectTimeout) and attempt < self._retries:
                    attempt = self._wait(attempt)
                    continue
                raise UpstreamTimeoutError(self.backend, "no answer in time") from None
            except httpx.TransportError as exc:
                if not started and isinstance(exc, httpx.ConnectError) and attempt < self._retries:
                    attempt = self._wait(attempt)
                    continue
                kind = UpstreamUnavailableError if isinstance(exc, httpx.ConnectError) else UpstreamError
                raise kind(self.backend, _describe(exc)) from None

    def _wait(self, attempt: int) -> int:
        delay = min(_BACKOFF_CAP, _BACKOFF * 2 ** attempt) * random.uniform(0.5, 1.5)
        self._sleep(delay)
        return attempt + 1


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "closed the connection before answering"
    return f"transport error ({type(exc).__name__})"
