"""GetMarketStats and GetMultiStats: rolling-window stats, many symbols in one store query."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wadm_grpc.domain.errors import NotFoundError, Violations
from wadm_grpc.domain.names import check_exchanges, check_market, symbol_problem
from wadm_grpc.domain.stats import MarketStats, StatsWindow, window_bounds
from wadm_grpc.ports import Clock, TradeStore
from wadm_grpc.services.read_cache import ReadCache

MAX_SYMBOLS = 20


@dataclass(frozen=True, slots=True)
class MultiStats:
    """One entry per distinct symbol in request order: stats, or None when the window has no trades."""

    window: StatsWindow
    window_open_us: int
    window_close_us: int
    results: list[tuple[str, MarketStats | None]]


class StatsService:
    """Rolling stats from the store's window aggregation."""

    def __init__(self, store: TradeStore, clock: Clock, cache: ReadCache) -> None:
        self._store = store
        self._clock = clock
        self._cache = cache

    async def get_market_stats(
        self,
        symbol: str,
        window: StatsWindow | None,
        exchanges: Sequence[str],
        render: Callable[[MarketStats], bytes],
        problems: Violations | None = None,
    ) -> bytes:
        """render(one symbol's stats), cached; NotFoundError when the window holds no trades. A None window
        is a problem the converter recorded in `problems`."""
        problems = problems or Violations()
        name, selected = check_market(symbol, exchanges, problems)
        problems.raise_if_any()
        assert window is not None, "a bad window is among the problems"

        async def load() -> bytes:
            stats = (await self._compute([name], window, selected)).results[0][1]
            if stats is None:
                where = f" on {', '.join(selected)}" if selected else ""
                raise NotFoundError(f"{name} has no trades in the last {window.label}{where}")
            return render(stats)

        ttl = self._cache.ttls.stats_seconds
        return await self._cache.answer("stats", name, [window.label, selected], ttl, load)

    async def get_multi_stats(
        self,
        symbols: Sequence[str],
        window: StatsWindow | None,
        exchanges: Sequence[str],
        render: Callable[[MultiStats], bytes],
        problems: Violations | None = None,
    ) -> bytes:
        """render(stats of 1 to 20 distinct symbols, duplicates answered once, in request order), cached."""
        problems = problems or Violations()
        names: list[str] = []
        for index, raw in enumerate(symbols):
            name, problem = symbol_problem(raw)
            if problem:
                problems.add(f"symbols[{index}]", problem)
            elif name not in names:
                names.append(name)
        if not symbols:
            problems.add("symbols", f"needs 1 to {MAX_SYMBOLS} symbols")
        elif len(names) > MAX_SYMBOLS:
            problems.add("symbols", f"at most {MAX_SYMBOLS} distinct symbols per call, got {len(names)}")
        selected = check_exchanges(exchanges, problems)
        problems.raise_if_any()
        assert window is not None, "a bad window is among the problems"

        async def load() -> bytes:
            assert window is not None
            return render(await self._compute(names, window, selected))

        # Several symbols: the entry relies on its (short) TTL alone, not on each symbol's generation.
        ttl = self._cache.ttls.stats_seconds
        return await self._cache.answer("multistats", None, [names, window.label, selected], ttl, load)

    async def _compute(self, names: list[str], window: StatsWindow, exchanges: tuple[str, ...]) -> MultiStats:
        start, end = window_bounds(window, self._clock.now_us())
        found = await self._store.window_stats(names, exchanges, start, end)
        results: list[tuple[str, MarketStats | None]] = []
        for name in names:
            trades = found.get(name)
            results.append((name, None if trades is None else MarketStats(window, start, end, trades)))
        return MultiStats(window=window, window_open_us=start, window_close_us=end, results=results)
