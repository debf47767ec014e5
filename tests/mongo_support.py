"""Test code only: run the AsyncMongoClient-based store on mongomock, and open real-server stores.

mongomock is synchronous and imitates pymongo's blocking API, so a thin async adapter exposes the few
AsyncMongoClient/AsyncCollection methods the store calls. Where mongomock lacks something MongoDB certainly
does, tests/mongo_shims.py emulates the server's documented behaviour (shims 1-5, 9, 10); the adapter adds:

6. bulk_write([ReplaceOne(..., upsert=True)]): mongomock 4.3 breaks on pymongo >= 4.11's `sort` argument
   (mongomock issue 912), so the adapter applies the replacements itself.
7. Unique indexes: mongomock checks them by scanning the collection on every insert (quadratic time), so the
   adapter enforces them itself, once per bulk call, reporting duplicates as MongoDB does (E11000 write errors
   of an unordered insert_many; the other documents are inserted).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import mongomock
import pytest
from bson import ObjectId
from mongomock import aggregate as mongomock_aggregate
from mongomock import helpers as mongomock_helpers
from pymongo import AsyncMongoClient, IndexModel, ReplaceOne, monitoring
from pymongo.errors import BulkWriteError

from tests.mongo_shims import DECIMAL128_ARITHMETIC, NumericDecimal128, candidates, numeric, stored
from wadm_grpc.stores.mongo import MongoTradeStore

__all__ = ["DECIMAL128_ARITHMETIC", "NumericDecimal128"]

MONGODB_URI = os.environ.get("MONGODB_URI", "")
NO_SERVER = "MONGODB_URI is not set: no real MongoDB server to run the Mongo store against (make test-mongo)"


# -- the async adapter ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A command the store sent, as the server received it (name, collection, pipeline if an aggregate)."""

    name: str
    collection: str
    pipeline: list[Any] | None = None

    @property
    def stages(self) -> list[str]:
        """The aggregate's stage names, sub-pipelines ($unionWith) included."""
        names: list[str] = []
        for stage in self.pipeline or []:
            (name, options), *_ = stage.items()
            names.append(name)
            if name == "$unionWith":
                names += Command(self.name, options["coll"], options.get("pipeline", [])).stages
        return names


class _Cursor:
    def __init__(self, documents: list[Any]) -> None:
        self._documents = documents

    async def to_list(self, length: int | None) -> list[Any]:
        return self._documents if length is None else self._documents[:length]


class AsyncMongomockCollection:
    """The AsyncCollection methods the store and tests use, over a mongomock collection."""

    def __init__(self, collection: mongomock.Collection, log: list[Command]) -> None:
        self.sync = collection
        self.unique: list[tuple[str, ...]] = []  # shim 7
        self._log = log

    def _sent(self, name: str, pipeline: list[Any] | None = None) -> None:
        self._log.append(Command(name, self.sync.name, pipeline))

    async def create_indexes(self, indexes: list[IndexModel]) -> list[str]:
        self._sent("createIndexes")
        names = []
        for index in indexes:
            spec = index.document
            keys = list(spec["key"].items())
            if spec.get("unique"):
                fields = tuple(name for name, _ in keys)
                if fields not in self.unique:
                    self.unique.append(fields)
                names.append("_".join(f"{name}_1" for name in fields))
            else:
                names.append(self.sync.create_index(keys))
        return names

    def _keys(self, fields: tuple[str, ...]) -> dict[tuple[Any, ...], Any]:
        return {tuple(d.get(f) for f in fields): d["_id"] for d in stored(self.sync)}

    async def aggregate(self, pipeline: list[Any], **unused: Any) -> _Cursor:
        self._sent("aggregate", pipeline)
        naive = mongomock_helpers.patch_datetime_awareness_in_document(numeric(pipeline))
        rows = mongomock_aggregate.process_pipeline(candidates(self.sync, naive), self.sync.database, naive, None)
        return _Cursor([mongomock_helpers.make_datetime_timezone_aware_in_document(row) for row in rows])

    async def insert_many(self, documents: list[Any], ordered: bool = True) -> None:
        self._sent("insert")
        taken = [set(self._keys(fields)) for fields in self.unique]
        accepted, errors = [], []
        for index, document in enumerate(documents):
            keys = [tuple(document.get(f) for f in fields) for fields in self.unique]
            if any(key in seen for key, seen in zip(keys, taken, strict=True)):
                errors.append({"index": index, "code": 11000, "errmsg": "E11000 duplicate key error", "op": document})
                if ordered:
                    break
                continue
            for key, seen in zip(keys, taken, strict=True):
                seen.add(key)
            accepted.append(numeric(document))
        if accepted:
            self.sync.insert_many(accepted)
        if errors:
            raise BulkWriteError({"writeErrors": errors, "nInserted": len(accepted)})

    async def insert_one(self, document: Any) -> None:
        await self.insert_many([document])

    async def bulk_write(self, requests: list[ReplaceOne[Any]], ordered: bool = True) -> None:
        self._sent("update")  # what MongoDB receives for replacements
        fields = tuple(requests[0]._filter)
        assert fields in self.unique, "replacements are keyed by a unique index"
        existing = self._keys(fields)
        replaced = {}
        for request in requests:  # shim 6
            assert isinstance(request, ReplaceOne) and request._upsert and tuple(request._filter) == fields
            key = tuple(request._filter[f] for f in fields)
            replaced[key] = {**numeric(request._doc), "_id": existing.get(key, ObjectId())}
        old = [existing[key] for key in replaced if key in existing]
        if old:
            self.sync.delete_many({"_id": {"$in": old}})
        self.sync.insert_many(list(replaced.values()))

    async def count_documents(self, query: Any) -> int:
        self._sent("aggregate", [{"$match": query}, {"$group": {"_id": 1, "n": {"$sum": 1}}}])
        return int(self.sync.count_documents(numeric(query)))

    async def find_one(self, query: Any) -> Any:
        self._sent("find")
        return self.sync.find_one(numeric(query))

    async def delete_many(self, query: Any) -> Any:
        self._sent("delete")
        return self.sync.delete_many(numeric(query))

    async def update_one(self, query: Any, update: Any, upsert: bool = False) -> None:
        self._sent("update")
        self.sync.update_one(numeric(query), numeric(update), upsert=upsert)

    def find(self, query: Any | None = None) -> _Cursor:
        """A cursor over the matching documents (sorted by _id)."""
        return _Cursor(list(self.sync.find(numeric(query or {})).sort("_id", 1)))


class AsyncMongomockDatabase:
    def __init__(self, database: mongomock.Database, log: list[Command]) -> None:
        self._database = database
        self._log = log
        self._collections: dict[str, AsyncMongomockCollection] = {}

    @property
    def name(self) -> str:
        return str(self._database.name)

    def __getitem__(self, name: str) -> AsyncMongomockCollection:
        if name not in self._collections:
            self._collections[name] = AsyncMongomockCollection(self._database[name], self._log)
        return self._collections[name]


class AsyncMongomockClient:
    """What MongoTradeStore needs of an AsyncMongoClient, on mongomock; `log` records every command."""

    def __init__(self) -> None:
        self._client = mongomock.MongoClient(tz_aware=True)
        self._databases: dict[str, AsyncMongomockDatabase] = {}
        self.log: list[Command] = []

    def __getitem__(self, name: str) -> AsyncMongomockDatabase:
        if name not in self._databases:
            self._databases[name] = AsyncMongomockDatabase(self._client[name], self.log)
        return self._databases[name]

    async def close(self) -> None:
        self._client.close()


class _Listener(monitoring.CommandListener):
    """Records the commands a real client sends to one database."""

    def __init__(self, database: str, log: list[Command]) -> None:
        self._database = database
        self._log = log

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name == self._database:
            command = event.command
            pipeline = command.get("pipeline") if event.command_name == "aggregate" else None
            self._log.append(Command(event.command_name, str(command.get(event.command_name)), pipeline))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@dataclass
class Harness:
    """A started Mongo store, its database (to write as the collectors do) and the commands sent to it."""

    store: MongoTradeStore
    database: Any
    log: list[Command]

    def sent_since(self, mark: int) -> list[Command]:
        """Commands sent after the log had `mark` entries."""
        return self.log[mark:]


TEST_OPTIONS: dict[str, Any] = {"rescan_seconds": 0, "refresh_interval_seconds": None}


@asynccontextmanager
async def mongomock_store(**options: Any) -> AsyncIterator[Harness]:
    """A started store on a fresh mongomock client."""
    client = AsyncMongomockClient()
    store = MongoTradeStore(client, database="wadm", **(TEST_OPTIONS | options))  # type: ignore[arg-type]
    await store.start()
    try:
        yield Harness(store, client["wadm"], client.log)
    finally:
        await store.close()


@asynccontextmanager
async def mongodb_store(**options: Any) -> AsyncIterator[Harness]:
    """A started store on the real server at MONGODB_URI, in a database of its own, dropped afterwards."""
    if not MONGODB_URI:
        pytest.skip(NO_SERVER)
    name = f"wadm_test_{uuid.uuid4().hex[:16]}"
    log: list[Command] = []
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        MONGODB_URI, tz_aware=True, event_listeners=[_Listener(name, log)]
    )
    store = MongoTradeStore(client, database=name, close_client=False, **(TEST_OPTIONS | options))
    try:
        await store.start()
        yield Harness(store, client[name], log)
    finally:
        await store.close()
        await client.drop_database(name)
        await client.close()


REAL_SERVER = [pytest.mark.mongo_real, pytest.mark.skipif(not MONGODB_URI, reason=NO_SERVER)]
HARNESSES = [
    pytest.param(mongomock_store, id="mongomock"),
    pytest.param(mongodb_store, id="mongodb", marks=REAL_SERVER),
]
