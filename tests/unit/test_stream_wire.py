"""Pre-encoded StreamTrades messages are byte-identical to protobuf's own serialisation."""

from __future__ import annotations

from tests.support import make_trades
from wadm_grpc.api.grpc import convert
from wadm_grpc.api.grpc.stream_wire import TradeBatchEncoder, serialize_response
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md


def test_encoded_batches_equal_serialised_messages() -> None:
    trades = make_trades(seed=5, count=300, start_us=1_700_000_000_000_000, spacing_us=1, exchanges=("a", "bb"))
    encoder = TradeBatchEncoder(cache_trades=100)  # smaller than the batches: evictions re-encode

    for batch in (trades[:1], trades, trades[50:250], trades):
        expected = md.StreamTradesResponse(trades=md.TradeBatch(trades=[convert.trade(t) for t in batch]))
        assert encoder.encode(batch) == expected.SerializeToString()


def test_the_serializer_passes_bytes_and_serialises_messages() -> None:
    beat = md.StreamTradesResponse(heartbeat=md.Heartbeat())
    assert serialize_response(b"\x0a\x00") == b"\x0a\x00"
    assert serialize_response(beat) == beat.SerializeToString()
