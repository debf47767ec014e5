// Candlesticks on a canvas. Prices become Number() here only, to place pixels; the page shows strings.
import { TIMEFRAME_MS } from "./candles.js";
import { compareDecimal } from "./decimal.js";

// Draws `candles` (ascending open time) of `timeframe` on `canvas`, sized to its CSS width.
export function drawChart(canvas, candles, timeframe) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = Math.round(width * 0.45);
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  if (!candles.length) return;
  const last = candles[candles.length - 1];

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
  const interval = TIMEFRAME_MS[timeframe];
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
