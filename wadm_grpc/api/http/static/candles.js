// Candles as the server defines them (UTC buckets, weeks from Monday), and the in-progress candle
// updated from live trades with exact decimals.
import { addDecimal, compareDecimal, scaleOf, withScale } from "./decimal.js";

const MINUTE_MS = 60000;
export const TIMEFRAME_MS = {
  "1m": MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS, "30m": 30 * MINUTE_MS,
  "1h": 60 * MINUTE_MS, "4h": 240 * MINUTE_MS, "1d": 1440 * MINUTE_MS, "1w": 10080 * MINUTE_MS,
};
// 1970-01-01 was a Thursday; weeks start on Monday 1970-01-05, as the server's (and Binance's) do.
const WEEK_ANCHOR_MS = 4 * 1440 * MINUTE_MS;

export function timeMs(rfc3339) {
  // Date.parse is only specified for milliseconds: cut microseconds/nanoseconds off first.
  return Date.parse(rfc3339.replace(/(\.\d{3})\d+/, "$1"));
}

function bucketOpenMs(ms, timeframe) {
  const interval = TIMEFRAME_MS[timeframe];
  const anchor = timeframe === "1w" ? WEEK_ANCHOR_MS : 0;
  return ms - ((((ms - anchor) % interval) + interval) % interval);
}

export function candleFromApi(c) {
  return {
    openMs: timeMs(c.open_time), open: c.open, high: c.high, low: c.low, close: c.close,
    volume: c.volume, tradeCount: Number(c.trade_count), closed: c.closed,
  };
}

// Adds `trade` to the candle of its bucket in `candles` (ascending open time, at most `limit` kept).
export function applyTrade(candles, trade, timeframe, limit) {
  const openMs = bucketOpenMs(timeMs(trade.time), timeframe);
  let index = candles.length - 1;
  while (index >= 0 && candles[index].openMs > openMs) index -= 1;
  if (index >= 0 && candles[index].openMs === openMs) {
    const c = candles[index];
    const scale = Math.max(scaleOf(c.open), scaleOf(trade.price));
    const price = withScale(trade.price, scale);
    c.open = withScale(c.open, scale);
    c.high = withScale(compareDecimal(price, c.high) > 0 ? price : c.high, scale);
    c.low = withScale(compareDecimal(price, c.low) < 0 ? price : c.low, scale);
    // Trades of a symbol arrive in ingest order: the latest one closes the candle.
    c.close = withScale(index === candles.length - 1 ? price : c.close, scale);
    c.volume = addDecimal(c.volume, trade.quantity);
    c.tradeCount += 1;
    return;
  }
  if (index < 0 && candles.length >= limit) return; // older than anything shown
  const p = trade.price;
  candles.splice(index + 1, 0, {
    openMs, open: p, high: p, low: p, close: p, volume: trade.quantity, tradeCount: 1, closed: false,
  });
  if (candles.length > limit) candles.shift();
}
