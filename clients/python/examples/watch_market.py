"""Example: the last candles, 24h stats and a few live trades of a symbol (asyncio client).

python clients/python/examples/watch_market.py BTCUSDT --target 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import asyncio

from wadm_client import WadmClient


async def main(symbol: str, target: str, trades: int) -> None:
    async with WadmClient.connect(target) as client:
        candles = await client.get_candles(symbol, "1m", limit=5)
        print(f"{candles.symbol} 1m candles:")
        for candle in candles:
            state = "closed" if candle.closed else "open  "
            print(
                f"  {candle.open_time:%Y-%m-%d %H:%M} {state} O {candle.open} H {candle.high} L {candle.low} "
                f"C {candle.close} V {candle.volume} n={candle.trade_count}"
            )
        s = await client.get_market_stats(symbol)
        print(f"24h: last {s.last_price} ({s.price_change_percent}%), volume {s.volume}, vwap {s.vwap}")
        print(f"next {trades} live trades:")
        seen = 0
        async for trade in client.stream_trades([symbol]):
            print(f"  {trade.time:%H:%M:%S.%f} {trade.exchange:8} {trade.side:4} {trade.quantity} @ {trade.price}")
            seen += 1
            if seen >= trades:
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("symbol", nargs="?", default="BTCUSDT")
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--trades", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.symbol, args.target, args.trades))
