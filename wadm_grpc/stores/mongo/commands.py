"""The Mongo store's collections and indexes, with every server command it issues counted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pymongo import ASCENDING, IndexModel, ReplaceOne, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure

from wadm_grpc.stores.mongo.documents import Document

Role = Literal["trades", "rollups", "markets", "state", "dirty"]
_DUPLICATE_KEY = 11000
_INDEX_OPTIONS_CONFLICT = 85  # same keys already indexed under another name: the index exists
INDEX_KEY_SPECS_CONFLICT = 86  # an index of the same name with other options (e.g. not unique) exists


@dataclass(frozen=True, slots=True)
class CollectionNames:
    """Where the store keeps things. `trades` is the collectors' collection; the others are the store's own."""

    trades: str = "trades"
    rollups: str = "trade_rollups"
    markets: str = "trade_markets"
    state: str = "trade_rollup_state"
    dirty: str = "trade_rollup_dirty"


def _index(*keys: str, unique: bool = False) -> IndexModel:
    return IndexModel([(key, ASCENDING) for key in keys], unique=unique)


# What each index serves: docs/mongo.md. Reads that must walk one index name it (a hint: the planner could
# otherwise pick another index and sort in memory).
BY_SYMBOL_TIME = "symbol_1_timestamp_1"
BY_ROLLUP_KEY = "tier_1_symbol_1_bucket_1_exchange_1"
INDEXES: dict[Role, list[IndexModel]] = {
    "trades": [
        _index("exchange", "symbol", "trade_id", unique=True),
        _index("symbol", "timestamp"),
        _index("symbol", "exchange", "timestamp"),
    ],
    "rollups": [_index("tier", "symbol", "bucket", "exchange", unique=True)],
    "markets": [_index("symbol", "exchange", unique=True)],
    "state": [],
    "dirty": [],
}


class Commands:
    """One database's collections; `round_trips` counts the commands sent (a cursor's getMores excepted)."""

    def __init__(self, database: AsyncDatabase[Document], names: CollectionNames) -> None:
        self._database = database
        self.names = names
        self.round_trips = 0

    def _collection(self, role: Role) -> AsyncCollection[Document]:
        return self._database[getattr(self.names, role)]

    async def create_indexes(self) -> list[tuple[Role, IndexModel, OperationFailure]]:
        """Create every index the store reads through (idempotent); the unique trades index's failures
        (E11000: duplicates in the history, or code 86: a same-named index with other options) are returned,
        not raised, so the store can say what to do and serve what it can."""
        failed: list[tuple[Role, IndexModel, OperationFailure]] = []
        for role, indexes in INDEXES.items():
            for index in indexes:
                self.round_trips += 1
                try:
                    await self._collection(role).create_indexes([index])
                except OperationFailure as error:
                    if error.code in (_DUPLICATE_KEY, INDEX_KEY_SPECS_CONFLICT) and role == "trades":
                        failed.append((role, index, error))
                    elif error.code != _INDEX_OPTIONS_CONFLICT:
                        raise
        return failed

    async def aggregate(
        self, role: Role, pipeline: list[Document], *, batch_size: int | None = None, hint: str | None = None
    ) -> list[Document]:
        """Run `pipeline` on the server (through index `hint`, when given); its result documents."""
        self.round_trips += 1
        options: dict[str, Any] = {} if batch_size is None else {"batchSize": batch_size}
        if hint is not None:
            options["hint"] = hint
        cursor = await self._collection(role).aggregate(pipeline, **options)
        rows: list[Document] = await cursor.to_list(None)
        return rows

    async def replace(self, role: Role, replacements: Sequence[ReplaceOne[Document]]) -> int:
        """Upsert whole documents in one unordered bulk write (nothing is sent when there are none); how many
        the unique index refused (fenced replacements whose filter matched no document: lease.py)."""
        if not replacements:
            return 0
        self.round_trips += 1
        try:
            await self._collection(role).bulk_write(list(replacements), ordered=False)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if any(e.get("code") != _DUPLICATE_KEY for e in errors) or error.details.get("writeConcernErrors"):
                raise
            return len(errors)
        return 0

    async def find_one_and_update(
        self, role: Role, query: Document, update: Document, *, upsert: bool = False
    ) -> Document | None:
        """Atomically update the document matching `query`; the document after the update, or None."""
        self.round_trips += 1
        found: Document | None = await self._collection(role).find_one_and_update(
            query, update, upsert=upsert, return_document=ReturnDocument.AFTER
        )
        return found

    async def find(self, role: Role, query: Document, *, limit: int) -> list[Document]:
        """At most `limit` documents matching `query`."""
        return await self.aggregate(role, [{"$match": query}, {"$limit": limit}])

    async def insert_new(self, documents: Sequence[Document]) -> set[int]:
        """Insert `documents` (unordered); the positions of those the unique index refused as duplicates."""
        self.round_trips += 1
        try:
            await self._collection("trades").insert_many(list(documents), ordered=False)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if any(e.get("code") != _DUPLICATE_KEY for e in errors) or error.details.get("writeConcernErrors"):
                raise
            return {int(e["index"]) for e in errors}
        return set()

    async def count(self, role: Role, query: Document) -> int:
        """How many documents match `query`."""
        self.round_trips += 1
        result: int = await self._collection(role).count_documents(query)
        return result

    async def find_one(self, role: Role, query: Document) -> Document | None:
        """The first document matching `query`, if any."""
        self.round_trips += 1
        found: Document | None = await self._collection(role).find_one(query)
        return found

    async def watch_trades(self, pipeline: list[Document], *, resume_after: Any, max_await_time_ms: int) -> Any:
        """A change stream on the trades collection (an AsyncChangeStream; use it with `async with`)."""
        self.round_trips += 1
        collection = self._collection("trades")
        return await collection.watch(pipeline, resume_after=resume_after, max_await_time_ms=max_await_time_ms)

    async def delete_many(self, role: Role, query: Document) -> int:
        """Delete every document matching `query`; how many were deleted."""
        self.round_trips += 1
        result = await self._collection(role).delete_many(query)
        return int(result.deleted_count)

    async def update_one(self, role: Role, query: Document, update: Document) -> None:
        """Apply `update` to the document matching `query`, creating it if needed."""
        self.round_trips += 1
        await self._collection(role).update_one(query, update, upsert=True)
