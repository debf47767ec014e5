"""The MongoDB trade store (PyMongo async): reads the WADM collectors' trades, aggregates on the server."""

from wadm_grpc.stores.mongo.commands import CollectionNames
from wadm_grpc.stores.mongo.rollups import RefreshReport
from wadm_grpc.stores.mongo.store import MongoTradeStore

__all__ = ["CollectionNames", "MongoTradeStore", "RefreshReport"]
