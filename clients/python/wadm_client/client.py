"""WadmClient: one object for every RPC, with Python-friendly arguments and typed protobuf answers."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from datetime import datetime
from types import TracebackType

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_pb2

Time = datetime | int  # an aware datetime, or epoch microseconds
TIMEFRAMES = {"1m": 1, "5m": 2, "15m": 3, "30m": 4, "1h": 5, "4h": 6, "1d": 7, "1w": 8}
WINDOWS = {"1h": 1, "4h": 2, "24h": 3, "7d": 4}
SIDES = {"buy": trade_pb2.SIDE_BUY, "sell": trade_pb2.SIDE_SELL}


def timestamp(value: Time) -> Timestamp:
    """A Timestamp from an aware datetime or epoch microseconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("use an aware datetime (UTC)")
        result = Timestamp()
        result.FromDatetime(value)
        return result
    seconds, micros = divmod(value, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def make_trade(
    *, exchange: str, symbol: str, trade_id: str | int, price: str, quantity: str, side: str, time: Time
) -> trade_pb2.Trade:
    """A Trade message; `side` is the taker's, "buy" or "sell"."""
    return trade_pb2.Trade(
        exchange=exchange,
        symbol=symbol,
        trade_id=str(trade_id),
        price=price,
        quantity=quantity,
        side=SIDES.get(side, trade_pb2.SIDE_UNSPECIFIED),
        time=timestamp(time),
    )


class WadmClient:
    """Async client. `async with WadmClient.connect("127.0.0.1:50051") as client: ...`."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_seconds: float = 30.0) -> None:
        self.channel = channel
        self.timeout_seconds = timeout_seconds
        self.market = md_grpc.MarketDataServiceStub(channel)
        self.ingest = ingest_grpc.TradeIngestServiceStub(channel)

    @classmethod
    def connect(cls, target: str, *, timeout_seconds: float = 30.0) -> WadmClient:
        """A client on a plaintext channel to `target` ("host:port")."""
        return cls(grpc.aio.insecure_channel(target), timeout_seconds=timeout_seconds)

    async def __aenter__(self) -> WadmClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

    async def get_candles(
        self,
        symbol: str,
        timeframe: str | int,
        *,
        exchanges: Sequence[str] = (),
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
        fill_gaps: bool = False,
    ) -> md.GetCandlesResponse:
        """Candles, oldest first; `timeframe` as "1m".."1w" or the enum number."""
        request = md.GetCandlesRequest(
            symbol=symbol,
            timeframe=TIMEFRAMES[timeframe] if isinstance(timeframe, str) else timeframe,  # type: ignore[arg-type]
            exchanges=exchanges,
            fill_gaps=fill_gaps,
        )
        if start is not None:
            request.start_time.CopyFrom(timestamp(start))
        if end is not None:
            request.end_time.CopyFrom(timestamp(end))
        if limit is not None:
            request.limit = limit
        return await self.market.GetCandles(request, timeout=self.timeout_seconds)

    async def list_symbols(self, *, exchanges: Sequence[str] = ()) -> md.ListSymbolsResponse:
        """Symbols with trades."""
        return await self.market.ListSymbols(md.ListSymbolsRequest(exchanges=exchanges), timeout=self.timeout_seconds)

    async def publish_trades(
        self, batches: Iterable[Sequence[trade_pb2.Trade]] | AsyncIterable[Sequence[trade_pb2.Trade]]
    ) -> ingest_pb.PublishTradesResponse:
        """Send batches of trades over one PublishTrades stream."""

        async def requests() -> AsyncIterator[ingest_pb.PublishTradesRequest]:
            if isinstance(batches, AsyncIterable):
                async for batch in batches:
                    yield ingest_pb.PublishTradesRequest(trades=batch)
            else:
                for batch in batches:
                    yield ingest_pb.PublishTradesRequest(trades=batch)

        return await self.ingest.PublishTrades(requests(), timeout=self.timeout_seconds)


def duration(seconds: float) -> Duration:
    """A Duration of `seconds`."""
    result = Duration()
    result.FromNanoseconds(int(seconds * 1e9))
    return result
