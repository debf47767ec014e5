"""The /metrics answer: Prometheus text, this process's metrics or (multiprocess mode) every worker's."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from wadm_grpc.metrics import multiprocess
from wadm_grpc.metrics.registry import Metrics

Scrape = Callable[[], tuple[bytes, str]]
CONTENT_TYPE = CONTENT_TYPE_LATEST


def scraper(metrics: Metrics, *, before: Callable[[], None] | None = None) -> Scrape:
    """A function answering a scrape: runs `before` (sampling counters kept elsewhere), then renders."""

    def scrape() -> tuple[bytes, str]:
        if before is not None:
            before()
        if multiprocess.enabled():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE
        return generate_latest(metrics.registry), CONTENT_TYPE

    return scrape
