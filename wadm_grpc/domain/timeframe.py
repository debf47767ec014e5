"""Candle timeframes and UTC bucket arithmetic (epoch microseconds)."""

from __future__ import annotations

import enum

MICROS_PER_SECOND = 1_000_000
MINUTE_US = 60 * MICROS_PER_SECOND
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
WEEK_US = 7 * DAY_US
# 1970-01-01 was a Thursday; weeks start on Monday (1970-01-05), as Binance's do.
WEEK_OFFSET_US = 4 * DAY_US


class Interval(enum.Enum):
    """Base of enums whose members are (label, length in microseconds)."""

    @property
    def label(self) -> str:
        """Short name ("1m", "4h", "24h")."""
        label: str = self.value[0]
        return label

    @property
    def micros(self) -> int:
        """Length in microseconds."""
        micros: int = self.value[1]
        return micros


class Timeframe(Interval):
    """A candle interval, named as Binance names them ("1m", "4h", "1w")."""

    M1 = ("1m", MINUTE_US)
    M5 = ("5m", 5 * MINUTE_US)
    M15 = ("15m", 15 * MINUTE_US)
    M30 = ("30m", 30 * MINUTE_US)
    H1 = ("1h", HOUR_US)
    H4 = ("4h", 4 * HOUR_US)
    D1 = ("1d", DAY_US)
    W1 = ("1w", WEEK_US)

    @property
    def offset_us(self) -> int:
        """Where buckets are anchored relative to the epoch (weeks: Monday)."""
        return WEEK_OFFSET_US if self is Timeframe.W1 else 0

    @property
    def rollup(self) -> Rollup:
        """The stored rollup tier this timeframe is aggregated from (the coarsest that divides it)."""
        if self.micros % DAY_US == 0:
            return Rollup.D1
        if self.micros % HOUR_US == 0:
            return Rollup.H1
        return Rollup.M1

    def bucket_start(self, time_us: int) -> int:
        """Open time of the bucket holding `time_us`."""
        return time_us - (time_us - self.offset_us) % self.micros

    @classmethod
    def from_label(cls, label: str) -> Timeframe:
        """The timeframe named `label` ("1h"); ValueError if none."""
        for timeframe in cls:
            if timeframe.label == label:
                return timeframe
        raise ValueError(f"unknown timeframe {label!r}")


class Rollup(Interval):
    """Stored aggregation tiers: 1m from trades, 1h from 1m, 1d from 1h (labels name tables/collections)."""

    M1 = ("1m", MINUTE_US)
    H1 = ("1h", HOUR_US)
    D1 = ("1d", DAY_US)

    def bucket_start(self, time_us: int) -> int:
        """Open time of the tier bucket holding `time_us`."""
        return time_us - time_us % self.micros


def window_pieces(start_us: int, end_us: int) -> list[tuple[Rollup | None, int, int]]:
    """Cover trade times [start_us, end_us] with as few stored buckets as possible.

    Returns (tier, low, high) pieces, bucket starts in [low, high); tier None means raw trades. Whole
    days come from the 1d tier, whole hours around them from 1h, whole minutes from 1m, and the partial
    minutes at both edges from the trades themselves, so the result is exact for any window.
    """
    low, high = start_us, end_us + 1
    pieces: list[tuple[Rollup | None, int, int]] = []
    finer: Rollup | None = None
    for tier in Rollup:
        size = tier.micros
        inner_low = -(-low // size) * size
        inner_high = high - high % size
        if inner_low >= inner_high:
            break
        pieces += [(finer, low, inner_low), (finer, inner_high, high)]
        low, high, finer = inner_low, inner_high, tier
    pieces.append((finer, low, high))
    return [(tier, a, b) for tier, a, b in pieces if a < b]
