// A dependency-free line chart of upload and download rates. Lines are SVG
// stretched to the box (non-scaling strokes), labels are HTML so they stay
// crisp at any width; the summary sentence is the accessible name.
import { useI18n } from '../i18n/index.jsx';
import { formatRate, formatTick } from '../lib/format.js';

const W = 600;
const H = 160;

export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function pathFor(points, key, t0, t1, max) {
  if (!points.length) return '';
  const span = Math.max(1, t1 - t0);
  return points
    .map((p, i) => {
      const x = ((p.t - t0) / span) * W;
      const y = H - (p[key] / max) * H;
      return (i ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
    })
    .join(' ');
}

export default function Chart({ points, from, to, label }) {
  const { t, lang } = useI18n();
  const max = niceMax(Math.max(0, ...points.map((p) => Math.max(p.up, p.down))));
  const span = to - from;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => from + f * span);
  const peakUp = Math.max(0, ...points.map((p) => p.up));
  const peakDown = Math.max(0, ...points.map((p) => p.down));
  const summary = t('chart.summary', { label, up: formatRate(peakUp), down: formatRate(peakDown) });
  return (
    <figure className="w-full" aria-label={summary}>
      <div className="mb-1 flex flex-wrap items-center gap-3 text-xs text-slate-600">
        <span className="flex items-center gap-1">
          <span className="inline-block h-2 w-4 rounded bg-sky-600" aria-hidden="true" />
          {t('chart.down')}
        </span>
        <span className="flex items-center gap-1">
          <span className="inline-block h-2 w-4 rounded bg-amber-500" aria-hidden="true" />
          {t('chart.up')}
        </span>
        <span className="ml-auto">{t('chart.max', { v: formatRate(max) })}</span>
      </div>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        preserveAspectRatio="none"
        className="h-40 w-full rounded border border-slate-200 bg-slate-50"
        role="img"
        aria-label={summary}
      >
        {[0.25, 0.5, 0.75].map((f) => (
          <line key={f} x1="0" x2={W} y1={H * f} y2={H * f} stroke="#e2e8f0" vectorEffect="non-scaling-stroke" />
        ))}
        <path
          d={pathFor(points, 'down', from, to, max)}
          fill="none"
          stroke="#0284c7"
          strokeWidth="2"
          vectorEffect="non-scaling-stroke"
        />
        <path
          d={pathFor(points, 'up', from, to, max)}
          fill="none"
          stroke="#f59e0b"
          strokeWidth="2"
          vectorEffect="non-scaling-stroke"
        />
      </svg>
      <div className="mt-1 flex justify-between text-xs text-slate-500" aria-hidden="true">
        {ticks.map((x, i) => (
          <span key={i}>{formatTick(Math.round(x), span, lang)}</span>
        ))}
      </div>
      <figcaption className="sr-only">{summary}</figcaption>
    </figure>
  );
}
