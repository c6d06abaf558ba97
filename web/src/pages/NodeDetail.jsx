import { useEffect, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router-dom';
import { useI18n } from '../i18n/index.jsx';
import { FormActions } from '../components/FormParts.jsx';
import { useLive } from '../live.jsx';
import { useCanWrite } from '../auth.jsx';
import { api } from '../lib/api.js';
import { useInterval, useResource } from '../lib/hooks.js';
import { formatBytes, formatCount, formatDateTime, formatRate, toUnix } from '../lib/format.js';
import { applyErrorWords, forwardOnNode, sumLive, withLive } from '../lib/model.js';
import {
  apiErrorText,
  Button,
  Card,
  ConfirmDialog,
  Dialog,
  Empty,
  ErrorBanner,
  Field,
  Input,
  Loading,
  PageHeader,
} from '../components/ui.jsx';
import { Ago, OnlineBadge, RevBadge } from '../components/status.jsx';
import ForwardTable from '../components/ForwardTable.jsx';
import NamePicker from '../components/NamePicker.jsx';
import NodeTunnels from '../components/NodeTunnels.jsx';

function Info({ label, children }) {
  return (
    <div className="min-w-0">
      <dt className="text-xs text-slate-500">{label}</dt>
      <dd className="break-words text-sm text-slate-900">{children}</dd>
    </div>
  );
}

function RenameDialog({ node, open, onOpenChange, onSaved }) {
  const { t } = useI18n();
  const [name, setName] = useState(node.name);
  const [err, setErr] = useState(null);
  const [fieldErr, setFieldErr] = useState(null);
  useEffect(() => {
    if (open) {
      setName(node.name);
      setErr(null);
      setFieldErr(null);
    }
  }, [open, node.name]);
  const submit = async (e) => {
    e.preventDefault();
    if (!name.trim()) return setFieldErr(t('v.required'));
    try {
      const r = await api.updateNode(node.id, { name: name.trim() });
      onOpenChange(false);
      onSaved(r);
    } catch (e2) {
      if (e2.field === 'name') setFieldErr(apiErrorText(t, e2));
      else setErr(e2);
    }
  };
  return (
    <Dialog open={open} onOpenChange={onOpenChange} title={t('node.rename_title')}>
      <form onSubmit={submit} className="space-y-3" noValidate>
        <Field label={t('nodes.name')} error={fieldErr}>
          {(c) => <Input {...c} value={name} onChange={(e) => setName(e.target.value)} autoFocus />}
        </Field>
        <ErrorBanner error={err} />
        <FormActions onCancel={() => onOpenChange(false)} />
      </form>
    </Dialog>
  );
}

function GroupsDialog({ node, groups, open, onOpenChange, onSaved }) {
  const { t } = useI18n();
  const [sel, setSel] = useState(node.groups || []);
  const [err, setErr] = useState(null);
  useEffect(() => {
    if (open) {
      setSel(node.groups || []);
      setErr(null);
    }
  }, [open, node.groups]);
  const submit = async (e) => {
    e.preventDefault();
    try {
      await api.updateNode(node.id, { groups: sel });
      onOpenChange(false);
      onSaved();
    } catch (e2) {
      setErr(e2);
    }
  };
  return (
    <Dialog open={open} onOpenChange={onOpenChange} title={t('node.groups_title', { name: node.name })}>
      <form onSubmit={submit} className="space-y-3" noValidate>
        <NamePicker
          legend={t('nodes.groups')}
          names={(groups || []).map((g) => g.name)}
          value={sel}
          onChange={setSel}
          emptyText={t('nodes.no_groups_yet')}
        />
        <ErrorBanner error={err} />
        <FormActions onCancel={() => onOpenChange(false)} />
      </form>
    </Dialog>
  );
}

export default function NodeDetail() {
  const { id } = useParams();
  const { t, lang } = useI18n();
  const nav = useNavigate();
  const live = useLive();
  const res = useResource(() => api.node(id), [id]);
  const groups = useResource(() => api.groups(), []);
  const forwards = useResource(() => api.forwards(), []);
  useInterval(() => {
    res.reload();
    forwards.reload();
  }, 5000);
  const [dlg, setDlg] = useState(null);
  const writable = useCanWrite();

  if (res.loading) return <Loading />;
  if (!res.data) return <ErrorBanner error={res.error} />;
  const raw = res.data.node || res.data;
  const n = withLive(raw, live.nodes);
  const mine = (forwards.data || []).filter((f) => forwardOnNode(f, n));
  const s = sumLive(mine, live.forwards, n.id);
  const lastSeen = toUnix(n.last_seen);

  return (
    <div className="space-y-4">
      <nav aria-label={t('nav.breadcrumb')} className="text-sm">
        <Link to="/nodes" className="text-sky-800 underline">
          {t('nodes.title')}
        </Link>
      </nav>
      <PageHeader
        title={t('node.title', { name: n.name })}
        actions={
          writable ? (
            <>
              <Button variant="secondary" onClick={() => setDlg('rename')}>
                {t('node.rename')}
              </Button>
              <Button variant="secondary" onClick={() => setDlg('groups')}>
                {t('node.set_groups')}
              </Button>
              <Button variant="danger" onClick={() => setDlg('remove')}>
                {t('node.remove')}
              </Button>
            </>
          ) : null
        }
      />
      <ErrorBanner error={res.error} />
      <Card title={t('node.about')}>
        <dl className="grid grid-cols-2 gap-3 md:grid-cols-4">
          <Info label={t('nodes.col_status')}>
            <OnlineBadge online={n.online} />
          </Info>
          <Info label={t('node.last_seen')}>
            {lastSeen ? (
              <span title={formatDateTime(lastSeen, lang)}>
                <Ago ts={lastSeen} />
              </span>
            ) : (
              t('time.never')
            )}
          </Info>
          <Info label={t('nodes.col_version')}>{n.version || '–'}</Info>
          <Info label={t('node.hostname')}>{n.hostname || '–'}</Info>
          <Info label={t('nodes.col_addresses')}>{(n.addresses || []).join(', ') || '–'}</Info>
          <Info label={t('nodes.col_groups')}>{(n.groups || []).join(', ') || '–'}</Info>
          <Info label={t('nodes.col_rev')}>
            <RevBadge node={n} />
          </Info>
          <Info label={t('node.revisions')}>
            {t('node.rev_numbers', { applied: n.applied_rev ?? '–', desired: n.desired_rev ?? '–' })}
          </Info>
        </dl>
      </Card>
      <Card title={t('node.live')}>
        <dl className="grid grid-cols-2 gap-3 md:grid-cols-4">
          <Info label={t('chart.down')}>
            <span data-testid="node-down">{formatRate(s.down_bps)}</span>
          </Info>
          <Info label={t('chart.up')}>
            <span data-testid="node-up">{formatRate(s.up_bps)}</span>
          </Info>
          <Info label={t('fwd.col_conns')}>{formatCount(s.conns_active, lang)}</Info>
          <Info label={t('fwd.col_total')}>{formatBytes(s.bytes_up + s.bytes_down)}</Info>
        </dl>
      </Card>
      <Card title={t('node.errors')}>
        {n.errors?.length ? (
          <ul className="space-y-2" data-testid="apply-errors">
            {n.errors.map((e, i) => {
              const w = applyErrorWords(e);
              return (
                <li key={i} className="rounded border border-red-200 bg-red-50 p-2 text-sm text-red-900">
                  <p className="font-medium">{t('node.error_line', { kind: t(w.kindKey), name: w.name })}</p>
                  {w.explainKey ? <p>{t(w.explainKey)}</p> : null}
                  <p className="font-mono text-xs">{t('node.error_detail', { reason: w.reason })}</p>
                </li>
              );
            })}
          </ul>
        ) : (
          <Empty>{t('node.no_errors')}</Empty>
        )}
      </Card>
      <NodeTunnels node={n} onSaved={() => res.reload()} />
      <Card
        title={t('node.forwards')}
        actions={
          writable ? (
            <Button variant="secondary" onClick={() => nav(`/forwards/new?node=${encodeURIComponent(n.name)}`)}>
              {t('fwd.new')}
            </Button>
          ) : null
        }
      >
        {mine.length ? <ForwardTable forwards={mine} live={live.forwards} /> : <Empty>{t('node.no_forwards')}</Empty>}
      </Card>
      <RenameDialog
        node={n}
        open={dlg === 'rename'}
        onOpenChange={(o) => setDlg(o ? 'rename' : null)}
        onSaved={() => res.reload()}
      />
      <GroupsDialog
        node={n}
        groups={groups.data}
        open={dlg === 'groups'}
        onOpenChange={(o) => setDlg(o ? 'groups' : null)}
        onSaved={() => res.reload()}
      />
      <ConfirmDialog
        open={dlg === 'remove'}
        onOpenChange={(o) => setDlg(o ? 'remove' : null)}
        title={t('node.remove_title', { name: n.name })}
        description={t('node.remove_help')}
        confirmLabel={t('node.remove')}
        onConfirm={async () => {
          await api.deleteNode(n.id);
          nav('/nodes');
        }}
      />
    </div>
  );
}
