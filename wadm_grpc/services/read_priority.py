"""Reads first: ingest steps wait, bounded, for a quiet moment between uncached reads.

Why (issue 12): during a bulk ingest, the validation of each message (Python, holding the GIL) and the
writer's transactions share the server's two cores and its one interpreter lock with the reads. A read's
own Python (decoding 500 candles, rendering them) and DuckDB's frequent re-takes of the GIL during a
statement then wait behind the ingest: a 50 ms read took 150-700 ms. A read is one caller waiting; a
bulk ingest is throughput. So between the validation steps of a large message (before screening it,
and before the next message is read) the ingest waits until no uncached read has run for
`quiet_seconds`, but never more than `max_wait_seconds` per wait, so ingest goes on at a bounded pace
even under reads that never stop. The writer is not held up (a transaction that waited would only be
larger, and no shorter), and a step that has started is never interrupted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# How long after the last read ended ingest waits before its next step: a client that reads again at
# once (a poller, a page of results) is back within a round trip, well under this.
QUIET_SECONDS = 0.005
DEFAULT_MAX_WAIT_SECONDS = 0.3


class ReadActivity:
    """Uncached reads in flight (told by the store gate), and the quiet moments ingest waits for.

    `begin`/`end` may be called from any thread; `wait_quiet` blocks, so only worker threads call it.
    """

    def __init__(
        self,
        *,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        quiet_seconds: float = QUIET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_wait_seconds = max_wait_seconds
        self.quiet_seconds = quiet_seconds
        self._clock = clock
        self._changed = threading.Condition()
        self._running = 0
        self._last_end = float("-inf")
        # What the waits cost ingest: steps that waited, and for how long in all.
        self.yields = 0
        self.yielded_seconds = 0.0

    @property
    def running(self) -> int:
        """Reads in flight now."""
        return self._running

    def begin(self) -> None:
        """A read started."""
        with self._changed:
            self._running += 1

    def end(self) -> None:
        """A read ended."""
        with self._changed:
            self._running -= 1
            self._last_end = self._clock()
            if self._running == 0:
                self._changed.notify_all()

    def _delay(self, now: float) -> float | None:
        """Seconds until the quiet moment begins if no read starts meanwhile; None while reads run."""
        if self._running:
            return None
        return max(0.0, self._last_end + self.quiet_seconds - now)

    def wait_quiet(self) -> bool:
        """Block until reads have been quiet for `quiet_seconds`, or `max_wait_seconds` passed; whether it
        was quiet. For worker threads only: never call it on the event loop."""
        started = self._clock()
        deadline = started + self.max_wait_seconds
        waited = False
        with self._changed:
            while True:
                now = self._clock()
                delay = self._delay(now)
                if delay == 0.0:
                    quiet = True
                    break
                left = deadline - now
                if left <= 0:
                    quiet = False
                    break
                waited = True
                self._changed.wait(left if delay is None else min(left, delay))
            if waited:
                self.yields += 1
                self.yielded_seconds += self._clock() - started
        return quiet
