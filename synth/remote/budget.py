"""A time budget for a whole upstream call, kept at every wait on the network.

httpx's timeouts bound each network operation: an upstream that sends a byte now and then
keeps a call going for as long as it likes. Here every connect, TLS handshake, read and
write is given at most what is left of the call's budget, so the call ends when its
budget does, whatever the upstream sends. The transport is httpx's own shape over an
httpcore connection pool whose network backend applies the budget.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import httpcore
import httpx

# A write is handed to the socket in pieces, each given what is left of the budget, so an
# upstream that reads slowly cannot stretch a large request body past it.
_WRITE_PIECE = 64 * 1024


class Budget:
    """When the call in progress must end; None while no call is bounded. Each thread has
    its own: an engine's lanes call one upstream at once, each within its own budget."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._local = threading.local()

    @property
    def _ends_at(self) -> float | None:
        ends_at: float | None = getattr(self._local, "ends_at", None)
        return ends_at

    def left(self) -> float | None:
        """Seconds left of the budget (0 or less once it is spent); None when unbounded."""
        ends_at = self._ends_at
        return None if ends_at is None else ends_at - self._clock()

    @contextlib.contextmanager
    def limit(self, seconds: float) -> Iterator[None]:
        """Bound everything inside the block to `seconds` from now; inside another limit,
        the earlier end holds."""
        before = self._ends_at
        ends_at = self._clock() + seconds
        self._local.ends_at = ends_at if before is None else min(before, ends_at)
        try:
            yield
        finally:
            self._local.ends_at = before

    def cap(self, timeout: float | None, spent: type[httpcore.TimeoutException]) -> float | None:
        """The timeout of one network operation: its own, or what is left if that is less;
        `spent` is raised when nothing is left."""
        left = self.left()
        if left is None:
            return timeout
        if left <= 0:
            raise spent("the call's time is up")
        return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, budget: Budget) -> None:
        self._inner = inner
        self._budget = budget

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._budget.cap(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _WRITE_PIECE):
            self._inner.write(buffer[start:start + _WRITE_PIECE],
                              self._budget.cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        capped = self._budget.cap(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, capped), self._budget)

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, budget: Budget) -> None:
        self._inner = httpcore.SyncBackend()
        self._budget = budget

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        capped = self._budget.cap(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, capped, local_address, socket_options)
        return _Stream(stream, self._budget)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpcore's errors as httpx's, most specific first: the callers catch httpx's.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for theirs, ours in _ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise


class _Body(httpx.SyncByteStream):
    def __init__(self, parts: Iterable[bytes]) -> None:
        self._parts = parts

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx():
            yield from self._parts

    def close(self) -> None:
        close = getattr(self._parts, "close", None)
        if close is not None:
            with _as_httpx():
                close()


class BudgetTransport(httpx.BaseTransport):
    """httpx's HTTP/1.1 transport, every network wait of which keeps to `budget`."""

    def __init__(self, budget: Budget) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_Backend(budget), max_keepalive_connections=8, keepalive_expiry=5.0,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request through the pool; httpcore's errors are raised as httpx's."""
        assert isinstance(request.stream, httpx.SyncByteStream)
        url = request.url
        sent = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                             target=url.raw_path),
            headers=request.headers.raw, content=request.stream, extensions=request.extensions,
        )
        with _as_httpx():
            answer = self._pool.handle_request(sent)
        assert isinstance(answer.stream, Iterable)
        return httpx.Response(answer.status, headers=answer.headers, stream=_Body(answer.stream),
                              extensions=answer.extensions)

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.close()
