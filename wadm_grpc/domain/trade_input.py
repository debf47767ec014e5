"""Validation of trades as they arrive (wire, CSV): strings in, exact Trades out, or field violations."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from wadm_grpc.domain.decimals import MAX_INTEGER_DIGITS, MAX_SCALE, multiply, parse_positive, scale_of
from wadm_grpc.domain.errors import InvalidArgumentError, Violations, quoted
from wadm_grpc.domain.names import exchange_problem, symbol_problem
from wadm_grpc.domain.trade import Side, Trade

MAX_TRADE_ID_LENGTH = 128
# 9999-12-31T23:59:59.999999Z, the last instant google.protobuf.Timestamp can hold.
MAX_TIME_US = 253_402_300_799_999_999


@dataclass(frozen=True, slots=True)
class TradeInput:
    """A trade as received: decimals still strings; side or time None when the sender left them unset."""

    exchange: str
    symbol: str
    trade_id: str
    price: str
    quantity: str
    side: Side | None
    time_us: int | None
    # Why the time is unusable (finer than a microsecond, not UTC...), when the decoder already knows.
    time_problem: str | None = None


def parse_trades(inputs: list[TradeInput], *, latest_us: int, field: str = "trades") -> list[Trade]:
    """Validate every input (none may be dated after `latest_us`); raise one InvalidArgumentError naming
    each bad `trades[i].field`."""
    problems = Violations()
    trades: list[Trade] = []
    for index, item in enumerate(inputs):
        try:
            trades.append(parse_trade(item, latest_us=latest_us, field=f"{field}[{index}]"))
        except InvalidArgumentError as error:
            problems.extend(error)
    problems.raise_if_any()
    return trades


def parse_trade(item: TradeInput, *, latest_us: int, field: str) -> Trade:
    """One validated Trade, or InvalidArgumentError with a violation per bad field. A trade dated after
    `latest_us` (the server clock plus the allowed skew) is refused: it would pose as the newest data."""
    problems = Violations()
    exchange, problem = exchange_problem(item.exchange)
    if problem:
        problems.add(f"{field}.exchange", problem)
    symbol, problem = symbol_problem(item.symbol)
    if problem:
        problems.add(f"{field}.symbol", problem)
    # Ids are kept verbatim (the exchange's own); " 77 " would otherwise pass for a different trade than "77".
    trade_id = item.trade_id
    if not trade_id:
        problems.add(f"{field}.trade_id", "is required")
    elif len(trade_id) > MAX_TRADE_ID_LENGTH or not trade_id.isprintable():
        problems.add(f"{field}.trade_id", f"must be printable, at most {MAX_TRADE_ID_LENGTH} characters")
    elif trade_id != trade_id.strip():
        problems.add(f"{field}.trade_id", f"{quoted(trade_id)} must not begin or end with whitespace")
    price = _decimal(item.price, f"{field}.price", problems)
    quantity = _decimal(item.quantity, f"{field}.quantity", problems)
    if price is not None and quantity is not None:
        if scale_of(price) + scale_of(quantity) > MAX_SCALE:
            problems.add(
                f"{field}.quantity",
                f"price and quantity together have more than {MAX_SCALE} digits after the point, "
                "so their product would not be exact",
            )
        elif len(str(int(multiply(price, quantity)))) > MAX_INTEGER_DIGITS:
            problems.add(f"{field}.quantity", "price x quantity is too large")
    if item.side is None:
        problems.add(f"{field}.side", "is required (SIDE_BUY or SIDE_SELL: the taker's side)")
    if item.time_problem:
        problems.add(f"{field}.time", item.time_problem)
    elif item.time_us is None or item.time_us <= 0:
        problems.add(f"{field}.time", "is required and must be after 1970-01-01T00:00:00Z")
    elif item.time_us > latest_us:
        problems.add(f"{field}.time", "is in the future (later than the server clock allows)")
    problems.raise_if_any()
    assert price is not None and quantity is not None and item.side is not None and item.time_us is not None
    return Trade(
        exchange=exchange,
        symbol=symbol,
        trade_id=trade_id,
        price=price,
        quantity=quantity,
        side=item.side,
        time_us=item.time_us,
    )


def _decimal(text: str, field: str, problems: Violations) -> Decimal | None:
    try:
        return parse_positive(text)
    except ValueError as error:
        problems.add(field, str(error))
        return None


@dataclass(frozen=True, slots=True)
class ReceivedColumns:
    """A batch as received, column by column, unvalidated; built only when every trade has a usable
    time (anything else goes through TradeInput, which carries the time's problem)."""

    exchange: list[str]
    symbol: list[str]
    trade_id: list[str]
    price: list[str]
    quantity: list[str]
    side: list[Side | None]
    time_us: list[int]

    def __len__(self) -> int:
        return len(self.trade_id)
