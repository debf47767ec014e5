"""Settings: frozen, read from the environment here and nowhere else."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from wadm_client.options import DEFAULT_CALLS_PER_CHANNEL

DEFAULT_STORE = "duckdb:var/wadm.duckdb"


class SettingsError(ValueError):
    """A setting has a value the service cannot use."""


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}={value!r}: expected true/false")


def _number(value: str, name: str, kind: type[int] | type[float], low: float, high: float) -> Any:
    try:
        number = kind(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r}: expected a number") from None
    if not low <= number <= high:
        raise SettingsError(f"{name}={value!r}: expected {low} to {high}")
    return number


@dataclass(frozen=True)
class Settings:
    """Everything configurable. See README "Configuration" for the environment variables."""

    host: str = "127.0.0.1"
    port: int = 50051
    store: str = DEFAULT_STORE
    demo_feed: bool = False
    demo_seed: int = 7
    demo_backfill_seconds: int = 3600
    grace_seconds: float = 10.0
    drain_seconds: float = 3.0
    max_future_seconds: float = 60.0
    log_level: str = "INFO"
    log_json: bool = True
    stream_buffer_trades: int = 10_000
    stream_stall_seconds: float = 5.0
    # How far back a stream's resume token reaches (docs/streams.md "Resume"); the in-process log's size cap.
    stream_retention_seconds: float = 3600.0
    stream_retention_trades: int = 100_000
    page_token_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    mongo_database: str | None = None
    mongo_collection: str = "trades"
    redis_url: str | None = None
    redis_probe_seconds: float = 5.0
    read_only: bool = False
    workers: int = 1
    cache_enabled: bool = True
    cache_memory_entries: int = 10_000
    cache_ttl_candles_seconds: float = 60.0
    cache_ttl_closed_candles_seconds: float = 3600.0
    cache_ttl_stats_seconds: float = 30.0
    cache_ttl_orderbook_seconds: float = 10.0
    http_enabled: bool = True
    http_port: int = 8080
    cors_origins: tuple[str, ...] = ()
    api_keys_file: str | None = None
    auth: str | None = None  # "required" | "off"; None: required iff api_keys_file is set
    rate_limit_per_minute: int | None = None  # None: 1200 with auth required, else 0 (no limit)
    max_streams_per_key: int | None = None  # None: 16 with auth required, else 0 (no cap)
    auth_open_services: tuple[str, ...] = (
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    )
    max_store_queries: int = 3
    store_queue: int = 32
    store_queue_seconds: float = 0.5
    loads_thread: bool = True  # cache-miss loads run on a thread of their own (services/shedding.py)
    # Longest an ingest step (validating one message) waits for a quiet moment between uncached reads
    # (services/read_priority.py); 0: ingest never yields.
    ingest_yield_seconds: float = 0.3
    grpc_max_message_bytes: int = 4 * 1024 * 1024
    grpc_max_concurrent_streams: int = DEFAULT_CALLS_PER_CHANNEL  # the clients pool connections of this size
    grpc_min_ping_interval_seconds: float = 10.0
    http_max_concurrency: int = 2000

    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    metrics_port: int | None = None

    @property
    def auth_required(self) -> bool:
        """Whether every call but health and reflection needs an API key."""
        return self.auth == "required" if self.auth is not None else self.api_keys_file is not None

    @property
    def effective_rate_limit_per_minute(self) -> int:
        """The default weight budget per minute (0: none)."""
        if self.rate_limit_per_minute is not None:
            return self.rate_limit_per_minute
        return 1200 if self.auth_required else 0

    @property
    def effective_max_streams_per_key(self) -> int:
        """Streams one key (or client IP) may have open in one process (0: no cap)."""
        if self.max_streams_per_key is not None:
            return self.max_streams_per_key
        return 16 if self.auth_required else 0

    @property
    def address(self) -> str:
        """host:port to listen on."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def http_address(self) -> str:
        """host:port the HTTP/JSON gateway listens on."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.http_port}"

    @property
    def duckdb_path(self) -> str | None:
        """The DuckDB file when the store is the embedded one, else None."""
        if self.store.startswith(("mongodb://", "mongodb+srv://")):
            return None
        path = self.store.removeprefix("duckdb:")
        return path.removeprefix("//") if path.startswith("///") else path

    @property
    def mongo_uri(self) -> str | None:
        """The MongoDB connection string when the store is MongoDB, else None."""
        return self.store if self.duckdb_path is None else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from WADM_* variables (unset ones keep their defaults), then `overrides`."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if "WADM_HOST" in env:
            values["host"] = env["WADM_HOST"]
        if "WADM_PORT" in env:
            values["port"] = _number(env["WADM_PORT"], "WADM_PORT", int, 0, 65535)
        if "WADM_STORE" in env:
            values["store"] = env["WADM_STORE"]
        if "WADM_DEMO_FEED" in env:
            values["demo_feed"] = _flag(env["WADM_DEMO_FEED"], "WADM_DEMO_FEED")
        if "WADM_DEMO_SEED" in env:
            values["demo_seed"] = _number(env["WADM_DEMO_SEED"], "WADM_DEMO_SEED", int, 0, 2**63)
        if "WADM_DEMO_BACKFILL_SECONDS" in env:
            values["demo_backfill_seconds"] = _number(
                env["WADM_DEMO_BACKFILL_SECONDS"], "WADM_DEMO_BACKFILL_SECONDS", int, 0, 30 * 86400
            )
        if "WADM_GRACE_SECONDS" in env:
            values["grace_seconds"] = _number(env["WADM_GRACE_SECONDS"], "WADM_GRACE_SECONDS", float, 0, 3600)
        if "WADM_DRAIN_SECONDS" in env:
            values["drain_seconds"] = _number(env["WADM_DRAIN_SECONDS"], "WADM_DRAIN_SECONDS", float, 0, 3600)
        if "WADM_MAX_FUTURE_SECONDS" in env:
            values["max_future_seconds"] = _number(
                env["WADM_MAX_FUTURE_SECONDS"], "WADM_MAX_FUTURE_SECONDS", float, 0, 86400 * 366
            )
        if "WADM_LOG_LEVEL" in env:
            values["log_level"] = env["WADM_LOG_LEVEL"].upper()
        if "WADM_LOG_FORMAT" in env:
            values["log_json"] = env["WADM_LOG_FORMAT"].lower() != "text"
        if "WADM_STREAM_BUFFER_TRADES" in env:
            values["stream_buffer_trades"] = _number(
                env["WADM_STREAM_BUFFER_TRADES"], "WADM_STREAM_BUFFER_TRADES", int, 1, 10_000_000
            )
        if "WADM_STREAM_STALL_SECONDS" in env:
            values["stream_stall_seconds"] = _number(
                env["WADM_STREAM_STALL_SECONDS"], "WADM_STREAM_STALL_SECONDS", float, 0.1, 3600
            )
        if "WADM_STREAM_RETENTION_SECONDS" in env:
            values["stream_retention_seconds"] = _number(
                env["WADM_STREAM_RETENTION_SECONDS"], "WADM_STREAM_RETENTION_SECONDS", float, 0.001, 86400 * 30
            )
        if "WADM_STREAM_RETENTION_TRADES" in env:
            values["stream_retention_trades"] = _number(
                env["WADM_STREAM_RETENTION_TRADES"], "WADM_STREAM_RETENTION_TRADES", int, 0, 100_000_000
            )
        if env.get("WADM_PAGE_TOKEN_KEY"):
            values["page_token_key"] = env["WADM_PAGE_TOKEN_KEY"].encode()
        for name, key in (("WADM_MONGO_DATABASE", "mongo_database"), ("WADM_MONGO_COLLECTION", "mongo_collection")):
            if env.get(name):
                values[key] = env[name]
        if env.get("WADM_REDIS_URL"):
            values["redis_url"] = env["WADM_REDIS_URL"]
        if "WADM_REDIS_PROBE_SECONDS" in env:
            values["redis_probe_seconds"] = _number(
                env["WADM_REDIS_PROBE_SECONDS"], "WADM_REDIS_PROBE_SECONDS", float, 0.01, 3600
            )
        if "WADM_READ_ONLY" in env:
            values["read_only"] = _flag(env["WADM_READ_ONLY"], "WADM_READ_ONLY")
        if "WADM_WORKERS" in env:
            values["workers"] = _number(env["WADM_WORKERS"], "WADM_WORKERS", int, 1, 64)
        if "WADM_CACHE" in env:
            values["cache_enabled"] = _flag(env["WADM_CACHE"], "WADM_CACHE")
        if "WADM_CACHE_MEMORY_ENTRIES" in env:
            values["cache_memory_entries"] = _number(
                env["WADM_CACHE_MEMORY_ENTRIES"], "WADM_CACHE_MEMORY_ENTRIES", int, 1, 10_000_000
            )
        for kind in ("candles", "closed_candles", "stats", "orderbook"):
            name = f"WADM_CACHE_TTL_{kind.upper()}_SECONDS"
            if name in env:
                values[f"cache_ttl_{kind}_seconds"] = _number(env[name], name, float, 0.001, 86400 * 7)
        if "WADM_HTTP" in env:
            values["http_enabled"] = _flag(env["WADM_HTTP"], "WADM_HTTP")
        if "WADM_LOADS_THREAD" in env:
            values["loads_thread"] = _flag(env["WADM_LOADS_THREAD"], "WADM_LOADS_THREAD")
        if "WADM_HTTP_PORT" in env:
            values["http_port"] = _number(env["WADM_HTTP_PORT"], "WADM_HTTP_PORT", int, 0, 65535)
        if "WADM_CORS_ORIGINS" in env:
            values["cors_origins"] = tuple(o.strip() for o in env["WADM_CORS_ORIGINS"].split(",") if o.strip())
        values.update(_access_values(env))
        for name, key in (
            ("WADM_TLS_CERT", "tls_cert"),
            ("WADM_TLS_KEY", "tls_key"),
            ("WADM_TLS_CLIENT_CA", "tls_client_ca"),
        ):
            if env.get(name):
                values[key] = env[name]
        if env.get("WADM_METRICS_PORT"):
            values["metrics_port"] = _number(env["WADM_METRICS_PORT"], "WADM_METRICS_PORT", int, 0, 65535)
        return replace(cls(**values), **overrides).checked()

    def checked(self) -> Settings:
        """These settings, or SettingsError for combinations that cannot work."""
        if self.workers > 1:
            if self.duckdb_path is not None and not self.read_only:
                raise SettingsError(
                    f"WADM_WORKERS={self.workers} needs a store several processes can share: MongoDB "
                    "(WADM_STORE=mongodb://...) or a read-only DuckDB snapshot (WADM_READ_ONLY=true); the embedded "
                    "DuckDB store can be opened read-write by one process only"
                )
            if not self.redis_url:
                raise SettingsError(
                    f"WADM_WORKERS={self.workers} needs WADM_REDIS_URL: live trades reach every worker's streams "
                    "through the Redis trade bus"
                )
            if self.port == 0:
                raise SettingsError("WADM_WORKERS > 1 needs a fixed WADM_PORT for the workers to share")
            if self.http_enabled and self.http_port == 0:
                raise SettingsError("WADM_WORKERS > 1 needs a fixed WADM_HTTP_PORT for the workers to share")
        if self.http_enabled and self.http_port != 0 and self.http_port == self.port:
            raise SettingsError(f"WADM_HTTP_PORT={self.http_port} is WADM_PORT too: gRPC and HTTP need two ports")
        if self.auth_required and self.api_keys_file is None:
            raise SettingsError("WADM_AUTH=required needs WADM_API_KEYS_FILE (create it with `keys add`)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("WADM_TLS_CERT and WADM_TLS_KEY go together: set both (PEM files) or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise SettingsError("WADM_TLS_CLIENT_CA (mTLS) needs WADM_TLS_CERT and WADM_TLS_KEY")
        for port in (self.port, self.http_port if self.http_enabled else None):
            if self.metrics_port and port == self.metrics_port:
                raise SettingsError(f"WADM_METRICS_PORT={self.metrics_port} is taken by gRPC or HTTP")
        if self.workers > 1 and self.metrics_port == 0:
            raise SettingsError("WADM_WORKERS > 1 needs a fixed WADM_METRICS_PORT for the workers to share")
        if self.read_only and self.demo_feed:
            raise SettingsError("WADM_READ_ONLY=true cannot run the demo feed (it writes trades)")
        return self


def _access_values(env: Mapping[str, str]) -> dict[str, Any]:
    """Keys, limits, shedding and transport limits (README "Running it for real")."""
    values: dict[str, Any] = {}
    if env.get("WADM_API_KEYS_FILE"):
        values["api_keys_file"] = env["WADM_API_KEYS_FILE"]
    if env.get("WADM_AUTH"):
        auth = env["WADM_AUTH"].strip().lower()
        if auth not in ("required", "off"):
            raise SettingsError(f"WADM_AUTH={env['WADM_AUTH']!r}: expected required or off")
        values["auth"] = auth
    if "WADM_AUTH_OPEN_SERVICES" in env:
        values["auth_open_services"] = tuple(s.strip() for s in env["WADM_AUTH_OPEN_SERVICES"].split(",") if s.strip())
    numbers: tuple[tuple[str, str, type[int] | type[float], float, float], ...] = (
        ("WADM_RATE_LIMIT_PER_MINUTE", "rate_limit_per_minute", int, 0, 10**9),
        ("WADM_MAX_STREAMS_PER_KEY", "max_streams_per_key", int, 0, 10**6),
        ("WADM_MAX_STORE_QUERIES", "max_store_queries", int, 0, 1024),
        ("WADM_STORE_QUEUE", "store_queue", int, 0, 100_000),
        ("WADM_STORE_QUEUE_SECONDS", "store_queue_seconds", float, 0, 60),
        ("WADM_INGEST_YIELD_SECONDS", "ingest_yield_seconds", float, 0, 10),
        ("WADM_GRPC_MAX_MESSAGE_BYTES", "grpc_max_message_bytes", int, 64 * 1024, 1024**3),
        ("WADM_GRPC_MAX_CONCURRENT_STREAMS", "grpc_max_concurrent_streams", int, 1, 10**6),
        ("WADM_GRPC_MIN_PING_INTERVAL_SECONDS", "grpc_min_ping_interval_seconds", float, 0, 3600),
        ("WADM_HTTP_MAX_CONCURRENCY", "http_max_concurrency", int, 1, 10**6),
    )
    for name, key, kind, low, high in numbers:
        if name in env:
            values[key] = _number(env[name], name, kind, low, high)
    return values
