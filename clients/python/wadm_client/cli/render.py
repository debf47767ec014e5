"""How the CLI prints rows: an aligned table (rich), JSON lines, or CSV."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TextIO

from rich.console import Console
from rich.table import Table

Row = Mapping[str, object]


def text(value: object) -> str:
    """A cell: exact decimals as written, times as RFC 3339 UTC, None as empty."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(text(v) for v in value)
    return str(value)


def jsonable(value: object) -> object:
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    return text(value)  # decimals as strings, never floats


class Output:
    """Rows in the chosen format, to stdout."""

    def __init__(self, fmt: str, stream: TextIO | None = None) -> None:
        self.fmt = fmt
        self.stream = stream or sys.stdout
        terminal = self.stream.isatty()
        # Off a terminal (a pipe, a file) there is no width to fit: do not squash columns into 80.
        self.console = Console(file=self.stream, width=None if terminal else 200, highlight=False)
        self._csv_header: Sequence[str] | None = None

    def rows(self, rows: Iterable[Row], columns: Sequence[str], *, title: str | None = None) -> None:
        """A finished set of rows: one table, JSON lines, or CSV with a header."""
        if self.fmt == "table":
            self.console.print(table(list(rows), columns, title=title))
            return
        for row in rows:
            self.row(row, columns)

    def row(self, row: Row, columns: Sequence[str], widths: Mapping[str, int] | None = None) -> None:
        """One row as it comes (streams): JSON line, CSV line, or a line aligned on `widths` (negative: right)."""
        if self.fmt == "json":
            print(json.dumps({c: jsonable(row.get(c)) for c in columns}), file=self.stream, flush=True)
        elif self.fmt == "csv":
            writer = csv.writer(self.stream, lineterminator="\n")
            if self._csv_header is None:
                self._csv_header = columns
                writer.writerow(columns)
            writer.writerow([text(row.get(c)) for c in columns])
            self.stream.flush()
        else:
            widths = widths or {}
            cells = []
            for column in columns:
                width = widths.get(column, 0)
                cell = text(row.get(column))
                cells.append(cell.rjust(-width) if width < 0 else cell.ljust(width))
            self.console.print("  ".join(cells).rstrip(), soft_wrap=True, markup=False)


def table(rows: Sequence[Row], columns: Sequence[str], *, title: str | None = None) -> Table:
    """An aligned table; numbers right-aligned."""
    result = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        numeric = any(isinstance(r.get(column), Decimal | int) and not isinstance(r.get(column), bool) for r in rows)
        result.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        result.add_row(*(text(row.get(c)) for c in columns))
    return result
