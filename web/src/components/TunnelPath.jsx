// A tunnel drawn as its chain: entry → hops → exit(s), each position a box
// with its nodes and their state (online, pending, degraded: running with a
// run-time problem, waiting for a peer, error, ...) as the API's path view says, each arrow with the hop's round
// trip as the agents measured it, and each node's link count and RTT.
// Screen readers get it as an ordered list.
import { Link } from 'react-router-dom';
import { useI18n } from '../i18n/index.jsx';
import { cx } from './ui.jsx';
import { hopRtts, pathOf } from '../lib/tunnel.js';
import { formatRtt } from '../lib/format.js';

const DOT = {
  ok: 'bg-green-600',
  pending: 'bg-sky-500',
  offline: 'bg-slate-400',
  degraded: 'bg-orange-500',
  waiting: 'bg-amber-500',
  error: 'bg-red-600',
  disabled: 'bg-slate-300',
  unknown: 'bg-slate-300',
};

export default function TunnelPath({ tunnel, compact = false }) {
  const { t } = useI18n();
  const path = pathOf(tunnel);
  const hops = hopRtts(path);
  return (
    <ol
      aria-label={t('tun.path_label', { name: tunnel.name || '' })}
      className={cx('flex flex-wrap items-stretch gap-y-2', compact ? 'gap-x-1 text-xs' : 'gap-x-2 text-sm')}
    >
      {path.map((pos, i) => (
        <li key={i} className="flex items-center gap-1" data-role={pos.role}>
          {i > 0 ? (
            <span className="flex flex-col items-center px-0.5 leading-tight">
              <span aria-hidden="true" className="text-slate-400">
                →
              </span>
              {hops[i - 1] !== null ? (
                <span
                  className="whitespace-nowrap text-[0.7rem] text-slate-500"
                  data-testid="hop-rtt"
                  title={t('tun.hop_rtt', { rtt: formatRtt(hops[i - 1]) })}
                >
                  <span className="sr-only">{t('tun.hop_rtt', { rtt: formatRtt(hops[i - 1]) })}</span>
                  <span aria-hidden="true">{formatRtt(hops[i - 1])}</span>
                </span>
              ) : null}
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
                    {!compact && (n.links_up ?? null) !== null ? (
                      <span className="block text-xs text-slate-600" data-testid="node-links">
                        {t('tun.links_up', { n: n.links_up })}
                        {typeof n.rtt_ms === 'number' ? ' · ' + t('tun.rtt', { rtt: formatRtt(n.rtt_ms) }) : ''}
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
