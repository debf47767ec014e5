"""Test code only: the async adapter that runs the AsyncMongoClient-based store on mongomock.

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

from dataclasses import dataclass
from typing import Any

import mongomock
from bson import ObjectId
from mongomock import aggregate as mongomock_aggregate
from mongomock import helpers as mongomock_helpers
from pymongo import IndexModel, ReplaceOne
from pymongo.errors import BulkWriteError, OperationFailure

from tests.mongo_shims import candidates, numeric, stored

# -- the async adapter ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A command the store sent, as the server received it (name, collection, pipeline if an aggregate)."""

    name: str
    collection: str
    pipeline: list[Any] | None = None
    hint: str | None = None

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
                self._refuse_unique_index(spec["name"], fields)
                if fields not in self.unique:
                    self.unique.append(fields)
                names.append("_".join(f"{name}_1" for name in fields))
            else:
                names.append(self.sync.create_index(keys))
        return names

    def _refuse_unique_index(self, name: str, fields: tuple[str, ...]) -> None:
        """As a server refuses a unique index: code 86 when a same-named index is not unique, E11000 when
        documents share a key."""
        existing = self.sync.index_information().get(name)
        if existing is not None and not existing.get("unique"):
            raise OperationFailure(f"An existing index has the same name as the requested index: {name}", code=86)
        seen: set[tuple[Any, ...]] = set()
        for document in stored(self.sync):
            key = tuple(document.get(f) for f in fields)
            if key in seen:
                raise OperationFailure(f"E11000 duplicate key error index: {name} dup key: {key}", code=11000)
            seen.add(key)

    def _keys(self, fields: tuple[str, ...]) -> dict[tuple[Any, ...], Any]:
        return {tuple(d.get(f) for f in fields): d["_id"] for d in stored(self.sync)}

    async def aggregate(self, pipeline: list[Any], **options: Any) -> _Cursor:
        self._log.append(Command("aggregate", self.sync.name, pipeline, options.get("hint")))
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
        """Upserting replacements keyed by a unique index (or _id), optionally fenced by
        `{generation: {$not: {$gt: g}}}`: a key whose document has a newer generation is refused with E11000,
        as the server's upsert would be (shim 6)."""
        self._sent("update")  # what MongoDB receives for replacements
        fields = tuple(f for f in requests[0]._filter if f != "generation")
        assert fields == ("_id",) or fields in self.unique, "replacements are keyed by a unique index"
        existing = {tuple(d.get(f) for f in fields): d for d in stored(self.sync)}
        replaced, errors = {}, []
        for index, request in enumerate(requests):
            assert isinstance(request, ReplaceOne) and request._upsert
            assert tuple(f for f in request._filter if f != "generation") == fields
            key = tuple(request._filter[f] for f in fields)
            old = existing.get(key)
            fence = request._filter.get("generation")
            if fence is not None and old is not None and old.get("generation", 0) > fence["$not"]["$gt"]:
                errors.append({"index": index, "code": 11000, "errmsg": "E11000 duplicate key error"})
                continue
            replaced[key] = {
                **numeric(request._doc),
                "_id": old["_id"] if old else key[0] if fields == ("_id",) else ObjectId(),
            }
        old_ids = [existing[key]["_id"] for key in replaced if key in existing]
        if old_ids:
            self.sync.delete_many({"_id": {"$in": old_ids}})
        if replaced:
            self.sync.insert_many(list(replaced.values()))
        if errors:
            raise BulkWriteError({"writeErrors": errors, "nUpserted": len(replaced)})

    async def find_one_and_update(self, query: Any, update: Any, **options: Any) -> Any:
        self._sent("findAndModify")
        return self.sync.find_one_and_update(numeric(query), numeric(update), **options)

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
