"""Trades: one execution on one exchange, with the taker (aggressor) side."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from wadm_grpc.domain.decimals import multiply


class Side(enum.Enum):
    """Side of the taker (aggressor)."""

    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade. Decimals keep the precision they were ingested with; time is epoch microseconds UTC."""

    exchange: str
    symbol: str
    trade_id: str
    price: Decimal
    quantity: Decimal
    side: Side
    time_us: int

    @property
    def quote_quantity(self) -> Decimal:
        """price x quantity, exact."""
        return multiply(self.price, self.quantity)

    @property
    def order_key(self) -> tuple[int, str, int, str]:
        """Total order of a symbol's trades: time, exchange, then trade id (numeric ids numerically)."""
        return (self.time_us, self.exchange, len(self.trade_id), self.trade_id)


@dataclass(frozen=True, slots=True)
class TradeCursor:
    """Position in a newest-first walk of one symbol's trades: the order key of the last trade seen."""

    time_us: int
    exchange: str
    trade_id: str
