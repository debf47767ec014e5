"""Live trades that collectors insert straight into MongoDB, from a change stream (replica sets only).

Only documents without `time_us` are delivered: those are the collectors'. Trades this service ingests
carry `time_us` and are already published by the ingest path, so nothing reaches subscribers twice.
The resume token is saved in the state collection, so a restart resumes where the stream stopped (within
the oplog's window). A deployment without change streams (a standalone server) is reported once in the
log and the feed stops: candles and stats still see collectors' trades through the rollup refresh, only
StreamTrades does not.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from pymongo.errors import OperationFailure

from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.stores.mongo.commands import Commands
from wadm_grpc.stores.mongo.documents import Document, decimal_of, us_of_datetime

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
# A batch is what the stream already holds when the first change of it arrives, at most this many.
MAX_BATCH = 1000


def collector_trade(document: Mapping[str, Any]) -> Trade:
    """A trade from a collector's document (prices as doubles or Decimal128, a millisecond date)."""
    return Trade(
        exchange=str(document["exchange"]).lower(),
        symbol=str(document["symbol"]).upper(),
        trade_id=str(document["trade_id"]),
        price=decimal_of(document["price"]),
        quantity=decimal_of(document["quantity"]),
        side=Side(str(document["side"]).lower()),
        time_us=us_of_datetime(document["timestamp"]),
    )


async def collector_trades(commands: Commands, *, state_key: str) -> AsyncIterator[list[Trade]]:
    """Batches of collectors' trades as they are inserted; returns when change streams are unavailable."""
    saved = await commands.find_one("state", {"_id": state_key})
    token = saved.get("resume_token") if saved else None
    while True:
        try:
            async for batch, position in _watch(commands, token):
                yield batch
                token = position
                await commands.update_one("state", {"_id": state_key}, {"$set": {"resume_token": token}})
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
            if error.code == CHANGE_STREAM_HISTORY_LOST and token is not None:
                log.warning("change stream resume point is gone from the oplog; resuming from now")
                token = None
                continue
            raise


async def _watch(commands: Commands, token: Any) -> AsyncIterator[tuple[list[Trade], Any]]:
    stream = await commands.watch_trades(COLLECTOR_INSERTS, resume_after=token)
    async with stream:
        async for change in stream:
            batch = [collector_trade(change["fullDocument"])]
            while len(batch) < MAX_BATCH and (more := await stream.try_next()) is not None:
                batch.append(collector_trade(more["fullDocument"]))
            yield batch, stream.resume_token
