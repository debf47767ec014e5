"""Clocks: the system's, and one tests set by hand."""

from __future__ import annotations

import time


class SystemClock:
    """Wall-clock time, epoch microseconds UTC."""

    def now_us(self) -> int:
        """Now."""
        return time.time_ns() // 1_000


class ManualClock:
    """A clock that only moves when told (tests, benchmarks, replays)."""

    def __init__(self, now_us: int) -> None:
        self._now_us = now_us

    def now_us(self) -> int:
        """The time last set."""
        return self._now_us

    def set(self, now_us: int) -> None:
        """Jump to `now_us`."""
        self._now_us = now_us

    def advance(self, micros: int) -> None:
        """Move forward by `micros`."""
        self._now_us += micros
