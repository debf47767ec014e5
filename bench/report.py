"""Figures and tables: percentiles, plain-text and Markdown tables, the JSON results file."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is zero or missing."""
    if not denominator or math.isnan(denominator):
        return math.nan
    return numerator / denominator


def ms(seconds: float) -> str:
    """Seconds shown as milliseconds."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def times(value: float) -> str:
    """A ratio shown as "1.23x"."""
    return "-" if math.isnan(value) else f"{value:.2f}x"


def whole(value: float) -> str:
    """A count or rate with thousands separators."""
    return "-" if math.isnan(value) else f"{value:,.0f}"


@dataclass
class Table:
    """One compact table of a section."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        """Append a row (cells shown with str())."""
        self.rows.append([str(cell) for cell in cells])

    def text(self) -> str:
        """Aligned plain text for the terminal."""
        widths = [max(len(row[i]) for row in [self.columns, *self.rows]) for i in range(len(self.columns))]
        lines = [self.title, "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in self.rows]
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        """A GitHub Markdown table (used for docs/benchmarks.md)."""
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines)


@dataclass
class SectionResult:
    """What one section measured: tables for people, figures for the JSON file."""

    name: str
    tables: list[Table]
    figures: dict[str, Any]
    seconds: float = 0.0


def write_results(
    machine: dict[str, str], results: list[SectionResult], started: datetime, *, datasets: dict[str, object]
) -> Path:
    """bench/results/<UTC time>.json and latest.json (+ latest.md with every table)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    document = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "datasets": datasets,
        "sections": {r.name: {"seconds": round(r.seconds, 1), **r.figures} for r in results},
    }
    text = json.dumps(_clean(document), indent=2, allow_nan=False, default=str) + "\n"
    path = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(text)
    (RESULTS_DIR / "latest.json").write_text(text)
    tables = "\n\n".join(table.markdown() for r in results for table in r.tables)
    (RESULTS_DIR / "latest.md").write_text(tables + "\n")
    return path


def _clean(value: object) -> object:
    """NaN (no measurement) becomes null; containers are walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
