"""Example: the last candles, 24h stats and a few live trades of a symbol.

.venv/bin/python clients/python/examples/watch_market.py BTCUSDT --target 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import asyncio

from wadm_client import WadmClient
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md


async def main(symbol: str, target: str, trades: int) -> None:
    async with WadmClient.connect(target) as client:
        candles = await client.get_candles(symbol, "1m", limit=5)
        print(f"{candles.symbol} 1m candles:")
        for candle in candles.candles:
            state = "closed" if candle.closed else "open  "
            print(
                f"  {candle.open_time.ToJsonString()} {state} O {candle.open} H {candle.high} L {candle.low} "
                f"C {candle.close} V {candle.volume} n={candle.trade_count}"
            )
        stats = await client.market.GetMarketStats(md.GetMarketStatsRequest(symbol=symbol))
        s = stats.stats
        print(f"24h: last {s.last_price} ({s.price_change_percent}%), volume {s.volume}, vwap {s.vwap}")
        print(f"next {trades} live trades:")
        stream = client.market.StreamTrades(md.StreamTradesRequest(symbols=[symbol]))
        seen = 0
        async for event in stream:
            for trade in event.trades.trades:
                side = "BUY " if trade.side == 1 else "SELL"
                print(f"  {trade.time.ToJsonString()} {trade.exchange:8} {side} {trade.quantity} @ {trade.price}")
                seen += 1
            if seen >= trades:
                stream.cancel()
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("symbol", nargs="?", default="BTCUSDT")
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--trades", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.symbol, args.target, args.trades))
