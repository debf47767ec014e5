"""MarketDataService servicer: convert the request, call the service, convert the answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from wadm_grpc.api.grpc import convert
from wadm_grpc.api.grpc.errors import Context, end_call, status_of, unary
from wadm_grpc.api.grpc.stream_wire import TradeBatchEncoder, candle_token_field
from wadm_grpc.domain.aggregate import Candle, CandleSeries
from wadm_grpc.domain.decimals import to_wire
from wadm_grpc.domain.errors import InvalidArgumentError, Violations
from wadm_grpc.domain.stats import MarketStats
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.services.candles import CandleService, CandlesRequest
from wadm_grpc.services.live_candles import LiveCandleService, LiveEvent
from wadm_grpc.services.orderbook import Orderbook, OrderbookService
from wadm_grpc.services.read_cache import answer_ttl_seconds
from wadm_grpc.services.stats import MultiStats, StatsService
from wadm_grpc.services.streaming import Heartbeat, StreamService, SubscriptionEvent, TradeMessage
from wadm_grpc.services.symbols import SymbolService
from wadm_grpc.services.trade_subscriptions import (
    Command,
    Ping,
    Pong,
    Refused,
    Subscribe,
    Subscribed,
    Unsubscribe,
)
from wadm_grpc.services.trades import TradeService, TradesRequest


def _command(request: md.SubscribeTradesRequest) -> Command:
    operation = request.WhichOneof("operation")
    if operation == "subscribe":
        sub = request.subscribe
        heartbeat = sub.heartbeat_interval.ToNanoseconds() / 1e9 if sub.HasField("heartbeat_interval") else None
        return Subscribe(list(sub.symbols), list(sub.exchanges), heartbeat, sub.resume_token)
    if operation == "unsubscribe":
        return Unsubscribe(list(request.unsubscribe.symbols))
    if operation == "ping":
        return Ping()
    return Refused(InvalidArgumentError.of("operation", "needs one of subscribe, unsubscribe, ping"))


async def _commands(requests: AsyncIterator[md.SubscribeTradesRequest]) -> AsyncIterator[Command]:
    async for request in requests:
        yield _command(request)


# Trailing metadata with a cached answer's TTL in seconds (the HTTP gateway turns it into Cache-Control).
CACHE_TTL_METADATA = "x-cache-ttl"


def _send_ttl(context: Context, answer: bytes) -> bytes:
    ttl = answer_ttl_seconds.get()
    if ttl is not None:
        answer_ttl_seconds.set(None)
        context.set_trailing_metadata((*(context.trailing_metadata() or ()), (CACHE_TTL_METADATA, f"{ttl:g}")))
    return answer


class MarketDataServicer:
    """gRPC face of the read services (registered by api/grpc/server.py).

    Cached answers are rendered protobuf bytes (see services/read_cache.py), so several handlers return
    `bytes`; the server registers a response serializer that passes bytes through. That is why this class
    does not subclass the generated servicer, whose stubs promise message objects.
    """

    def __init__(
        self,
        *,
        candles: CandleService,
        symbols: SymbolService,
        stats: StatsService,
        orderbook: OrderbookService,
        trades: TradeService,
        streams: StreamService,
        live_candles: LiveCandleService,
    ) -> None:
        self._candles = candles
        self._symbols = symbols
        self._stats = stats
        self._orderbook = orderbook
        self._trades = trades
        self._streams = streams
        self._live_candles = live_candles
        self._encoder = TradeBatchEncoder()

    @unary
    async def GetCandles(self, request: md.GetCandlesRequest, context: Context) -> bytes:
        def render(symbol: str, candles: CandleSeries) -> bytes:
            return convert.candles_response(symbol, request.timeframe, candles)

        problems = Violations()
        answer = await self._candles.get_candles(
            CandlesRequest(
                symbol=request.symbol,
                timeframe=convert.timeframe(request.timeframe, problems),
                exchanges=tuple(request.exchanges),
                start_us=convert.optional_micros(request, "start_time", problems),
                end_us=convert.optional_micros(request, "end_time", problems),
                limit=request.limit if request.HasField("limit") else None,
                fill_gaps=request.fill_gaps,
            ),
            render,
            problems,
        )
        return _send_ttl(context, answer)

    @unary
    async def ListSymbols(self, request: md.ListSymbolsRequest, context: Context) -> md.ListSymbolsResponse:
        summaries = await self._symbols.list_symbols(request.exchanges)
        return md.ListSymbolsResponse(symbols=[convert.symbol_summary(s) for s in summaries])

    @unary
    async def GetMarketStats(self, request: md.GetMarketStatsRequest, context: Context) -> bytes:
        def render(stats: MarketStats) -> bytes:
            return md.GetMarketStatsResponse(stats=convert.market_stats(stats)).SerializeToString()

        problems = Violations()
        window = convert.stats_window(request, problems)
        answer = await self._stats.get_market_stats(request.symbol, window, request.exchanges, render, problems)
        return _send_ttl(context, answer)

    @unary
    async def GetMultiStats(self, request: md.GetMultiStatsRequest, context: Context) -> bytes:
        problems = Violations()
        window = convert.stats_window(request, problems)

        def render(multi: MultiStats) -> bytes:
            results = []
            for symbol, stats in multi.results:
                if stats is None:
                    reason = f"no trades in the last {multi.window.label}"
                    results.append(md.SymbolStats(symbol=symbol, no_trades=md.NoTrades(reason=reason)))
                else:
                    results.append(md.SymbolStats(symbol=symbol, stats=convert.market_stats(stats)))
            return md.GetMultiStatsResponse(
                results=results,
                window_open_time=convert.timestamp(multi.window_open_us),
                window_close_time=convert.timestamp(multi.window_close_us),
            ).SerializeToString()

        answer = await self._stats.get_multi_stats(request.symbols, window, request.exchanges, render, problems)
        return _send_ttl(context, answer)

    @unary
    async def GetOrderbook(self, request: md.GetOrderbookRequest, context: Context) -> bytes:
        def render(found: Orderbook) -> bytes:
            book = found.book
            return md.GetOrderbookResponse(
                symbol=found.symbol,
                simulated=True,
                bids=convert.levels(book.bids),
                asks=convert.levels(book.asks),
                mid_price=to_wire(book.mid),
                spread=to_wire(book.spread),
                tick_size=to_wire(book.tick),
                window_open_time=convert.timestamp(found.window_open_us),
                window_close_time=convert.timestamp(found.window_close_us),
                trade_count=found.trade_count,
                exchanges=found.exchanges,
            ).SerializeToString()

        depth = request.depth if request.HasField("depth") else None
        answer = await self._orderbook.get_orderbook(request.symbol, depth, request.exchanges, render)
        return _send_ttl(context, answer)

    @unary
    async def ListTrades(self, request: md.ListTradesRequest, context: Context) -> md.ListTradesResponse:
        problems = Violations()
        page = await self._trades.list_trades(
            TradesRequest(
                symbol=request.symbol,
                exchanges=request.exchanges,
                start_us=convert.optional_micros(request, "start_time", problems),
                end_us=convert.optional_micros(request, "end_time", problems),
                page_size=request.page_size,
                page_token=request.page_token,
            ),
            problems,
        )
        return md.ListTradesResponse(
            trades=[convert.trade(t) for t in page.trades], next_page_token=page.next_page_token
        )

    async def StreamTrades(self, request: md.StreamTradesRequest, context: Context) -> None:
        """Writes (rather than yields) each message, so the slow-consumer policy can bound how long one
        waits for the transport (services/streaming.py), and ends without waiting on a full transport."""
        heartbeat = request.heartbeat_interval.ToNanoseconds() / 1e9 if request.HasField("heartbeat_interval") else None

        async def write(event: TradeMessage | Heartbeat) -> None:
            if isinstance(event, TradeMessage):  # pre-encoded bytes, see stream_wire.py
                await context.write(self._encoder.encode(event.trades, event.resume_token))
            else:
                beat = md.Heartbeat(server_time=convert.timestamp(event.server_time_us))
                await context.write(md.StreamTradesResponse(heartbeat=beat, resume_token=event.resume_token))

        try:
            checked = self._streams.check(request.symbols, request.exchanges, heartbeat, request.resume_token)
            # Initial metadata once subscribed: the HTTP gateway answers 200 then, and a refused stream with its status.
            await self._streams.stream_trades(checked, write, opened=lambda: context.send_initial_metadata(()))
        except Exception as error:  # CancelledError (the client left) is not caught: it must propagate
            end_call(context, error, rpc="StreamTrades")

    async def SubscribeTrades(self, requests: AsyncIterator[md.SubscribeTradesRequest], context: Context) -> None:
        """StreamTrades with a symbol set the client changes mid-stream; writes each message under the same
        slow-consumer policy (services/streaming.py). A refused command is an `error` message, not the end."""

        async def write(event: SubscriptionEvent) -> None:
            if isinstance(event, TradeMessage):  # pre-encoded, see stream_wire.py
                await context.write(self._encoder.encode_subscribed(event.trades, event.resume_token))
            elif isinstance(event, Heartbeat):
                beat = md.Heartbeat(server_time=convert.timestamp(event.server_time_us))
                await context.write(md.SubscribeTradesResponse(heartbeat=beat, resume_token=event.resume_token))
            elif isinstance(event, Subscribed):
                subscribed = md.Subscribed(symbols=event.symbols)
                await context.write(md.SubscribeTradesResponse(subscribed=subscribed, resume_token=event.resume_token))
            elif isinstance(event, Pong):
                await context.write(md.SubscribeTradesResponse(pong=md.Pong(), resume_token=event.resume_token))
            else:
                error = status_of(event.error, rpc="SubscribeTrades")
                await context.write(md.SubscribeTradesResponse(error=error, resume_token=event.resume_token))

        try:
            await self._streams.subscribe_trades(_commands(requests), write)
        except Exception as error:  # CancelledError (the client left) is not caught: it must propagate
            end_call(context, error, rpc="SubscribeTrades")

    async def StreamCandles(self, request: md.StreamCandlesRequest, context: Context) -> None:
        """Writes each message under the live candles' slow-consumer policy (services/live_candles.py); a
        candle update is rendered once for every stream of its key."""

        def render(value: Candle) -> bytes:
            message = md.StreamCandlesResponse(
                candle=convert.candle(value), symbol=checked.symbol, timeframe=request.timeframe
            )
            return message.SerializeToString()

        async def write(event: LiveEvent) -> None:
            if isinstance(event, Heartbeat):
                beat = md.Heartbeat(server_time=convert.timestamp(event.server_time_us))
                await context.write(
                    md.StreamCandlesResponse(
                        heartbeat=beat,
                        symbol=checked.symbol,
                        timeframe=request.timeframe,
                        resume_token=event.resume_token,
                    )
                )
            else:  # pre-encoded bytes shared by the key's streams, then this stream's token field
                await context.write(event.update.rendered(render) + candle_token_field(event.resume_token))

        try:
            problems = Violations()
            checked = self._live_candles.check(
                request.symbol,
                request.exchanges,
                convert.timeframe(request.timeframe, problems),
                _seconds(request, "update_interval"),
                _seconds(request, "heartbeat_interval"),
                problems,
                request.resume_token,
            )
            await self._live_candles.stream_candles(checked, write, opened=lambda: context.send_initial_metadata(()))
        except Exception as error:  # CancelledError (the client left) is not caught: it must propagate
            end_call(context, error, rpc="StreamCandles")


def _seconds(request: md.StreamCandlesRequest, field: Literal["update_interval", "heartbeat_interval"]) -> float | None:
    """A Duration field in seconds, None when absent."""
    if not request.HasField(field):
        return None
    duration: Any = getattr(request, field)
    return float(duration.ToNanoseconds() / 1e9)
