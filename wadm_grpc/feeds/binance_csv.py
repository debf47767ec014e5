"""Binance public-data trades CSV (`id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]`).

The header is optional. `time` is epoch milliseconds (microseconds in newer spot files: told apart by
size). `is_buyer_maker=true` means the buyer rested on the book, so the TAKER SOLD.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.domain.trade import Side
from wadm_grpc.domain.trade_input import TradeInput

# Epoch milliseconds stay below this until the year 5138; microsecond stamps are above it.
_MICROSECOND_STAMPS = 10**14


def symbol_from_filename(path: Path) -> str | None:
    """ "BTCUSDT-um-trades-2024-08-08.csv" -> "BTCUSDT"."""
    head = path.name.split("-", 1)[0]
    return head.upper() if head and head.isalnum() else None


def read_trades(stream: TextIO, *, exchange: str, symbol: str, batch_size: int = 5000) -> Iterator[list[TradeInput]]:
    """Batches of trades from a CSV stream, unvalidated (the ingest service validates)."""
    batch: list[TradeInput] = []
    for line, row in enumerate(csv.reader(stream), start=1):
        if not row or (line == 1 and row[0].strip().lower() == "id"):
            continue
        if len(row) < 6:
            raise InvalidArgumentError.of(f"line {line}", f"expected at least 6 columns, got {len(row)}")
        trade_id, price, quantity, _quote, time, buyer_maker = (cell.strip() for cell in row[:6])
        batch.append(
            trade_input((trade_id, price, quantity, time, buyer_maker), exchange=exchange, symbol=symbol, line=line)
        )
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def trade_input(row: tuple[str, str, str, str, str], *, exchange: str, symbol: str, line: int) -> TradeInput:
    """One row's (id, price, qty, time, is_buyer_maker) as a TradeInput, unvalidated."""
    trade_id, price, quantity, time, buyer_maker = row
    return TradeInput(
        exchange=exchange,
        symbol=symbol,
        trade_id=trade_id,
        price=price,
        quantity=quantity,
        side=_side(buyer_maker),
        time_us=_time_us(time),
        time_problem=None if time.isdigit() else f"line {line}: {time!r} is not epoch milliseconds",
    )


def _side(buyer_maker: str) -> Side | None:
    lowered = buyer_maker.lower()
    if lowered == "true":
        return Side.SELL
    if lowered == "false":
        return Side.BUY
    return None


def _time_us(text: str) -> int | None:
    if not text.isdigit():
        return None
    stamp = int(text)
    return stamp if stamp >= _MICROSECOND_STAMPS else stamp * 1000
