// Firewall policies: the list, an editor (structured fields for name,
// priority, targets; JSON for rules and sets), a node's view (the exact nft
// text it gets, the diff against what it runs, rule counters) and the
// iptables-save import. doc/api.md, "Firewall policies".
import { useEffect, useState } from 'react';
import { useI18n } from '../i18n/index.jsx';
import { FormActions } from '../components/FormParts.jsx';
import { api } from '../lib/api.js';
import { useCanWrite } from '../auth.jsx';
import { useResource } from '../lib/hooks.js';
import {
  apiErrorText,
  Badge,
  Button,
  Card,
  Checkbox,
  ConfirmDialog,
  Dialog,
  Empty,
  ErrorBanner,
  Field,
  Input,
  Loading,
  PageHeader,
  Select,
  tableCls,
  tdCls,
  thCls,
} from '../components/ui.jsx';
import NamePicker from '../components/NamePicker.jsx';
import { policyBody, policyFieldErrors } from '../lib/policy.js';
import { applyErrorWords } from '../lib/model.js';

const textareaCls =
  'block w-full rounded-md border border-slate-300 bg-white px-2 py-1.5 font-mono text-xs text-slate-900 focus:outline-none focus:ring-2 focus:ring-sky-500';

// A monospace text box for JSON and nft text; takes Field's props.
function TextBox({ invalid, className, ...props }) {
  return (
    <textarea
      aria-invalid={invalid ? 'true' : undefined}
      spellCheck={false}
      className={textareaCls + (invalid ? ' border-red-600' : '') + (className ? ' ' + className : '')}
      {...props}
    />
  );
}

function targetsText(t, p) {
  const n = p.targets?.nodes || [];
  const g = p.targets?.groups || [];
  if (!n.length && !g.length) return t('fw.no_targets');
  return [...n.map((x) => t('fw.target_node', { name: x })), ...g.map((x) => t('fw.target_group', { name: x }))].join(
    ', ',
  );
}

// Where a policy stands on the nodes it lands on: failing ones with the
// node's words, the rest counted.
function PolicyNodes({ status }) {
  const { t } = useI18n();
  if (!status?.length) return null;
  const bad = status.filter((x) => !x.ok);
  const ok = status.length - bad.length;
  return (
    <div className="mt-1 space-y-1 text-xs" data-testid="policy-status">
      {ok ? <Badge tone="green">{t('fw.nodes_ok', { n: ok })}</Badge> : null}
      {bad.map((x) => {
        const w = applyErrorWords({ kind: 'policy', error: x.error });
        return (
          <div key={x.node} className="text-red-800">
            <Badge tone="red">{x.node}</Badge> {w.explainKey ? t(w.explainKey) : null}
            <pre className="mt-0.5 max-h-24 overflow-auto whitespace-pre-wrap text-[11px] text-red-900">{x.error}</pre>
          </div>
        );
      })}
    </div>
  );
}

// Create (policy = null or a draft without id) or edit a policy.
function PolicyDialog({ policy, nodes, groups, open, onOpenChange, onSaved }) {
  const { t } = useI18n();
  const [form, setForm] = useState(null);
  const [errs, setErrs] = useState({});
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (!open) return;
    const p = policy || {};
    setForm({
      name: p.name || '',
      priority: String(p.priority ?? 0),
      enabled: p.enabled ?? true,
      confirm: p.confirm_timeout ? String(p.confirm_timeout) : '',
      description: p.description || '',
      nodes: p.targets?.nodes || [],
      groups: p.targets?.groups || [],
      rules: JSON.stringify(p.rules || [], null, 2),
      sets: JSON.stringify(p.sets || [], null, 2),
    });
    setErrs({});
    setErr(null);
  }, [open, policy]);
  if (!form) return null;
  const set = (k) => (v) => setForm((f) => ({ ...f, [k]: v }));
  const submit = async (e) => {
    e.preventDefault();
    const { body, errors } = policyBody(form);
    if (errors) return setErrs(Object.fromEntries(Object.entries(errors).map(([k, v]) => [k, t(v)])));
    setBusy(true);
    setErr(null);
    setErrs({});
    try {
      if (policy?.id) await api.updatePolicy(policy.id, body);
      else await api.createPolicy(body);
      onOpenChange(false);
      onSaved();
    } catch (e2) {
      const fe = policyFieldErrors(e2);
      if (fe) setErrs({ [fe]: apiErrorText(t, e2) });
      else setErr(e2);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog
      open={open}
      onOpenChange={onOpenChange}
      title={policy?.id ? t('fw.edit_title', { name: policy.name }) : t('fw.new_title')}
      description={t('fw.editor_help')}
    >
      <form onSubmit={submit} className="space-y-3" noValidate>
        <div className="grid grid-cols-1 gap-3 sm:grid-cols-3">
          <Field label={t('fw.name')} error={errs.name} className="sm:col-span-2">
            {(c) => <Input {...c} value={form.name} onChange={(e) => set('name')(e.target.value)} autoFocus />}
          </Field>
          <Field label={t('fw.priority')} error={errs.priority} hint={t('fw.priority_hint')}>
            {(c) => (
              <Input
                {...c}
                inputMode="numeric"
                value={form.priority}
                onChange={(e) => set('priority')(e.target.value)}
              />
            )}
          </Field>
        </div>
        <Field label={t('fw.description')} error={errs.description}>
          {(c) => <Input {...c} value={form.description} onChange={(e) => set('description')(e.target.value)} />}
        </Field>
        <div className="grid grid-cols-1 gap-3 sm:grid-cols-2">
          <Checkbox label={t('fw.enabled')} checked={form.enabled} onChange={set('enabled')} />
          <Field label={t('fw.confirm')} error={errs.confirm_timeout} hint={t('fw.confirm_hint')}>
            {(c) => (
              <Input {...c} inputMode="numeric" value={form.confirm} onChange={(e) => set('confirm')(e.target.value)} />
            )}
          </Field>
        </div>
        <div className="grid grid-cols-1 gap-3 sm:grid-cols-2">
          <NamePicker
            legend={t('fw.target_nodes')}
            names={(nodes || []).map((n) => n.name)}
            value={form.nodes}
            onChange={set('nodes')}
            error={errs.nodes}
          />
          <NamePicker
            legend={t('fw.target_groups')}
            names={(groups || []).map((g) => g.name)}
            value={form.groups}
            onChange={set('groups')}
            error={errs.groups}
          />
        </div>
        <Field label={t('fw.rules')} error={errs.rules} hint={t('fw.rules_hint')}>
          {(c) => <TextBox {...c} rows={12} value={form.rules} onChange={(e) => set('rules')(e.target.value)} />}
        </Field>
        <Field label={t('fw.sets')} error={errs.sets} hint={t('fw.sets_hint')}>
          {(c) => <TextBox {...c} rows={4} value={form.sets} onChange={(e) => set('sets')(e.target.value)} />}
        </Field>
        <ErrorBanner error={err} />
        <FormActions onCancel={() => onOpenChange(false)} busy={busy} />
      </form>
    </Dialog>
  );
}

// iptables-save text -> a policy draft for the editor.
function ImportDialog({ open, onOpenChange, onDraft }) {
  const { t } = useI18n();
  const [text, setText] = useState('');
  const [name, setName] = useState('imported');
  const [res, setRes] = useState(null);
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (open) {
      setRes(null);
      setErr(null);
    }
  }, [open]);
  const convert = async (e) => {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      setRes(await api.importIptables({ text, name: name.trim() || 'imported' }));
    } catch (e2) {
      setErr(e2);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog open={open} onOpenChange={onOpenChange} title={t('fw.import_title')} description={t('fw.import_help')}>
      <form onSubmit={convert} className="space-y-3" noValidate>
        <Field label={t('fw.name')}>
          {(c) => <Input {...c} value={name} onChange={(e) => setName(e.target.value)} />}
        </Field>
        <Field label={t('fw.import_text')}>
          {(c) => <TextBox {...c} rows={10} value={text} onChange={(e) => setText(e.target.value)} />}
        </Field>
        <ErrorBanner error={err} />
        {res ? (
          <div className="space-y-2 text-sm" data-testid="import-result">
            <p>{t('fw.import_result', { n: res.policy.rules.length, converter: res.converter })}</p>
            <p className="text-slate-600">{res.message}</p>
            {res.skipped.length ? (
              <div>
                <p className="font-medium">{t('fw.import_skipped', { n: res.skipped.length })}</p>
                <pre className="max-h-32 overflow-auto rounded bg-slate-50 p-2 text-xs">{res.skipped.join('\n')}</pre>
              </div>
            ) : null}
          </div>
        ) : null}
        <div className="flex justify-end gap-2">
          <Button variant="secondary" onClick={() => onOpenChange(false)}>
            {t('common.cancel')}
          </Button>
          <Button type="submit" variant={res ? 'secondary' : 'primary'} disabled={busy || !text.trim()}>
            {t('fw.import_convert')}
          </Button>
          {res ? (
            <Button
              onClick={() => {
                onOpenChange(false);
                onDraft(res.policy);
              }}
            >
              {t('fw.import_use')}
            </Button>
          ) : null}
        </div>
      </form>
    </Dialog>
  );
}

// What one node runs: preview, diff, counters.
function NodeFirewall({ nodes }) {
  const { t } = useI18n();
  const [node, setNode] = useState('');
  const [view, setView] = useState(null);
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const load = async (n) => {
    setNode(n);
    setView(null);
    setErr(null);
    if (!n) return;
    setBusy(true);
    try {
      setView(await api.nodeFirewall(n));
    } catch (e) {
      setErr(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Card title={t('fw.node_title')}>
      <div className="mb-3 flex flex-wrap items-end gap-2">
        <Field label={t('fw.node_pick')}>
          {(c) => (
            <Select {...c} value={node} onChange={(e) => load(e.target.value)}>
              <option value="">{t('fw.node_none')}</option>
              {(nodes || []).map((n) => (
                <option key={n.id} value={n.name}>
                  {n.name}
                </option>
              ))}
            </Select>
          )}
        </Field>
        {node ? (
          <Button variant="secondary" onClick={() => load(node)} disabled={busy}>
            {t('fw.refresh')}
          </Button>
        ) : null}
      </div>
      <ErrorBanner error={err} />
      {busy ? <Loading /> : null}
      {view ? (
        <div className="space-y-3" data-testid="node-firewall">
          <div className="flex flex-wrap gap-2">
            {view.in_sync === true ? <Badge tone="green">{t('fw.in_sync')}</Badge> : null}
            {view.in_sync === false ? <Badge tone="amber">{t('fw.out_of_sync')}</Badge> : null}
            {view.confirm_pending ? <Badge tone="sky">{t('fw.confirm_pending')}</Badge> : null}
            {view.live_error ? <Badge tone="slate">{t('fw.live_unavailable', { why: view.live_error })}</Badge> : null}
          </div>
          {view.diff_error ? <ErrorBanner error={t('fw.diff_error', { why: view.diff_error })} /> : null}
          {typeof view.diff === 'string' && view.diff ? (
            <section>
              <h3 className="mb-1 text-sm font-semibold">{t('fw.diff')}</h3>
              <pre className="max-h-80 overflow-auto rounded bg-slate-50 p-2 text-xs">
                {view.diff.split('\n').map((l, i) => (
                  <span
                    key={i}
                    className={l.startsWith('+') ? 'text-green-800' : l.startsWith('-') ? 'text-red-800' : ''}
                  >
                    {l + '\n'}
                  </span>
                ))}
              </pre>
            </section>
          ) : null}
          <section>
            <h3 className="mb-1 text-sm font-semibold">{t('fw.preview')}</h3>
            <pre className="max-h-96 overflow-auto rounded bg-slate-50 p-2 text-xs" data-testid="fw-preview">
              {view.preview || t('fw.preview_none')}
            </pre>
          </section>
          {view.counters?.length ? (
            <section>
              <h3 className="mb-1 text-sm font-semibold">{t('fw.counters')}</h3>
              <table className={tableCls}>
                <thead>
                  <tr>
                    <th className={thCls}>{t('fw.col_counter')}</th>
                    <th className={thCls}>{t('fw.col_what')}</th>
                    <th className={thCls}>{t('fw.col_packets')}</th>
                    <th className={thCls}>{t('fw.col_bytes')}</th>
                  </tr>
                </thead>
                <tbody>
                  {view.counters.map((c) => (
                    <tr key={c.name}>
                      <td className={tdCls}>{c.name}</td>
                      <td className={tdCls}>
                        {c.policy
                          ? t('fw.counter_rule', { policy: c.policy, rule: c.rule + 1 }) +
                            (c.comment ? ` — ${c.comment}` : '')
                          : c.forward
                            ? t('fw.counter_forward', { forward: c.forward, dir: c.direction })
                            : ''}
                      </td>
                      <td className={tdCls}>{c.packets}</td>
                      <td className={tdCls}>{c.bytes}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </section>
          ) : null}
        </div>
      ) : null}
    </Card>
  );
}

export default function Firewall() {
  const { t } = useI18n();
  const policies = useResource(() => api.policies(), []);
  const nodes = useResource(() => api.nodes(), []);
  const groups = useResource(() => api.groups(), []);
  const [editing, setEditing] = useState(null); // 'new' | policy | draft
  const [removing, setRemoving] = useState(null);
  const [importing, setImporting] = useState(false);
  const writable = useCanWrite();
  const list = policies.data || [];
  return (
    <div className="space-y-4">
      <PageHeader
        title={t('fw.title')}
        actions={
          writable ? (
            <div className="flex gap-2">
              <Button variant="secondary" onClick={() => setImporting(true)}>
                {t('fw.import')}
              </Button>
              <Button onClick={() => setEditing('new')}>{t('fw.new')}</Button>
            </div>
          ) : null
        }
      />
      <p className="text-sm text-slate-600">{t('fw.intro')}</p>
      <ErrorBanner error={policies.error} />
      <Card>
        {policies.loading ? (
          <Loading />
        ) : list.length === 0 ? (
          <Empty>{t('fw.empty')}</Empty>
        ) : (
          <div className="overflow-x-auto">
            <table className={tableCls}>
              <thead>
                <tr>
                  <th className={thCls}>{t('fw.priority')}</th>
                  <th className={thCls}>{t('fw.name')}</th>
                  <th className={thCls}>{t('fw.col_rules')}</th>
                  <th className={thCls}>{t('fw.col_targets')}</th>
                  <th className={thCls}>{t('fw.col_state')}</th>
                  <th className={thCls}>
                    <span className="sr-only">{t('common.actions')}</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {list.map((p) => (
                  <tr key={p.id}>
                    <td className={tdCls}>{p.priority}</td>
                    <td className={tdCls}>
                      <span className="font-medium">{p.name}</span>
                      {p.description ? <span className="block text-xs text-slate-500">{p.description}</span> : null}
                    </td>
                    <td className={tdCls}>{p.rules.length}</td>
                    <td className={tdCls}>
                      {targetsText(t, p)}
                      <PolicyNodes status={p.status} />
                    </td>
                    <td className={tdCls}>
                      {p.enabled ? <Badge tone="green">{t('fw.on')}</Badge> : <Badge>{t('fw.off')}</Badge>}
                    </td>
                    <td className={tdCls}>
                      {writable ? (
                        <div className="flex gap-1">
                          <Button size="sm" variant="secondary" onClick={() => setEditing(p)}>
                            {t('common.edit')}
                          </Button>
                          <Button size="sm" variant="danger" onClick={() => setRemoving(p)}>
                            {t('common.delete')}
                          </Button>
                        </div>
                      ) : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Card>
      <NodeFirewall nodes={nodes.data} />
      <PolicyDialog
        policy={editing === 'new' ? null : editing}
        nodes={nodes.data}
        groups={groups.data}
        open={!!editing}
        onOpenChange={(o) => !o && setEditing(null)}
        onSaved={policies.reload}
      />
      <ImportDialog open={importing} onOpenChange={setImporting} onDraft={(d) => setEditing(d)} />
      <ConfirmDialog
        open={!!removing}
        onOpenChange={(o) => !o && setRemoving(null)}
        title={t('fw.delete_title', { name: removing?.name || '' })}
        description={t('fw.delete_help')}
        confirmLabel={t('common.delete')}
        onConfirm={async () => {
          await api.deletePolicy(removing.id);
          setRemoving(null);
          policies.reload();
        }}
      />
    </div>
  );
}
