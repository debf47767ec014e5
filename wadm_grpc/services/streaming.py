"""StreamTrades: live trades from the bus, with heartbeats when idle."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from wadm_grpc.domain.errors import Violations
from wadm_grpc.domain.names import check_exchanges, symbol_problem
from wadm_grpc.domain.trade import Trade
from wadm_grpc.ports import Clock, TradeBus

MAX_SYMBOLS = 100
DEFAULT_HEARTBEAT_SECONDS = 15.0
MIN_HEARTBEAT_SECONDS = 1.0
MAX_HEARTBEAT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing happened for a heartbeat interval; carries the server time."""

    server_time_us: int


class StreamService:
    """Live trade subscriptions."""

    def __init__(self, bus: TradeBus, clock: Clock) -> None:
        self._bus = bus
        self._clock = clock

    async def stream_trades(
        self,
        symbols: Sequence[str],
        exchanges: Sequence[str],
        heartbeat_seconds: float | None,
        opened: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncGenerator[list[Trade] | Heartbeat, None]:
        """Batches of trades as they are ingested, and a Heartbeat after each idle interval.
        `opened` is awaited once the request is valid and the subscription live (before any event), so a
        caller can tell an accepted stream from a refused one without waiting for the first event.

        Ends by raising ResourceExhaustedError (fell behind) or UnavailableError (shutdown). The
        subscription is released when the consumer stops iterating, whatever the reason.
        """
        problems = Violations()
        names: set[str] = set()
        for index, raw in enumerate(symbols):
            name, problem = symbol_problem(raw)
            if problem:
                problems.add(f"symbols[{index}]", problem)
            names.add(name)
        if not symbols:
            problems.add("symbols", "needs at least one symbol")
        elif len(names) > MAX_SYMBOLS:
            problems.add("symbols", f"at most {MAX_SYMBOLS} symbols per stream, got {len(names)}")
        selected = check_exchanges(exchanges, problems)
        interval = DEFAULT_HEARTBEAT_SECONDS if heartbeat_seconds is None else heartbeat_seconds
        if not MIN_HEARTBEAT_SECONDS <= interval <= MAX_HEARTBEAT_SECONDS:
            problems.add(
                "heartbeat_interval",
                f"must be between {MIN_HEARTBEAT_SECONDS:g} and {MAX_HEARTBEAT_SECONDS:g} seconds",
            )
        problems.raise_if_any()
        subscription = self._bus.subscribe(frozenset(names), frozenset(selected))
        try:
            if opened is not None:
                await opened()
            while True:
                batch = await subscription.get(interval)
                yield Heartbeat(self._clock.now_us()) if batch is None else batch
        finally:
            subscription.close()
