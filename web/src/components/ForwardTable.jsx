// Forwards with their live rates and connections (Forwards page, node page).
import { Link } from 'react-router-dom';
import { useI18n } from '../i18n/index.jsx';
import { formatBytes, formatCount, formatRate } from '../lib/format.js';
import { liveOf } from '../lib/model.js';
import { Badge, tableCls, tdCls, thCls } from './ui.jsx';

export default function ForwardTable({ forwards, live, showWhere = true }) {
  const { t, lang } = useI18n();
  return (
    <div className="overflow-x-auto">
      <table className={tableCls}>
        <thead>
          <tr>
            <th className={thCls}>{t('fwd.col_name')}</th>
            {showWhere ? <th className={thCls}>{t('fwd.col_where')}</th> : null}
            <th className={thCls}>{t('fwd.col_listen')}</th>
            <th className={thCls}>{t('fwd.col_engine')}</th>
            <th className={thCls}>{t('fwd.col_targets')}</th>
            <th className={thCls}>{t('fwd.col_rate')}</th>
            <th className={thCls}>{t('fwd.col_conns')}</th>
            <th className={thCls}>{t('fwd.col_total')}</th>
          </tr>
        </thead>
        <tbody>
          {forwards.map((f) => {
            const l = liveOf(f, live);
            return (
              <tr key={f.id} data-testid={`forward-row-${f.id}`}>
                <td data-label={t('fwd.col_name')} className={tdCls}>
                  <Link to={`/forwards/${encodeURIComponent(f.id)}`} className="font-medium text-sky-800 underline">
                    {f.name || '#' + f.id}
                  </Link>
                  {f.enabled === false ? (
                    <span className="ml-1">
                      <Badge>{t('fwd.disabled')}</Badge>
                    </span>
                  ) : null}
                </td>
                {showWhere ? (
                  <td data-label={t('fwd.col_where')} className={tdCls}>
                    {f.group ? t('fwd.where_group', { name: f.group }) : t('fwd.where_node', { name: f.node ?? '' })}
                  </td>
                ) : null}
                <td data-label={t('fwd.col_listen')} className={tdCls + ' font-mono text-xs'}>
                  {f.listen} <span className="text-slate-500">{t('proto.' + (f.proto || 'tcp'))}</span>
                </td>
                <td data-label={t('fwd.col_engine')} className={tdCls} data-testid="engine">
                  {f.engine === 'kernel' ? (
                    <span title={t('fwd.engine_kernel_help')}>
                      <Badge tone="sky">{t('fwd.engine_kernel')}</Badge>
                      <span className="sr-only">{t('fwd.engine_kernel_help')}</span>
                    </span>
                  ) : (
                    <Badge>{t('fwd.engine_proxy')}</Badge>
                  )}
                </td>
                <td data-label={t('fwd.col_targets')} className={tdCls + ' break-all font-mono text-xs'}>
                  {(f.targets || []).join(', ')}
                </td>
                <td data-label={t('fwd.col_rate')} className={tdCls + ' whitespace-nowrap'} data-testid="live-rate">
                  {t('live.up_down', { up: formatRate(l.up_bps), down: formatRate(l.down_bps) })}
                </td>
                <td data-label={t('fwd.col_conns')} className={tdCls} data-testid="live-conns">
                  {formatCount(l.conns_active ?? 0, lang)}
                </td>
                <td data-label={t('fwd.col_total')} className={tdCls + ' whitespace-nowrap'} data-testid="live-bytes">
                  {t('live.up_down', { up: formatBytes(l.bytes_up ?? 0), down: formatBytes(l.bytes_down ?? 0) })}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
