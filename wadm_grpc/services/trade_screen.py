"""Bulk validation of a received batch: vectorised checks (Arrow compute over the string columns) that
every trade is plainly valid; a batch they cannot vouch for goes through the per-trade rules, which
name each violation precisely.

The checks are stricter than the rules (ASCII ids, a float bound on price x quantity with a margin), so
passing them implies passing the rules; failing them only means the exact path decides.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from wadm_grpc.domain.decimals import MAX_INTEGER_DIGITS, MAX_SCALE
from wadm_grpc.domain.names import exchange_problem, symbol_problem
from wadm_grpc.domain.trade import Side
from wadm_grpc.domain.trade_batch import TradeBatch, TradeColumns
from wadm_grpc.domain.trade_input import MAX_TRADE_ID_LENGTH, ReceivedColumns

# Printable ASCII, no whitespace at either end, 1 to MAX_TRADE_ID_LENGTH characters.
_TRADE_ID = rf"^[!-~](?:[ -~]{{0,{MAX_TRADE_ID_LENGTH - 2}}}[!-~])?$"
# A plain decimal within the bounds of a trade (its value may still be zero: checked apart).
_DECIMAL = rf"^(?:0|[1-9][0-9]{{0,{MAX_INTEGER_DIGITS - 1}}})(?:\.[0-9]{{1,{MAX_SCALE}}})?$"
# price x quantity below this as a float is surely below 10^16 exactly (floats are off by < 10^-15).
_SAFE_PRODUCT = 0.999 * 10.0**MAX_INTEGER_DIGITS


def _normalised(values: list[str], *, symbols: bool) -> list[str] | None:
    """Normalised names, looked up once per distinct value; None if any is invalid."""
    normal: dict[str, str] = {}
    for raw in set(values):
        value, problem = symbol_problem(raw) if symbols else exchange_problem(raw)
        if problem:
            return None
        normal[raw] = value
    if all(raw == value for raw, value in normal.items()):
        return values
    return [normal[raw] for raw in values]


def scales(text: pa.Array) -> pa.Array:
    """Digits after the point of each plain decimal string."""
    point = pc.find_substring(text, ".")
    return pc.if_else(pc.less(point, 0), 0, pc.subtract(pc.subtract(pc.utf8_length(text), point), 1))


def _plainly_valid(received: ReceivedColumns, latest_us: int) -> bool:
    if None in received.side or min(received.time_us) <= 0 or max(received.time_us) > latest_us:
        return False
    ids = pa.array(received.trade_id, pa.string())
    price, quantity = pa.array(received.price, pa.string()), pa.array(received.quantity, pa.string())
    return text_columns_plainly_valid(ids, price, quantity)


def text_columns_plainly_valid(ids: pa.Array, price: pa.Array, quantity: pa.Array) -> bool:
    """Whether every trade id is well formed and every price and quantity a positive plain decimal whose
    scales and product the store holds exactly (column-wise; False sends a batch to the per-trade checks,
    which name each problem). Shared by ingest and the file importer."""
    if not pc.all(pc.match_substring_regex(ids, _TRADE_ID)).as_py():
        return False
    for text in (price, quantity):
        shaped = pc.and_(pc.match_substring_regex(text, _DECIMAL), pc.match_substring_regex(text, "[1-9]"))
        if not pc.all(shaped).as_py():
            return False
    if pc.max(pc.add(scales(price), scales(quantity))).as_py() > MAX_SCALE:
        return False
    product = pc.multiply(pc.cast(price, pa.float64()), pc.cast(quantity, pa.float64()))
    return bool(pc.max(product).as_py() < _SAFE_PRODUCT)


def warm_up() -> None:
    """pyarrow imports pandas (when installed) on its first conversion of a Python list, ~0.5 s on the
    2-core machine, and pyarrow.acero on its first group-by (~35 ms, the store's first write): call this
    at startup, so the first ingest message does not pay them (issue 12 profile)."""
    pa.array(["warm-up"], pa.string())
    pa.table({"key": ["warm-up"]}).group_by(["key"], use_threads=False).aggregate([])  # imports pyarrow.acero


def screen(received: ReceivedColumns, *, latest_us: int) -> TradeBatch | None:
    """The batch's trades if every one is plainly valid (none dated after `latest_us`), else None."""
    if not len(received):
        return None
    exchange = _normalised(received.exchange, symbols=False)
    symbol = _normalised(received.symbol, symbols=True)
    if exchange is None or symbol is None or not _plainly_valid(received, latest_us):
        return None
    sides = [side is Side.BUY for side in received.side]
    columns = TradeColumns(
        exchange, symbol, received.trade_id, received.price, received.quantity, sides, received.time_us
    )
    return TradeBatch(columns)
