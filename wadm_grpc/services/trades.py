"""ListTrades: newest-first cursor paging over one symbol's trades."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wadm_grpc.domain.errors import InvalidArgumentError, Violations
from wadm_grpc.domain.names import check_market
from wadm_grpc.domain.trade import Trade, TradeCursor
from wadm_grpc.ports import TradeQuery, TradeStore
from wadm_grpc.services.page_tokens import PageTokens

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class TradesRequest:
    """ListTrades as asked."""

    symbol: str
    exchanges: Sequence[str] = ()
    start_us: int | None = None
    end_us: int | None = None
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class TradePage:
    """A page and the token of the next one ("" on the last page)."""

    trades: list[Trade]
    next_page_token: str


class TradeService:
    """Trade history."""

    def __init__(self, store: TradeStore, tokens: PageTokens) -> None:
        self._store = store
        self._tokens = tokens

    async def list_trades(self, request: TradesRequest, problems: Violations | None = None) -> TradePage:
        """One page, newest first. `problems`: what converting the request already found wrong."""
        problems = problems or Violations()
        symbol, exchanges = check_market(request.symbol, request.exchanges, problems)
        size = request.page_size or DEFAULT_PAGE_SIZE
        if not 1 <= size <= MAX_PAGE_SIZE:
            problems.add("page_size", f"must be between 0 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})")
        start, end = request.start_us, request.end_us
        if start is not None and end is not None and start > end:
            problems.add("start_time", "must not be after end_time")
        problems.raise_if_any()
        fingerprint = [symbol, list(exchanges), start, end]
        cursor = None
        if request.page_token:
            position = self._tokens.open(request.page_token, fingerprint)
            try:
                time_us, exchange, trade_id = position
                cursor = TradeCursor(int(time_us), str(exchange), str(trade_id))
            except (TypeError, ValueError):
                raise InvalidArgumentError.of("page_token", "is malformed") from None
        # One extra row tells whether another page exists, without counting anything.
        found = await self._store.trades(TradeQuery(symbol, exchanges, start, end, cursor, size + 1))
        page = found[:size]
        token = ""
        if len(found) > size:
            last = page[-1]
            token = self._tokens.issue(fingerprint, [last.time_us, last.exchange, last.trade_id])
        return TradePage(trades=page, next_page_token=token)
