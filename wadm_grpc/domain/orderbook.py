"""Simulated order book from recent trades: deterministic, on the tick grid, spread from trade flow.

Model (also in README, "API"):
- tick: one unit of the finest decimal the recent prices are written with ("61800.30" -> 0.01);
- mid: halfway between the last taker-buy price (~ the ask) and the last taker-sell price (~ the bid),
  or the last price when one side is missing;
- spread: the root mean square of trade-to-trade price changes (short-horizon volatility, which includes
  the bid-ask bounce), rounded up to whole ticks, never below one tick nor above 10% of the mid;
- levels: spaced half a spread apart (at least one tick; at most so that the bid ladder spans half the
  mid), the grid refined below the inferred tick only when a very low price needs it to stay positive;
- sizes: growing away from the touch from the average recent trade size of the side that consumes them
  (taker sells hit bids, taker buys lift asks), with a deterministic jitter seeded by the trades.
"""

from __future__ import annotations

import itertools
import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from wadm_grpc.domain.decimals import EXACT, scale_of
from wadm_grpc.domain.trade import Side, Trade

MIN_TICK = Decimal("1E-18")
MAX_SPREAD_OF_MID = 0.1
MAX_LADDER_OF_MID = 0.5


@dataclass(frozen=True, slots=True)
class Level:
    """One price level."""

    price: Decimal
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class SimulatedBook:
    """A simulated book: bids best first (descending), asks best first (ascending)."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    mid: Decimal
    spread: Decimal
    tick: Decimal


def infer_tick(prices: Sequence[Decimal]) -> Decimal:
    """One unit of the finest decimal the prices are written with ("61800.30" -> 0.01)."""
    return Decimal(1).scaleb(-max(scale_of(price) for price in prices))


def simulate(trades: Sequence[Trade], depth: int) -> SimulatedBook:
    """A book of `depth` levels per side from `trades` (chronological order, at least one)."""
    prices = [t.price for t in trades]
    last_buy = next((t.price for t in reversed(trades) if t.side is Side.BUY), None)
    last_sell = next((t.price for t in reversed(trades) if t.side is Side.SELL), None)
    if last_buy is not None and last_sell is not None:
        mid = EXACT.divide(EXACT.add(last_buy, last_sell), Decimal(2))
    else:
        mid = prices[-1]
    changes = [float(b - a) for a, b in itertools.pairwise(prices)]
    volatility = math.sqrt(sum(c * c for c in changes) / len(changes)) if changes else 0.0
    centre = float(mid)
    # Bounds that keep any flow sane: a spread of at most 10% of the mid, and a bid ladder that spans at
    # most half of it, so every level stays above zero.
    spread_wanted = min(volatility, MAX_SPREAD_OF_MID * centre)
    step_wanted = spread_wanted / 2
    if depth > 1:
        step_wanted = min(step_wanted, MAX_LADDER_OF_MID * centre / (depth - 1))
    tick = infer_tick(prices)
    while True:
        unit = float(tick)
        spread_ticks = max(1, math.ceil(spread_wanted / unit - 1e-9))
        step_ticks = max(1, math.floor(step_wanted / unit + 1e-9))
        # The touch straddles the mid on the grid: best bid = floor((mid - spread/2) / tick) ticks.
        bid_ticks = math.floor(EXACT.divide(mid, tick) - Decimal(spread_ticks) / 2)
        if bid_ticks - (depth - 1) * step_ticks >= 1 or tick <= MIN_TICK:
            break
        tick = tick / 10  # a low price: refine the grid until the whole bid ladder stays above zero
    quantity_scale = max(scale_of(t.quantity) for t in trades)
    jitter = random.Random(zlib.crc32(f"{trades[-1].exchange}|{trades[-1].trade_id}|{len(trades)}".encode()))
    bids = _ladder(trades, Side.SELL, bid_ticks, -step_ticks, tick, depth, quantity_scale, jitter)
    asks = _ladder(trades, Side.BUY, bid_ticks + spread_ticks, step_ticks, tick, depth, quantity_scale, jitter)
    return SimulatedBook(
        bids=tuple(bids),
        asks=tuple(asks),
        mid=mid,
        spread=EXACT.multiply(tick, Decimal(spread_ticks)),
        tick=tick,
    )


def _ladder(
    trades: Sequence[Trade],
    consumer: Side,
    touch_ticks: int,
    step_ticks: int,
    tick: Decimal,
    depth: int,
    quantity_scale: int,
    jitter: random.Random,
) -> list[Level]:
    """One side: `depth` levels from the touch, sizes from the average trade of the side consuming them."""
    sizes = [float(t.quantity) for t in trades if t.side is consumer] or [float(t.quantity) for t in trades]
    average = sum(sizes) / len(sizes)
    lot = Decimal(1).scaleb(-quantity_scale)
    levels: list[Level] = []
    for index in range(depth):
        size = average * (1.0 + 0.35 * index) * (0.6 + 0.8 * jitter.random())
        quantity = max(lot, Decimal(repr(size)).quantize(lot, rounding=ROUND_CEILING))
        price = EXACT.multiply(tick, Decimal(touch_ticks + index * step_ticks))
        levels.append(Level(price, quantity))
    return levels
