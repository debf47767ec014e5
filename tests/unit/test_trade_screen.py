"""The bulk checks of ingest: what they accept, the per-trade rules accept too, as the same trades."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.domain.trade import Side
from wadm_grpc.domain.trade_batch import TradeBatch
from wadm_grpc.domain.trade_input import ReceivedColumns, TradeInput, parse_trades
from wadm_grpc.services.trade_screen import screen

T0 = 1_723_161_600_000_000
LATEST = T0 + 3_600_000_000


def received(count: int = 50, **changes: object) -> ReceivedColumns:
    rng = random.Random(count)
    columns = ReceivedColumns(
        exchange=["Binance "] * count,  # normalised like the rules do: stripped, lower-case
        symbol=["btcusdt"] * count,
        trade_id=[str(1000 + i) for i in range(count)],
        price=[f"{rng.randint(1, 10**7) / 100:.2f}" for _ in range(count)],
        quantity=[f"{rng.randint(1, 10**6) / 10**5:.5f}" for _ in range(count)],
        side=[rng.choice((Side.BUY, Side.SELL)) for _ in range(count)],
        time_us=[T0 + i for i in range(count)],
    )
    return replace(columns, **changes)  # type: ignore[arg-type]


def inputs(columns: ReceivedColumns) -> list[TradeInput]:
    return [
        TradeInput(e, s, i, p, q, side, t)
        for e, s, i, p, q, side, t in zip(
            columns.exchange,
            columns.symbol,
            columns.trade_id,
            columns.price,
            columns.quantity,
            columns.side,
            columns.time_us,
            strict=True,
        )
    ]


def with_one(columns: ReceivedColumns, field: str, value: object, index: int = 7) -> ReceivedColumns:
    values = list(getattr(columns, field))
    values[index] = value
    return replace(columns, **{field: values})


def test_a_plainly_valid_batch_gives_the_trades_the_rules_give_with_their_columns() -> None:
    columns = received()

    batch = screen(columns, latest_us=LATEST)

    assert isinstance(batch, TradeBatch)
    assert list(batch) == parse_trades(inputs(columns), latest_us=LATEST)
    assert batch.columns.exchange[0] == "binance" and batch.columns.symbol[0] == "BTCUSDT"
    assert batch.columns.price == columns.price  # the exact text, for the store's bulk load


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exchange", ""),
        ("exchange", "bad exchange!"),
        ("symbol", "BTC USDT"),
        ("trade_id", ""),
        ("trade_id", " 77 "),
        ("trade_id", "x" * 129),
        ("trade_id", "tab\there"),
        ("price", "0"),
        ("price", "0.000"),
        ("price", "-1"),
        ("price", "1e5"),
        ("price", "01.5"),
        ("price", "1.0000000000000000001"),
        ("price", "12345678901234567"),
        ("quantity", ""),
        ("quantity", "1.5.5"),
        ("quantity", "0.00000000000000001"),  # 17 decimals, with the price's 2 decimals: more than 18 together
        ("side", None),
        ("time_us", 0),
        ("time_us", LATEST + 1),
    ],
)
def test_a_batch_with_one_bad_trade_is_left_to_the_rules_which_name_it(field: str, value: object) -> None:
    columns = with_one(received(), field, value)

    assert screen(columns, latest_us=LATEST) is None
    with pytest.raises(InvalidArgumentError) as raised:
        parse_trades(inputs(columns), latest_us=LATEST)
    assert [v.field.split(".")[0] for v in raised.value.violations] == ["trades[7]"]


def test_a_product_near_the_bound_is_left_to_the_exact_rules() -> None:
    # 99999999.99 x 100000000 is below 10^16 by one unit of 10^-2 x 10^8: floats cannot tell, the rules can.
    near = with_one(with_one(received(), "price", "99999999.99"), "quantity", "100000000")
    over = with_one(with_one(received(), "price", "100000000.01"), "quantity", "100000000")

    assert screen(near, latest_us=LATEST) is None
    assert len(parse_trades(inputs(near), latest_us=LATEST)) == 50  # valid: the rules accept it
    assert screen(over, latest_us=LATEST) is None
    with pytest.raises(InvalidArgumentError, match="too large"):
        parse_trades(inputs(over), latest_us=LATEST)


def test_whatever_the_screen_accepts_the_rules_accept_identically() -> None:
    rng = random.Random(5)
    alphabet = ["0", "1", "9", ".", "-", " ", "e", "00", "5.", ".5", "1" * 17, "0." + "1" * 18]
    for _ in range(300):
        columns = received(count=10)
        for field in ("price", "quantity", "trade_id"):
            if rng.random() < 0.5:
                columns = with_one(
                    columns, field, "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3))), index=3
                )
        batch = screen(columns, latest_us=LATEST)
        if batch is not None:
            assert list(batch) == parse_trades(inputs(columns), latest_us=LATEST)


def test_a_received_trade_without_a_time_is_never_vouched_for_in_bulk() -> None:
    # convert.received_columns reads the columns without asking HasField of each trade: a trade without
    # a time must not get through the bulk checks, so that the per-trade rules name it.
    from google.protobuf.timestamp_pb2 import Timestamp

    from wadm_grpc.api.grpc import convert
    from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
    from wadm_grpc.pb.wadm.market.v1 import trade_pb2

    def message(trade_id: str, time: Timestamp | None) -> trade_pb2.Trade:
        found = trade_pb2.Trade(exchange="binance", symbol="BTCUSDT", trade_id=trade_id, price="1.5", quantity="2")
        found.side = trade_pb2.SIDE_BUY
        if time is not None:
            found.time.CopyFrom(time)
        return found

    timed = [message(str(i), Timestamp(seconds=T0 // 1_000_000 + i)) for i in range(3)]
    columns = convert.received_columns(ingest_pb.PublishTradesRequest(trades=timed))
    assert columns is not None and screen(columns, latest_us=LATEST) is not None

    columns = convert.received_columns(ingest_pb.PublishTradesRequest(trades=[*timed, message("9", None)]))
    assert columns is None or screen(columns, latest_us=LATEST) is None
    with pytest.raises(InvalidArgumentError, match="time"):
        parse_trades([convert.trade_input(m) for m in [*timed, message("9", None)]], latest_us=LATEST)
