"""AdminService servicer: this process's cache counters and stream figures."""

from __future__ import annotations

import os

from wadm_grpc.api.grpc.errors import Context, unary
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2 as admin_pb
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2_grpc as admin_grpc
from wadm_grpc.services.read_cache import ReadCache
from wadm_grpc.services.streaming import StreamService


class AdminServicer(admin_grpc.AdminServiceServicer):
    """gRPC face of operator information."""

    def __init__(self, *, cache: ReadCache, streams: StreamService) -> None:
        self._cache = cache
        self._streams = streams

    @unary
    async def GetStreamStats(
        self, request: admin_pb.GetStreamStatsRequest, context: Context
    ) -> admin_pb.GetStreamStatsResponse:
        stats = self._streams.stats()
        return admin_pb.GetStreamStatsResponse(
            live_streams=stats.live_streams, cut_off_streams=stats.cut_off_streams, process_id=os.getpid()
        )

    @unary
    async def GetCacheStats(
        self, request: admin_pb.GetCacheStatsRequest, context: Context
    ) -> admin_pb.GetCacheStatsResponse:
        stats = self._cache.stats()
        if stats is None:
            return admin_pb.GetCacheStatsResponse(enabled=False, process_id=os.getpid())
        return admin_pb.GetCacheStatsResponse(
            enabled=True,
            tiers=[
                admin_pb.CacheTierStats(
                    name=tier.name, hits=tier.hits, misses=tier.misses, errors=tier.errors, evictions=tier.evictions
                )
                for tier in stats.tiers
            ],
            fallbacks=stats.fallbacks,
            breaker_open=stats.breaker_open,
            loads=stats.loads,
            coalesced=stats.coalesced,
            invalidations=self._cache.invalidations,
            process_id=os.getpid(),
        )
