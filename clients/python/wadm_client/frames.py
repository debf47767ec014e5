"""Candles as a pyarrow Table or a pandas DataFrame with exact decimal columns (the `wadm-client[pandas]` extra)."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from wadm_client.models import Candle

if TYPE_CHECKING:
    import pandas
    import pyarrow

    from wadm_client.models import Candles

EXTRA = "install the extra: pip install 'wadm-client[pandas]'"


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(f"to_arrow() needs pyarrow: {EXTRA}") from error
    return pyarrow


def candles_table(candles: Candles) -> pyarrow.Table:
    """One row per candle; decimal columns as decimal128 wide enough for every value (inferred: exact)."""
    pa = _pyarrow()
    columns: dict[str, Any] = {}
    for f in fields(Candle):
        values = [getattr(c, f.name) for c in candles.candles]
        if f.name.endswith("_time"):
            columns[f.name] = pa.array(values, type=pa.timestamp("us", tz="UTC"))
        elif f.name == "trade_count":
            columns[f.name] = pa.array(values, type=pa.int64())
        elif f.name == "closed":
            columns[f.name] = pa.array(values, type=pa.bool_())
        else:
            columns[f.name] = pa.array(values) if values else pa.array([], type=pa.decimal128(38, 18))
    return pa.table(columns)


def candles_frame(candles: Candles) -> pandas.DataFrame:
    """The table as pandas, decimal columns kept as `ArrowDtype(decimal128)` (never float)."""
    try:
        import pandas
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(f"to_pandas() needs pandas: {EXTRA}") from error
    frame: pandas.DataFrame = candles_table(candles).to_pandas(types_mapper=pandas.ArrowDtype)
    return frame
