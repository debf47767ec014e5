"""Shared fixtures: every store kind, a real gRPC server on 127.0.0.1:0, a client, a manual clock."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import AFTER_DATA_US, STORE_KINDS, StoreKind
from wadm_client import RawWadmClient
from wadm_grpc.api.grpc.server import GrpcServer
from wadm_grpc.bootstrap import App, bootstrap, start_grpc
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.ports import TradeStore

pytest_plugins = ["tests.redis_support"]  # redis_server: a real redis-server per test

# Servers the tests start as processes inherit this: no HTTP gateway on the fixed default port 8080 (tests
# that want it, tests/gateway, turn it on with a free port).
os.environ.setdefault("WADM_HTTP", "false")


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> StoreKind:
    """Each store implementation in turn."""
    kind: StoreKind = request.param
    return kind


@pytest.fixture
async def store(store_kind: StoreKind, tmp_path: Path) -> AsyncIterator[TradeStore]:
    """A fresh, empty store of each kind."""
    async with store_kind.open(tmp_path) as opened:
        yield opened


@pytest.fixture
def clock() -> ManualClock:
    """Time stands still at 2024-08-09T00:10:00Z unless a test moves it."""
    return ManualClock(AFTER_DATA_US)


@dataclass
class Running:
    """A served app and a client connected to it."""

    app: App
    server: GrpcServer
    client: RawWadmClient
    bus: InProcessTradeBus

    @property
    def target(self) -> str:
        """host:port of the server."""
        return f"127.0.0.1:{self.server.port}"


@pytest.fixture
async def served(store: TradeStore, clock: ManualClock) -> AsyncIterator[Running]:
    """The real gRPC server on 127.0.0.1:0 over each store kind, with a connected client."""
    bus = InProcessTradeBus(buffer_trades=1000)
    settings = Settings(page_token_key=b"test-key")
    app = await bootstrap(settings, store=store, bus=bus, clock=clock)
    server = await start_grpc(app, "127.0.0.1:0")
    client = RawWadmClient.connect(f"127.0.0.1:{server.port}", timeout_seconds=30)
    try:
        yield Running(app=app, server=server, client=client, bus=bus)
    finally:
        await client.close()
        await bus.close()
        await server.stop(0)
