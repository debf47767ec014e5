"""Resume tokens on one server: SubscribeTrades' first subscribe resumes like StreamTrades does; a forged
token is INVALID_ARGUMENT naming resume_token."""

from __future__ import annotations

import grpc
import pytest

from tests.api.test_subscribe_trades import Call, acknowledged, batch, keys, next_event, subscribe
from tests.conftest import Running
from wadm_client import error_details
from wadm_grpc.domain.trade import Trade
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

Key = tuple[str, str, str]


async def receive_with_token(call: Call, count: int) -> tuple[list[Key], str]:
    got: list[Key] = []
    token = ""
    while len(got) < count:
        message = await next_event(call)
        assert message.WhichOneof("event") == "trades", message
        got += [(t.symbol, t.exchange, t.trade_id) for t in message.trades.trades]
        token = message.resume_token
    assert token
    return got, token


def only(trades: list[Trade], symbol: str) -> list[Trade]:
    return [t for t in trades if t.symbol == symbol]


async def test_the_first_subscribe_resumes_from_a_token_with_nothing_lost_or_twice(served: Running) -> None:
    first: Call = served.client.market.SubscribeTrades()
    await first.write(subscribe("BTCUSDT"))
    assert await acknowledged(first) == ["BTCUSDT"]
    seen = batch(71, 60, "BTCUSDT", "ETHUSDT")
    await served.bus.publish(seen)
    got, token = await receive_with_token(first, len(only(seen, "BTCUSDT")))
    assert got == keys(only(seen, "BTCUSDT"))
    first.cancel()

    missed = batch(72, 60, "BTCUSDT", "ETHUSDT")
    await served.bus.publish(missed)
    again: Call = served.client.market.SubscribeTrades()
    resume = subscribe("BTCUSDT")
    resume.subscribe.resume_token = token
    await again.write(resume)
    assert await acknowledged(again) == ["BTCUSDT"]
    live = batch(73, 60, "BTCUSDT", "ETHUSDT")
    await served.bus.publish(live)
    wanted = only(missed, "BTCUSDT") + only(live, "BTCUSDT")
    got, _ = await receive_with_token(again, len(wanted))
    assert got == keys(wanted)

    later = subscribe("ETHUSDT")
    later.subscribe.resume_token = token  # only the first subscribe may resume
    await again.write(later)
    refused = await next_event(again)
    assert refused.WhichOneof("event") == "error"
    assert refused.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    again.cancel()


async def test_a_forged_resume_token_is_invalid_argument_naming_the_field(served: Running) -> None:
    stream = served.client.market.StreamTrades(
        md.StreamTradesRequest(symbols=["BTCUSDT"], resume_token="eyJ4Ijox.fake")
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(error_details(caught.value).field_violations) == {"resume_token"}
