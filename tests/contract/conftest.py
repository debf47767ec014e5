"""The `bus` fixture of both bus suites (test_bus_contract.py, test_bus_resume.py): each kind, started, closed at
teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.contract.test_bus_contract import BUFFER_TRADES, redis_bus
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.bus.redis import RedisTradeBus


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[InProcessTradeBus | RedisTradeBus]:
    """Each bus kind, started, closed at teardown."""
    if request.param == "memory":
        memory = InProcessTradeBus(buffer_trades=BUFFER_TRADES)
        yield memory
        await memory.close()
        return
    started = redis_bus(request.getfixturevalue("redis_server"))
    await started.start()
    try:
        yield started
    finally:
        await started.close()
