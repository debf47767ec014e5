"""Connection options of both clients: target, API key, TLS, deadlines, keepalive, retries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc

DEFAULT_TARGET = "127.0.0.1:50051"
API_KEY_HEADER = "x-api-key"
# The server's default cap of calls in flight on one connection (WADM_GRPC_MAX_CONCURRENT_STREAMS).
DEFAULT_CALLS_PER_CHANNEL = 16
# Idempotent reads: gRPC itself retries them on UNAVAILABLE (connection refused, server restarting or draining), with
# exponential backoff, as the service config below says. Streams reconnect in the client (stream_trades); PublishTrades
# is idempotent on the server too, but a client stream is not replayed by gRPC's retry buffer in a useful way.
RETRIED_METHODS = (
    ("wadm.market.v1.MarketDataService", "GetCandles"),
    ("wadm.market.v1.MarketDataService", "ListSymbols"),
    ("wadm.market.v1.MarketDataService", "GetMarketStats"),
    ("wadm.market.v1.MarketDataService", "GetMultiStats"),
    ("wadm.market.v1.MarketDataService", "GetOrderbook"),
    ("wadm.market.v1.MarketDataService", "ListTrades"),
    ("wadm.market.v1.AdminService", ""),
)


def service_config(*, max_attempts: int = 5) -> str:
    """The gRPC service config (JSON) with a `retryPolicy` for the idempotent reads."""
    policy = {
        "maxAttempts": max_attempts,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    names = [
        {"service": service, "method": method} if method else {"service": service}
        for service, method in RETRIED_METHODS
    ]
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """How to reach the server. Every field has a default that works against `make run`."""

    target: str = DEFAULT_TARGET
    api_key: str | None = None  # sent as `x-api-key` metadata on every call
    tls: bool = False  # True: TLS with the system's roots unless `ca_file` says otherwise
    ca_file: str | None = None  # PEM roots to verify the server (implies TLS)
    cert_file: str | None = None  # PEM client certificate, for mutual TLS (with `key_file`)
    key_file: str | None = None
    server_name: str | None = None  # TLS name to verify instead of the target's host
    timeout_seconds: float | None = 30.0  # default deadline of unary calls (None: none)
    keepalive_seconds: float | None = None  # HTTP/2 pings; the server must allow the rate (default: off)
    retries: int = 5  # attempts of an idempotent read on UNAVAILABLE (1: no retry)
    # Calls in flight per connection before the async clients open another one (the server's cap; None: one
    # connection, calls beyond the server's cap wait in it). See wadm_client/pool.py.
    calls_per_channel: int | None = DEFAULT_CALLS_PER_CHANNEL

    @property
    def secure(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

    def credentials(self) -> grpc.ChannelCredentials:
        """SSL channel credentials from the PEM files given."""

        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )

    def channel_options(self) -> list[tuple[str, str | int]]:
        options: list[tuple[str, str | int]] = [
            ("grpc.enable_retries", 1 if self.retries > 1 else 0),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ]
        if self.retries > 1:
            options.append(("grpc.service_config", service_config(max_attempts=self.retries)))
        if self.keepalive_seconds is not None:
            options += [
                ("grpc.keepalive_time_ms", int(self.keepalive_seconds * 1000)),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
            ]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        return options

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((API_KEY_HEADER, self.api_key),) if self.api_key else ()
