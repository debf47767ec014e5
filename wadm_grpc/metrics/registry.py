"""Every metric the service exports, on one registry per process (docs/metrics.md lists them).

gRPC metrics carry go-grpc-prometheus' names and labels, plus `face` ("grpc", or "http" for calls the
gateway forwarded), so existing dashboards and alerts work unchanged.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from wadm_grpc.api.grpc.convert import CANDLE_RENDERS, RenderStats
from wadm_grpc.ports import CacheStats
from wadm_grpc.services.streaming import StreamStats

# Seconds; from a cached answer (sub-millisecond) to a long store query.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method", "face")


class _Deltas:
    """Turns counters a component keeps itself (cache tiers, streams) into Prometheus counter increments:
    in multiprocess mode each process adds what it counted since the last sample."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}

    def add(self, counter: Counter, label: str, total: int) -> None:
        key = (counter._name, label)
        delta = total - self._seen.get(key, 0)
        if delta > 0:
            (counter.labels(label) if label else counter).inc(delta)
        self._seen[key] = total


class Metrics:
    """The service's metrics; `registry` is this process's (tests give each server its own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No `_created` series: multiprocess mode has none, and both modes should scrape alike.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry = r
        self.grpc_started = Counter("grpc_server_started_total", "RPCs started on the server.", GRPC_LABELS, registry=r)
        self.grpc_handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            (*GRPC_LABELS, "grpc_code"),
            registry=r,
        )
        self.grpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from an RPC's start to its end, seconds.",
            GRPC_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.grpc_received = Counter(
            "grpc_server_msg_received_total", "Request messages received.", GRPC_LABELS, registry=r
        )
        self.grpc_sent = Counter("grpc_server_msg_sent_total", "Response messages sent.", GRPC_LABELS, registry=r)
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by route template and status.",
            ("method", "route", "code"),
            registry=r,
        )
        self.http_seconds = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (streams: until they end), seconds.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_subscribers = Gauge(
            "wadm_stream_subscribers",
            "Streaming calls open now, by method (StreamTrades, SubscribeTrades).",
            ("grpc_method",),
            multiprocess_mode="livesum",
            registry=r,
        )
        self.live_streams = Gauge(
            "wadm_live_streams", "Live trade streams open now.", multiprocess_mode="livesum", registry=r
        )
        self.stream_cut_offs = Counter(
            "wadm_stream_cut_offs_total", "Streams cut off for falling behind the live feed.", registry=r
        )
        self.cache_hits = Counter("wadm_cache_hits_total", "Read-cache hits, by tier.", ("tier",), registry=r)
        self.cache_misses = Counter("wadm_cache_misses_total", "Read-cache misses, by tier.", ("tier",), registry=r)
        self.cache_errors = Counter(
            "wadm_cache_errors_total", "Read-cache tier errors, by tier.", ("tier",), registry=r
        )
        self.cache_fallbacks = Counter(
            "wadm_cache_fallbacks_total", "Cache operations memory served because Redis failed.", registry=r
        )
        self.candle_renders = Counter(
            "wadm_candle_renders_total",
            "Candles of uncached answers looked up in the render memo, by result (hit: sent as kept bytes; "
            "miss: rendered, then kept).",
            ("result",),
            registry=r,
        )
        self.candle_render_entries = Gauge(
            "wadm_candle_render_entries",
            f"Wire candles the render memo holds now (at most {CANDLE_RENDERS:,} per process).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.ingest_trades = Counter(
            "wadm_ingest_trades_total",
            "Trades offered to the store, by result (accepted: new; duplicate: already stored).",
            ("result",),
            registry=r,
        )
        self.store_seconds = Histogram(
            "wadm_store_query_seconds",
            "Store calls (queries and inserts), by operation, seconds.",
            ("operation",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter(
            "wadm_rate_limited_total",
            "Calls refused over a rate limit, by key name and method.",
            ("key_name", "method"),
            registry=r,
        )
        self.shed = Counter(
            "wadm_shed_total", "Calls shed under load (UNAVAILABLE / 503), by method.", ("method",), registry=r
        )
        self.stream_capped = Counter(
            "wadm_stream_capped_total",
            "Streams refused because their key (or client address) had its maximum open, by key name and method.",
            ("key_name", "method"),
            registry=r,
        )
        self._deltas = _Deltas()

    def sample(self, cache: CacheStats | None, streams: StreamStats, renders: RenderStats | None = None) -> None:
        """Copy counters the cache, the stream service and the candle render memo keep into the metrics
        (before each scrape)."""
        self.live_streams.set(streams.live_streams)
        self._deltas.add(self.stream_cut_offs, "", streams.cut_off_streams)
        if renders is not None:
            self._deltas.add(self.candle_renders, "hit", renders.hits)
            self._deltas.add(self.candle_renders, "miss", renders.misses)
            self.candle_render_entries.set(renders.entries)
        if cache is None:
            return
        for tier in cache.tiers:
            self._deltas.add(self.cache_hits, tier.name, tier.hits)
            self._deltas.add(self.cache_misses, tier.name, tier.misses)
            self._deltas.add(self.cache_errors, tier.name, tier.errors)
        self._deltas.add(self.cache_fallbacks, "", cache.fallbacks)
