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

export function bucketOpenMs(ms, timeframe) {
  const interval = TIMEFRAME_MS[timeframe];
  const anchor = timeframe === "1w" ? WEEK_ANCHOR_MS : 0;
  return ms - ((((ms - anchor) % interval) + interval) % interval);
}

// Nanoseconds since the epoch (BigInt): orders trades exactly, whatever fraction digits the times carry.
export function timeNs(rfc3339) {
  const match = /^(.*?)(?:\.(\d{1,9}))?Z$/.exec(rfc3339);
  if (!match) return BigInt(timeMs(rfc3339)) * 1000000n;
  return BigInt(Date.parse(`${match[1]}Z`)) * 1000000n + BigInt((match[2] || "").padEnd(9, "0"));
}

// A trade's identity: ids are unique per exchange.
export function tradeKey(trade) {
  return `${trade.exchange}\u0000${trade.trade_id}`;
}

// The server's order within a candle: time, then trade id.
function byTimeThenId(a, b) {
  const [x, y] = [timeNs(a.time), timeNs(b.time)];
  if (x !== y) return x < y ? -1 : 1;
  return a.trade_id < b.trade_id ? -1 : a.trade_id > b.trade_id ? 1 : 0;
}

// The candle opening at `openMs` computed from all of its trades (at least one), as the server does.
export function candleFromTrades(openMs, trades, closed) {
  const sorted = [...trades].sort(byTimeThenId);
  const scale = Math.max(...sorted.map((t) => scaleOf(t.price)));
  let [high, low, volume] = [sorted[0].price, sorted[0].price, "0"];
  for (const t of sorted) {
    if (compareDecimal(t.price, high) > 0) high = t.price;
    if (compareDecimal(t.price, low) < 0) low = t.price;
    volume = addDecimal(volume, t.quantity);
  }
  return {
    openMs, open: withScale(sorted[0].price, scale), high: withScale(high, scale), low: withScale(low, scale),
    close: withScale(sorted[sorted.length - 1].price, scale), volume, tradeCount: sorted.length, closed,
  };
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
