"""Example: candles and the order book with the blocking client.

python clients/python/examples/candles_sync.py BTCUSDT --target 127.0.0.1:50051
"""

from __future__ import annotations

import argparse

from wadm_client import WadmSyncClient


def main(symbol: str, target: str) -> None:
    with WadmSyncClient.connect(target) as client:
        for candle in client.get_candles(symbol, "1h", limit=3):
            print(f"{candle.open_time:%Y-%m-%d %H:%M} O {candle.open} C {candle.close} V {candle.volume}")
        book = client.get_orderbook(symbol, depth=3)
        print("bids:", ", ".join(f"{level.quantity} @ {level.price}" for level in book.bids))
        print("asks:", ", ".join(f"{level.quantity} @ {level.price}" for level in book.asks))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("symbol", nargs="?", default="BTCUSDT")
    parser.add_argument("--target", default="127.0.0.1:50051")
    args = parser.parse_args()
    main(args.symbol, args.target)
