import { useState } from 'react';
import { Link } from 'react-router-dom';
import { useI18n } from '../i18n/index.jsx';
import { FormActions } from '../components/FormParts.jsx';
import { useLive } from '../live.jsx';
import { useCanWrite } from '../auth.jsx';
import { api } from '../lib/api.js';
import { useInterval, useResource } from '../lib/hooks.js';
import { formatRate } from '../lib/format.js';
import { forwardOnNode, sumLive, withLive } from '../lib/model.js';
import {
  apiErrorText,
  Button,
  Card,
  CopyField,
  Dialog,
  Empty,
  ErrorBanner,
  Field,
  Input,
  Loading,
  PageHeader,
  tableCls,
  tdCls,
  thCls,
} from '../components/ui.jsx';
import { OnlineBadge, RevBadge } from '../components/status.jsx';
import NamePicker from '../components/NamePicker.jsx';

// Add a node: name and groups, then the enroll command to run on it (the
// token inside is shown only this once).
export function AddNodeDialog({ open, onOpenChange, groups, onAdded }) {
  const { t } = useI18n();
  const [name, setName] = useState('');
  const [sel, setSel] = useState([]);
  const [errs, setErrs] = useState({});
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const [created, setCreated] = useState(null);

  const close = (o) => {
    if (!o) {
      setName('');
      setSel([]);
      setErrs({});
      setErr(null);
      setCreated(null);
    }
    onOpenChange(o);
  };

  const submit = async (e) => {
    e.preventDefault();
    const n = name.trim();
    if (!n) {
      setErrs({ name: t('v.required') });
      return;
    }
    setBusy(true);
    setErr(null);
    setErrs({});
    try {
      const r = await api.createNode({ name: n, groups: sel });
      setCreated(r);
      onAdded?.();
    } catch (e2) {
      if (e2.field) setErrs({ [e2.field]: apiErrorText(t, e2) });
      else setErr(e2);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Dialog
      open={open}
      onOpenChange={close}
      title={t('nodes.add_title')}
      description={created ? t('nodes.enroll_help') : t('nodes.add_help')}
    >
      {created ? (
        <div className="space-y-3">
          <CopyField label={t('nodes.enroll_command')} value={created.enroll_command || ''} />
          <p className="text-sm text-amber-800">{t('nodes.token_once')}</p>
          <div className="flex justify-end">
            <Button onClick={() => close(false)}>{t('common.done')}</Button>
          </div>
        </div>
      ) : (
        <form onSubmit={submit} className="space-y-3" noValidate>
          <Field label={t('nodes.name')} error={errs.name} hint={t('nodes.name_hint')}>
            {(c) => <Input {...c} value={name} onChange={(e) => setName(e.target.value)} autoFocus />}
          </Field>
          <NamePicker
            legend={t('nodes.groups')}
            names={(groups || []).map((g) => g.name)}
            value={sel}
            onChange={setSel}
            emptyText={t('nodes.no_groups_yet')}
            error={errs.groups}
          />
          <ErrorBanner error={err} />
          <FormActions onCancel={() => close(false)} busy={busy} submitLabel={t('nodes.add_submit')} />
        </form>
      )}
    </Dialog>
  );
}

export default function Nodes() {
  const { t } = useI18n();
  const live = useLive();
  const nodes = useResource(() => api.nodes(), []);
  const groups = useResource(() => api.groups(), []);
  const forwards = useResource(() => api.forwards(), []);
  useInterval(() => nodes.reload(), 5000);
  const [adding, setAdding] = useState(false);
  const writable = useCanWrite();

  const list = (nodes.data || []).map((n) => withLive(n, live.nodes));
  const fwds = forwards.data || [];

  return (
    <div className="space-y-4">
      <PageHeader
        title={t('nodes.title')}
        actions={writable ? <Button onClick={() => setAdding(true)}>{t('nodes.add')}</Button> : null}
      />
      <ErrorBanner error={nodes.error} />
      <Card>
        {nodes.loading ? (
          <Loading />
        ) : list.length === 0 ? (
          <Empty>{t('nodes.empty')}</Empty>
        ) : (
          <div className="overflow-x-auto">
            <table className={tableCls}>
              <thead>
                <tr>
                  <th className={thCls}>{t('nodes.col_name')}</th>
                  <th className={thCls}>{t('nodes.col_status')}</th>
                  <th className={thCls}>{t('nodes.col_groups')}</th>
                  <th className={thCls}>{t('nodes.col_version')}</th>
                  <th className={thCls}>{t('nodes.col_addresses')}</th>
                  <th className={thCls}>{t('nodes.col_traffic')}</th>
                  <th className={thCls}>{t('nodes.col_rev')}</th>
                </tr>
              </thead>
              <tbody>
                {list.map((n) => {
                  const s = sumLive(
                    fwds.filter((f) => forwardOnNode(f, n)),
                    live.forwards,
                    n.id,
                  );
                  return (
                    <tr key={n.id}>
                      <td data-label={t('nodes.col_name')} className={tdCls}>
                        <Link to={`/nodes/${encodeURIComponent(n.id)}`} className="font-medium text-sky-800 underline">
                          {n.name}
                        </Link>
                        {n.hostname ? <div className="text-xs text-slate-500">{n.hostname}</div> : null}
                      </td>
                      <td data-label={t('nodes.col_status')} className={tdCls}>
                        <OnlineBadge online={n.online} />
                      </td>
                      <td data-label={t('nodes.col_groups')} className={tdCls}>
                        {(n.groups || []).join(', ') || '–'}
                      </td>
                      <td data-label={t('nodes.col_version')} className={tdCls}>
                        {n.version || '–'}
                      </td>
                      <td data-label={t('nodes.col_addresses')} className={tdCls + ' break-all'}>
                        {(n.addresses || []).join(', ') || '–'}
                      </td>
                      <td data-label={t('nodes.col_traffic')} className={tdCls + ' whitespace-nowrap'}>
                        {t('live.up_down', { up: formatRate(s.up_bps), down: formatRate(s.down_bps) })}
                      </td>
                      <td data-label={t('nodes.col_rev')} className={tdCls}>
                        <RevBadge node={n} />
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </Card>
      <AddNodeDialog open={adding} onOpenChange={setAdding} groups={groups.data} onAdded={() => nodes.reload()} />
    </div>
  );
}
