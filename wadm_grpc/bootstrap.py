"""The composition root: settings -> store, bus, clock -> services -> servers. Nothing is wired at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wadm_grpc.access.events import PolicyEvents
from wadm_grpc.access.interceptor import AccessInterceptor
from wadm_grpc.access.policy import AccessPolicy
from wadm_grpc.access.wiring import build_access
from wadm_grpc.api.grpc.admin import AdminServicer
from wadm_grpc.api.grpc.convert import render_stats
from wadm_grpc.api.grpc.ingest import TradeIngestServicer
from wadm_grpc.api.grpc.market_data import MarketDataServicer
from wadm_grpc.api.grpc.observe import ObservingInterceptor
from wadm_grpc.api.grpc.server import GrpcServer, build_server, transport_options
from wadm_grpc.api.http.metrics_port import MetricsServer, serve_metrics
from wadm_grpc.api.http.server import HttpServer, start_http, url
from wadm_grpc.api.tls import TlsFiles, grpc_server_credentials
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.bus.redis import RedisTradeBus
from wadm_grpc.cache.memory import MemoryCache
from wadm_grpc.cache.redis import RedisCache
from wadm_grpc.cache.tiered import TieredCache
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import SystemClock
from wadm_grpc.feeds.demo import DemoFeed
from wadm_grpc.gc_pauses import freeze_startup_heap
from wadm_grpc.memory_release import release_after_stream_bursts
from wadm_grpc.metrics.policy import PrometheusPolicyEvents
from wadm_grpc.metrics.registry import Metrics
from wadm_grpc.metrics.scrape import Scrape, scraper
from wadm_grpc.metrics.store import TimedTradeStore
from wadm_grpc.ports import Clock, LiveTradeSource, LoopFreeReads, TradeBus, TradeStore
from wadm_grpc.redis_connection import redis_client
from wadm_grpc.services.candle_resume import CandleResumeTokens
from wadm_grpc.services.candles import CandleService
from wadm_grpc.services.ingest import IngestService
from wadm_grpc.services.live_candles import LiveCandleService
from wadm_grpc.services.orderbook import OrderbookService
from wadm_grpc.services.page_tokens import PageTokens
from wadm_grpc.services.read_cache import CacheTtls, ReadCache
from wadm_grpc.services.read_priority import ReadActivity
from wadm_grpc.services.resume_tokens import ResumeTokens
from wadm_grpc.services.shedding import GatedTradeStore, LoadsThread, StoreQueryGate
from wadm_grpc.services.stats import StatsService
from wadm_grpc.services.streaming import StreamService
from wadm_grpc.services.symbols import SymbolService
from wadm_grpc.services.trades import TradeService

log = logging.getLogger("wadm_grpc")


@dataclass
class App:
    """Everything one server process runs, wired."""

    settings: Settings
    store: TradeStore
    bus: TradeBus
    clock: Clock
    cache: ReadCache
    ingest: IngestService
    candles: CandleService
    symbols: SymbolService
    stats: StatsService
    orderbook: OrderbookService
    trades: TradeService
    streams: StreamService
    live_candles: LiveCandleService
    access: AccessPolicy = field(default_factory=AccessPolicy)
    gate: StoreQueryGate | None = None
    metrics: Metrics = field(default_factory=Metrics)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def run_in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` until close(); if it fails, say so in the log at once (not at shutdown)."""
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(_report_failure)
        self.background.append(task)

    async def close(self) -> None:
        """Stop background work, end live streams, release the cache and the store."""
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.bus.close()
        for close in reversed(self.closers):
            await close()
        await self.store.close()


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", extra={"task": task.get_name()}, exc_info=task.exception())


async def build_store(settings: Settings, *, worker: int = 0) -> TradeStore:
    """The store named by settings.store: the embedded DuckDB file (default) or MongoDB."""
    uri = settings.mongo_uri
    if uri is not None:
        from wadm_grpc.stores.mongo import CollectionNames, MongoTradeStore

        options: dict[str, object] = {"collections": CollectionNames(trades=settings.mongo_collection)}
        if settings.mongo_database:
            options["database"] = settings.mongo_database
        if worker > 0:  # one process is enough to roll up what collectors insert directly
            options["refresh_interval_seconds"] = None
        store = MongoTradeStore.from_uri(uri, **options)
        await store.start()
        return store
    from wadm_grpc.stores.duckdb import DuckDBTradeStore

    path = settings.duckdb_path
    assert path is not None
    return DuckDBTradeStore(path, read_only=settings.read_only)


def build_cache(settings: Settings, clock: Clock) -> tuple[ReadCache, list[Callable[[], Awaitable[None]]]]:
    """The read cache: Redis with an in-memory fallback when WADM_REDIS_URL is set, else memory only."""
    ttls = CacheTtls(
        candles_seconds=settings.cache_ttl_candles_seconds,
        closed_candles_seconds=settings.cache_ttl_closed_candles_seconds,
        stats_seconds=settings.cache_ttl_stats_seconds,
        orderbook_seconds=settings.cache_ttl_orderbook_seconds,
    )
    if not settings.cache_enabled:
        return ReadCache(None, clock, ttls), []
    memory = MemoryCache(max_entries=settings.cache_memory_entries)
    if not settings.redis_url:
        return ReadCache(memory, clock, ttls), []
    tiered = TieredCache(
        RedisCache(redis_client(settings.redis_url)), memory, probe_interval_seconds=settings.redis_probe_seconds
    )
    return ReadCache(tiered, clock, ttls), [tiered.aclose]


async def build_bus(settings: Settings) -> TradeBus:
    """The trade bus: through Redis when WADM_REDIS_URL is set (several processes), else in-process."""
    if not settings.redis_url:
        return InProcessTradeBus(
            buffer_trades=settings.stream_buffer_trades,
            retention_seconds=settings.stream_retention_seconds,
            retention_trades=settings.stream_retention_trades,
        )
    bus = RedisTradeBus(
        settings.redis_url,
        buffer_trades=settings.stream_buffer_trades,
        retention_seconds=settings.stream_retention_seconds,
    )
    await bus.start()
    return bus


async def bootstrap(
    settings: Settings,
    *,
    store: TradeStore | None = None,
    bus: TradeBus | None = None,
    clock: Clock | None = None,
    cache: ReadCache | None = None,
    worker: int = 0,
    policy_events: PolicyEvents | None = None,
) -> App:
    """Wire the services (tests pass their own store, bus, clock or cache; metrics their PolicyEvents)."""
    clock = clock if clock is not None else SystemClock()
    store = store if store is not None else await build_store(settings, worker=worker)
    bus = bus if bus is not None else await build_bus(settings)
    closers: list[Callable[[], Awaitable[None]]] = []
    if cache is None:
        cache, closers = build_cache(settings, clock)
    metrics = Metrics()
    raw_store = store
    store = TimedTradeStore(raw_store, metrics)  # what services use; App.store stays the adapter itself
    events = policy_events if policy_events is not None else PrometheusPolicyEvents(metrics)
    access, access_closers = build_access(settings, events)
    closers += access_closers
    # Reads the services make on a cache miss pass the gate (load shedding); ingest and feeds use `store`.
    gate = None
    reads: TradeStore = store
    activity: ReadActivity | None = None
    if settings.max_store_queries > 0:
        # Uncached reads in flight, counted by the gate: large ingest batches yield to them (bounded).
        if settings.ingest_yield_seconds > 0:
            activity = ReadActivity(max_wait_seconds=settings.ingest_yield_seconds)
        loads = LoadsThread() if settings.loads_thread else None
        if loads is not None:
            closers.append(loads.aclose)
        gate = StoreQueryGate(
            max_running=settings.max_store_queries,
            max_queued=settings.store_queue,
            max_wait_seconds=settings.store_queue_seconds,
            on_shed=access.events.shed,
            loads=loads,
            activity=activity,
        )
        loop_free = isinstance(raw_store, LoopFreeReads) and raw_store.reads_on_any_loop
        reads = GatedTradeStore(store, gate, reads_at_home=not loop_free)
        cache.gate = gate
    return App(
        settings=settings,
        store=raw_store,
        metrics=metrics,
        bus=bus,
        clock=clock,
        cache=cache,
        ingest=IngestService(
            store,
            bus,
            cache,
            clock=clock,
            max_future_seconds=settings.max_future_seconds,
            reads=activity,
        ),
        candles=CandleService(reads, clock, cache),
        symbols=SymbolService(reads),
        stats=StatsService(reads, clock, cache),
        orderbook=OrderbookService(reads, clock, cache),
        trades=TradeService(reads, PageTokens(settings.page_token_key)),
        streams=StreamService(
            bus, clock, stall_seconds=settings.stream_stall_seconds, tokens=ResumeTokens(settings.page_token_key)
        ),
        live_candles=LiveCandleService(
            reads,
            bus,
            clock,
            stall_seconds=settings.stream_stall_seconds,
            tokens=CandleResumeTokens(settings.page_token_key),
        ),
        access=access,
        gate=gate,
        closers=closers,
    )


def tls_files(settings: Settings) -> TlsFiles | None:
    """The server's TLS files (WADM_TLS_CERT, WADM_TLS_KEY, WADM_TLS_CLIENT_CA), None for plaintext."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    ca = Path(settings.tls_client_ca) if settings.tls_client_ca else None
    return TlsFiles(cert=Path(settings.tls_cert), key=Path(settings.tls_key), client_ca=ca)


def metrics_scraper(app: App) -> Scrape:
    """/metrics for `app`: samples the cache, stream and render-memo counters, then renders (every worker's)."""
    return scraper(
        app.metrics, before=lambda: app.metrics.sample(app.cache.stats(), app.streams.stats(), render_stats())
    )


async def start_grpc(
    app: App,
    address: str,
    *,
    reuse_port: bool = False,
    local_addresses: tuple[str, ...] = (),
    tls: TlsFiles | None = None,
) -> GrpcServer:
    """A started gRPC server serving `app`; `reuse_port` lets worker processes share the port; `tls`
    secures `address` (the local addresses stay plaintext: see gateway_socket)."""
    return await build_server(
        market_data=MarketDataServicer(
            candles=app.candles,
            symbols=app.symbols,
            stats=app.stats,
            orderbook=app.orderbook,
            trades=app.trades,
            streams=app.streams,
            live_candles=app.live_candles,
        ),
        ingest=TradeIngestServicer(ingest=app.ingest),
        admin=AdminServicer(cache=app.cache, streams=app.streams),
        address=address,
        extra_options=[
            *transport_options(
                max_message_bytes=app.settings.grpc_max_message_bytes,
                max_concurrent_streams=app.settings.grpc_max_concurrent_streams,
                min_ping_interval_seconds=app.settings.grpc_min_ping_interval_seconds,
            ),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
        local_addresses=local_addresses,
        credentials=grpc_server_credentials(tls) if tls is not None else None,
        # Observing first: access refusals are counted and logged too.
        interceptors=[ObservingInterceptor(app.metrics), AccessInterceptor(app.access)],
    )


def start_collector_feed(app: App) -> bool:
    """Stream trades that collectors write straight into the store (MongoDB change streams) to
    subscribers, in the background of `app`; False when the store has no such feed."""
    source = app.store
    if not isinstance(source, LiveTradeSource):
        return False

    async def forward() -> None:
        async for batch in source.collector_trades():
            await app.ingest.announce(batch)

    app.run_in_background(forward(), "collector-feed")
    return True


def start_demo_feed(app: App) -> DemoFeed:
    """Run the demo feed in the background of `app`."""
    feed = DemoFeed(
        ingest=app.ingest,
        store=app.store,
        clock=app.clock,
        seed=app.settings.demo_seed,
        backfill_seconds=app.settings.demo_backfill_seconds,
    )
    app.run_in_background(feed.run(), "demo-feed")
    return feed


async def start_metrics_port(settings: Settings, scrape: Scrape) -> MetricsServer | None:
    """/metrics on WADM_METRICS_PORT too, when set."""
    if settings.metrics_port is None:
        return None
    return await serve_metrics(
        scrape,
        host=settings.host,
        port=settings.metrics_port,
        reuse_port=settings.workers > 1,
        tls=tls_files(settings),
    )


def gateway_socket(private_dir: Path | None = None) -> str:
    """This process's own gRPC socket for its HTTP gateway. Not the shared TCP port: with workers, the
    kernel would pin each gateway's one connection to any worker, and two could load the same one.

    It is plaintext. Without TLS an abstract socket is enough (any local process can reach the loopback
    port just as well); with TLS it is a socket file in `private_dir` (mode 0700), so only this user,
    who can read the key anyway, gets past TLS and client certificates (docs/tls.md)."""
    if private_dir is not None:
        return f"unix:{private_dir / 'grpc.sock'}"
    return f"unix-abstract:wadm-grpc-{os.getpid()}"


async def start_gateway(
    settings: Settings, target: str, *, metrics: Metrics | None = None, scrape: Scrape | None = None
) -> HttpServer | None:
    """The HTTP/JSON gateway in front of the gRPC server at `target` (None when WADM_HTTP=false). Every HTTP
    call is forwarded as a gRPC call, so every gRPC interceptor and handler applies to it unchanged."""
    if not settings.http_enabled:
        return None
    return await start_http(
        target=target,
        host=settings.host,
        port=settings.http_port,
        reuse_port=settings.workers > 1,
        cors_origins=settings.cors_origins,
        max_concurrency=settings.http_max_concurrency,
        tls=tls_files(settings),
        metrics=metrics,
        scrape=scrape,
    )


async def serve(settings: Settings, *, worker: int = 0) -> None:
    """Run the service until SIGTERM or SIGINT, then drain gracefully."""
    app = await bootstrap(settings, worker=worker)
    tls = tls_files(settings)
    private = Path(tempfile.mkdtemp(prefix="wadm-grpc-")) if tls is not None and settings.http_enabled else None
    if private is not None:
        app.closers.append(lambda: asyncio.to_thread(shutil.rmtree, private, True))
    local = (gateway_socket(private),) if settings.http_enabled else ()
    server = await start_grpc(app, settings.address, reuse_port=settings.workers > 1, local_addresses=local, tls=tls)
    scrape = metrics_scraper(app)
    http = await start_gateway(settings, local[0], metrics=app.metrics, scrape=scrape) if local else None
    extra_http = await start_metrics_port(settings, scrape)
    if extra_http is not None:
        app.closers.append(lambda: extra_http.stop(0))
    freeze_startup_heap()  # out of every later full collection (gc_pauses.py)
    log.info(
        "wadm-grpc started",
        extra={
            "address": settings.address,
            "port": server.port,
            "tls": tls is not None,
            "mtls": tls is not None and tls.client_ca is not None,
            "http": url(settings.host, http.port, tls=tls is not None) if http else None,
            "metrics_port": extra_http.port if extra_http else None,
            "store": settings.store,
            "demo": settings.demo_feed,
            "worker": worker,
            "pid": os.getpid(),
        },
    )
    if settings.demo_feed:
        start_demo_feed(app)
    if worker == 0:  # one process tails collectors' inserts; the bus carries them to the others
        start_collector_feed(app)
    app.run_in_background(release_after_stream_bursts(app.streams), "memory-release")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    keys = app.access.keys
    if keys is not None:  # the file is also re-read when it changes; SIGHUP forces it
        loop.add_signal_handler(signal.SIGHUP, keys.reload)
    await stop.wait()
    await drain(app, server, http, drain_seconds=settings.drain_seconds, grace_seconds=settings.grace_seconds)
    log.info("stopped")


async def drain(
    app: App, server: GrpcServer, http: HttpServer | None, *, drain_seconds: float, grace_seconds: float
) -> None:
    """Shut down in the order load balancers and publishers rely on (docs/streams.md)."""
    log.info("shutting down", extra={"drain_seconds": drain_seconds, "grace_seconds": grace_seconds})
    # 1. Health says NOT_SERVING while every call is still served: load balancers move new traffic away.
    await server.start_draining()
    await asyncio.sleep(drain_seconds)
    # 2. Live streams end with UNAVAILABLE (clients reconnect elsewhere), and ingest calls store what they
    #    read and end saying so, so neither holds the grace period.
    await app.bus.close()
    server.finish_ingest()
    # 3. No new calls; running ones get `grace_seconds` to finish. 4. Then the store and the rest close.
    if http is not None:  # both at once: HTTP calls still running need the gRPC server during its grace
        await asyncio.gather(http.stop(grace_seconds), server.stop(grace_seconds))
    else:
        await server.stop(grace_seconds)
    await app.close()
