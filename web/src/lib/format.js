// Number and time formatting shared by every page. Pure functions: the
// Vitest units in test/format.test.js pin their output.

const SI = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];

// 1234567 -> "1.23 MB". Decimal (×1000) units, the ones operators read on
// provider bills; three significant digits at most.
export function formatBytes(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return '–';
  let v = Number(n);
  const neg = v < 0;
  if (neg) v = -v;
  let i = 0;
  while (v >= 1000 && i < SI.length - 1) {
    v /= 1000;
    i++;
  }
  let s;
  if (i === 0) s = String(Math.round(v));
  else if (v >= 100) s = v.toFixed(0);
  else if (v >= 10) s = v.toFixed(1);
  else s = v.toFixed(2);
  return (neg ? '-' : '') + s + ' ' + SI[i];
}

// Bytes per second -> "1.23 MB/s".
export function formatRate(bps) {
  if (bps === null || bps === undefined || Number.isNaN(Number(bps))) return '–';
  return formatBytes(bps) + '/s';
}

// A round trip in milliseconds -> "0.42 ms", "2.3 ms", "21 ms", "1.50 s":
// three significant digits at most, a dash when nothing was measured.
export function formatRtt(ms) {
  if (ms === null || ms === undefined || ms === '' || Number.isNaN(Number(ms)) || Number(ms) < 0) return '–';
  const v = Number(ms);
  if (v >= 1000) return (v / 1000).toFixed(2) + ' s';
  if (v >= 10) return Math.round(v) + ' ms';
  if (v >= 1) return v.toFixed(1) + ' ms';
  return v.toFixed(2) + ' ms';
}

// Thousands separators in the reader's locale.
export function formatCount(n, locale) {
  if (n === null || n === undefined) return '–';
  return new Intl.NumberFormat(locale || 'en').format(n);
}

// Seconds between `then` and `now` (both UNIX seconds) as [amount, unit], the
// unit one of 's', 'm', 'h', 'd'; the caller translates the unit.
export function agoParts(then, now) {
  const d = Math.max(0, Math.floor(now - then));
  if (d < 60) return [d, 's'];
  if (d < 3600) return [Math.floor(d / 60), 'm'];
  if (d < 86400) return [Math.floor(d / 3600), 'h'];
  return [Math.floor(d / 86400), 'd'];
}

// A timestamp (UNIX seconds, or an ISO string the API may send) as seconds.
export function toUnix(ts) {
  if (ts === null || ts === undefined || ts === '') return null;
  if (typeof ts === 'number') return ts > 1e12 ? Math.floor(ts / 1000) : ts;
  if (/^\d+$/.test(ts)) return toUnix(Number(ts));
  const ms = Date.parse(ts);
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}

// Axis label for a chart point: time of day for short ranges, date for long.
export function formatTick(unix, rangeSeconds, locale) {
  const d = new Date(unix * 1000);
  const opts =
    rangeSeconds <= 86400
      ? { hour: '2-digit', minute: '2-digit', hour12: false }
      : { month: 'numeric', day: 'numeric' };
  return new Intl.DateTimeFormat(locale || 'en', opts).format(d);
}

export function formatDateTime(unix, locale) {
  if (unix === null || unix === undefined) return '–';
  return new Intl.DateTimeFormat(locale || 'en', {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false,
  }).format(new Date(unix * 1000));
}

// Revision state of a node: 'failed' (last apply reported errors), 'lagging'
// (applied revision behind desired), 'synced', or 'unknown' (never applied).
export function revState(node) {
  if (!node) return 'unknown';
  if (node.errors && node.errors.length) return 'failed';
  const d = Number(node.desired_rev ?? 0);
  const a = node.applied_rev === null || node.applied_rev === undefined ? null : Number(node.applied_rev);
  if (a === null) return d > 0 ? 'lagging' : 'unknown';
  if (a < d) return 'lagging';
  return 'synced';
}

// Step (seconds between chart points) for a chart range, so every range
// has 60–170 points.
export const RANGES = {
  '1h': { seconds: 3600, step: 60 },
  '24h': { seconds: 86400, step: 900 },
  '7d': { seconds: 7 * 86400, step: 3600 },
  '30d': { seconds: 30 * 86400, step: 6 * 3600 },
};
