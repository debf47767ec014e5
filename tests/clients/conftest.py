"""One seeded server process for the client tests, and each client (asyncio, blocking) behind one calling surface."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.clients.server import ServerProcess, seed, wadm_server
from wadm_client import WadmClient, WadmSyncClient
from wadm_client.pb.wadm.market.v1 import trade_pb2


@dataclass
class Seeded:
    server: ServerProcess
    now_us: int
    trades: dict[str, list[trade_pb2.Trade]]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A real server process with 240 trades of each of BTCUSDT, ETHUSDT, SOLUSDT over the last 20 minutes."""
    with wadm_server(tmp_path_factory.mktemp("server")) as server:
        now_us = time.time_ns() // 1000
        yield Seeded(server, now_us, seed(server.target, now_us))


class Driver:
    """Runs the same test against either client: `call(lambda c: c.get_candles(...))` gives the answer,
    `take(lambda c: c.list_trades(...), n)` the first n items of an iterator (async or not)."""

    def __init__(self, kind: str, target: str, options: dict[str, Any]) -> None:
        self.kind = kind
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        self.client: Any = self._run(self._make(target, options))

    async def _make_async(self, target: str, options: dict[str, Any]) -> WadmClient:
        return WadmClient.connect(target, **options)

    def _make(self, target: str, options: dict[str, Any]) -> Any:
        if self.kind == "async":
            return self._make_async(target, options)
        return WadmSyncClient.connect(target, **options)

    def _run(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            assert self.loop is not None
            return self.loop.run_until_complete(value)
        return value

    def call(self, method: Callable[[Any], Any]) -> Any:
        return self._run(method(self.client))

    def take(self, method: Callable[[Any], Any], count: int | None = None) -> list[Any]:
        iterator = method(self.client)
        if isinstance(iterator, AsyncIterator):

            async def collect() -> list[Any]:
                items = []
                try:
                    async for item in iterator:
                        items.append(item)
                        if count is not None and len(items) >= count:
                            break
                finally:
                    await iterator.aclose()  # type: ignore[attr-defined]
                return items

            return self._run(collect())  # type: ignore[no-any-return]
        items = []
        for item in iterator:
            items.append(item)
            if count is not None and len(items) >= count:
                break
        iterator.close()
        return items

    def close(self) -> None:
        self._run(self.client.close())
        if self.loop is not None:
            self.loop.close()


@pytest.fixture(params=["async", "sync"])
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[..., Driver]]:
    """`connect(target, **options)`: a Driver of each client in turn, closed after the test."""
    drivers: list[Driver] = []

    def make(target: str, **options: Any) -> Driver:
        drivers.append(Driver(request.param, target, options))
        return drivers[-1]

    yield make
    for driver in drivers:
        driver.close()


@pytest.fixture
def client(seeded: Seeded, connect: Callable[..., Driver]) -> Driver:
    return connect(seeded.server.target)
