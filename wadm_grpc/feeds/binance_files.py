"""Binance public-data trade files as published (a `.csv`, or a `.zip` holding one): which market, which
symbol, which layout, and their rows streamed as Arrow string columns (a zip is never extracted to disk).

Layouts (data.binance.vision): spot `id,price,qty,quote_qty,time,is_buyer_maker,is_best_match`, no header;
USD-M futures `id,price,qty,quote_qty,time,is_buyer_maker` with a header; COIN-M
`id,price,qty,base_qty,time,is_buyer_maker` with a header. Only id, price, qty, time and is_buyer_maker
are read, so one reader serves all three; the market decides the exchange name the trades are stored under.
"""

from __future__ import annotations

import itertools
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv


class Market(Enum):
    """A Binance market; its trade ids are its own (spot and futures ids of one symbol collide)."""

    SPOT = "binance"
    USDM = "binance-usdm"
    COINM = "binance-coinm"

    @property
    def cli_name(self) -> str:
        """The `--market` spelling."""
        return self.name.lower()


class FileRefused(Exception):
    """A file the importer will not read: ambiguous market, no symbol, unreadable layout."""


# Path folders and file-name tokens as Binance (and this project's shared data) name them.
_NAME_TOKENS = {"spot": Market.SPOT, "um": Market.USDM, "cm": Market.COINM}
_READ_BYTES = 32 << 20  # one Arrow batch (one INSERT) per 32 MiB of CSV: ~500k-800k trades


@dataclass(frozen=True, slots=True)
class TradeFile:
    """A file to import, with what was decided about it."""

    path: Path
    exchange: str
    market: Market | None  # None when --exchange named the exchange outright
    symbol: str
    has_header: bool
    columns: int
    size_bytes: int


def symbol_from_name(path: Path) -> str | None:
    """ "BTCUSDT-trades-2024-08-08.zip" -> "BTCUSDT"; "BTCUSD_PERP-trades-..." -> "BTCUSD_PERP"."""
    head = path.name.split("-", 1)[0]
    return head.upper() if head and head.replace("_", "").isalnum() and "." not in head else None


def markets_named(path: Path) -> set[Market]:
    """Markets the folders (`spot/`, `futures/um/`, `futures/cm/`) and file-name tokens (`-um-`) name."""
    parts = [part.lower() for part in path.parts[:-1]]
    named = {Market.SPOT} if "spot" in parts else set()
    for before, after in itertools.pairwise(parts):
        if before == "futures" and after in ("um", "cm"):
            named.add(_NAME_TOKENS[after])
    tokens = path.name.lower().split(".", 1)[0].split("-")[1:]
    named.update(_NAME_TOKENS[token] for token in tokens if token in _NAME_TOKENS)
    return named


def markets_of_layout(header: list[str] | None, columns: int) -> tuple[set[Market], set[Market]]:
    """(markets the layout allows at all, the market Binance's own layout conventions point to)."""
    every = set(Market)
    if columns == 7:
        return {Market.SPOT}, {Market.SPOT}
    if columns != 6:
        raise FileRefused(f"expected 6 or 7 columns (Binance trades), got {columns}")
    if header is None:  # spot files carry is_best_match; headerless 6 columns: an older file of either futures market
        return every, {Market.USDM, Market.COINM}
    if "base_qty" in header:
        return {Market.COINM}, {Market.COINM}
    return every - {Market.COINM}, {Market.USDM}  # Binance writes headers on futures files only


@contextmanager
def open_binary(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """The file's CSV bytes, streamed (from inside a zip if need be), and their size."""
    if path.suffix.lower() != ".zip":
        with path.open("rb") as stream:
            yield stream, path.stat().st_size
        return
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise FileRefused(f"not a zip file: {error}") from error
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) != 1:
            raise FileRefused(f"a Binance zip holds one CSV file, this one holds {len(members)}")
        with archive.open(members[0]) as stream:
            yield stream, members[0].file_size  # type: ignore[misc]  # ZipExtFile is a BinaryIO


def sniff(path: Path) -> tuple[list[str] | None, int]:
    """(header names or None, number of columns), from the first line."""
    with open_binary(path) as (stream, _):
        line = stream.readline(64 * 1024).decode("utf-8", errors="replace").strip()
    if not line:
        raise FileRefused("empty file")
    cells = [cell.strip().lower() for cell in line.split(",")]
    return (cells if cells[0] == "id" else None), len(cells)


def describe(path: Path, *, exchange: str | None, market: Market | None, symbol: str | None) -> TradeFile:
    """What to import `path` as; FileRefused when its market or symbol cannot be told for sure."""
    if not path.is_file():
        raise FileRefused("a directory, not a trade file" if path.is_dir() else "no such file")
    header, columns = sniff(path)
    allowed, conventional = markets_of_layout(header, columns)
    named = markets_named(path)
    chosen = market
    if exchange is None and chosen is None:
        candidates = allowed & named if named else allowed & conventional
        if named and not candidates:
            raise FileRefused(
                f"its name says {_listed(named)} but its columns say {_listed(allowed)}: pass --market or --exchange"
            )
        if len(candidates) != 1:
            raise FileRefused(
                f"ambiguous market: could be {_listed(candidates or allowed)} (spot and futures trade ids collide); "
                "pass --market spot|usdm|coinm or --exchange"
            )
        (chosen,) = candidates
    named_symbol = symbol or symbol_from_name(path)
    if named_symbol is None:
        raise FileRefused("cannot tell the symbol from the file name; pass --symbol")
    with open_binary(path) as (_, size):
        pass
    return TradeFile(
        path=path,
        exchange=exchange or (chosen.value if chosen else ""),
        market=None if exchange else chosen,
        symbol=named_symbol,
        has_header=header is not None,
        columns=columns,
        size_bytes=size,
    )


def _listed(markets: set[Market]) -> str:
    return " or ".join(sorted(m.cli_name for m in markets)) or "no market"


class _Counted:
    """A binary stream that counts the bytes read from it (progress and ETA)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.bytes_read = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.bytes_read += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


# Column names as read (positions 0, 1, 2, 4, 5 of every layout).
ID, PRICE, QUANTITY, TIME, BUYER_MAKER = "id", "price", "qty", "time", "is_buyer_maker"


@dataclass(slots=True)
class Position:
    """How far the reader is: bytes of CSV consumed, rows produced."""

    bytes_read: int = 0
    rows: int = 0


def read_batches(
    trade_file: TradeFile, position: Position, *, block_bytes: int = _READ_BYTES
) -> Iterator[pa.RecordBatch]:
    """The file's rows as Arrow batches of strings (id, price, qty, time, is_buyer_maker), in file order.
    A row with a different number of columns raises FileRefused naming the problem."""
    names = [ID, PRICE, QUANTITY, "quote_or_base", TIME, BUYER_MAKER, "is_best_match"][: trade_file.columns]
    wanted = [ID, PRICE, QUANTITY, TIME, BUYER_MAKER]
    with open_binary(trade_file.path) as (stream, _):
        counted = _Counted(stream)
        try:
            reader = pacsv.open_csv(
                counted,
                read_options=pacsv.ReadOptions(
                    column_names=names, skip_rows=1 if trade_file.has_header else 0, block_size=block_bytes
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in names},
                    include_columns=wanted,
                    strings_can_be_null=False,
                ),
            )
            for batch in reader:
                position.bytes_read = counted.bytes_read
                position.rows += batch.num_rows
                if batch.num_rows:
                    yield batch
        except pa.ArrowInvalid as error:
            raise FileRefused(f"after row {position.rows}: {error}") from error
        position.bytes_read = trade_file.size_bytes
