// A tunnel drawn as its chain: entry → hops → exit(s), each position a box
// with its nodes and their state (online, waiting for a peer, error, ...)
// as the API's path view says. Screen readers get it as an ordered list.
import { Link } from 'react-router-dom';
import { useI18n } from '../i18n/index.jsx';
import { cx } from './ui.jsx';
import { pathOf } from '../lib/tunnel.js';

const DOT = {
  ok: 'bg-green-600',
  offline: 'bg-slate-400',
  waiting: 'bg-amber-500',
  error: 'bg-red-600',
  disabled: 'bg-slate-300',
  unknown: 'bg-slate-300',
};

export default function TunnelPath({ tunnel, compact = false }) {
  const { t } = useI18n();
  const path = pathOf(tunnel);
  return (
    <ol
      aria-label={t('tun.path_label', { name: tunnel.name || '' })}
      className={cx('flex flex-wrap items-stretch gap-y-2', compact ? 'gap-x-1 text-xs' : 'gap-x-2 text-sm')}
    >
      {path.map((pos, i) => (
        <li key={i} className="flex items-center gap-1" data-role={pos.role}>
          {i > 0 ? (
            <span aria-hidden="true" className="px-0.5 text-slate-400">
              →
            </span>
          ) : null}
          <div
            className={cx(
              'rounded-md border border-slate-200 bg-white',
              compact ? 'px-1.5 py-0.5' : 'min-w-[8rem] px-2 py-1.5 shadow-sm',
            )}
          >
            {!compact ? <div className="text-xs font-medium text-slate-500">{t('tun.role_' + pos.role)}</div> : null}
            <ul className="space-y-0.5">
              {pos.nodes.length === 0 ? <li className="text-slate-500">{t('tun.no_members')}</li> : null}
              {pos.nodes.map((n) => (
                <li key={n.id ?? n.name} className="flex items-start gap-1.5" data-state={n.state}>
                  <span
                    className={cx('mt-1.5 inline-block h-2 w-2 shrink-0 rounded-full', DOT[n.state] || DOT.unknown)}
                    aria-hidden="true"
                  />
                  <span>
                    {n.id && !compact ? (
                      <Link to={`/nodes/${n.id}`} className="font-medium text-sky-800 underline">
                        {n.name}
                      </Link>
                    ) : (
                      <span className="font-medium">{n.name}</span>
                    )}
                    <span className="sr-only">{', ' + t('tstate.' + (n.state || 'unknown'))}</span>
                    {!compact ? (
                      <span className="block text-xs text-slate-600">
                        {t('tstate.' + (n.state || 'unknown'))}
                        {n.address ? ' · ' + n.address : ''}
                      </span>
                    ) : null}
                    {!compact && n.detail ? (
                      <span className="block max-w-xs text-xs text-slate-500" data-testid="node-detail">
                        {n.detail}
                      </span>
                    ) : null}
                  </span>
                </li>
              ))}
            </ul>
          </div>
        </li>
      ))}
    </ol>
  );
}
