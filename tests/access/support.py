"""Access-control test support: keys made by the real CLI, a server wired with a keys file, raw calls."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from tests.support import make_trades
from wadm_grpc.api.grpc.server import GrpcServer
from wadm_grpc.bootstrap import App, bootstrap, start_grpc
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.stores.duckdb import DuckDBTradeStore

NOW = 1_723_161_600_000_000
ROOT = Path(__file__).resolve().parents[2]


def keys_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m wadm_grpc keys ...` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "wadm_grpc", "keys", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def add_key(path: Path, name: str, scopes: str, *extra: str) -> str:
    """A new key from the CLI: the last line of its stdout."""
    done = keys_cli("add", name, "--scopes", scopes, "--file", str(path), *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Served:
    """A server with access control, reached at `target`."""

    app: App
    server: GrpcServer
    channel: grpc.aio.Channel

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@asynccontextmanager
async def serve_with(tmp_path: Path, **settings: Any) -> AsyncIterator[Served]:
    """An in-process server (bootstrap, real interceptors) over a DuckDB store with a few minutes of trades."""
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    bus = InProcessTradeBus(buffer_trades=1000)
    app = await bootstrap(Settings(page_token_key=b"k", **settings), store=store, bus=bus, clock=ManualClock(NOW))
    await app.ingest.store_trades(make_trades(seed=3, count=300, start_us=NOW - 300_000_000, spacing_us=1_000_000))
    server = await start_grpc(app, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Served(app, server, channel)
    finally:
        await channel.close()
        await bus.close()
        await server.stop(0)
        await app.close()


def status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status the server sent (its details)."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            return status_pb2.Status.FromString(value)
    raise AssertionError(f"no status details in {error}")


def detail(status: status_pb2.Status, kind: Any) -> Any:
    """The first detail of `kind` (RetryInfo, QuotaFailure, ...) in `status`, or None."""
    for packed in status.details:
        if packed.Is(kind.DESCRIPTOR):
            found = kind()
            packed.Unpack(found)
            return found
    return None


RETRY_INFO = error_details_pb2.RetryInfo
QUOTA_FAILURE = error_details_pb2.QuotaFailure
