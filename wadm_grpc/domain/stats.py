"""Rolling-window market statistics (24h-ticker style) from an exact window aggregate."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from wadm_grpc.domain.aggregate import WindowStats
from wadm_grpc.domain.decimals import EXACT, divide, rounded, subtract
from wadm_grpc.domain.timeframe import DAY_US, HOUR_US, Interval

PERCENT_DECIMALS = 3


class StatsWindow(Interval):
    """Rolling window lengths."""

    H1 = ("1h", HOUR_US)
    H4 = ("4h", 4 * HOUR_US)
    H24 = ("24h", DAY_US)
    D7 = ("7d", 7 * DAY_US)


@dataclass(frozen=True, slots=True)
class MarketStats:
    """Stats of one symbol over [window_open_us, window_close_us]."""

    window: StatsWindow
    window_open_us: int
    window_close_us: int
    trades: WindowStats

    @property
    def price_change(self) -> Decimal:
        """last - open."""
        return subtract(self.trades.ohlcv.close, self.trades.ohlcv.open)

    @property
    def price_change_percent(self) -> Decimal:
        """(last - open) / open x 100, rounded half-even to 3 decimals."""
        ohlcv = self.trades.ohlcv
        percent = rounded(EXACT.multiply(divide(self.price_change, ohlcv.open, 40), Decimal(100)), PERCENT_DECIMALS)
        return percent if percent else abs(percent)  # a tiny drop rounds to 0.000, not "-0.000"


def window_bounds(window: StatsWindow, now_us: int) -> tuple[int, int]:
    """[open, close] of the window ending now (trade times, both inclusive)."""
    return now_us - window.micros, now_us
