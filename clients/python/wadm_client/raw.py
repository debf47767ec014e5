"""RawWadmClient: the asyncio client at the wire level, protobuf answers and grpc's own exceptions (tests, tools)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence

from wadm_client import requests
from wadm_client.channels import AsyncConnection
from wadm_client.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_client.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_client.pb.wadm.market.v1 import trade_pb2
from wadm_client.requests import Time


class RawWadmClient(AsyncConnection):
    """`async with RawWadmClient.connect(target) as c: ...`: generated messages in, grpc.aio.AioRpcError out."""

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
        request = requests.candles(
            symbol, timeframe, exchanges=exchanges, start=start, end=end, limit=limit, fill_gaps=fill_gaps
        )
        response: md.GetCandlesResponse = await self.market.GetCandles(
            request, timeout=self.timeout_seconds, metadata=self.options.metadata()
        )
        return response

    async def list_symbols(self, *, exchanges: Sequence[str] = ()) -> md.ListSymbolsResponse:
        """Symbols with trades."""
        symbols: md.ListSymbolsResponse = await self.market.ListSymbols(
            md.ListSymbolsRequest(exchanges=exchanges), timeout=self.timeout_seconds, metadata=self.options.metadata()
        )
        return symbols

    async def publish_trades(
        self, batches: Iterable[Sequence[trade_pb2.Trade]] | AsyncIterable[Sequence[trade_pb2.Trade]]
    ) -> ingest_pb.PublishTradesResponse:
        """Send batches of trades over one PublishTrades stream."""

        async def messages() -> AsyncIterator[ingest_pb.PublishTradesRequest]:
            if isinstance(batches, AsyncIterable):
                async for batch in batches:
                    yield ingest_pb.PublishTradesRequest(trades=batch)
            else:
                for batch in batches:
                    yield ingest_pb.PublishTradesRequest(trades=batch)

        published: ingest_pb.PublishTradesResponse = await self.ingest.PublishTrades(
            messages(), timeout=self.timeout_seconds, metadata=self.options.metadata()
        )
        return published
