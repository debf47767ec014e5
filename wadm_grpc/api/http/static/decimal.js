// Exact decimal strings (non-negative, as the API sends prices and quantities): compare, add, rescale.
// BigInt arithmetic, never floats: what the page shows is what the server sent or its exact sum.

function parseDecimal(text) {
  const [whole, fraction = ""] = text.split(".");
  return { digits: BigInt(whole + fraction), scale: fraction.length };
}

function aligned(a, b) {
  const scale = Math.max(a.scale, b.scale);
  return [a.digits * 10n ** BigInt(scale - a.scale), b.digits * 10n ** BigInt(scale - b.scale), scale];
}

export function compareDecimal(x, y) {
  const [a, b] = aligned(parseDecimal(x), parseDecimal(y));
  return a < b ? -1 : a > b ? 1 : 0;
}

export function addDecimal(x, y) {
  const [a, b, scale] = aligned(parseDecimal(x), parseDecimal(y));
  const digits = (a + b).toString().padStart(scale + 1, "0");
  return scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

export function scaleOf(text) {
  const point = text.indexOf(".");
  return point < 0 ? 0 : text.length - point - 1;
}

// The server writes a candle's prices at the precision of its most precise trade ("61230.1" beside
// "61234.50" becomes "61230.10"): the page does the same, so its in-progress candle reads as the server's.
export function withScale(text, scale) {
  const missing = scale - scaleOf(text);
  if (missing <= 0) return text;
  return `${text}${scaleOf(text) === 0 ? "." : ""}${"0".repeat(missing)}`;
}
