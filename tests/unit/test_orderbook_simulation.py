"""Properties of the simulated order book, over many seeded trade flows."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal

import pytest

from wadm_grpc.domain.orderbook import infer_tick, simulate
from wadm_grpc.domain.trade import Side, Trade


def flow(seed: int, *, price: str, step_ticks: int, count: int = 300, tick: str = "0.01") -> list[Trade]:
    """A seeded random walk of `count` trades moving up to `step_ticks` ticks per trade."""
    rng = random.Random(seed)
    unit = Decimal(tick)
    current = Decimal(price)
    trades = []
    for index in range(count):
        current = max(unit, current + unit * rng.randint(-step_ticks, step_ticks))
        trades.append(
            Trade(
                "x",
                "S",
                str(index),
                current,
                Decimal(rng.randint(1, 999)).scaleb(-3),
                rng.choice((Side.BUY, Side.SELL)),
                1_000_000 * index,
            )
        )
    return trades


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("depth", [1, 20, 100])
def test_ladder_properties(seed: int, depth: int) -> None:
    rng = random.Random(seed)
    price = rng.choice(["0.0005", "0.5", "3200.00", "61800.3"])
    tick = "0.1" if price == "61800.3" else ("0.0001" if price == "0.0005" else "0.01")
    book = simulate(flow(seed, price=price, step_ticks=rng.randint(0, 40), tick=tick), depth)

    bids = [level.price for level in book.bids]
    asks = [level.price for level in book.asks]
    assert len(bids) == len(asks) == depth
    assert all(a > b for a, b in itertools.pairwise(bids)), "bids strictly descending"
    assert all(b > a for a, b in itertools.pairwise(asks)), "asks strictly ascending"
    assert bids[0] < asks[0]
    assert bids[-1] > 0
    assert asks[0] - bids[0] == book.spread >= book.tick
    assert all(price % book.tick == 0 for price in bids + asks), "on the tick grid"
    assert all(level.quantity > 0 for level in book.bids + book.asks)


def test_spread_widens_with_volatility() -> None:
    calm = [simulate(flow(seed, price="3200.00", step_ticks=1), 10).spread for seed in range(10)]
    wild = [simulate(flow(seed, price="3200.00", step_ticks=30), 10).spread for seed in range(10)]

    assert max(calm) < min(wild)


def test_deterministic_for_the_same_trades() -> None:
    trades = flow(3, price="61800.3", step_ticks=5, tick="0.1")

    assert simulate(trades, 50) == simulate(list(trades), 50)


def test_tick_is_inferred_from_the_prices_decimals() -> None:
    assert infer_tick([Decimal("61800.30"), Decimal("61800.1")]) == Decimal("0.01")
    assert infer_tick([Decimal("0.52"), Decimal("0.5201")]) == Decimal("0.0001")
    assert infer_tick([Decimal("65000"), Decimal("65100")]) == Decimal("1")


def test_one_trade_is_enough() -> None:
    book = simulate(flow(1, price="100.00", step_ticks=0, count=1), 5)

    assert book.spread == book.tick == Decimal("0.01")
