"""The composition root picks the store, cache and bus the settings name."""

from __future__ import annotations

from pathlib import Path

import pytest

from wadm_grpc.bootstrap import build_cache, build_store
from wadm_grpc.cache.memory import MemoryCache
from wadm_grpc.cache.tiered import TieredCache
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.ports import LoopFreeReads
from wadm_grpc.stores.duckdb import DuckDBTradeStore
from wadm_grpc.stores.mongo import MongoTradeStore


async def test_a_mongodb_uri_selects_the_mongo_store(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[MongoTradeStore] = []

    async def start(self: MongoTradeStore) -> None:  # no server here: record instead of connecting
        started.append(self)

    monkeypatch.setattr(MongoTradeStore, "start", start)
    settings = Settings(store="mongodb://db.invalid:27017/", mongo_database="markets", mongo_collection="fills")

    first = await build_store(settings)
    second = await build_store(settings, worker=1)

    assert isinstance(first, MongoTradeStore)
    assert started == [first, second]
    assert first._commands.names.trades == "fills"
    assert first._commands._database.name == "markets"
    assert first._refresh_interval is not None
    assert second._refresh_interval is None  # only worker 0 rolls up collectors' inserts
    await first.close()
    await second.close()


async def test_the_default_is_the_embedded_store(tmp_path: Path) -> None:
    store = await build_store(Settings(store=f"duckdb:{tmp_path / 'w.duckdb'}"))
    assert isinstance(store, DuckDBTradeStore)
    await store.close()


def test_the_cache_is_memory_alone_without_redis_and_tiered_with_it() -> None:
    clock = ManualClock(0)
    memory_only, _ = build_cache(Settings(), clock)
    with_redis, closers = build_cache(Settings(redis_url="redis://127.0.0.1:1/0"), clock)
    disabled, _ = build_cache(Settings(cache_enabled=False), clock)

    assert isinstance(memory_only._cache, MemoryCache)
    assert isinstance(with_redis._cache, TieredCache)
    assert len(closers) == 1
    assert not disabled.enabled


async def test_only_a_store_on_threads_of_its_own_is_read_off_the_servers_loop() -> None:
    # GatedTradeStore sends reads back to the server's loop unless the store says it needs no loop of its
    # own (PyMongo's client is bound to the loop it was made on; DuckDB reads on its reader threads).
    embedded = DuckDBTradeStore(":memory:")
    assert isinstance(embedded, LoopFreeReads)
    await embedded.close()
    assert not isinstance(MongoTradeStore.__new__(MongoTradeStore), LoopFreeReads)
