import { useEffect, useRef, useState } from 'react';
import { Link, useNavigate, useParams, useSearchParams } from 'react-router-dom';
import { useI18n } from '../i18n/index.jsx';
import { useLive } from '../live.jsx';
import { useAuth, canWrite } from '../auth.jsx';
import { FormActions, LimitFields } from '../components/FormParts.jsx';
import { api } from '../lib/api.js';
import { useResource } from '../lib/hooks.js';
import { formatBytes, formatCount, formatRate } from '../lib/format.js';
import {
  BALANCES,
  bodyFromForm,
  emptyForm,
  formFieldForApiField,
  formFromForward,
  hasAdvanced,
  PROTOS,
  PROXY_PROTOCOLS,
  validateForm,
} from '../lib/forward.js';
import { liveOf } from '../lib/model.js';
import {
  Button,
  Card,
  Checkbox,
  ConfirmDialog,
  ErrorBanner,
  Field,
  Input,
  Loading,
  PageHeader,
  Select,
} from '../components/ui.jsx';

const ADVANCED = new Set([
  'rate_up_per_conn',
  'rate_down_per_conn',
  'burst',
  'connect_timeout',
  'idle_timeout',
  'udp_idle_timeout',
  'hc_interval',
  'hc_timeout',
  'hc_rise',
  'hc_fall',
]);
const isAdvancedField = (k) => ADVANCED.has(k);

// An error to show: an i18n key from the client checks, or the server's
// words for one it refused.
function errText(t, e) {
  if (!e) return null;
  if (e.key) return t(e.key);
  if (e.code === 'conflict') return t('v.conflict', { message: e.text });
  return t('v.server', { message: e.text });
}

export default function ForwardEdit() {
  const { id } = useParams();
  const isNew = !id;
  const [params] = useSearchParams();
  const { t, lang } = useI18n();
  const nav = useNavigate();
  const live = useLive();
  const nodes = useResource(() => api.nodes(), []);
  const groups = useResource(() => api.groups(), []);
  const [form, setForm] = useState(() => {
    const f = emptyForm();
    if (params.get('group')) {
      f.scope = 'group';
      f.group = params.get('group');
    } else if (params.get('node')) f.node = params.get('node');
    return f;
  });
  const [loaded, setLoaded] = useState(isNew);
  const [loadErr, setLoadErr] = useState(null);
  const [errors, setErrors] = useState({});
  const [banner, setBanner] = useState(null);
  const [busy, setBusy] = useState(false);
  const [removing, setRemoving] = useState(false);
  const [advOpen, setAdvOpen] = useState(false);
  const { user } = useAuth();
  const writable = canWrite(user);
  const formRef = useRef(null);

  useEffect(() => {
    if (isNew) return;
    api.forward(id).then(
      (r) => {
        const f = formFromForward(r.forward || r);
        setForm(f);
        setAdvOpen(hasAdvanced(f));
        setLoaded(true);
      },
      (e) => setLoadErr(e),
    );
  }, [id, isNew]);

  // A single node/group known: pick it, as the only sensible choice.
  useEffect(() => {
    if (isNew && !form.node && form.scope === 'node' && nodes.data?.length === 1)
      setForm((f) => ({ ...f, node: nodes.data[0].name }));
  }, [isNew, nodes.data, form.node, form.scope]);

  const set = (k) => (v) => setForm((f) => ({ ...f, [k]: v }));
  const setEv = (k) => (e) => set(k)(e.target.value);
  const err = (k) => errText(t, errors[k]);

  const focusFirstError = () => setTimeout(() => formRef.current?.querySelector('[aria-invalid="true"]')?.focus(), 0);

  const submit = async (e) => {
    e.preventDefault();
    setBanner(null);
    // drop blank target rows so target indexes match the API's targets[i]
    const clean = { ...form, targets: form.targets.filter((x) => x.trim()) };
    if (!clean.targets.length) clean.targets = [''];
    setForm(clean);
    const v = validateForm(clean);
    if (Object.keys(v).length) {
      if (Object.keys(v).some(isAdvancedField)) setAdvOpen(true);
      setErrors(Object.fromEntries(Object.entries(v).map(([k, key]) => [k, { key }])));
      focusFirstError();
      return;
    }
    setErrors({});
    setBusy(true);
    try {
      const body = bodyFromForm(clean, !isNew);
      if (isNew) await api.createForward(body);
      else await api.updateForward(id, body);
      nav('/forwards');
    } catch (e2) {
      const f = formFieldForApiField(e2.field, e2.message);
      if (f) {
        // the server prefixes its message with the field ("listen: ...");
        // beside the field that is said already
        const text = String(e2.message || '').replace(/^[a-z_]+(\[\d+\])?: /, '');
        if (isAdvancedField(f)) setAdvOpen(true);
        setErrors({ [f]: { code: e2.code, text } });
        focusFirstError();
      } else setBanner(e2);
    } finally {
      setBusy(false);
    }
  };

  if (loadErr) return <ErrorBanner error={loadErr} />;
  if (!loaded) return <Loading />;
  const l = !isNew ? liveOf({ id }, live.forwards) : null;

  return (
    <div className="space-y-4">
      <nav aria-label={t('nav.breadcrumb')} className="text-sm">
        <Link to="/forwards" className="text-sky-800 underline">
          {t('fwd.title')}
        </Link>
      </nav>
      <PageHeader
        title={isNew ? t('fwd.new_title') : t('fwd.edit_title', { name: form.name })}
        actions={
          !isNew && writable ? (
            <Button variant="danger" onClick={() => setRemoving(true)}>
              {t('common.delete')}
            </Button>
          ) : null
        }
      />
      {l ? (
        <Card title={t('fwd.live')}>
          <dl className="grid grid-cols-2 gap-3 md:grid-cols-4 text-sm">
            <div>
              <dt className="text-xs text-slate-500">{t('fwd.col_rate')}</dt>
              <dd data-testid="edit-live-rate">
                {t('live.up_down', { up: formatRate(l.up_bps), down: formatRate(l.down_bps) })}
              </dd>
            </div>
            <div>
              <dt className="text-xs text-slate-500">{t('fwd.col_conns')}</dt>
              <dd>{formatCount(l.conns_active ?? 0, lang)}</dd>
            </div>
            <div>
              <dt className="text-xs text-slate-500">{t('fwd.col_total')}</dt>
              <dd>{t('live.up_down', { up: formatBytes(l.bytes_up ?? 0), down: formatBytes(l.bytes_down ?? 0) })}</dd>
            </div>
          </dl>
        </Card>
      ) : null}
      <form ref={formRef} onSubmit={submit} noValidate className="space-y-4">
        <Card title={t('fwd.sec_general')}>
          <div className="grid grid-cols-1 gap-3 md:grid-cols-2">
            <Field label={t('fwd.name')} error={err('name')}>
              {(c) => <Input {...c} value={form.name} onChange={setEv('name')} />}
            </Field>
            <div className="flex items-end pb-1">
              <Checkbox label={t('fwd.enabled')} checked={form.enabled} onChange={set('enabled')} />
            </div>
            <fieldset className="space-y-1">
              <legend className="mb-1 text-sm font-medium text-slate-700">{t('fwd.runs_on')}</legend>
              <div className="flex gap-4">
                {['node', 'group'].map((s) => (
                  <label key={s} className="flex items-center gap-1.5 text-sm">
                    <input
                      type="radio"
                      name="scope"
                      value={s}
                      checked={form.scope === s}
                      onChange={() => set('scope')(s)}
                      className="h-4 w-4 accent-sky-700"
                    />
                    {t('fwd.scope_' + s)}
                  </label>
                ))}
              </div>
            </fieldset>
            {form.scope === 'node' ? (
              <Field label={t('fwd.node')} error={err('node')}>
                {(c) => (
                  <Select {...c} value={form.node} onChange={setEv('node')}>
                    <option value="">{t('fwd.pick_node')}</option>
                    {(nodes.data || []).map((n) => (
                      <option key={n.id} value={n.name}>
                        {n.name}
                      </option>
                    ))}
                    {form.node && !(nodes.data || []).some((n) => n.name === form.node) ? (
                      <option value={form.node}>{form.node}</option>
                    ) : null}
                  </Select>
                )}
              </Field>
            ) : (
              <Field label={t('fwd.group')} error={err('group')}>
                {(c) => (
                  <Select {...c} value={form.group} onChange={setEv('group')}>
                    <option value="">{t('fwd.pick_group')}</option>
                    {(groups.data || []).map((g) => (
                      <option key={g.id} value={g.name}>
                        {g.name}
                      </option>
                    ))}
                    {form.group && !(groups.data || []).some((g) => g.name === form.group) ? (
                      <option value={form.group}>{form.group}</option>
                    ) : null}
                  </Select>
                )}
              </Field>
            )}
          </div>
        </Card>

        <Card title={t('fwd.sec_listen')}>
          <div className="grid grid-cols-1 gap-3 md:grid-cols-3">
            <Field label={t('fwd.listen_addr')} error={err('listen_addr')} hint={t('fwd.listen_addr_hint')}>
              {(c) => <Input {...c} value={form.listen_addr} onChange={setEv('listen_addr')} inputMode="decimal" />}
            </Field>
            <Field label={t('fwd.ports')} error={err('ports')} hint={t('fwd.ports_hint')}>
              {(c) => <Input {...c} value={form.ports} onChange={setEv('ports')} inputMode="numeric" />}
            </Field>
            <Field label={t('fwd.proto')} error={err('proto')}>
              {(c) => (
                <Select {...c} value={form.proto} onChange={setEv('proto')}>
                  {PROTOS.map((p) => (
                    <option key={p} value={p}>
                      {t('proto.' + p)}
                    </option>
                  ))}
                </Select>
              )}
            </Field>
          </div>
        </Card>

        <Card title={t('fwd.sec_targets')}>
          <div className="space-y-2">
            {form.targets.map((tg, i) => (
              <div key={i} className="flex items-start gap-2">
                <Field
                  className="flex-1"
                  label={t('fwd.target_n', { n: i + 1 })}
                  error={err(`targets[${i}]`)}
                  hint={i === 0 ? t('fwd.target_hint') : null}
                >
                  {(c) => (
                    <Input
                      {...c}
                      value={tg}
                      onChange={(e) => set('targets')(form.targets.map((x, j) => (j === i ? e.target.value : x)))}
                    />
                  )}
                </Field>
                {form.targets.length > 1 ? (
                  <Button
                    variant="secondary"
                    className="mt-6"
                    aria-label={t('fwd.target_remove', { n: i + 1 })}
                    onClick={() => set('targets')(form.targets.filter((_, j) => j !== i))}
                  >
                    {t('common.remove')}
                  </Button>
                ) : null}
              </div>
            ))}
            <Button variant="secondary" onClick={() => set('targets')([...form.targets, ''])}>
              {t('fwd.target_add')}
            </Button>
            <div className="grid grid-cols-1 gap-3 pt-2 md:grid-cols-3">
              <Field label={t('fwd.balance')} error={err('balance')}>
                {(c) => (
                  <Select {...c} value={form.balance} onChange={setEv('balance')}>
                    {BALANCES.map((b) => (
                      <option key={b} value={b}>
                        {t('balance.' + b)}
                      </option>
                    ))}
                  </Select>
                )}
              </Field>
              <Field label={t('fwd.proxy_protocol')} error={err('proxy_protocol')} hint={t('fwd.proxy_protocol_hint')}>
                {(c) => (
                  <Select {...c} value={form.proxy_protocol} onChange={setEv('proxy_protocol')}>
                    {PROXY_PROTOCOLS.map((p) => (
                      <option key={p || 'off'} value={p}>
                        {t('pp.' + (p || 'off'))}
                      </option>
                    ))}
                  </Select>
                )}
              </Field>
            </div>
          </div>
        </Card>

        <Card title={t('fwd.sec_limits')}>
          <p className="mb-3 text-xs text-slate-500">{t('fwd.limits_help')}</p>
          <div className="grid grid-cols-1 gap-3 md:grid-cols-2 lg:grid-cols-4">
            <LimitFields
              fields={['rate_up', 'rate_down', 'max_conns', 'max_conns_per_ip']}
              form={form}
              err={err}
              setEv={setEv}
            />
          </div>
        </Card>

        <section className="rounded-lg border border-slate-200 bg-white shadow-sm">
          <h2>
            <button
              type="button"
              aria-expanded={advOpen}
              aria-controls="fwd-advanced"
              onClick={() => setAdvOpen((o) => !o)}
              className="flex w-full items-center justify-between rounded-lg p-4 text-left text-base font-semibold text-slate-800 focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-500"
            >
              {t('fwd.sec_advanced')}
              <span aria-hidden="true">{advOpen ? '−' : '+'}</span>
            </button>
          </h2>
          <div id="fwd-advanced" hidden={!advOpen} className="space-y-4 px-4 pb-4">
            <p className="text-xs text-slate-500">{t('fwd.advanced_help')}</p>
            <div className="grid grid-cols-1 gap-3 md:grid-cols-3">
              <LimitFields
                fields={[
                  'rate_up_per_conn',
                  'rate_down_per_conn',
                  'burst',
                  'connect_timeout',
                  'idle_timeout',
                  'udp_idle_timeout',
                ]}
                form={form}
                err={err}
                setEv={setEv}
              />
            </div>
            <fieldset className="space-y-3">
              <legend className="sr-only">{t('fwd.health_check')}</legend>
              <Checkbox label={t('fwd.health_check')} checked={form.hc_enabled} onChange={set('hc_enabled')} />
              {form.hc_enabled ? (
                <div className="grid grid-cols-2 gap-3 md:grid-cols-4">
                  <Field
                    label={t('fwd.hc_interval')}
                    error={err('hc_interval')}
                    hint={t('fwd.duration_hint', { d: '2s' })}
                  >
                    {(c) => <Input {...c} value={form.hc_interval} onChange={setEv('hc_interval')} />}
                  </Field>
                  <Field
                    label={t('fwd.hc_timeout')}
                    error={err('hc_timeout')}
                    hint={t('fwd.duration_hint', { d: '1s' })}
                  >
                    {(c) => <Input {...c} value={form.hc_timeout} onChange={setEv('hc_timeout')} />}
                  </Field>
                  <Field label={t('fwd.hc_rise')} error={err('hc_rise')}>
                    {(c) => <Input {...c} value={form.hc_rise} onChange={setEv('hc_rise')} inputMode="numeric" />}
                  </Field>
                  <Field label={t('fwd.hc_fall')} error={err('hc_fall')}>
                    {(c) => <Input {...c} value={form.hc_fall} onChange={setEv('hc_fall')} inputMode="numeric" />}
                  </Field>
                </div>
              ) : null}
            </fieldset>
          </div>
        </section>

        <ErrorBanner error={banner} />
        <FormActions
          writable={writable}
          busy={busy}
          submitLabel={isNew ? t('fwd.create') : t('common.save')}
          onCancel={() => nav('/forwards')}
          role={user?.role}
        />
      </form>
      <ConfirmDialog
        open={removing}
        onOpenChange={setRemoving}
        title={t('fwd.delete_title', { name: form.name })}
        description={t('fwd.delete_help')}
        confirmLabel={t('common.delete')}
        onConfirm={async () => {
          await api.deleteForward(id);
          nav('/forwards');
        }}
      />
    </div>
  );
}
