"""EMPTY servicers, the ceilings of the unary and streaming sections: grpc.aio with no product code behind it.

`python -m bench.empty_server [--candles-response FILE]` serves on a free port of 127.0.0.1 and logs the
same JSON "started" line as the real server:

- GetCandles answers every call with one prebuilt response (the real server's answer, read from FILE).
- PublishTrades fans each batch out at once as ONE pre-built StreamTradesResponse per symbol, the same
  message object pushed to every StreamTrades subscriber of that symbol (no validation, no store).
- StreamTrades yields what it is pushed; a subscriber more than MAX_PENDING messages behind is ended
  with RESOURCE_EXHAUSTED, like the real server's bounded buffer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc

from bench.processes import READY_MESSAGE
from wadm_grpc.api.grpc.server import CHANNEL_OPTIONS
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_pb2

MAX_PENDING = 10_000
Context = grpc.aio.ServicerContext[Any, Any]


class Subscriber:
    """One stream's pending messages."""

    def __init__(self, symbols: frozenset[str]) -> None:
        self.symbols = symbols
        self.pending: deque[md.StreamTradesResponse] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False

    def offer(self, message: md.StreamTradesResponse) -> None:
        """Queue `message`, or mark the subscriber as fallen behind. Never blocks."""
        if len(self.pending) >= MAX_PENDING:
            self.overflowed = True
        else:
            self.pending.append(message)
        self.wake.set()


class Hub:
    """Subscribers by symbol."""

    def __init__(self) -> None:
        self.by_symbol: defaultdict[str, set[Subscriber]] = defaultdict(set)

    def subscribe(self, symbols: Iterable[str]) -> Subscriber:
        """A new subscriber to `symbols`."""
        subscriber = Subscriber(frozenset(symbols))
        for symbol in subscriber.symbols:
            self.by_symbol[symbol].add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget `subscriber`."""
        for symbol in subscriber.symbols:
            self.by_symbol[symbol].discard(subscriber)

    def publish(self, trades: Sequence[trade_pb2.Trade]) -> None:
        """One message per symbol, built once, pushed to every subscriber of the symbol."""
        by_symbol: defaultdict[str, list[trade_pb2.Trade]] = defaultdict(list)
        for trade in trades:
            by_symbol[trade.symbol].append(trade)
        for symbol, group in by_symbol.items():
            message = md.StreamTradesResponse(trades=md.TradeBatch(trades=group))
            for subscriber in self.by_symbol.get(symbol, ()):
                subscriber.offer(message)


class EmptyMarketData(md_grpc.MarketDataServiceServicer):
    """GetCandles: a prebuilt answer. StreamTrades: whatever the hub pushes."""

    def __init__(self, hub: Hub, candles: md.GetCandlesResponse) -> None:
        self._hub = hub
        self._candles = candles

    async def GetCandles(self, request: md.GetCandlesRequest, context: Context) -> md.GetCandlesResponse:
        return self._candles

    async def StreamTrades(
        self, request: md.StreamTradesRequest, context: Context
    ) -> AsyncIterator[md.StreamTradesResponse]:
        subscriber = self._hub.subscribe(request.symbols)
        try:
            while True:
                await subscriber.wake.wait()
                subscriber.wake.clear()
                if subscriber.overflowed:
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "stream fell behind")
                while subscriber.pending:
                    yield subscriber.pending.popleft()
        finally:
            self._hub.unsubscribe(subscriber)


class EmptyIngest(ingest_grpc.TradeIngestServiceServicer):
    """PublishTrades: straight to the hub."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def PublishTrades(
        self, request_iterator: AsyncIterator[ingest_pb.PublishTradesRequest], context: Context
    ) -> ingest_pb.PublishTradesResponse:
        accepted = batches = 0
        async for request in request_iterator:
            self._hub.publish(request.trades)
            accepted += len(request.trades)
            batches += 1
        return ingest_pb.PublishTradesResponse(accepted_count=accepted, batch_count=batches)


async def serve(candles: md.GetCandlesResponse) -> None:
    """Serve until SIGTERM or SIGINT."""
    hub = Hub()
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    # The generated base class answers UNIMPLEMENTED for the RPCs the bench does not call.
    market_data = EmptyMarketData(hub, candles)  # type: ignore[abstract]
    md_grpc.add_MarketDataServiceServicer_to_server(market_data, server)
    ingest_grpc.add_TradeIngestServiceServicer_to_server(EmptyIngest(hub), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(json.dumps({"message": READY_MESSAGE, "port": port}), file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.empty_server")
    parser.add_argument("--candles-response", type=Path, help="serialized GetCandlesResponse to answer with")
    args = parser.parse_args()
    candles = md.GetCandlesResponse()
    if args.candles_response is not None:
        candles.ParseFromString(args.candles_response.read_bytes())
    asyncio.run(serve(candles))


if __name__ == "__main__":
    main()
