"""Page tokens are opaque, signed and bound to their query."""

from __future__ import annotations

import pytest

from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.services.page_tokens import PageTokens

QUERY = ["BTCUSDT", ["binance"], None, 5]


def test_a_token_opens_for_its_own_query() -> None:
    tokens = PageTokens(b"k")
    assert tokens.open(tokens.issue(QUERY, [1, "binance", "7"]), QUERY) == [1, "binance", "7"]


@pytest.mark.parametrize("token", ["", ".", "abc", "a.b.c", "e30.", "!!.??"])
def test_garbage_is_rejected(token: str) -> None:
    with pytest.raises(InvalidArgumentError, match="not a page token"):
        PageTokens(b"k").open(token, QUERY)


def test_another_key_or_another_query_is_rejected() -> None:
    token = PageTokens(b"k").issue(QUERY, [1])
    with pytest.raises(InvalidArgumentError, match="not a page token"):
        PageTokens(b"other").open(token, QUERY)
    with pytest.raises(InvalidArgumentError, match="different query"):
        PageTokens(b"k").open(token, ["ETHUSDT", ["binance"], None, 5])
