import { Link } from 'react-router-dom';
import { useI18n } from '../i18n/index.jsx';
import { useLive } from '../live.jsx';
import { useCanWrite } from '../auth.jsx';
import { api } from '../lib/api.js';
import { useInterval, useResource } from '../lib/hooks.js';
import { formatBytes, formatRate } from '../lib/format.js';
import { tunnelLive, worstState } from '../lib/tunnel.js';
import {
  Badge,
  Card,
  cx,
  Empty,
  ErrorBanner,
  focus,
  Loading,
  PageHeader,
  tableCls,
  tdCls,
  thCls,
} from '../components/ui.jsx';
import TunnelPath from '../components/TunnelPath.jsx';

const TONE = {
  ok: 'green',
  pending: 'sky',
  degraded: 'orange',
  waiting: 'amber',
  error: 'red',
  offline: 'slate',
  disabled: 'slate',
  unknown: 'slate',
};

export default function Tunnels() {
  const { t } = useI18n();
  const live = useLive();
  const tunnels = useResource(() => api.tunnels(), []);
  useInterval(() => tunnels.reload(), 5000);
  const writable = useCanWrite();
  const list = tunnels.data || [];
  return (
    <div className="space-y-4">
      <PageHeader
        title={t('tun.title')}
        actions={
          writable ? (
            <Link
              to="/tunnels/new"
              className={cx('rounded-md bg-sky-700 px-3 py-2 text-sm font-medium text-white hover:bg-sky-800', focus)}
            >
              {t('tun.new')}
            </Link>
          ) : null
        }
      />
      <p className="text-sm text-slate-600">{t('tun.intro')}</p>
      <ErrorBanner error={tunnels.error} />
      <Card>
        {tunnels.loading ? (
          <Loading />
        ) : list.length === 0 ? (
          <Empty>{t('tun.empty')}</Empty>
        ) : (
          <table className={tableCls}>
            <thead>
              <tr>
                <th className={thCls}>{t('tun.col_name')}</th>
                <th className={thCls}>{t('tun.col_path')}</th>
                <th className={thCls}>{t('tun.col_target')}</th>
                <th className={thCls}>{t('tun.col_transport')}</th>
                <th className={thCls}>{t('tun.col_rate')}</th>
                <th className={thCls}>{t('tun.col_state')}</th>
              </tr>
            </thead>
            <tbody>
              {list.map((tu) => {
                const l = tunnelLive(tu, live.tunnels);
                const st = tu.enabled === false ? 'disabled' : worstState(tu);
                return (
                  <tr key={tu.id} data-tunnel={tu.name}>
                    <td className={tdCls} data-label={t('tun.col_name')}>
                      <Link to={`/tunnels/${tu.id}`} className="font-medium text-sky-800 underline">
                        {tu.name}
                      </Link>
                    </td>
                    <td className={tdCls} data-label={t('tun.col_path')}>
                      <TunnelPath tunnel={tu} compact />
                    </td>
                    <td className={tdCls} data-label={t('tun.col_target')}>
                      {tu.target}
                    </td>
                    <td className={tdCls} data-label={t('tun.col_transport')}>
                      {t('transport.' + (tu.transport || 'tls'))}
                      {tu.mux === false ? '' : ' · ' + t('tun.mux_short')}
                    </td>
                    <td className={tdCls} data-label={t('tun.col_rate')}>
                      {l
                        ? t('live.up_down', { up: formatRate(l.up_bps), down: formatRate(l.down_bps) })
                        : t('common.none')}
                      {l ? (
                        <span className="block text-xs text-slate-500">
                          {t('live.up_down', { up: formatBytes(l.bytes_up), down: formatBytes(l.bytes_down) })}
                        </span>
                      ) : null}
                    </td>
                    <td className={tdCls} data-label={t('tun.col_state')}>
                      <Badge tone={TONE[st] || 'slate'}>{t('tstate.' + st)}</Badge>
                      {tu.problems && tu.problems.length ? (
                        <span className="block text-xs text-slate-600">{tu.problems[0]}</span>
                      ) : null}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </Card>
    </div>
  );
}
