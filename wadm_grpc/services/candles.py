"""GetCandles: OHLCV candles from trades, Binance kline semantics, optional Binance-style gap filling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wadm_grpc.domain.aggregate import Aggregate, CandleSeries
from wadm_grpc.domain.errors import Violations
from wadm_grpc.domain.names import check_market
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.ports import CandleQuery, Clock, TradeStore
from wadm_grpc.services.read_cache import ReadCache

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class CandlesRequest:
    """GetCandles as asked (not yet validated). Times are epoch microseconds; bounds select open times."""

    symbol: str
    timeframe: Timeframe | None  # None: not a timeframe (the converter said why, in its problems)
    exchanges: tuple[str, ...] = ()
    start_us: int | None = None
    end_us: int | None = None
    limit: int | None = None
    fill_gaps: bool = False


class CandleService:
    """Candles aggregated from the store's rollups."""

    def __init__(self, store: TradeStore, clock: Clock, cache: ReadCache) -> None:
        self._store = store
        self._clock = clock
        self._cache = cache

    async def get_candles(
        self,
        request: CandlesRequest,
        render: Callable[[str, CandleSeries], bytes],
        problems: Violations | None = None,
    ) -> bytes:
        """render(normalised symbol, the candles), cached. `problems`: what converting the request
        already found wrong, reported with everything else."""
        query = self._query(request, problems or Violations())
        timeframe = query.timeframe

        async def load() -> bytes:
            now = self._clock.now_us()
            rows = await self._filled(query, now) if request.fill_gaps else await self._store.candles(query)
            return render(query.symbol, CandleSeries(timeframe, rows, now))

        return await self._cache.answer(
            "candles",
            query.symbol,
            [query.exchanges, timeframe.label, query.start_us, query.end_us, query.limit, request.fill_gaps],
            self._cache.candles_ttl(timeframe, _last_possible_open(query)),
            load,
        )

    def _query(self, request: CandlesRequest, problems: Violations) -> CandleQuery:
        symbol, exchanges = check_market(request.symbol, request.exchanges, problems)
        limit = DEFAULT_LIMIT if request.limit is None else request.limit
        if not 1 <= limit <= MAX_LIMIT:
            problems.add("limit", f"must be between 1 and {MAX_LIMIT} (absent means {DEFAULT_LIMIT}), got {limit}")
        start, end = request.start_us, request.end_us
        if start is not None and end is not None and start > end:
            problems.add("start_time", "must not be after end_time")
        problems.raise_if_any()
        assert request.timeframe is not None, "a missing timeframe is among the problems"
        return CandleQuery(
            symbol=symbol,
            exchanges=exchanges,
            timeframe=request.timeframe,
            start_us=start,
            end_us=end,
            limit=limit,
            # Binance: no bounds or end only -> the newest; a start -> the oldest from there.
            newest_first=start is None,
        )

    async def _filled(self, query: CandleQuery, now_us: int) -> list[tuple[int, Aggregate]]:
        """Exactly the consecutive buckets of the range, gaps carrying the previous close forward."""
        timeframe = query.timeframe
        size = timeframe.micros
        latest = timeframe.bucket_start(now_us if query.end_us is None else min(query.end_us, now_us))
        if query.start_us is None:
            first, last = latest - (query.limit - 1) * size, latest
        else:
            first = timeframe.bucket_start(query.start_us)
            if first < query.start_us:
                first += size
            last = min(latest, first + (query.limit - 1) * size)
        if first > last:
            return []
        found = dict(
            await self._store.candles(
                CandleQuery(query.symbol, query.exchanges, timeframe, first, last, query.limit, newest_first=False)
            )
        )
        previous: Aggregate | None = None
        if first not in found:
            before = await self._store.candles(
                CandleQuery(query.symbol, query.exchanges, timeframe, None, first - 1, 1, newest_first=True)
            )
            previous = before[0][1] if before else None
        rows: list[tuple[int, Aggregate]] = []
        for open_time in range(first, last + 1, size):
            ohlcv = found.get(open_time)
            if ohlcv is None and previous is not None:
                ohlcv = previous.gap_after()
            if ohlcv is not None:
                rows.append((open_time, ohlcv))
                previous = ohlcv
        return rows


def _last_possible_open(query: CandleQuery) -> int | None:
    """Open time of the newest bucket the query can return, when the query bounds it."""
    timeframe = query.timeframe
    if query.end_us is not None:
        return timeframe.bucket_start(query.end_us)
    if query.start_us is not None:
        return timeframe.bucket_start(query.start_us) + query.limit * timeframe.micros
    return None
