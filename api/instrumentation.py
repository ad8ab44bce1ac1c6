"""Prometheus metrics: request counts and latency by route template, jobs by state.

Each app owns a ``CollectorRegistry`` (two apps in one process, as in tests, never clash).
The middleware is plain ASGI (no ``BaseHTTPMiddleware``): it adds microseconds, not a task.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


class JobStateCollector(Collector):
    """``ld3_jobs{state=...}``: counted in the registry at scrape time (every worker's jobs)."""

    def __init__(self, count_by_state: Callable[[], dict[str, int]]) -> None:
        self.count_by_state = count_by_state

    def collect(self) -> Iterable[GaugeMetricFamily]:
        g = GaugeMetricFamily("ld3_jobs", "Jobs in the registry by state", labels=["state"])
        counts = self.count_by_state()
        for state in sorted(set(JOB_STATES) | set(counts)):
            g.add_metric([state], counts.get(state, 0))
        yield g


class Metrics:
    """The app's metric objects and their registry."""

    def __init__(self, count_by_state: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ld3_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("ld3_http_request_duration_seconds", "HTTP request latency by route template",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(JobStateCollector(count_by_state))


class MetricsMiddleware:
    """Times every HTTP request and labels it with the matched route's template."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
