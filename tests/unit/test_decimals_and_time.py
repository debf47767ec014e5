"""Exact decimals and UTC bucket arithmetic."""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal

import pytest

from wadm_grpc.domain.decimals import multiply, parse_positive, rounded, scale_of, to_wire, with_scale
from wadm_grpc.domain.timeframe import DAY_US, Rollup, Timeframe, window_pieces


@pytest.mark.parametrize("text", ["61800.30", "0.006", "0.000000000000000001", "9999999999999999.5", "7"])
def test_plain_decimals_parse_with_their_precision(text: str) -> None:
    assert to_wire(parse_positive(text)) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("1e5", "plain decimal"),
        ("-1", "plain decimal"),
        ("+1", "plain decimal"),
        ("1.", "plain decimal"),
        (".5", "plain decimal"),
        ("NaN", "plain decimal"),
        ("0", "greater than zero"),
        ("0.000", "greater than zero"),
        ("1.0000000000000000001", "18 digits"),
        ("12345678901234567", "16 digits"),
        ("01.5", "plain decimal"),
    ],
)
def test_anything_else_is_refused_with_a_reason(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_positive(text)


def test_products_and_formatting_never_round_or_use_exponents() -> None:
    big = Decimal("99999999999999999999.123456789")
    assert multiply(big, Decimal("0.000000001")) == Decimal("99999999999.999999999123456789")
    assert to_wire(Decimal("1E-8")) == "0.00000001"
    assert str(with_scale(Decimal("2.5"), 4)) == "2.5000"
    assert scale_of(Decimal("10")) == 0
    assert rounded(Decimal("2.00005"), 4) == Decimal("2.0000")  # half-even
    with pytest.raises(ArithmeticError):
        with_scale(Decimal("2.55"), 1)  # would lose a digit


def test_buckets_align_to_the_utc_epoch_and_weeks_to_monday() -> None:
    t = 1_723_161_599_643_000  # 2024-08-08T23:59:59.643Z, a Thursday
    assert Timeframe.M1.bucket_start(t) == 1_723_161_540_000_000
    assert Timeframe.M15.bucket_start(t) == 1_723_160_700_000_000
    assert Timeframe.H4.bucket_start(t) == 1_723_147_200_000_000
    assert Timeframe.D1.bucket_start(t) == 1_723_075_200_000_000
    assert Timeframe.W1.bucket_start(t) == 1_722_816_000_000_000  # Monday 2024-08-05
    assert Timeframe.W1.bucket_start(1_722_816_000_000_000 - 1) == 1_722_816_000_000_000 - 7 * DAY_US


def test_each_timeframe_reads_the_coarsest_rollup_that_divides_it() -> None:
    assert [t.rollup for t in Timeframe] == [Rollup.M1] * 4 + [Rollup.H1] * 2 + [Rollup.D1] * 2
    assert Timeframe.from_label("4h") is Timeframe.H4
    with pytest.raises(ValueError, match="unknown timeframe"):
        Timeframe.from_label("2h")


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 0), (59_999_999, 60_000_000), (1_700_000_012_345_678, 1_700_400_000_000_000), (DAY_US, 3 * DAY_US - 1)],
)
def test_window_pieces_cover_the_window_exactly_with_aligned_buckets(start: int, end: int) -> None:
    pieces = window_pieces(start, end)

    covered = sorted((low, high) for _, low, high in pieces)
    assert covered[0][0] == start
    assert covered[-1][1] == end + 1
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered)), "no gaps, no overlaps"
    for tier, low, high in pieces:
        if tier is not None:
            assert low % tier.micros == 0
            assert high % tier.micros == 0
    assert len(pieces) <= 7


def test_a_tiny_price_drop_rounds_to_plain_zero_percent() -> None:
    from tests.reference import aggregate
    from tests.support import make_trades
    from wadm_grpc.domain.aggregate import WindowStats
    from wadm_grpc.domain.stats import MarketStats, StatsWindow

    first, last = make_trades(seed=1, count=2, start_us=1, spacing_us=1, price="100000.00")
    trades = [
        dataclasses.replace(first, price=Decimal("100000.00")),
        dataclasses.replace(last, price=Decimal("99999.99")),
    ]
    stats = MarketStats(StatsWindow.H1, 0, 10, WindowStats("X", ("x",), aggregate(trades)))

    assert str(stats.price_change_percent) == "0.000"
