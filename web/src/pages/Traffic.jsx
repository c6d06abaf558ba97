import { useId, useMemo, useState } from 'react';
import { useSearchParams } from 'react-router-dom';
import * as RLabel from '@radix-ui/react-label';
import * as RToggle from '@radix-ui/react-toggle-group';
import { useI18n } from '../i18n/index.jsx';
import { api } from '../lib/api.js';
import { useInterval, useResource } from '../lib/hooks.js';
import { formatBytes, formatCount, RANGES } from '../lib/format.js';
import { chartPoints } from '../lib/model.js';
import { Button, Card, cx, ErrorBanner, focus, Loading, PageHeader, Select } from '../components/ui.jsx';
import Chart from '../components/Chart.jsx';

const SCOPES = ['fleet', 'nodes', 'groups', 'forwards'];

// File name of a CSV export: flowgate-<scope>-<name>-<range>.csv
export function csvName(scope, name, range) {
  const safe = String(name || scope).replace(/[^A-Za-z0-9._-]+/g, '_');
  return `flowgate-${scope}-${safe}-${range}.csv`;
}

export default function Traffic() {
  const { t, lang } = useI18n();
  const [params, setParams] = useSearchParams();
  const scope = SCOPES.includes(params.get('scope')) ? params.get('scope') : 'fleet';
  const objId = params.get('id') || '';
  const range = RANGES[params.get('range')] ? params.get('range') : '24h';
  const [csvErr, setCsvErr] = useState(null);
  // the window slides forward every minute while the page is open
  const [tick, setTick] = useState(0);
  useInterval(() => setTick((x) => x + 1), 60000);
  const scopeId = useId();
  const objSel = useId();
  const rangeLbl = useId();

  const nodes = useResource(() => api.nodes(), []);
  const groups = useResource(() => api.groups(), []);
  const forwards = useResource(() => api.forwards(), []);
  const objects = { nodes: nodes.data, groups: groups.data, forwards: forwards.data }[scope] || [];
  const effId = scope === 'fleet' ? '' : objId || (objects[0] ? String(objects[0].id) : '');
  const objName = objects.find((o) => String(o.id) === effId)?.name;

  const win = useMemo(() => {
    const to = Math.floor(Date.now() / 1000);
    return { from: to - RANGES[range].seconds, to, step: RANGES[range].step };
    // a new window when the range or the object changes, or a minute passed
  }, [range, scope, effId, tick]);

  const stats = useResource(
    () => (scope !== 'fleet' && !effId ? Promise.resolve(null) : api.stats(scope, effId, win.from, win.to, win.step)),
    [scope, effId, win],
  );

  const update = (patch) => {
    const next = { scope, id: objId, range, ...patch };
    const p = {};
    for (const [k, v] of Object.entries(next)) if (v) p[k] = v;
    setParams(p);
  };

  const exportCsv = async () => {
    setCsvErr(null);
    try {
      const blob = await api.statsCsv(scope, effId, win.from, win.to, win.step);
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = csvName(scope, objName, range);
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (e) {
      setCsvErr(e);
    }
  };

  const total = stats.data?.total;
  const label = scope === 'fleet' ? t('traffic.scope_fleet') : objName || '';

  return (
    <div className="space-y-4">
      <PageHeader
        title={t('traffic.title')}
        actions={
          <Button variant="secondary" onClick={exportCsv} disabled={scope !== 'fleet' && !effId}>
            {t('traffic.export_csv')}
          </Button>
        }
      />
      <div className="flex flex-wrap items-end gap-3">
        <div className="w-full sm:w-48">
          <RLabel.Root htmlFor={scopeId} className="mb-1 block text-sm font-medium text-slate-700">
            {t('traffic.scope')}
          </RLabel.Root>
          <Select id={scopeId} value={scope} onChange={(e) => update({ scope: e.target.value, id: '' })}>
            {SCOPES.map((s) => (
              <option key={s} value={s}>
                {t('traffic.scope_' + s)}
              </option>
            ))}
          </Select>
        </div>
        {scope !== 'fleet' ? (
          <div className="w-full sm:w-64">
            <RLabel.Root htmlFor={objSel} className="mb-1 block text-sm font-medium text-slate-700">
              {t('traffic.object_' + scope)}
            </RLabel.Root>
            <Select id={objSel} value={effId} onChange={(e) => update({ id: e.target.value })}>
              {objects.length === 0 ? <option value="">{t('common.none')}</option> : null}
              {objects.map((o) => (
                <option key={o.id} value={String(o.id)}>
                  {o.name || '#' + o.id}
                </option>
              ))}
            </Select>
          </div>
        ) : null}
        <div>
          <span id={rangeLbl} className="mb-1 block text-sm font-medium text-slate-700">
            {t('traffic.range')}
          </span>
          <RToggle.Root
            type="single"
            value={range}
            onValueChange={(v) => v && update({ range: v })}
            aria-labelledby={rangeLbl}
            className="inline-flex rounded-md border border-slate-300 bg-white"
          >
            {Object.keys(RANGES).map((r) => (
              <RToggle.Item
                key={r}
                value={r}
                aria-label={t('range.' + r + '_long')}
                className={cx(
                  'px-3 py-1.5 text-sm first:rounded-l-md last:rounded-r-md data-[state=on]:bg-sky-700 data-[state=on]:text-white',
                  focus,
                )}
              >
                {t('range.' + r)}
              </RToggle.Item>
            ))}
          </RToggle.Root>
        </div>
      </div>
      <ErrorBanner error={stats.error || csvErr} />
      <Card title={t('traffic.chart_title', { name: label, range: t('range.' + range + '_long') })}>
        {stats.loading ? (
          <Loading />
        ) : (
          <Chart
            points={chartPoints(stats.data?.series, stats.data?.step || win.step)}
            from={win.from}
            to={win.to}
            label={label}
          />
        )}
      </Card>
      <Card title={t('traffic.totals')}>
        <dl className="grid grid-cols-2 gap-3 md:grid-cols-4 text-sm">
          <div>
            <dt className="text-xs text-slate-500">{t('chart.down')}</dt>
            <dd data-testid="total-down">{total ? formatBytes(total.bytes_down) : '–'}</dd>
          </div>
          <div>
            <dt className="text-xs text-slate-500">{t('chart.up')}</dt>
            <dd data-testid="total-up">{total ? formatBytes(total.bytes_up) : '–'}</dd>
          </div>
          <div>
            <dt className="text-xs text-slate-500">{t('traffic.total')}</dt>
            <dd>{total ? formatBytes((Number(total.bytes_up) || 0) + (Number(total.bytes_down) || 0)) : '–'}</dd>
          </div>
          <div>
            <dt className="text-xs text-slate-500">{t('traffic.conns')}</dt>
            <dd>{total ? formatCount(total.conns ?? 0, lang) : '–'}</dd>
          </div>
        </dl>
      </Card>
    </div>
  );
}
