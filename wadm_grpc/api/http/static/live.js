// Live trades of one symbol: the WebSocket /api/v1/market/ws/trades when it connects, else the NDJSON
// stream /api/v1/market/trades:stream (fetch + ReadableStream). Both reconnect with backoff.
const SOCKET_PATH = "/api/v1/market/ws/trades";
const STREAM_PATH = "/api/v1/market/trades:stream";
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 15000;

export class LiveTrades {
  // transport: "auto" (WebSocket first), "websocket" or "ndjson". onStatus(state, transport, text) with
  // state connecting/live/error; onTrades(trades) for the followed symbol only; onProblem(text).
  constructor({ transport, onTrades, onStatus, onProblem }) {
    Object.assign(this, { transport, onTrades, onStatus, onProblem });
    this.symbol = "";
    this.generation = 0; // bumped per follow(): a replaced connection's frames and retries are dropped
    this.socket = null;
    this.abort = null;
    this.timer = null;
    this.retryMs = RETRY_FIRST_MS;
    this.socketFailed = false;
  }

  follow(symbol) {
    this.symbol = symbol;
    this.generation += 1;
    this.retryMs = RETRY_FIRST_MS;
    this.start(this.generation);
  }

  stop() {
    clearTimeout(this.timer);
    if (this.socket) { this.socket.onclose = null; this.socket.close(); this.socket = null; }
    if (this.abort) { this.abort.abort(); this.abort = null; }
  }

  start(generation) {
    this.stop();
    const useSocket = this.transport === "websocket" || (this.transport === "auto" && !this.socketFailed);
    if (useSocket) this.startWebSocket(generation);
    else this.startNdjson(generation);
  }

  retryLater(generation) {
    if (generation !== this.generation) return;
    this.timer = setTimeout(() => this.start(generation), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  deliver(trades, generation) {
    if (generation === this.generation) this.onTrades(trades.filter((t) => t.symbol === this.symbol));
  }

  startWebSocket(generation) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${SOCKET_PATH}`);
    const symbol = this.symbol;
    let subscribed = false;
    this.socket = socket;
    this.onStatus("connecting", "websocket", "connecting (WebSocket)…");
    socket.onopen = () => socket.send(JSON.stringify({ op: "subscribe", symbols: [symbol] }));
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "subscribed") {
        subscribed = true;
        this.retryMs = RETRY_FIRST_MS;
        this.onStatus("live", "websocket", `live: ${symbol} (WebSocket)`);
      } else if (message.type === "trades") {
        this.deliver(message.trades, generation);
      } else if (message.type === "error") {
        this.onProblem(`live: ${(message.error && message.error.message) || "error"}`);
      }
    };
    socket.onclose = () => {
      this.socket = null;
      if (!subscribed && this.transport === "auto") {
        this.socketFailed = true; // no WebSocket here (an older server, a proxy): the stream, for this visit
        this.start(generation);
        return;
      }
      this.onStatus("error", "websocket", "disconnected; reconnecting…");
      this.retryLater(generation);
    };
  }

  async startNdjson(generation) {
    const abort = new AbortController();
    const symbol = this.symbol;
    this.abort = abort;
    this.onStatus("connecting", "ndjson", "connecting (NDJSON stream)…");
    try {
      const url = `${STREAM_PATH}?symbols=${encodeURIComponent(symbol)}`;
      const response = await fetch(url, { signal: abort.signal, headers: { Accept: "application/x-ndjson" } });
      if (!response.ok) {
        const status = await response.json().catch(() => ({}));
        throw new Error(status.message || `HTTP ${response.status}`);
      }
      // The gateway answers once the server has subscribed the stream: from here on no trade is missed.
      this.retryMs = RETRY_FIRST_MS;
      this.onStatus("live", "ndjson", `live: ${symbol} (NDJSON stream)`);
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
          if (message.result && message.result.trades) this.deliver(message.result.trades.trades || [], generation);
          else if (message.error) this.onProblem(`live: ${message.error.message}`);
        }
      }
    } catch (error) {
      if (abort.signal.aborted) return; // a newer follow() replaced this stream
      this.onProblem(`live: ${error.message}`);
    }
    if (abort.signal.aborted) return;
    this.onStatus("error", "ndjson", "disconnected; reconnecting…");
    this.retryLater(generation);
  }
}
