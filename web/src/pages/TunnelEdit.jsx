import { useEffect, useRef, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router-dom';
import { useI18n } from '../i18n/index.jsx';
import { useLive } from '../live.jsx';
import { useAuth, canWrite } from '../auth.jsx';
import { FormActions, LimitFields } from '../components/FormParts.jsx';
import { api } from '../lib/api.js';
import { useInterval, useResource } from '../lib/hooks.js';
import { formatBytes, formatCount, formatDateTime, formatRate } from '../lib/format.js';
import {
  bodyFromTunnelForm,
  DIRECTIONS,
  emptyTunnelForm,
  EXIT_BALANCES,
  fitLinks,
  formFieldForTunnelField,
  formFromTunnel,
  linkTransport,
  TRANSPORTS,
  tunnelLive,
  validateTunnel,
  withLiveLinks,
} from '../lib/tunnel.js';
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
import TunnelPath from '../components/TunnelPath.jsx';

function errText(t, e) {
  if (!e) return null;
  if (e.key) return t(e.key);
  if (e.code === 'conflict') return t('v.conflict', { message: e.text });
  return t('v.server', { message: e.text });
}

// A <select> of node names, keeping a stored name that is not (or no
// longer) in the list.
function NodeSelect({ value, onChange, nodes, pickKey, ...rest }) {
  const { t } = useI18n();
  return (
    <Select {...rest} value={value} onChange={(e) => onChange(e.target.value)}>
      <option value="">{t(pickKey || 'fwd.pick_node')}</option>
      {nodes.map((n) => (
        <option key={n.id} value={n.name}>
          {n.name}
        </option>
      ))}
      {value && !nodes.some((n) => n.name === value) ? <option value={value}>{value}</option> : null}
    </Select>
  );
}

export default function TunnelEdit() {
  const { id } = useParams();
  const isNew = !id;
  const { t, lang } = useI18n();
  const nav = useNavigate();
  const live = useLive();
  const nodes = useResource(() => api.nodes(), []);
  const groups = useResource(() => api.groups(), []);
  const [form, setForm] = useState(emptyTunnelForm);
  const [stored, setStored] = useState(null); // the API's view (path, problems)
  const [loaded, setLoaded] = useState(isNew);
  const [loadErr, setLoadErr] = useState(null);
  const [errors, setErrors] = useState({});
  const [banner, setBanner] = useState(null);
  const [busy, setBusy] = useState(false);
  const [removing, setRemoving] = useState(false);
  const [rotating, setRotating] = useState(false);
  const { user } = useAuth();
  const writable = canWrite(user);
  const formRef = useRef(null);

  useEffect(() => {
    if (isNew) return;
    api.tunnel(id).then(
      (r) => {
        setForm(formFromTunnel(r));
        setStored(r);
        setLoaded(true);
      },
      (e) => setLoadErr(e),
    );
  }, [id, isNew]);
  // the path's states move (a node connects, an agent reports): re-read them
  useInterval(() => {
    if (!isNew && loaded) api.tunnel(id).then(setStored, () => {});
  }, 5000);

  const nodeList = nodes.data || [];
  const set = (k) => (v) => setForm((f) => ({ ...f, [k]: v }));
  const setEv = (k) => (e) => set(k)(e.target.value);
  const err = (k) => errText(t, errors[k]);
  const setList = (k, i, v) => setForm((f) => fitLinks({ ...f, [k]: f[k].map((x, j) => (j === i ? v : x)) }));
  const setLink = (i, k, v) =>
    setForm((f) => ({ ...f, links: f.links.map((l, j) => (j === i ? { ...l, [k]: v } : l)) }));
  const focusFirstError = () => setTimeout(() => formRef.current?.querySelector('[aria-invalid="true"]')?.focus(), 0);

  const submit = async (e) => {
    e.preventDefault();
    setBanner(null);
    const v = validateTunnel(form);
    if (Object.keys(v).length) {
      setErrors(Object.fromEntries(Object.entries(v).map(([k, key]) => [k, { key }])));
      focusFirstError();
      return;
    }
    setErrors({});
    setBusy(true);
    try {
      const body = bodyFromTunnelForm(form, !isNew);
      if (isNew) await api.createTunnel(body);
      else await api.updateTunnel(id, body);
      nav('/tunnels');
    } catch (e2) {
      const f = formFieldForTunnelField(e2.field, e2.message);
      if (f) {
        // the server starts its message with the field; beside it that is said
        const text = String(e2.message || '').replace(/^[a-z_.]+(\[\d+\])?(\.[a-z_]+)?: /, '');
        setErrors({ [f]: { code: e2.code, text } });
        focusFirstError();
      } else setBanner(e2);
    } finally {
      setBusy(false);
    }
  };

  if (loadErr) return <ErrorBanner error={loadErr} />;
  if (!loaded) return <Loading />;
  const l = stored ? tunnelLive(stored, live.tunnels) : null;
  const anyWs =
    ['ws', 'wss'].includes(form.transport) || (form.per_link && form.links.some((x) => /^wss?$/.test(x.transport)));

  return (
    <div className="space-y-4">
      <nav aria-label={t('nav.breadcrumb')} className="text-sm">
        <Link to="/tunnels" className="text-sky-800 underline">
          {t('tun.title')}
        </Link>
      </nav>
      <PageHeader
        title={isNew ? t('tun.new_title') : t('tun.edit_title', { name: form.name })}
        actions={
          !isNew && writable ? (
            <Button variant="danger" onClick={() => setRemoving(true)}>
              {t('common.delete')}
            </Button>
          ) : null
        }
      />
      {stored ? (
        <Card title={t('tun.sec_path')}>
          <TunnelPath tunnel={withLiveLinks(stored, live.tunnels)} />
          {stored.problems && stored.problems.length ? (
            <ul className="mt-3 list-disc space-y-1 pl-5 text-sm text-amber-900" data-testid="tunnel-problems">
              {stored.problems.map((p, i) => (
                <li key={i}>{p}</li>
              ))}
            </ul>
          ) : null}
          {l ? (
            <dl className="mt-3 grid grid-cols-2 gap-3 text-sm md:grid-cols-3">
              <div>
                <dt className="text-xs text-slate-500">{t('fwd.col_rate')}</dt>
                <dd>{t('live.up_down', { up: formatRate(l.up_bps), down: formatRate(l.down_bps) })}</dd>
              </div>
              <div>
                <dt className="text-xs text-slate-500">{t('fwd.col_conns')}</dt>
                <dd>{formatCount(l.conns_active, lang)}</dd>
              </div>
              <div>
                <dt className="text-xs text-slate-500">{t('fwd.col_total')}</dt>
                <dd>{t('live.up_down', { up: formatBytes(l.bytes_up), down: formatBytes(l.bytes_down) })}</dd>
              </div>
            </dl>
          ) : null}
        </Card>
      ) : null}
      {stored?.key ? (
        <Card
          title={t('tun.sec_key')}
          actions={
            writable ? (
              <Button variant="secondary" size="sm" onClick={() => setRotating(true)}>
                {t('tun.key_rotate')}
              </Button>
            ) : null
          }
        >
          <p className="mb-3 text-xs text-slate-500">{t('tun.key_help')}</p>
          <dl className="grid grid-cols-1 gap-3 text-sm md:grid-cols-3" data-testid="tunnel-key">
            <div>
              <dt className="text-xs text-slate-500">{t('tun.key_id')}</dt>
              <dd>{stored.key.id}</dd>
            </div>
            <div>
              <dt className="text-xs text-slate-500">{t('tun.key_rotated')}</dt>
              <dd>{stored.key.rotated ? formatDateTime(stored.key.rotated, lang) : t('tun.key_never')}</dd>
            </div>
            {stored.key.previous_id ? (
              <div>
                <dt className="text-xs text-slate-500">{t('tun.key_previous')}</dt>
                <dd>
                  {t('tun.key_previous_until', {
                    id: stored.key.previous_id,
                    until: formatDateTime(stored.key.previous_until, lang),
                  })}
                </dd>
              </div>
            ) : null}
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
          </div>
        </Card>

        <Card title={t('tun.sec_entry')}>
          <p className="mb-3 text-xs text-slate-500">{t('tun.entry_help')}</p>
          <div className="grid grid-cols-1 gap-3 md:grid-cols-2">
            <fieldset className="space-y-1">
              <legend className="mb-1 text-sm font-medium text-slate-700">{t('tun.entry_on')}</legend>
              <div className="flex gap-4">
                {['node', 'group'].map((s) => (
                  <label key={s} className="flex items-center gap-1.5 text-sm">
                    <input
                      type="radio"
                      name="entry_scope"
                      value={s}
                      checked={form.entry_scope === s}
                      onChange={() => set('entry_scope')(s)}
                      className="h-4 w-4 accent-sky-700"
                    />
                    {t('fwd.scope_' + s)}
                  </label>
                ))}
              </div>
            </fieldset>
            {form.entry_scope === 'node' ? (
              <Field label={t('tun.entry_node')} error={err('entry_node')}>
                {(c) => <NodeSelect {...c} value={form.entry_node} onChange={set('entry_node')} nodes={nodeList} />}
              </Field>
            ) : (
              <Field label={t('fwd.group')} error={err('entry_group')}>
                {(c) => (
                  <Select {...c} value={form.entry_group} onChange={setEv('entry_group')}>
                    <option value="">{t('fwd.pick_group')}</option>
                    {(groups.data || []).map((g) => (
                      <option key={g.id} value={g.name}>
                        {g.name}
                      </option>
                    ))}
                    {form.entry_group && !(groups.data || []).some((g) => g.name === form.entry_group) ? (
                      <option value={form.entry_group}>{form.entry_group}</option>
                    ) : null}
                  </Select>
                )}
              </Field>
            )}
            <Field label={t('fwd.listen_addr')} error={err('listen_addr')} hint={t('fwd.listen_addr_hint')}>
              {(c) => <Input {...c} value={form.listen_addr} onChange={setEv('listen_addr')} inputMode="decimal" />}
            </Field>
            <Field label={t('fwd.ports')} error={err('listen_ports')} hint={t('fwd.ports_hint')}>
              {(c) => <Input {...c} value={form.listen_ports} onChange={setEv('listen_ports')} inputMode="numeric" />}
            </Field>
          </div>
        </Card>

        <Card title={t('tun.sec_route')}>
          <div className="space-y-3">
            <div className="space-y-2">
              <p className="text-sm font-medium text-slate-700">{t('tun.hops')}</p>
              {form.hops.length === 0 ? <p className="text-xs text-slate-500">{t('tun.hops_none')}</p> : null}
              {form.hops.map((h, i) => (
                <div key={i} className="flex items-start gap-2">
                  <Field className="flex-1" label={t('tun.hop_n', { n: i + 1 })} error={err(`hops[${i}]`)}>
                    {(c) => <NodeSelect {...c} value={h} onChange={(v) => setList('hops', i, v)} nodes={nodeList} />}
                  </Field>
                  <Button
                    variant="secondary"
                    className="mt-6"
                    aria-label={t('tun.hop_remove', { n: i + 1 })}
                    onClick={() => setForm((f) => fitLinks({ ...f, hops: f.hops.filter((_, j) => j !== i) }))}
                  >
                    {t('common.remove')}
                  </Button>
                </div>
              ))}
              <Button variant="secondary" onClick={() => setForm((f) => fitLinks({ ...f, hops: [...f.hops, ''] }))}>
                {t('tun.hop_add')}
              </Button>
            </div>
            <div className="space-y-2">
              <p className="text-sm font-medium text-slate-700">{t('tun.exits')}</p>
              {form.exits.map((x, i) => (
                <div key={i} className="flex items-start gap-2">
                  <Field
                    className="flex-1"
                    label={t('tun.exit_n', { n: i + 1 })}
                    error={err(`exits[${i}]`)}
                    hint={i === 0 ? t('tun.exit_hint') : null}
                  >
                    {(c) => <NodeSelect {...c} value={x} onChange={(v) => setList('exits', i, v)} nodes={nodeList} />}
                  </Field>
                  {form.exits.length > 1 ? (
                    <Button
                      variant="secondary"
                      className="mt-6"
                      aria-label={t('tun.exit_remove', { n: i + 1 })}
                      onClick={() => set('exits')(form.exits.filter((_, j) => j !== i))}
                    >
                      {t('common.remove')}
                    </Button>
                  ) : null}
                </div>
              ))}
              <Button variant="secondary" onClick={() => set('exits')([...form.exits, ''])}>
                {t('tun.exit_add')}
              </Button>
            </div>
            <div className="grid grid-cols-1 gap-3 md:grid-cols-2">
              {form.exits.length > 1 ? (
                <Field label={t('tun.balance')} error={err('balance')}>
                  {(c) => (
                    <Select {...c} value={form.balance} onChange={setEv('balance')}>
                      {EXIT_BALANCES.map((b) => (
                        <option key={b} value={b}>
                          {t('balance.' + b)}
                        </option>
                      ))}
                    </Select>
                  )}
                </Field>
              ) : null}
              <Field label={t('tun.target')} error={err('target')} hint={t('tun.target_hint')}>
                {(c) => <Input {...c} value={form.target} onChange={setEv('target')} />}
              </Field>
            </div>
          </div>
        </Card>

        <Card title={t('tun.sec_links')}>
          <p className="mb-3 text-xs text-slate-500">{t('tun.links_help')}</p>
          <div className="grid grid-cols-1 gap-3 md:grid-cols-3">
            <Field label={t('tun.transport')} error={err('transport')} hint={t('tun.transport_hint')}>
              {(c) => (
                <Select {...c} value={form.transport} onChange={setEv('transport')}>
                  {TRANSPORTS.map((x) => (
                    <option key={x} value={x}>
                      {t('transport.' + x)}
                    </option>
                  ))}
                </Select>
              )}
            </Field>
            <Field label={t('tun.direction')} error={err('direction')} hint={t('tun.direction_hint')}>
              {(c) => (
                <Select {...c} value={form.direction} onChange={setEv('direction')}>
                  {DIRECTIONS.map((x) => (
                    <option key={x} value={x}>
                      {t('dir.' + x)}
                    </option>
                  ))}
                </Select>
              )}
            </Field>
            <Field label={t('tun.link_port')} error={err('link_port')} hint={t('tun.link_port_hint')}>
              {(c) => <Input {...c} value={form.link_port} onChange={setEv('link_port')} inputMode="numeric" />}
            </Field>
            <div className="flex items-end pb-1">
              <Checkbox label={t('tun.mux')} checked={form.mux} onChange={set('mux')} />
            </div>
            {anyWs || form.ws_path || form.ws_host ? (
              <>
                <Field label={t('tun.ws_path')} error={err('ws_path')} hint={t('tun.ws_path_hint')}>
                  {(c) => <Input {...c} value={form.ws_path} onChange={setEv('ws_path')} />}
                </Field>
                <Field label={t('tun.ws_host')} error={err('ws_host')} hint={t('tun.ws_host_hint')}>
                  {(c) => <Input {...c} value={form.ws_host} onChange={setEv('ws_host')} />}
                </Field>
              </>
            ) : null}
          </div>
          <div className="mt-3 space-y-3">
            <Checkbox
              label={t('tun.per_link')}
              checked={form.per_link}
              onChange={(v) => setForm((f) => fitLinks({ ...f, per_link: v }))}
            />
            {err('per_link') ? (
              <p role="alert" className="text-sm text-red-700" data-field-error="">
                {err('per_link')}
              </p>
            ) : null}
            {form.per_link
              ? form.links.map((lk, i) => (
                  <fieldset key={i} className="rounded-md border border-slate-200 p-3">
                    <legend className="px-1 text-sm font-medium text-slate-700">
                      {t('tun.link_n', {
                        n: i + 1,
                        from: i === 0 ? t('tun.role_entry') : form.hops[i - 1] || '?',
                        to: i < form.hops.length ? form.hops[i] || '?' : t('tun.role_exit'),
                      })}
                    </legend>
                    <div className="grid grid-cols-1 gap-3 md:grid-cols-3">
                      <Field label={t('tun.transport')} error={err(`links[${i}].transport`)}>
                        {(c) => (
                          <Select {...c} value={lk.transport} onChange={(e) => setLink(i, 'transport', e.target.value)}>
                            <option value="">{t('tun.same_as_tunnel')}</option>
                            {TRANSPORTS.map((x) => (
                              <option key={x} value={x}>
                                {t('transport.' + x)}
                              </option>
                            ))}
                          </Select>
                        )}
                      </Field>
                      <Field label={t('tun.direction')} error={err(`links[${i}].direction`)}>
                        {(c) => (
                          <Select {...c} value={lk.direction} onChange={(e) => setLink(i, 'direction', e.target.value)}>
                            <option value="">{t('tun.same_as_tunnel')}</option>
                            {DIRECTIONS.map((x) => (
                              <option key={x} value={x}>
                                {t('dir.' + x)}
                              </option>
                            ))}
                          </Select>
                        )}
                      </Field>
                      <Field label={t('tun.mux')} error={err(`links[${i}].mux`)}>
                        {(c) => (
                          <Select {...c} value={lk.mux} onChange={(e) => setLink(i, 'mux', e.target.value)}>
                            <option value="">{t('tun.same_as_tunnel')}</option>
                            <option value="on">{t('tun.mux_on')}</option>
                            <option value="off">{t('tun.mux_off')}</option>
                          </Select>
                        )}
                      </Field>
                      <Field label={t('tun.link_port')} error={err(`links[${i}].port`)}>
                        {(c) => (
                          <Input
                            {...c}
                            value={lk.port}
                            onChange={(e) => setLink(i, 'port', e.target.value)}
                            inputMode="numeric"
                          />
                        )}
                      </Field>
                      {/^wss?$/.test(linkTransport(form, i)) ? (
                        <>
                          <Field label={t('tun.ws_path')} error={err(`links[${i}].ws_path`)}>
                            {(c) => (
                              <Input
                                {...c}
                                value={lk.ws_path}
                                onChange={(e) => setLink(i, 'ws_path', e.target.value)}
                              />
                            )}
                          </Field>
                          <Field label={t('tun.ws_host')} error={err(`links[${i}].ws_host`)}>
                            {(c) => (
                              <Input
                                {...c}
                                value={lk.ws_host}
                                onChange={(e) => setLink(i, 'ws_host', e.target.value)}
                              />
                            )}
                          </Field>
                        </>
                      ) : null}
                    </div>
                  </fieldset>
                ))
              : null}
          </div>
        </Card>

        <Card title={t('fwd.sec_limits')}>
          <p className="mb-3 text-xs text-slate-500">{t('tun.limits_help')}</p>
          <div className="grid grid-cols-1 gap-3 md:grid-cols-2 lg:grid-cols-3">
            <LimitFields
              fields={['rate_up', 'rate_down', 'max_conns', 'max_conns_per_ip', 'connect_timeout', 'idle_timeout']}
              form={form}
              err={err}
              setEv={setEv}
            />
          </div>
        </Card>

        <ErrorBanner error={banner} />
        <FormActions
          writable={writable}
          busy={busy}
          submitLabel={isNew ? t('tun.create') : t('common.save')}
          onCancel={() => nav('/tunnels')}
          role={user?.role}
        />
      </form>
      <ConfirmDialog
        open={rotating}
        onOpenChange={setRotating}
        title={t('tun.key_rotate_title', { name: form.name })}
        description={t('tun.key_rotate_help')}
        confirmLabel={t('tun.key_rotate')}
        onConfirm={async () => {
          setStored(await api.rotateTunnelKey(id));
        }}
      />
      <ConfirmDialog
        open={removing}
        onOpenChange={setRemoving}
        title={t('tun.delete_title', { name: form.name })}
        description={t('tun.delete_help')}
        confirmLabel={t('common.delete')}
        onConfirm={async () => {
          await api.deleteTunnel(id);
          nav('/tunnels');
        }}
      />
    </div>
  );
}
