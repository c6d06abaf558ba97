import { useI18n } from '../i18n/index.jsx';
import { agoParts, revState, toUnix } from '../lib/format.js';
import { Badge } from './ui.jsx';

export function OnlineBadge({ online }) {
  const { t } = useI18n();
  return <Badge tone={online ? 'green' : 'red'}>{online ? t('status.online') : t('status.offline')}</Badge>;
}

export function RevBadge({ node }) {
  const { t } = useI18n();
  const s = revState(node);
  const tone = { failed: 'red', lagging: 'amber', synced: 'green', unknown: 'slate' }[s];
  return (
    <Badge tone={tone}>{t('rev.' + s, { applied: node.applied_rev ?? '–', desired: node.desired_rev ?? '–' })}</Badge>
  );
}

export function Ago({ ts }) {
  const { t } = useI18n();
  const u = toUnix(ts);
  if (u === null) return <span>{t('time.never')}</span>;
  const [n, unit] = agoParts(u, Date.now() / 1000);
  return <span>{t('time.ago_' + unit, { n })}</span>;
}
