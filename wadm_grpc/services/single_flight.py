"""SingleFlight: concurrent calls for the same key share one execution of the work."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """While a call for a key runs, later calls for that key await its outcome instead of running again.

    The work runs in its own task, so a caller that is cancelled (a client gone) neither cancels it for the
    others nor leaves it orphaned: the task ends, and its entry is removed, whoever still waits.
    """

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Task[T]] = {}
        self._started = 0
        self._joined = 0

    @property
    def in_flight(self) -> int:
        """Keys whose work is running now."""
        return len(self._flights)

    @property
    def started(self) -> int:
        """Executions of work since start."""
        return self._started

    @property
    def joined(self) -> int:
        """Calls that shared an execution started by another call."""
        return self._joined

    async def run(self, key: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """The outcome (value or exception) of the one running `work` for `key`, starting it if none runs.

        `work()` is called synchronously when a flight starts, so it can note that before any other caller runs.
        """
        flight = self._flights.get(key)
        if flight is None or flight.done():
            flight = asyncio.create_task(work(), name=f"single-flight {key}")
            self._flights[key] = flight
            self._started += 1
            flight.add_done_callback(lambda done: self._landed(key, done))
        else:
            self._joined += 1
        # shield: cancelling this caller must not cancel the work the others wait for.
        return await asyncio.shield(flight)

    def forget(self, key: str) -> None:
        """Calls from now on start new work for `key` (the running one still answers its current callers)."""
        self._flights.pop(key, None)

    def _landed(self, key: str, flight: asyncio.Task[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            # Mark the exception retrieved: if every caller was cancelled, nobody else will.
            flight.exception()
