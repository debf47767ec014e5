"""The import's progress bar (rich): rows, rows/s and an ETA from the bytes of CSV left."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from wadm_grpc.feeds.binance_files import TradeFile


class Progress:
    """A bar on stderr while one file imports, when enabled; otherwise nothing."""

    def __init__(self, trade_file: TradeFile, *, enabled: bool, force_terminal: bool = False) -> None:
        """`force_terminal`: draw even when stderr is not a terminal (`--progress` asked for it)."""
        self._file = trade_file
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._began = time.perf_counter()
        if enabled:
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[rows]:>12,} rows"),
                TextColumn("{task.fields[rate]:>10,.0f} rows/s"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(
                    stderr=True, force_terminal=force_terminal or None, width=140 if force_terminal else None
                ),
                transient=not force_terminal,
            )

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(
                f"{self._file.path.name} ({self._file.exchange})", total=self._file.size_bytes or None, rows=0, rate=0.0
            )
        return self

    def update(self, bytes_read: int, rows: int) -> None:
        """Where the reader is."""
        if self._bar is None or self._task is None:
            return
        seconds = time.perf_counter() - self._began
        self._bar.update(self._task, completed=bytes_read, rows=rows, rate=rows / seconds if seconds > 0 else 0.0)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
