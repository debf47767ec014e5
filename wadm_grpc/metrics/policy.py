"""The PolicyEvents adapter: rate-limit refusals and shed calls counted in Prometheus."""

from __future__ import annotations

from wadm_grpc.metrics.registry import Metrics


class PrometheusPolicyEvents:
    """Implements the policy layer's PolicyEvents protocol (rate limits, load shedding)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def rate_limited(self, key_name: str, method: str) -> None:
        """A call by `key_name` ("-" when anonymous) to `method` was refused over its rate limit."""
        self._metrics.rate_limited.labels(key_name, method).inc()

    def shed(self, method: str) -> None:
        """A call to `method` was shed (UNAVAILABLE / 503) because the store was saturated."""
        self._metrics.shed.labels(method).inc()

    def stream_capped(self, key_name: str, method: str) -> None:
        """A stream of `method` was refused because `key_name` had its maximum of streams open."""
        self._metrics.stream_capped.labels(key_name, method).inc()
