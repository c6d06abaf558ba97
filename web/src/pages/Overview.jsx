import { Link } from 'react-router-dom';
import { useI18n } from '../i18n/index.jsx';
import { useLive } from '../live.jsx';
import { api } from '../lib/api.js';
import { useInterval, useResource } from '../lib/hooks.js';
import { formatBytes, formatCount, formatRate, RANGES, revState } from '../lib/format.js';
import { chartPoints, fleetLive, withLive } from '../lib/model.js';
import { Card, Empty, ErrorBanner, Loading, PageHeader } from '../components/ui.jsx';
import { OnlineBadge, RevBadge } from '../components/status.jsx';
import Chart from '../components/Chart.jsx';
import { useMemo } from 'react';

function Stat({ label, value, testid }) {
  return (
    <div className="rounded-lg border border-slate-200 bg-white p-4 shadow-sm">
      <div className="text-sm text-slate-600">{label}</div>
      <div className="mt-1 text-2xl font-semibold text-slate-900" data-testid={testid}>
        {value}
      </div>
    </div>
  );
}

export default function Overview() {
  const { t, lang } = useI18n();
  const live = useLive();
  const nodes = useResource(() => api.nodes(), []);
  useInterval(() => nodes.reload(), 10000);
  const range = useMemo(() => {
    const to = Math.floor(Date.now() / 1000);
    return { from: to - RANGES['24h'].seconds, to, step: RANGES['24h'].step };
  }, []);
  const day = useResource(() => api.stats('fleet', null, range.from, range.to, range.step), [range]);

  const list = (nodes.data || []).map((n) => withLive(n, live.nodes));
  const online = list.filter((n) => n.online).length;
  const now = fleetLive(live.forwards);
  const attention = list.filter((n) => revState(n) === 'failed' || revState(n) === 'lagging');
  const total = day.data?.total;

  return (
    <div className="space-y-4">
      <PageHeader title={t('overview.title')} />
      <ErrorBanner error={nodes.error} />
      <div className="grid grid-cols-2 gap-3 lg:grid-cols-4">
        <Stat label={t('overview.online')} value={formatCount(online, lang)} testid="nodes-online" />
        <Stat label={t('overview.offline')} value={formatCount(list.length - online, lang)} testid="nodes-offline" />
        <Stat label={t('overview.traffic_now')} value={formatRate(now.up_bps + now.down_bps)} testid="traffic-now" />
        <Stat
          label={t('overview.traffic_24h')}
          value={total ? formatBytes((Number(total.bytes_up) || 0) + (Number(total.bytes_down) || 0)) : '–'}
          testid="traffic-24h"
        />
      </div>
      <Card title={t('overview.chart_24h')}>
        <ErrorBanner error={day.error} />
        {day.loading ? (
          <Loading />
        ) : (
          <Chart
            points={chartPoints(day.data?.series, day.data?.step || range.step)}
            from={range.from}
            to={range.to}
            label={t('overview.chart_24h')}
          />
        )}
      </Card>
      <Card title={t('overview.attention')}>
        {nodes.loading ? (
          <Loading />
        ) : attention.length === 0 ? (
          <Empty>{t('overview.all_good')}</Empty>
        ) : (
          <ul className="divide-y divide-slate-100">
            {attention.map((n) => (
              <li key={n.id} className="flex flex-wrap items-center gap-2 py-2">
                <Link to={`/nodes/${encodeURIComponent(n.id)}`} className="font-medium text-sky-800 underline">
                  {n.name}
                </Link>
                <OnlineBadge online={n.online} />
                <RevBadge node={n} />
                {n.errors?.length ? (
                  <span className="text-sm text-red-800">{t('overview.n_errors', { n: n.errors.length })}</span>
                ) : null}
              </li>
            ))}
          </ul>
        )}
      </Card>
    </div>
  );
}
