"""A circuit breaker for one upstream: after N failures in a row it stops calling for a
cool-down, then lets a single probe through; the probe's success closes it again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    """Thread-safe: the instances of one backend share it from their worker threads."""

    def __init__(
        self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.opened = 0  # times it opened, for the metrics

    @property
    def state(self) -> str:
        """closed, open, or half_open (the cool-down is over: the next call probes)."""
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at >= self._cooldown:
            return HALF_OPEN
        return OPEN

    def retry_after(self) -> int:
        """Whole seconds until a probe may go through."""
        with self._lock:
            if self._opened_at is None:
                return 0
            return max(1, int(self._cooldown - (self._clock() - self._opened_at) + 0.999))

    def allow(self) -> bool:
        """Whether a call may go out now (a half-open breaker lets one probe at a time)."""
        with self._lock:
            state = self._state()
            if state == CLOSED:
                return True
            if state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def succeeded(self) -> None:
        """A call got its answer: the upstream is up."""
        with self._lock:
            self._failures, self._opened_at, self._probing = 0, None, False

    def abandon(self) -> None:
        """A call ended without telling whether the upstream is up (its caller left): a
        probe it was is let through again."""
        with self._lock:
            self._probing = False

    def failed(self) -> None:
        """A call failed on the upstream's side (not for bad input)."""
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self._threshold:
                if self._opened_at is None or self._probing:
                    self.opened += 1
                self._opened_at = self._clock()
                self._probing = False
