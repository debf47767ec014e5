// The live market page: candles from GET /api/v1/market/candles, trades live over the WebSocket
// /api/v1/market/ws/trades or, when that is unavailable, the NDJSON stream /api/v1/market/trades:stream.
// Prices and quantities stay the exact decimal strings the server sent; Number() is used for drawing only.
"use strict";

const CANDLE_LIMIT = 120;
const TAPE_ROWS = 60;
const RECONNECT_MAX_MS = 15000;
const MINUTE_MS = 60000;
const TIMEFRAME_MS = {
  "1m": MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS, "30m": 30 * MINUTE_MS,
  "1h": 60 * MINUTE_MS, "4h": 240 * MINUTE_MS, "1d": 1440 * MINUTE_MS, "1w": 10080 * MINUTE_MS,
};
// 1970-01-01 was a Thursday; weeks start on Monday 1970-01-05, as the server's (and Binance's) do.
const WEEK_ANCHOR_MS = 4 * 1440 * MINUTE_MS;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = {
  symbol: "",
  timeframe: params.get("timeframe") in TIMEFRAME_MS ? params.get("timeframe") : "1m",
  // "auto" tries the WebSocket first; "ndjson" or "websocket" forces one (handy behind odd proxies).
  transport: params.get("transport") || "auto",
  candles: [],
  generation: 0, // bumped on every symbol change: trades of the older symbol's stream are dropped
  view: 0, // bumped on every symbol or timeframe change: candles answered for an older view are dropped
  candlesLoaded: false,
  pending: [], // trades received while the candles load, applied once they are drawn
};

// ---- exact decimals (non-negative decimal strings, as the API sends) ----

function parseDecimal(text) {
  const [whole, fraction = ""] = text.split(".");
  return { digits: BigInt(whole + fraction), scale: fraction.length };
}

function aligned(a, b) {
  const scale = Math.max(a.scale, b.scale);
  return [a.digits * 10n ** BigInt(scale - a.scale), b.digits * 10n ** BigInt(scale - b.scale), scale];
}

function compareDecimal(x, y) {
  const [a, b] = aligned(parseDecimal(x), parseDecimal(y));
  return a < b ? -1 : a > b ? 1 : 0;
}

function scaleOf(text) {
  const point = text.indexOf(".");
  return point < 0 ? 0 : text.length - point - 1;
}

// The server writes a candle's prices at the precision of its most precise trade ("61230.1" beside
// "61234.50" becomes "61230.10"): the page does the same, so its in-progress candle reads as the server's.
function withScale(text, scale) {
  const missing = scale - scaleOf(text);
  if (missing <= 0) return text;
  return `${text}${scaleOf(text) === 0 ? "." : ""}${"0".repeat(missing)}`;
}

function addDecimal(x, y) {
  const [a, b, scale] = aligned(parseDecimal(x), parseDecimal(y));
  const digits = (a + b).toString().padStart(scale + 1, "0");
  return scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

// ---- time ----

function timeMs(rfc3339) {
  // Date.parse is only specified for milliseconds: cut microseconds/nanoseconds off first.
  return Date.parse(rfc3339.replace(/(\.\d{3})\d+/, "$1"));
}

function bucketOpenMs(ms, timeframe) {
  const interval = TIMEFRAME_MS[timeframe];
  const anchor = timeframe === "1w" ? WEEK_ANCHOR_MS : 0;
  return ms - ((((ms - anchor) % interval) + interval) % interval);
}

function clockText(rfc3339) {
  const match = /T(\d{2}:\d{2}:\d{2}(\.\d{1,3})?)/.exec(rfc3339);
  return match ? match[1] : rfc3339;
}

// ---- HTTP ----

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

function showMessage(text) {
  $("message").textContent = text;
}

function setLive(stateName, transport, text) {
  const live = $("live");
  live.dataset.state = stateName;
  live.dataset.transport = transport;
  live.textContent = text;
}

// ---- candles ----

function candleFromApi(c) {
  return {
    openMs: timeMs(c.open_time), open: c.open, high: c.high, low: c.low, close: c.close,
    volume: c.volume, tradeCount: Number(c.trade_count), closed: c.closed,
  };
}

async function loadCandles() {
  const view = state.view;
  state.candlesLoaded = false;
  const path = `/api/v1/market/candles/${encodeURIComponent(state.symbol)}/${state.timeframe}?limit=${CANDLE_LIMIT}`;
  try {
    const body = await getJson(path);
    if (view !== state.view) return;
    state.candles = (body.candles || []).map(candleFromApi);
    state.candlesLoaded = true;
    // Trades that arrived during the load: high/low/close are exact under replay; a trade already in
    // the answer would count twice in the volume, a window of one round trip.
    for (const trade of state.pending.splice(0)) applyTrade(trade);
    draw();
    showMessage("");
  } catch (error) {
    if (view === state.view) showMessage(`candles: ${error.message}`);
  }
}

function applyTrade(trade) {
  const openMs = bucketOpenMs(timeMs(trade.time), state.timeframe);
  const candles = state.candles;
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
  if (index < 0 && candles.length >= CANDLE_LIMIT) return; // older than anything shown
  const p = trade.price;
  candles.splice(index + 1, 0, {
    openMs, open: p, high: p, low: p, close: p, volume: trade.quantity, tradeCount: 1, closed: false,
  });
  if (candles.length > CANDLE_LIMIT) candles.shift();
}

function draw() {
  const canvas = $("chart");
  const candles = state.candles;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = Math.round(width * 0.45);
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  canvas.dataset.candles = String(candles.length);
  const last = candles[candles.length - 1];
  canvas.dataset.lastClose = last ? last.close : "";
  $("last-price").textContent = last ? last.close : "–";
  $("last-price").dataset.price = last ? last.close : "";
  $("candle-info").textContent = last
    ? `O ${last.open} H ${last.high} L ${last.low} C ${last.close} V ${last.volume} (${last.tradeCount} trades)`
    : "no candles";
  if (!candles.length) return;

  const axisWidth = 80;
  const padTop = 10;
  const padBottom = 22;
  const plotWidth = width - axisWidth;
  const plotHeight = height - padTop - padBottom;
  let low = Infinity;
  let high = -Infinity;
  for (const c of candles) {
    low = Math.min(low, Number(c.low));
    high = Math.max(high, Number(c.high));
  }
  if (high === low) { high += 1; low -= 1; }
  const y = (price) => padTop + ((high - Number(price)) / (high - low)) * plotHeight;
  // Candles sit at their time, so gaps show; a span too long for that (days of gap) falls back to order.
  const interval = TIMEFRAME_MS[state.timeframe];
  const firstMs = candles[0].openMs;
  const spanSlots = Math.round((last.openMs - firstMs) / interval) + 1;
  const byTime = spanSlots <= Math.max(4 * candles.length, 60);
  const slots = Math.max(byTime ? spanSlots : candles.length, 30);
  const slotOf = (c, i) => (byTime ? Math.round((c.openMs - firstMs) / interval) + slots - spanSlots : i + slots - candles.length);
  const step = plotWidth / slots;
  const body = Math.max(1, step * 0.7);
  const styles = getComputedStyle(document.documentElement);
  const up = styles.getPropertyValue("--up").trim() || "#26a69a";
  const down = styles.getPropertyValue("--down").trim() || "#ef5350";
  const muted = styles.getPropertyValue("--muted").trim() || "#7b8594";

  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = muted;
  ctx.strokeStyle = "#232a35";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {
    const price = low + ((high - low) * i) / 4;
    const lineY = Math.round(y(price)) + 0.5;
    ctx.beginPath(); ctx.moveTo(0, lineY); ctx.lineTo(plotWidth, lineY); ctx.stroke();
    ctx.fillText(price.toPrecision(8), plotWidth + 6, lineY + 4);
  }
  const labelEvery = Math.ceil(candles.length / 6);
  candles.forEach((c, i) => {
    const x = slotOf(c, i) * step + step / 2;
    const rising = compareDecimal(c.close, c.open) >= 0;
    ctx.strokeStyle = ctx.fillStyle = rising ? up : down;
    ctx.beginPath(); ctx.moveTo(Math.round(x) + 0.5, y(c.high)); ctx.lineTo(Math.round(x) + 0.5, y(c.low)); ctx.stroke();
    const top = y(rising ? c.close : c.open);
    ctx.fillRect(x - body / 2, top, body, Math.max(1, y(rising ? c.open : c.close) - top));
    if ((candles.length - 1 - i) % labelEvery === 0) {
      ctx.fillStyle = muted;
      ctx.fillText(new Date(c.openMs).toISOString().slice(11, 16), x - 14, height - 6);
    }
  });
}

// ---- trade tape ----

function addToTape(trade) {
  const row = document.createElement("tr");
  const buy = trade.side === "SIDE_BUY";
  row.className = buy ? "buy" : "sell";
  row.dataset.tradeId = trade.trade_id;
  row.dataset.price = trade.price;
  row.title = `${trade.exchange} trade ${trade.trade_id} at ${trade.time}`;
  // Several exchanges interleave: their clocks and delays differ, so times are not strictly ordered.
  for (const text of [clockText(trade.time), trade.exchange, buy ? "buy" : "sell", trade.price, trade.quantity]) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.appendChild(cell);
  }
  const tape = $("tape");
  tape.insertBefore(row, tape.firstChild);
  while (tape.childElementCount > TAPE_ROWS) tape.lastElementChild.remove();
}

function onTrades(trades, generation) {
  if (generation !== state.generation) return;
  for (const trade of trades) {
    if (trade.symbol !== state.symbol) continue;
    addToTape(trade);
    if (state.candlesLoaded) applyTrade(trade);
    else state.pending.push(trade);
  }
  if (state.candlesLoaded) draw();
}

// ---- live transports ----

const live = { socket: null, abort: null, retryMs: 500, timer: null, webSocketFailed: false };

function stopLive() {
  clearTimeout(live.timer);
  if (live.socket) { live.socket.onclose = null; live.socket.close(); live.socket = null; }
  if (live.abort) { live.abort.abort(); live.abort = null; }
}

function retryLater(generation) {
  if (generation !== state.generation) return;
  live.timer = setTimeout(() => startLive(generation), live.retryMs);
  live.retryMs = Math.min(live.retryMs * 2, RECONNECT_MAX_MS);
}

function startLive(generation) {
  stopLive();
  const useSocket = state.transport === "websocket" || (state.transport === "auto" && !live.webSocketFailed);
  if (useSocket) startWebSocket(generation);
  else startNdjson(generation);
}

function startWebSocket(generation) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/api/v1/market/ws/trades`);
  let subscribed = false;
  live.socket = socket;
  setLive("connecting", "websocket", "connecting (WebSocket)…");
  socket.onopen = () => socket.send(JSON.stringify({ op: "subscribe", symbols: [state.symbol] }));
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "subscribed") {
      subscribed = true;
      live.retryMs = 500;
      setLive("live", "websocket", `live: ${state.symbol} (WebSocket)`);
    } else if (message.type === "trades") {
      onTrades(message.trades, generation);
    } else if (message.type === "error") {
      showMessage(`live: ${(message.error && message.error.message) || "error"}`);
    }
  };
  socket.onclose = () => {
    live.socket = null;
    if (!subscribed && state.transport === "auto") {
      live.webSocketFailed = true; // no WebSocket here (an older server, a proxy): use the NDJSON stream
      startLive(generation);
      return;
    }
    setLive("error", "websocket", "disconnected; reconnecting…");
    retryLater(generation);
  };
}

async function startNdjson(generation) {
  const abort = new AbortController();
  live.abort = abort;
  setLive("connecting", "ndjson", "connecting (NDJSON stream)…");
  const path = `/api/v1/market/trades:stream?symbols=${encodeURIComponent(state.symbol)}`;
  try {
    const response = await fetch(path, { signal: abort.signal, headers: { Accept: "application/x-ndjson" } });
    if (!response.ok) {
      const status = await response.json().catch(() => ({}));
      throw new Error(status.message || `HTTP ${response.status}`);
    }
    // The gateway answers once the server has subscribed the stream: from here on no trade is missed.
    live.retryMs = 500;
    setLive("live", "ndjson", `live: ${state.symbol} (NDJSON stream)`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const lines = buffered.split("\n");
      buffered = lines.pop();
      for (const line of lines) {
        if (!line.trim()) continue;
        const message = JSON.parse(line);
        if (message.result && message.result.trades) onTrades(message.result.trades.trades || [], generation);
        else if (message.error) showMessage(`live: ${message.error.message}`);
      }
    }
  } catch (error) {
    if (abort.signal.aborted) return; // a newer selection replaced this stream
    showMessage(`live: ${error.message}`);
  }
  if (abort.signal.aborted) return;
  setLive("error", "ndjson", "disconnected; reconnecting…");
  retryLater(generation);
}

// ---- selection ----

function selectTimeframe() {
  state.timeframe = $("timeframe").value;
  state.view += 1;
  state.candles = [];
  state.pending = [];
  const query = new URLSearchParams(location.search);
  query.set("symbol", state.symbol);
  query.set("timeframe", state.timeframe);
  history.replaceState(null, "", `?${query}`);
  // The live stream stays: trades from now on are buffered until the new candles are drawn.
  loadCandles();
}

function selectSymbol() {
  state.symbol = $("symbol").value;
  state.generation += 1;
  $("tape").replaceChildren();
  // Subscribe first, then read the candles: trades in between are buffered, not lost.
  startLive(state.generation);
  selectTimeframe();
}

async function start() {
  $("timeframe").value = state.timeframe;
  let symbols;
  try {
    symbols = (await getJson("/api/v1/market/symbols")).symbols || [];
  } catch (error) {
    showMessage(`symbols: ${error.message}`);
    return;
  }
  if (!symbols.length) {
    showMessage("no symbols yet: ingest trades first (make run starts a demo feed)");
    setLive("error", "", "no symbols");
    return;
  }
  for (const s of symbols) {
    const option = document.createElement("option");
    option.value = option.textContent = s.symbol;
    $("symbol").appendChild(option);
  }
  const wanted = params.get("symbol");
  if (wanted && symbols.some((s) => s.symbol === wanted)) $("symbol").value = wanted;
  $("symbol").addEventListener("change", selectSymbol);
  $("timeframe").addEventListener("change", selectTimeframe);
  window.addEventListener("resize", draw);
  selectSymbol();
}

start();
