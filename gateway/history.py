"""The last hour, minute by minute, from this gateway's own counters: hits, misses and the
syntheses' latency, for the page's admin tab (no outside service needed)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MINUTES = 60
# Latencies kept a minute for its percentiles (a busy minute keeps an even sample).
SAMPLES_PER_MINUTE = 512


@dataclass
class Minute:
    """One minute's hits, misses and synthesis latencies."""

    start: int  # epoch seconds, a multiple of 60
    hits: int = 0
    misses: int = 0
    syntheses: int = 0
    latencies: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: counts and latency p50/p99 in milliseconds (None without syntheses)."""
        ordered = sorted(self.latencies)
        return {"t": self.start, "hits": self.hits, "misses": self.misses,
                "syntheses": self.syntheses,
                "p50_ms": _ms(_percentile(ordered, 50)), "p99_ms": _ms(_percentile(ordered, 99))}


def _percentile(ordered: list[float], p: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class History:
    """Per-minute figures for the last MINUTES minutes. `sample` takes the store's running
    totals (hits and misses); `observe` each synthesis's seconds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._minutes: deque[Minute] = deque(maxlen=MINUTES)
        self._last: tuple[int, int] | None = None

    def _current(self) -> Minute:
        start = int(self._clock()) // 60 * 60
        if not self._minutes or self._minutes[-1].start != start:
            self._minutes.append(Minute(start))
        return self._minutes[-1]

    def sample(self, hits: int, misses: int) -> None:
        """Count what the totals grew by since the last sample into the current minute."""
        minute = self._current()
        if self._last is not None:
            minute.hits += max(0, hits - self._last[0])
            minute.misses += max(0, misses - self._last[1])
        self._last = (hits, misses)

    def observe(self, seconds: float) -> None:
        """One synthesis took `seconds`."""
        minute = self._current()
        minute.syntheses += 1
        if len(minute.latencies) < SAMPLES_PER_MINUTE:
            minute.latencies.append(seconds)
        else:  # keep an even sample: replace one at a stride through the minute
            minute.latencies[minute.syntheses % SAMPLES_PER_MINUTE] = seconds

    def minutes(self) -> list[dict[str, Any]]:
        """The last MINUTES minutes, oldest first (the current one last, still filling);
        a minute with nothing in it is there too, empty."""
        now = self._current().start
        kept = {m.start: m for m in self._minutes}
        starts = range(now - (MINUTES - 1) * 60, now + 60, 60)
        return [kept.get(start, Minute(start)).as_dict() for start in starts]
