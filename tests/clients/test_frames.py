"""`wadm-client[pandas]`: candles as a pyarrow Table and a pandas DataFrame with exact decimal columns."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.clients.conftest import Driver, Seeded


def test_to_arrow_and_to_pandas_keep_every_digit(client: Driver, seeded: Seeded) -> None:
    pa = pytest.importorskip("pyarrow")
    pytest.importorskip("pandas")
    candles = client.call(lambda c: c.get_candles("SOLUSDT", "1m", limit=1000))

    table = candles.to_arrow()
    frame = candles.to_pandas()

    assert table.num_rows == len(candles) == len(frame)
    assert pa.types.is_decimal(table.schema.field("volume").type)
    assert str(table.schema.field("open_time").type) == "timestamp[us, tz=UTC]"
    assert table.column("close").to_pylist() == [c.close for c in candles]
    total = sum(Decimal(t.quantity) for t in seeded.trades["SOLUSDT"])
    assert sum(frame["volume"].tolist()) == total  # Decimals, not floats
    assert all(isinstance(v, Decimal) for v in frame["quote_volume"].tolist())
    assert frame["trade_count"].sum() == len(seeded.trades["SOLUSDT"])
