"""GetOrderbook: a simulated book derived from the recent trade flow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wadm_grpc.domain.errors import NotFoundError, Violations
from wadm_grpc.domain.names import check_market
from wadm_grpc.domain.orderbook import SimulatedBook, simulate
from wadm_grpc.domain.timeframe import MINUTE_US
from wadm_grpc.ports import Clock, TradeQuery, TradeStore
from wadm_grpc.services.read_cache import ReadCache

DEFAULT_DEPTH = 20
MAX_DEPTH = 100
# The book is derived from at most this many of the most recent trades within this window.
WINDOW_US = 15 * MINUTE_US
MAX_TRADES = 1000


@dataclass(frozen=True, slots=True)
class Orderbook:
    """A simulated book and what it was derived from."""

    symbol: str
    book: SimulatedBook
    window_open_us: int
    window_close_us: int
    trade_count: int
    exchanges: tuple[str, ...]


class OrderbookService:
    """Simulated order books."""

    def __init__(self, store: TradeStore, clock: Clock, cache: ReadCache) -> None:
        self._store = store
        self._clock = clock
        self._cache = cache

    async def get_orderbook(
        self, symbol: str, depth: int | None, exchanges: Sequence[str], render: Callable[[Orderbook], bytes]
    ) -> bytes:
        """render(a book of `depth` levels per side, default 20), cached; NotFoundError without recent trades."""
        problems = Violations()
        name, selected = check_market(symbol, exchanges, problems)
        levels = DEFAULT_DEPTH if depth is None else depth
        if not 1 <= levels <= MAX_DEPTH:
            problems.add("depth", f"must be between 1 and {MAX_DEPTH} (absent means {DEFAULT_DEPTH}), got {levels}")
        problems.raise_if_any()

        async def load() -> bytes:
            return render(await self._simulate(name, levels, selected))

        return await self._cache.answer("orderbook", name, [levels, selected], self._cache.ttls.orderbook_seconds, load)

    async def _simulate(self, name: str, levels: int, selected: tuple[str, ...]) -> Orderbook:
        end = self._clock.now_us()
        start = end - WINDOW_US
        recent = await self._store.trades(TradeQuery(name, selected, start, end, None, MAX_TRADES))
        if not recent:
            raise NotFoundError(
                f"{name} has no trades in the last {WINDOW_US // MINUTE_US} minutes to simulate a book from"
            )
        recent.reverse()  # chronological
        return Orderbook(
            symbol=name,
            book=simulate(recent, levels),
            window_open_us=start,
            window_close_us=end,
            trade_count=len(recent),
            exchanges=tuple(sorted({t.exchange for t in recent})),
        )
