"""WadmClient: the asyncio client. Typed answers, typed errors, every page, streams that reconnect."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

import grpc

from wadm_client import requests
from wadm_client.channels import AsyncConnection
from wadm_client.errors import from_rpc_error
from wadm_client.models import Candle, Candles, MarketStats, Orderbook, PublishResult, SymbolInfo, Trade, multi_stats
from wadm_client.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_client.pb.wadm.market.v1 import trade_pb2
from wadm_client.reconnect import Backoff, OnReconnect, resuming_async
from wadm_client.requests import Time

Batch = Sequence[Trade | trade_pb2.Trade]


class WadmClient(AsyncConnection):
    """`async with WadmClient.connect("127.0.0.1:50051") as client: candles = await client.get_candles(...)`.

    Failed calls raise `WadmError` subclasses (`InvalidArgumentError` with `field_violations`, ...). The generated
    stubs are `client.market`, `client.ingest` and `client.admin`, for raw protobuf.
    """

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
    ) -> Candles:
        """Candles, oldest first; `timeframe` "1m".."1w"; no bounds: the newest `limit` (server default 500)."""
        request = requests.candles(
            symbol, timeframe, exchanges=exchanges, start=start, end=end, limit=limit, fill_gaps=fill_gaps
        )
        try:
            return Candles.from_pb(await self.market.GetCandles(request, **self._call()))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    async def list_symbols(self, *, exchanges: Sequence[str] = ()) -> list[SymbolInfo]:
        """Symbols with trades."""
        try:
            response = await self.market.ListSymbols(md.ListSymbolsRequest(exchanges=exchanges), **self._call())
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error
        return [SymbolInfo.from_pb(s) for s in response.symbols]

    async def get_market_stats(
        self, symbol: str, *, window: str | int | None = None, exchanges: Sequence[str] = ()
    ) -> MarketStats:
        """Rolling stats of one symbol; `window` "1h", "4h", "24h" (default) or "7d"."""
        request = requests.stats(symbol, period=window, exchanges=exchanges)
        try:
            return MarketStats.from_pb((await self.market.GetMarketStats(request, **self._call())).stats)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    async def get_multi_stats(
        self, symbols: Sequence[str], *, window: str | int | None = None, exchanges: Sequence[str] = ()
    ) -> dict[str, MarketStats | None]:
        """Stats of 1-20 symbols in request order; None for a symbol without trades in the window."""
        request = requests.multi_stats(symbols, period=window, exchanges=exchanges)
        try:
            return multi_stats(await self.market.GetMultiStats(request, **self._call()))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    async def get_orderbook(self, symbol: str, *, depth: int | None = None, exchanges: Sequence[str] = ()) -> Orderbook:
        """The simulated book, `depth` (1-100, server default 20) levels a side."""
        request = requests.orderbook(symbol, depth=depth, exchanges=exchanges)
        try:
            return Orderbook.from_pb(await self.market.GetOrderbook(request, **self._call()))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    async def list_trades(
        self,
        symbol: str,
        *,
        exchanges: Sequence[str] = (),
        start: Time | None = None,
        end: Time | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[Trade]:
        """Every trade of the range, newest first, fetching page after page."""
        request = requests.trades(symbol, exchanges=exchanges, start=start, end=end, page_size=page_size)
        while True:
            try:
                response = await self.market.ListTrades(request, **self._call())
            except grpc.RpcError as error:
                raise from_rpc_error(error) from error
            for trade in response.trades:
                yield Trade.from_pb(trade)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    async def stream_trades(
        self,
        symbols: Sequence[str],
        *,
        exchanges: Sequence[str] = (),
        heartbeat_seconds: float | None = None,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        on_reconnect: OnReconnect | None = None,
        resume_token: str | None = None,
    ) -> AsyncIterator[Trade]:
        """Live trades as they are ingested, for as long as you iterate.

        On UNAVAILABLE (transport lost, server restarting) or RESOURCE_EXHAUSTED (cut off as too slow) it reconnects
        by itself after `backoff` (exponential, jittered, at least the server's RetryInfo), calling `on_reconnect`.
        It resumes with the last message's resume token, so the trades ingested while it was away come first, once
        each, in order: one endless gap-free iterator. `self.reconnects` counts reconnects. If the server no longer
        has the trades since (past its retention, or it restarted without Redis), ResumeExpiredError is raised
        (`available_from` says from when it has them): backfill with `list_trades`, then stream again. Pass
        `resume_token` to start after a message of an earlier stream.
        """

        def open_call(token: str | None) -> Any:
            request = requests.stream(symbols, exchanges=exchanges, heartbeat_seconds=heartbeat_seconds, resume=token)
            return self.market.StreamTrades(request, metadata=self.options.metadata())

        resumed = resuming_async(
            open_call,
            self,
            resume_token=resume_token,
            reconnect=reconnect,
            backoff=backoff,
            on_reconnect=on_reconnect,
        )
        async for event in resumed:
            for trade in event.trades.trades:
                yield Trade.from_pb(trade)

    async def stream_candles(
        self,
        symbol: str,
        timeframe: str | int,
        *,
        exchanges: Sequence[str] = (),
        update_seconds: float | None = None,
        heartbeat_seconds: float | None = None,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        on_reconnect: OnReconnect | None = None,
        resume_token: str | None = None,
    ) -> AsyncIterator[Candle]:
        """Live candles of one symbol: the in-progress candle as it changes (`closed` False, at most every
        `update_seconds`, server default 1 s), then one final (`closed` True) per bucket, and a corrected final
        again if a late trade changes a closed bucket.

        Reconnects and resumes as `stream_trades` does: the finals of the buckets that closed while it was away come
        first, once each, so no final is lost or repeated. Past the server's resume bound ResumeExpiredError is
        raised: backfill with `get_candles`, then stream again.
        """

        def open_call(token: str | None) -> Any:
            request = requests.live_candles(
                symbol,
                timeframe,
                exchanges=exchanges,
                update_seconds=update_seconds,
                heartbeat_seconds=heartbeat_seconds,
                resume=token,
            )
            return self.market.StreamCandles(request, metadata=self.options.metadata())

        resumed = resuming_async(
            open_call,
            self,
            resume_token=resume_token,
            reconnect=reconnect,
            backoff=backoff,
            on_reconnect=on_reconnect,
        )
        async for event in resumed:
            if event.WhichOneof("event") == "candle":
                yield Candle.from_pb(event.candle)

    async def publish_trades(self, batches: Iterable[Batch] | AsyncIterable[Batch]) -> PublishResult:
        """Send batches of trades (1-10,000 each) over one PublishTrades stream; idempotent on trade ids."""

        async def messages() -> AsyncIterator[Any]:
            if isinstance(batches, AsyncIterable):
                async for batch in batches:
                    yield requests.publish_request(batch)
            else:
                for batch in batches:
                    yield requests.publish_request(batch)

        try:
            r = await self.ingest.PublishTrades(messages(), **self._call())
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error
        return PublishResult(r.accepted_count, r.duplicate_count, r.batch_count)
