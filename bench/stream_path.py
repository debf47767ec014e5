"""Section `stream-path` (issue 11): the server's own Python per stream message, without grpc.

In one process, no server: STREAMS subscriptions of the in-process bus, each served by the real
StreamService write loop and TradeBatchEncoder, get PUBLISHES batches of 25 trades over 20 symbols.
The transport is a stand-in: a write awaits one future resolved on the next loop turn (what grpc.aio's
completion costs the loop is not counted). The FLOOR beside it is what any asyncio stream handler pays
per message: one Event wake-up and one awaited future. CPU time of the process, so other work on the
machine moves it less than wall time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

from bench.datasets import Datasets
from bench.report import SectionResult, Table, ratio, times
from wadm_grpc.api.grpc.stream_wire import TradeBatchEncoder
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.services.streaming import Heartbeat, StreamRequest, StreamService

STREAMS = 1_000
PUBLISHES = 200
TRADES_PER_PUBLISH = 25
SYMBOLS = [f"S{i:02d}USDT" for i in range(20)]
ROUNDS = 3


class _Clock:
    def now_us(self) -> int:
        return time.time_ns() // 1000


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled at the end of a run
        future.set_result(None)


async def _transport() -> None:
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(_resolve, future)
    await future


class _Sent:
    """Messages written so far; wakes the publisher once `target` is reached."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.reached = asyncio.Event()

    def add(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.reached.set()


def _batches() -> list[list[Trade]]:
    seq = 0
    batches = []
    for _ in range(PUBLISHES):
        batch = []
        for _ in range(TRADES_PER_PUBLISH):
            symbol = SYMBOLS[seq % len(SYMBOLS)]
            batch.append(Trade("binance", symbol, str(seq), Decimal("100.25"), Decimal("0.015"), Side.BUY, seq))
            seq += 1
        batches.append(batch)
    return batches


async def _drive(publish: Callable[[list[Trade]], Awaitable[None]], sent: _Sent) -> float:
    """Publish every batch once the previous one reached every stream; CPU seconds per message."""
    began = time.process_time()
    for index, batch in enumerate(_batches()):
        sent.target = (index + 1) * STREAMS
        sent.reached.clear()
        await publish(batch)
        async with asyncio.timeout(60):
            await sent.reached.wait()
    return (time.process_time() - began) / (PUBLISHES * STREAMS)


async def _product() -> float:
    bus = InProcessTradeBus(buffer_trades=1_000_000)
    service = StreamService(bus, _Clock())
    encoder = TradeBatchEncoder()
    sent = _Sent()

    async def write(event: list[Trade] | Heartbeat) -> None:
        if isinstance(event, list):
            encoder.encode(event)
            sent.add()
        await _transport()

    tasks = [
        asyncio.create_task(
            service.stream_trades(StreamRequest(frozenset({SYMBOLS[i % len(SYMBOLS)]}), frozenset(), 60.0), write)
        )
        for i in range(STREAMS)
    ]
    await bus.wait_for_subscribers(STREAMS)
    try:
        return await _drive(bus.publish, sent)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _floor() -> float:
    wakes = [asyncio.Event() for _ in range(STREAMS)]
    by_symbol: dict[str, list[asyncio.Event]] = {}
    for index, wake in enumerate(wakes):
        by_symbol.setdefault(SYMBOLS[index % len(SYMBOLS)], []).append(wake)
    sent = _Sent()

    async def stream(wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            sent.add()
            await _transport()

    async def publish(batch: list[Trade]) -> None:
        for symbol in {trade.symbol for trade in batch}:
            for wake in by_symbol[symbol]:
                wake.set()

    tasks = [asyncio.create_task(stream(wake)) for wake in wakes]
    try:
        return await _drive(publish, sent)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run(data: Datasets) -> SectionResult:
    """Best of ROUNDS for each, interleaved."""
    floor = product = float("inf")
    for _ in range(ROUNDS):
        floor = min(floor, await _floor())
        product = min(product, await _product())
    table = Table(
        f"Stream path without grpc: {STREAMS:,} streams, {PUBLISHES} publishes of {TRADES_PER_PUBLISH} trades "
        f"over {len(SYMBOLS)} symbols (best of {ROUNDS}); CPU per stream message",
        ["path", "us per message", "vs floor"],
    )
    table.add("floor (Event wake-up + one awaited future)", f"{floor * 1e6:.1f}", "1.00x")
    table.add("bus + StreamService write loop + encoder", f"{product * 1e6:.1f}", times(ratio(product, floor)))
    table.notes.append("grpc.aio's own cost per write (~38 us in the empty servicer) comes on top of both")
    figures: dict[str, object] = {"streams": STREAMS, "floor_us": floor * 1e6, "product_us": product * 1e6}
    return SectionResult("stream-path", [table], figures)
