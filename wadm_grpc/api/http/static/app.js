// The live market page: pick a symbol and a timeframe; candles from GET /api/v1/market/candles, a trade
// tape and the in-progress candle from live trades (live.js). Prices and quantities stay the exact
// decimal strings the server sent (decimal.js); Number() is used for drawing only (chart.js).
import { TIMEFRAME_MS, applyTrade, candleFromApi } from "./candles.js";
import { drawChart } from "./chart.js";
import { settle } from "./history.js";
import { LiveTrades } from "./live.js";

const CANDLE_LIMIT = 120;
const TAPE_ROWS = 60;
// Candles wait for the live stream (so no trade falls between them) at most this long.
const LIVE_WAIT_MS = 3000;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = {
  symbol: "",
  timeframe: params.get("timeframe") in TIMEFRAME_MS ? params.get("timeframe") : "1m",
  candles: [],
  view: 0, // bumped on every symbol or timeframe change: candles answered for an older view are dropped
  candlesLoaded: false,
  pending: [], // trades received while the candles load, applied once they are drawn
  counted: null, // the last candle's trades (history.js CountedBucket): none is counted twice
  live: false, // the stream is subscribed: candles read from now on miss no trade
  liveWait: null,
};

function showMessage(text) {
  $("message").textContent = text;
}

function showLive(stateName, transport, text) {
  const live = $("live");
  live.dataset.state = stateName;
  live.dataset.transport = transport;
  live.textContent = text;
  const wasLive = state.live;
  state.live = stateName === "live";
  // (Re)subscribed: trades may have been missed while it was not, so the candles are read again.
  if (state.live && !wasLive && state.symbol) reloadCandles();
}

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

// ---- candles ----

function render() {
  const canvas = $("chart");
  const candles = state.candles;
  drawChart(canvas, candles, state.timeframe);
  // The drawing's state for people (the quote line) and for tests (data attributes).
  const last = candles[candles.length - 1];
  canvas.dataset.candles = String(candles.length);
  canvas.dataset.lastClose = last ? last.close : "";
  $("last-price").textContent = last ? last.close : "–";
  $("last-price").dataset.price = last ? last.close : "";
  $("candle-info").textContent = last
    ? `O ${last.open} H ${last.high} L ${last.low} C ${last.close} V ${last.volume} (${last.tradeCount} trades)`
    : "no candles";
}

// A new view (symbol, timeframe, or a stream that subscribed again): live trades are buffered from now
// until its candles are drawn; the candles are read once the stream is live (or LIVE_WAIT_MS passed).
function reloadCandles() {
  state.view += 1;
  state.candlesLoaded = false;
  state.pending = [];
  state.counted = null;
  clearTimeout(state.liveWait);
  if (state.live) loadCandles();
  else state.liveWait = setTimeout(loadCandles, LIVE_WAIT_MS);
}

async function loadCandles() {
  const view = state.view;
  const { symbol, timeframe } = state;
  const path = `/api/v1/market/candles/${encodeURIComponent(symbol)}/${timeframe}?limit=${CANDLE_LIMIT}`;
  try {
    const body = await getJson(path);
    if (view !== state.view) return;
    const candles = (body.candles || []).map(candleFromApi);
    // The last candle joined with the trades buffered meanwhile, each counted once (history.js).
    const counted = await settle(candles, state.pending, { getJson, symbol, timeframe });
    if (view !== state.view) return;
    Object.assign(state, { candles, counted, candlesLoaded: true });
    for (const trade of state.pending.splice(0)) applyTrade(candles, trade, timeframe, CANDLE_LIMIT);
    render();
    showMessage("");
  } catch (error) {
    if (view === state.view) showMessage(`candles: ${error.message}`);
  }
}

// ---- trade tape ----

function clockText(rfc3339) {
  const match = /T(\d{2}:\d{2}:\d{2}(\.\d{1,3})?)/.exec(rfc3339);
  return match ? match[1] : rfc3339;
}

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

function onTrades(trades) {
  for (const trade of trades) {
    addToTape(trade);
    if (!state.candlesLoaded) state.pending.push(trade);
    else if (!state.counted || state.counted.admit(trade, state.timeframe)) {
      applyTrade(state.candles, trade, state.timeframe, CANDLE_LIMIT);
    }
  }
  if (state.candlesLoaded && trades.length) render();
}

// "auto" tries the WebSocket first; ?transport=ndjson or =websocket forces one (handy behind odd proxies).
const live = new LiveTrades({
  transport: params.get("transport") || "auto",
  onTrades,
  onStatus: showLive,
  onProblem: showMessage,
});

// ---- selection ----

function selectTimeframe() {
  state.timeframe = $("timeframe").value;
  state.candles = [];
  const query = new URLSearchParams(location.search);
  query.set("symbol", state.symbol);
  query.set("timeframe", state.timeframe);
  history.replaceState(null, "", `?${query}`);
  // The live stream stays: trades from now on are buffered until the new candles are drawn.
  reloadCandles();
}

function selectSymbol() {
  state.symbol = $("symbol").value;
  $("tape").replaceChildren();
  // Subscribe first, then read the candles once subscribed: trades in between are buffered, not lost.
  state.live = false;
  live.follow(state.symbol);
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
    showLive("error", "", "no symbols");
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
  window.addEventListener("resize", render);
  selectSymbol();
}

start();
