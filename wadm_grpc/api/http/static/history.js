// The candle history joined with the live trades, each trade counted exactly once.
//
// The page subscribes first and reads the candles once the stream is live, buffering the live trades
// meanwhile. A buffered trade may or may not be in the candles' answer (it was stored just before or
// just after the read; a cached answer may be older still), and the answer does not say. So the last
// candle, the one live trades land in, is rebuilt from its bucket's stored trades (ListTrades, read
// after the candles) joined with the live ones by exchange and trade id; the ids are kept so that a
// trade delivered live after that read is not counted again. Older buckets are final and not touched.
import { TIMEFRAME_MS, bucketOpenMs, candleFromTrades, timeMs, tradeKey } from "./candles.js";

const PAGE_SIZE = 1000;
// Buckets of more trades keep the server's candle (see `settle`); 1m buckets are far below this.
export const MAX_BUCKET_PAGES = 10;

// The trades stored in the bucket opening at `openMs`: {trades, complete}, `complete` false when the
// bucket has more than MAX_BUCKET_PAGES pages (then `trades` are its newest ones).
async function bucketTrades(getJson, symbol, timeframe, openMs) {
  const query = new URLSearchParams({
    start_time: new Date(openMs).toISOString(),
    end_time: new Date(openMs + TIMEFRAME_MS[timeframe] - 1).toISOString(),
    page_size: String(PAGE_SIZE),
  });
  const trades = [];
  for (let page = 0; page < MAX_BUCKET_PAGES; page += 1) {
    const body = await getJson(`/api/v1/market/trades/${encodeURIComponent(symbol)}?${query}`);
    trades.push(...(body.trades || []));
    if (!body.next_page_token) return { trades, complete: true };
    query.set("page_token", body.next_page_token);
  }
  return { trades, complete: false };
}

// The trades of one bucket already counted in its candle, by exchange and trade id.
export class CountedBucket {
  constructor(openMs, keys) {
    this.openMs = openMs;
    this.keys = keys;
  }

  // True (and remembered) when `trade` is new to the candle; false for a trade counted already.
  admit(trade, timeframe) {
    if (bucketOpenMs(timeMs(trade.time), timeframe) !== this.openMs) return true;
    const key = tradeKey(trade);
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    return true;
  }
}

// Rebuilds the last of `candles` (in place) from its stored trades and the buffered live ones in
// `pending` (read when this returns: it may grow meanwhile). Returns the CountedBucket of that candle,
// or null when there is nothing to settle (no candles). A bucket too large to list keeps the server's
// candle and gets the buffered trades the newest stored pages do not hold: exact unless one was stored
// between the two reads.
export async function settle(candles, pending, { getJson, symbol, timeframe }) {
  const last = candles[candles.length - 1];
  if (!last) return null;
  const { trades, complete } = await bucketTrades(getJson, symbol, timeframe, last.openMs);
  const counted = new CountedBucket(last.openMs, new Set(trades.map(tradeKey)));
  if (complete) {
    const joined = [...trades];
    for (const trade of pending) {
      if (sameBucket(trade, last, timeframe) && counted.admit(trade, timeframe)) joined.push(trade);
    }
    if (joined.length) candles[candles.length - 1] = candleFromTrades(last.openMs, joined, last.closed);
    pending.splice(0, pending.length, ...pending.filter((t) => !sameBucket(t, last, timeframe)));
  } else {
    pending.splice(0, pending.length, ...pending.filter((t) => counted.admit(t, timeframe)));
  }
  return counted;
}

function sameBucket(trade, candle, timeframe) {
  return bucketOpenMs(timeMs(trade.time), timeframe) === candle.openMs;
}
