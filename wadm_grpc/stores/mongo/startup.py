"""First start on an existing trades collection: index problems said in one line, catch-up progress.

The collectors' history may hold duplicate (exchange, symbol, trade_id) documents, so the unique index cannot
be built (E11000), or a non-unique index of the same name may exist (code 86). The store then logs one line
naming what is wrong and what to do, keeps serving reads and the live feed, and refuses ingest
(FAILED_PRECONDITION) until the index exists: without it, ingest would store duplicates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pymongo import IndexModel
from pymongo.errors import OperationFailure

from wadm_grpc.stores.mongo.commands import INDEX_KEY_SPECS_CONFLICT, Commands
from wadm_grpc.stores.mongo.documents import Document

log = logging.getLogger("wadm_grpc.stores.mongo")
_EXAMPLES = 3


async def index_problem(db: Commands, index: IndexModel, error: OperationFailure) -> str:
    """One line: what stops `index` from being built on the trades collection, and what to do."""
    name = str(index.document["name"])
    collection = db.names.trades
    if error.code == INDEX_KEY_SPECS_CONFLICT:
        return (
            f"the {collection} collection has an index named {name} that is not unique; drop it "
            f"(db.{collection}.dropIndex('{name}')) and restart: ingest is refused until then"
        )
    keys = {"exchange": "$exchange", "symbol": "$symbol", "trade_id": "$trade_id"}
    duplicates = await db.aggregate(
        "trades",
        [
            {"$group": {"_id": keys, "n": {"$sum": 1}}},
            {"$match": {"n": {"$gt": 1}}},
            {"$group": {"_id": None, "keys": {"$sum": 1}, "examples": {"$push": "$_id"}}},
            {"$project": {"keys": 1, "examples": {"$slice": ["$examples", _EXAMPLES]}}},
        ],
    )
    found: Document = duplicates[0] if duplicates and duplicates[0].get("keys") else {"keys": "some"}
    examples = "; ".join(f"{e['exchange']} {e['symbol']} {e['trade_id']}" for e in found.get("examples", []))
    return (
        f"the {collection} collection holds {found['keys']} (exchange, symbol, trade_id) keys with more than "
        f"one document (e.g. {examples or 'see the server log'}), so the unique index {name} cannot be "
        "built: delete the extra documents (keep one per key) and restart: ingest is refused until then"
    )


@dataclass
class CatchUp:
    """The background catch-up of rollups over what collectors wrote before (or while) this store was down."""

    running: bool = False
    scanned_trades: int = 0
    done: bool = False
    said: bool = False  # a read during the catch-up was told, in the log, that rollups are incomplete
