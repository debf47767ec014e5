"""A deliberately naive, obviously-correct aggregation of trades: what every store must match."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from decimal import Decimal

from wadm_grpc.domain.aggregate import Aggregate
from wadm_grpc.domain.decimals import EXACT, scale_of, with_scale
from wadm_grpc.domain.trade import Side, Trade


def aggregate(trades: Iterable[Trade]) -> Aggregate:
    """Aggregate of some trades: order by (time, exchange, numeric-aware id); precision of the trades."""
    ordered = sorted(trades, key=lambda t: t.order_key)
    price_scale = max(scale_of(t.price) for t in ordered)
    quantity_scale = max(scale_of(t.quantity) for t in ordered)
    quote_scale = max(scale_of(t.price) + scale_of(t.quantity) for t in ordered)
    buys = [t for t in ordered if t.side is Side.BUY]

    def total(values: Iterable[Decimal], scale: int) -> Decimal:
        result = Decimal(0)
        for value in values:
            result = EXACT.add(result, value)  # never the default context: it rounds to 28 digits
        return with_scale(result, scale)

    return Aggregate(
        open=with_scale(ordered[0].price, price_scale),
        high=with_scale(max(t.price for t in ordered), price_scale),
        low=with_scale(min(t.price for t in ordered), price_scale),
        close=with_scale(ordered[-1].price, price_scale),
        volume=total((t.quantity for t in ordered), quantity_scale),
        quote_volume=total((t.quote_quantity for t in ordered), quote_scale),
        trade_count=len(ordered),
        buy_volume=total((t.quantity for t in buys), quantity_scale),
        buy_quote_volume=total((t.quote_quantity for t in buys), quote_scale),
        first_trade_us=ordered[0].time_us,
        last_trade_us=ordered[-1].time_us,
    )


def buckets(trades: Iterable[Trade], bucket_of: Callable[[int], int]) -> dict[int, Aggregate]:
    """Aggregates per bucket start."""
    grouped: defaultdict[int, list[Trade]] = defaultdict(list)
    for trade in trades:
        grouped[bucket_of(trade.time_us)].append(trade)
    return {start: aggregate(group) for start, group in sorted(grouped.items())}


def exact(value: Aggregate) -> tuple[str, ...]:
    """The aggregate as the strings that go on the wire (so scale differences count)."""
    return tuple(
        str(v)
        for v in (
            value.open,
            value.high,
            value.low,
            value.close,
            value.volume,
            value.quote_volume,
            value.trade_count,
            value.buy_volume,
            value.buy_quote_volume,
            value.first_trade_us,
            value.last_trade_us,
        )
    )
