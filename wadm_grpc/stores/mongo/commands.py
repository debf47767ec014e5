"""The Mongo store's collections and indexes, with every server command it issues counted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pymongo import ASCENDING, IndexModel, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure

from wadm_grpc.stores.mongo.documents import Document

Role = Literal["trades", "rollups", "markets", "state"]
_DUPLICATE_KEY = 11000
_INDEX_OPTIONS_CONFLICT = 85  # same keys already indexed under another name: the index exists


@dataclass(frozen=True, slots=True)
class CollectionNames:
    """Where the store keeps things. `trades` is the collectors' collection; the others are the store's own."""

    trades: str = "trades"
    rollups: str = "trade_rollups"
    markets: str = "trade_markets"
    state: str = "trade_rollup_state"


def _index(*keys: str, unique: bool = False) -> IndexModel:
    return IndexModel([(key, ASCENDING) for key in keys], unique=unique)


# What each index serves: docs/mongo.md.
INDEXES: dict[Role, list[IndexModel]] = {
    "trades": [
        _index("exchange", "symbol", "trade_id", unique=True),
        _index("symbol", "timestamp"),
        _index("symbol", "exchange", "timestamp"),
    ],
    "rollups": [_index("tier", "symbol", "bucket", "exchange", unique=True)],
    "markets": [_index("symbol", "exchange", unique=True)],
    "state": [],
}


class Commands:
    """One database's collections; `round_trips` counts the commands sent (a cursor's getMores excepted)."""

    def __init__(self, database: AsyncDatabase[Document], names: CollectionNames) -> None:
        self._database = database
        self.names = names
        self.round_trips = 0

    def _collection(self, role: Role) -> AsyncCollection[Document]:
        return self._database[getattr(self.names, role)]

    async def create_indexes(self) -> None:
        """Create every index the store reads through (idempotent)."""
        for role, indexes in INDEXES.items():
            for index in indexes:
                self.round_trips += 1
                try:
                    await self._collection(role).create_indexes([index])
                except OperationFailure as error:
                    if error.code != _INDEX_OPTIONS_CONFLICT:
                        raise

    async def aggregate(self, role: Role, pipeline: list[Document], *, batch_size: int | None = None) -> list[Document]:
        """Run `pipeline` on the server; its result documents."""
        self.round_trips += 1
        options: dict[str, Any] = {} if batch_size is None else {"batchSize": batch_size}
        cursor = await self._collection(role).aggregate(pipeline, **options)
        rows: list[Document] = await cursor.to_list(None)
        return rows

    async def replace(self, role: Role, replacements: Sequence[ReplaceOne[Document]]) -> None:
        """Upsert whole documents in one unordered bulk write (nothing is sent when there are none)."""
        if replacements:
            self.round_trips += 1
            await self._collection(role).bulk_write(list(replacements), ordered=False)

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
