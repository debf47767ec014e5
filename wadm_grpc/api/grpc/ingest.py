"""TradeIngestService servicer: PublishTrades, a client stream of trade batches."""

from __future__ import annotations

from collections.abc import AsyncIterator

from wadm_grpc.api.grpc import convert
from wadm_grpc.api.grpc.errors import Context, unary
from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc
from wadm_grpc.services.ingest import IngestService


class TradeIngestServicer(ingest_grpc.TradeIngestServiceServicer):
    """gRPC face of ingest."""

    def __init__(self, *, ingest: IngestService) -> None:
        self._ingest = ingest

    @unary
    async def PublishTrades(
        self, request_iterator: AsyncIterator[ingest_pb.PublishTradesRequest], context: Context
    ) -> ingest_pb.PublishTradesResponse:
        accepted = duplicates = batches = 0
        async for request in request_iterator:
            batches += 1
            try:
                result = await self._ingest.publish_trades([convert.trade_input(t) for t in request.trades])
            except InvalidArgumentError as error:
                raise InvalidArgumentError(
                    error.violations,
                    f"message {batches} of the stream was rejected, nothing of it was stored "
                    f"(earlier messages were: {accepted} accepted, {duplicates} duplicates): {error}",
                ) from error
            accepted += result.accepted
            duplicates += result.duplicates
        return ingest_pb.PublishTradesResponse(accepted_count=accepted, duplicate_count=duplicates, batch_count=batches)
