"""Trade documents <-> domain trades, and exact decimals out of BSON (Decimal128, collectors' doubles)."""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bson import Decimal128

from wadm_grpc.domain.aggregate import Aggregate
from wadm_grpc.domain.decimals import EXACT, scale_of, scale_of_text, with_scale
from wadm_grpc.domain.errors import Violations
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.domain.trade_batch import TradeBatch, TradeColumns

Document = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Significant digits of a Decimal128; MongoDB rounds any result that needs more.
DECIMAL128_DIGITS = 34
_ONE = Decimal(1)


class DecimalPrecisionError(ArithmeticError):
    """A server-side decimal result may have been rounded to the 34 digits of a Decimal128."""


def datetime_of_us(time_us: int) -> datetime:
    """The BSON date (millisecond precision, truncated) holding `time_us`."""
    return EPOCH + timedelta(microseconds=time_us - time_us % 1_000)


def us_of_datetime(value: datetime) -> int:
    """Epoch microseconds of a BSON date (naive ones, from clients without tz_aware, are UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // timedelta(microseconds=1)


def decimal128_of(value: Decimal) -> Decimal128:
    """`value` as a Decimal128 keeping its exponent ("61800.30" stays "61800.30"); ValueError if it does not fit."""
    try:
        return Decimal128(value)
    except (decimal.Inexact, decimal.Overflow, decimal.InvalidOperation):
        raise ValueError(f"{value} has more than {DECIMAL128_DIGITS} significant digits") from None


def decimal_of(value: object) -> Decimal:
    """The exact decimal of a stored number.

    Decimal128 keeps its exponent; a double (as older collectors wrote prices) becomes the shortest decimal
    that reads back as the same double (2.0 -> "2"); integers and decimal strings are exact.
    """
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, bool):
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        shortest = Decimal(repr(value))
        # repr writes integral doubles as "2.0": the shortest decimal is "2" (what aggregates count too).
        return shortest.quantize(_ONE) if value.is_integer() and abs(value) < 1e16 else shortest
    if isinstance(value, str):
        return Decimal(value)
    raise TypeError(f"not a number: {value!r}")


def trade_id_of(value: object) -> str:
    """A stored trade id as text: JavaScript collectors write integer ids as doubles (123456789.0 -> "123456789"),
    as the pipelines' TRADE_ID converts them ($toLong before $toString)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def computed_decimal(value: object, scale: int) -> Decimal:
    """A decimal the server computed (a sum of values with at most `scale` decimals), refused if it may have
    been rounded.

    MongoDB rounds a decimal result that needs more than 34 significant digits, to 34 digits: a rounded result
    has a 34-digit coefficient (its last digits may well be zeros). Its exponent tells what was dropped: at or
    below -scale, only digits past the `scale`-th decimal, which are zeros in the true sum (doubles convert
    with 15 digits, "61800.3000000000", and may round this way harmlessly); above, digits that count.
    """
    number = decimal_of(value)
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int), "finite decimals only"
    if len(digits) >= DECIMAL128_DIGITS and exponent > -scale:
        raise DecimalPrecisionError(f"{number} may have been rounded to {DECIMAL128_DIGITS} digits by MongoDB")
    return number


def exact_sum(row: Mapping[str, Any], name: str, scale: int) -> Decimal:
    """The sum `name` of a bucket row, joined exactly from its limbs (rows.SUMS), at `scale` decimals."""
    integer_part = computed_decimal(row[f"{name}_int"], 0)
    fraction_part = computed_decimal(row[f"{name}_frac"], scale)
    return with_scale(EXACT.add(integer_part, fraction_part), scale)


def trade_documents(trades: Sequence[Trade]) -> list[Document]:
    """Documents in the collectors' schema plus the fields that keep a trade exact: Decimal128 values, the
    microsecond time, the decimals' scales and the quote quantity. InvalidArgumentError if a value does not
    fit a Decimal128."""
    problems = Violations()
    documents: list[Document] = []
    for index, trade in enumerate(trades):
        fields: dict[str, Decimal128] = {}
        for name, value in (("price", trade.price), ("quantity", trade.quantity), ("quote", trade.quote_quantity)):
            try:
                fields[name] = decimal128_of(value)
            except ValueError as error:
                problems.add(f"trades[{index}].{name}", f"{error} (the MongoDB store keeps Decimal128)")
        if len(fields) < 3:
            continue
        documents.append(
            {
                "exchange": trade.exchange,
                "symbol": trade.symbol,
                "trade_id": trade.trade_id,
                "price": fields["price"],
                "quantity": fields["quantity"],
                "side": trade.side.value,
                "timestamp": datetime_of_us(trade.time_us),
                "time_us": trade.time_us,
                "quote": fields["quote"],
                "price_scale": scale_of(trade.price),
                "quantity_scale": scale_of(trade.quantity),
            }
        )
    problems.raise_if_any()
    return documents


def column_documents(columns: TradeColumns) -> list[Document]:
    """`trade_documents` of validated columns, built from the columns (issue 12): no Trade objects,
    Decimal128 straight from the decimal text (exponent kept, as from the Decimal), scales from the text;
    only the quote is multiplied, exactly. InvalidArgumentError as `trade_documents`."""
    try:
        return [
            {
                "exchange": exchange,
                "symbol": symbol,
                "trade_id": trade_id,
                "price": Decimal128(price),
                "quantity": Decimal128(quantity),
                "side": _SIDES[is_buy],
                "timestamp": datetime_of_us(time_us),
                "time_us": time_us,
                "quote": Decimal128(EXACT.multiply(Decimal(price), Decimal(quantity))),
                "price_scale": scale_of_text(price),
                "quantity_scale": scale_of_text(quantity),
            }
            for exchange, symbol, trade_id, price, quantity, is_buy, time_us in columns.rows()
        ]
    except (decimal.Inexact, decimal.Overflow, decimal.InvalidOperation):  # beyond a Decimal128: say which
        return trade_documents(TradeBatch(columns).trades)


_SIDES = {True: Side.BUY.value, False: Side.SELL.value}


def trade_of(document: Mapping[str, Any], symbol: str) -> Trade:
    """A trade from a page row (see pipelines.trade_page): ours or a collector's."""
    key = document["key"]
    return Trade(
        exchange=str(document["exchange"]).lower(),
        symbol=symbol,
        trade_id=key["i"],
        price=decimal_of(document["price"]),
        quantity=decimal_of(document["quantity"]),
        side=Side(str(document["side"]).lower()),
        time_us=int(key["t"]),
    )


def aggregate_of(row: Mapping[str, Any]) -> Aggregate:
    """An Aggregate from a grouped bucket row (rows.ROW_ACCUMULATORS), written at its trades' precision."""
    price, quantity, quote = int(row["price_scale"]), int(row["quantity_scale"]), int(row["quote_scale"])
    first, last = row["first"], row["last"]
    return Aggregate(
        open=with_scale(decimal_of(first["p"]), price),
        high=with_scale(decimal_of(row["high"]), price),
        low=with_scale(decimal_of(row["low"]), price),
        close=with_scale(decimal_of(last["p"]), price),
        volume=exact_sum(row, "volume", quantity),
        quote_volume=exact_sum(row, "quote", quote),
        trade_count=int(row["count"]),
        buy_volume=exact_sum(row, "buy_volume", quantity),
        buy_quote_volume=exact_sum(row, "buy_quote", quote),
        first_trade_us=int(first["t"]),
        last_trade_us=int(last["t"]),
    )
