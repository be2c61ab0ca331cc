"""Prometheus metrics. Counters the hit path touches are plain integers, read at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp.web_urldispatcher import AbstractRoute
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cache.store import Stats
from gateway.logs import route_template
from synth.voices import Timing, Voices

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Request counts by route and status, cache and synthesis figures."""

    def __init__(self, stats: Callable[[], Stats], voices: Callable[[], Voices | None]) -> None:
        self.registry = CollectorRegistry()
        # Counted by route object (two per template: GET and HEAD), named at scrape time.
        self._requests: Counter[tuple[AbstractRoute, int]] = Counter()
        self._stats = stats
        self._voices = voices
        # Set by the /metrics route before each render (its check does I/O off the loop).
        self.ready = False
        self.synth_seconds = Histogram(
            "huiyin_synth_seconds", "Seconds per synthesis (queue wait included).",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=self.registry,
        )
        self.registry.register(_Collector(self))

    def observe(self, timing: Timing) -> None:
        """Record one synthesis."""
        self.synth_seconds.observe(timing.wall_seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)

    def count(self, route: AbstractRoute, status: int) -> None:
        """Count one response of a route."""
        self._requests[(route, status)] += 1

    def requests(self) -> dict[tuple[str, int], int]:
        """Responses so far by route template and status."""
        totals: Counter[tuple[str, int]] = Counter()
        for (route, status), n in list(self._requests.items()):
            totals[(route_template(route), status)] += n
        return dict(totals)


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        requests = CounterMetricFamily(
            "huiyin_requests", "HTTP responses by route and status.", labels=["route", "status"]
        )
        for (route, status), count in sorted(self._m.requests().items()):
            requests.add_metric([route, str(status)], count)
        yield requests
        stats = self._m._stats()
        yield CounterMetricFamily("huiyin_cache_hits", "Requests answered from the store.", value=stats.hits)
        yield CounterMetricFamily("huiyin_cache_misses", "Requests that needed synthesis.", value=stats.misses)
        yield CounterMetricFamily("huiyin_cache_evictions", "Phrases evicted.", value=stats.evictions)
        yield GaugeMetricFamily("huiyin_cache_entries", "Phrases stored.", value=stats.entries)
        yield GaugeMetricFamily("huiyin_cache_bytes", "Bytes of stored audio.", value=stats.bytes)
        yield GaugeMetricFamily("huiyin_cache_max_bytes", "The store's byte budget (0: none).",
                                value=stats.max_bytes)
        yield GaugeMetricFamily("huiyin_ready", "1 while /readyz would answer ready.",
                                value=1.0 if self._m.ready else 0.0)
        yield CounterMetricFamily(
            "huiyin_cache_saved_seconds", "Synthesis seconds the store saved.", value=stats.saved_seconds
        )
        voices = self._m._voices()
        workers = voices.workers if voices is not None else []
        completed = CounterMetricFamily("huiyin_synth", "Completed syntheses, by engine.",
                                        labels=["engine"])
        by_engine: Counter[str] = Counter()
        for worker in workers:
            by_engine[worker.engine.name] += worker.completed
        for engine, done in sorted(by_engine.items()):
            completed.add_metric([engine], done)
        yield completed
        yield GaugeMetricFamily(
            "huiyin_queue_depth", "Requests waiting for an engine.",
            value=sum(w.queue_depth for w in workers),
        )
        yield GaugeMetricFamily(
            "huiyin_queue_capacity", "Requests that may wait for an engine (more get a 503).",
            value=sum(w.max_queue for w in workers),
        )
        audio = sum(w.audio_seconds for w in workers)
        synth = sum(w.synthesis_seconds for w in workers)
        yield GaugeMetricFamily(
            "huiyin_rtf", "Synthesis seconds per audio second so far.",
            value=synth / audio if audio else 0.0,
        )
        yield from self._backends(voices.backends() if voices is not None else [])

    @staticmethod
    def _backends(
        backends: list[dict[str, Any]]
    ) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Each remote backend's calls, errors, seconds spent and breaker state."""
        calls = CounterMetricFamily("huiyin_backend_requests", "Calls to a backend.",
                                    labels=["backend"])
        errors = CounterMetricFamily("huiyin_backend_errors", "Failed calls to a backend.",
                                     labels=["backend"])
        seconds = CounterMetricFamily("huiyin_backend_seconds", "Seconds spent in calls.",
                                      labels=["backend"])
        opened = CounterMetricFamily("huiyin_backend_breaker_opened", "Times the breaker opened.",
                                     labels=["backend"])
        state = GaugeMetricFamily("huiyin_backend_up", "1 while the breaker is closed, "
                                  "0.5 half open, 0 open.", labels=["backend"])
        for b in backends:
            name = [b["backend"]]
            calls.add_metric(name, b["requests"])
            errors.add_metric(name, b["errors"])
            seconds.add_metric(name, b["seconds"])
            opened.add_metric(name, b["breaker_opened"])
            state.add_metric(name, {"closed": 1.0, "half_open": 0.5}.get(b["state"], 0.0))
        yield from (calls, errors, seconds, opened, state)
