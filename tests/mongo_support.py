"""Test code only: started Mongo stores, on mongomock (tests/mongomock_adapter.py, with the emulator shims of
tests/mongo_shims.py) or on the real server at MONGODB_URI.

The real-server suite works inside the database the environment names (MONGODB_DATABASE, else the URI's
database, else "wadm_test"), since a managed user may own one database only: every store there gets
collections of its own (a unique prefix), dropped afterwards, so runs share that database safely.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.uri_parser import parse_uri

from tests.mongo_shims import DECIMAL128_ARITHMETIC, NumericDecimal128
from tests.mongomock_adapter import AsyncMongomockClient, Command
from wadm_grpc.stores.mongo import CollectionNames, MongoTradeStore

__all__ = ["DECIMAL128_ARITHMETIC", "Command", "NumericDecimal128"]

MONGODB_URI = os.environ.get("MONGODB_URI", "")
NO_SERVER = "MONGODB_URI is not set: no real MongoDB server to run the Mongo store against (make test-mongo)"


def server_database() -> str:
    """The one database the real-server suite works in (see the module docstring)."""
    named = os.environ.get("MONGODB_DATABASE") or (parse_uri(MONGODB_URI).get("database") if MONGODB_URI else None)
    return named or "wadm_test"


def prefixed_names(prefix: str) -> CollectionNames:
    """The store's collections under `prefix` (the collectors' `trades` too)."""
    defaults = CollectionNames()
    return CollectionNames(
        trades=f"{prefix}trades",
        rollups=f"{prefix}{defaults.rollups}",
        markets=f"{prefix}{defaults.markets}",
        state=f"{prefix}{defaults.state}",
        dirty=f"{prefix}{defaults.dirty}",
    )


class _Listener(monitoring.CommandListener):
    """Records the commands a real client sends to one prefix's collections."""

    def __init__(self, database: str, prefix: str, log: list[Command]) -> None:
        self._database = database
        self._prefix = prefix
        self._log = log

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = str(event.command.get(event.command_name))
        if event.database_name == self._database and target.startswith(self._prefix):
            command = event.command
            pipeline = command.get("pipeline") if event.command_name == "aggregate" else None
            self._log.append(Command(event.command_name, target.removeprefix(self._prefix), pipeline))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class PrefixedDatabase:
    """The shared database as tests use it: `db["trades"]` is this run's prefixed collection."""

    def __init__(self, database: Any, prefix: str) -> None:
        self._database = database
        self._prefix = prefix

    def __getitem__(self, name: str) -> Any:
        return self._database[name if name.startswith(self._prefix) else f"{self._prefix}{name}"]


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
# Opens another started store on the same database (several processes' stores): options -> store.
OpenStore = Callable[..., Awaitable[MongoTradeStore]]


@asynccontextmanager
async def mongomock_database() -> AsyncIterator[tuple[Any, list[Command], OpenStore]]:
    """A fresh mongomock database, its command log, and an opener of started stores on it."""
    client = AsyncMongomockClient()
    async with AsyncExitStack() as stores:

        async def open_store(**options: Any) -> MongoTradeStore:
            store = MongoTradeStore(client, database="wadm", close_client=False, **(TEST_OPTIONS | options))  # type: ignore[arg-type]
            await store.start()
            stores.push_async_callback(store.close)
            return store

        yield client["wadm"], client.log, open_store


@asynccontextmanager
async def mongodb_database() -> AsyncIterator[tuple[Any, list[Command], OpenStore]]:
    """Collections of their own in the real server's test database, dropped afterwards; an opener of started
    stores on them (each on its own client, as separate processes would be)."""
    if not MONGODB_URI:
        pytest.skip(NO_SERVER)
    name, prefix = server_database(), f"t{uuid.uuid4().hex[:12]}_"
    names = prefixed_names(prefix)
    log: list[Command] = []
    admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        MONGODB_URI, tz_aware=True, event_listeners=[_Listener(name, prefix, log)]
    )
    try:
        async with AsyncExitStack() as stores:

            async def open_store(**options: Any) -> MongoTradeStore:
                client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                    MONGODB_URI, tz_aware=True, event_listeners=[_Listener(name, prefix, log)]
                )
                store = MongoTradeStore(client, database=name, collections=names, **(TEST_OPTIONS | options))
                stores.push_async_callback(store.close)
                await store.start()
                return store

            yield PrefixedDatabase(admin[name], prefix), log, open_store
    finally:
        for collection in (names.trades, names.rollups, names.markets, names.state, names.dirty):
            await admin[name].drop_collection(collection)
        await admin.close()


def _store_in(database: Callable[[], Any]) -> Callable[..., Any]:
    @asynccontextmanager
    async def opened(**options: Any) -> AsyncIterator[Harness]:
        async with database() as (db, log, open_store):
            store = await open_store(**options)
            await store.caught_up()
            yield Harness(store, db, log)

    return opened


mongomock_store = _store_in(mongomock_database)
mongodb_store = _store_in(mongodb_database)
REAL_SERVER = [pytest.mark.mongo_real, pytest.mark.skipif(not MONGODB_URI, reason=NO_SERVER)]
HARNESSES = [
    pytest.param(mongomock_store, id="mongomock"),
    pytest.param(mongodb_store, id="mongodb", marks=REAL_SERVER),
]
DATABASES = [
    pytest.param(mongomock_database, id="mongomock"),
    pytest.param(mongodb_database, id="mongodb", marks=REAL_SERVER),
]
