"""Live trades that collectors insert straight into MongoDB, from a change stream (replica sets only).

Only documents without `time_us` are delivered: those are the collectors'. Trades this service ingests
carry `time_us` and are already published by the ingest path, so nothing reaches subscribers twice.

Prompt: each getMore waits at most `FeedTiming.max_await_ms` on an idle stream, and a batch is closed once
`batch_budget_seconds` have passed since its first change (or at MAX_BATCH changes), so a trade reaches
subscribers within about budget + max_await, whatever the insert rate.

Resilient: any PyMongoError (server selection, network timeouts, an outage longer than the driver's single
automatic resume) is logged and the stream reopened after a backoff (doubling up to `max_backoff_seconds`,
reset by a delivered batch), from the last resume token. The token is saved in the state collection after
every batch and every `save_token_seconds` while the stream is idle or only carries this service's own
inserts (the stream's post-batch token still advances), so a restart resumes near now. A deployment
without change streams (a standalone server) is reported once in the log and the feed stops: candles and
stats still see collectors' trades through the rollup refresh, only StreamTrades does not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import OperationFailure, PyMongoError

from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.stores.mongo.commands import Commands
from wadm_grpc.stores.mongo.documents import Document, decimal_of, trade_id_of, us_of_datetime

log = logging.getLogger("wadm_grpc.stores.mongo.live")

# Server answers that mean "this deployment has no change streams".
NO_CHANGE_STREAMS = {
    40573,  # The $changeStream stage is only supported on replica sets
    40324,  # Unrecognized pipeline stage name: '$changeStream' (very old servers)
}
CHANGE_STREAM_HISTORY_LOST = 286
COLLECTOR_INSERTS: list[Document] = [
    {"$match": {"operationType": "insert", "fullDocument.time_us": {"$exists": False}}},
]
# A batch holds at most this many changes.
MAX_BATCH = 1000


@dataclass(frozen=True)
class FeedTiming:
    """How long the feed waits, and on what clock (tests pass their own)."""

    max_await_ms: int = 100
    batch_budget_seconds: float = 0.05
    save_token_seconds: float = 10.0
    first_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)


def collector_trade(document: Mapping[str, Any]) -> Trade:
    """A trade from a collector's document (prices as doubles or Decimal128, a millisecond date)."""
    return Trade(
        exchange=str(document["exchange"]).lower(),
        symbol=str(document["symbol"]).upper(),
        trade_id=trade_id_of(document["trade_id"]),
        price=decimal_of(document["price"]),
        quantity=decimal_of(document["quantity"]),
        side=Side(str(document["side"]).lower()),
        time_us=us_of_datetime(document["timestamp"]),
    )


class _Token:
    """The resume token, and when it was last saved."""

    def __init__(self, commands: Commands, state_key: str, value: Any, timing: FeedTiming) -> None:
        self._commands, self._key, self.value, self._timing = commands, state_key, value, timing
        self._saved_value, self._saved_at = value, timing.clock()

    async def save(self, value: Any, *, force: bool) -> None:
        self.value = value
        due = force or self._timing.clock() - self._saved_at >= self._timing.save_token_seconds
        if value is not None and value != self._saved_value and due:
            await self._commands.update_one("state", {"_id": self._key}, {"$set": {"resume_token": value}})
            self._saved_value, self._saved_at = value, self._timing.clock()


async def collector_trades(
    commands: Commands, *, state_key: str, timing: FeedTiming | None = None
) -> AsyncIterator[list[Trade]]:
    """Batches of collectors' trades as they are inserted; returns when change streams are unavailable."""
    timing = timing or FeedTiming()
    saved = await commands.find_one("state", {"_id": state_key})
    token = _Token(commands, state_key, saved.get("resume_token") if saved else None, timing)
    backoff = timing.first_backoff_seconds
    while True:
        try:
            async for batch in _watch(commands, token, timing):
                yield batch
                backoff = timing.first_backoff_seconds
            # A change stream only ends when it is invalidated (the collection was dropped or renamed).
            log.warning("the trades change stream was invalidated; live collector trades stop until restart")
            return
        except OperationFailure as error:
            if error.code in NO_CHANGE_STREAMS:
                log.warning(
                    "change streams are unavailable (not a replica set?): StreamTrades will not see trades "
                    "that collectors write straight to MongoDB",
                    extra={"code": error.code},
                )
                return
            if error.code == CHANGE_STREAM_HISTORY_LOST and token.value is not None:
                log.warning("change stream resume point is gone from the oplog; resuming from now")
                token.value = None
                continue
            log.warning("change stream failed (%s); reopening in %.1f s", error, backoff)
        except PyMongoError as error:
            log.warning("change stream lost the server (%s); reopening in %.1f s", error, backoff)
        await timing.sleep(backoff)
        backoff = min(backoff * 2, timing.max_backoff_seconds)


async def _watch(commands: Commands, token: _Token, timing: FeedTiming) -> AsyncIterator[list[Trade]]:
    stream = await commands.watch_trades(
        COLLECTOR_INSERTS, resume_after=token.value, max_await_time_ms=timing.max_await_ms
    )
    async with stream:
        while stream.alive:
            change = await stream.try_next()
            if change is None:  # an idle getMore: the post-batch token still moves on
                await token.save(stream.resume_token, force=False)
                continue
            batch = [collector_trade(change["fullDocument"])]
            deadline = timing.clock() + timing.batch_budget_seconds
            while len(batch) < MAX_BATCH and timing.clock() < deadline:
                more = await stream.try_next()
                if more is None:
                    break
                batch.append(collector_trade(more["fullDocument"]))
            yield batch
            await token.save(stream.resume_token, force=True)
