// On a node's page: how tunnel peers reach it (its address, the one its
// session comes from, its certificate fingerprint), setting the address,
// and the tunnels it takes part in with its place in each.
import { useEffect, useState } from 'react';
import { Link } from 'react-router-dom';
import { useI18n } from '../i18n/index.jsx';
import { useCanWrite } from '../auth.jsx';
import { api } from '../lib/api.js';
import { useResource } from '../lib/hooks.js';
import { isHost } from '../lib/forward.js';
import { apiErrorText, Button, Card, Dialog, Empty, ErrorBanner, Field, Input } from './ui.jsx';
import TunnelPath from './TunnelPath.jsx';

function AddressDialog({ node, open, onOpenChange, onSaved }) {
  const { t } = useI18n();
  const [value, setValue] = useState(node.address || '');
  const [fieldErr, setFieldErr] = useState(null);
  const [err, setErr] = useState(null);
  useEffect(() => {
    if (open) {
      setValue(node.address || '');
      setFieldErr(null);
      setErr(null);
    }
  }, [open, node.address]);
  const submit = async (e) => {
    e.preventDefault();
    const v = value.trim();
    if (v && !isHost(v)) return setFieldErr(t('v.tun_address'));
    try {
      await api.updateNode(node.id, { address: v || null });
      onOpenChange(false);
      onSaved();
    } catch (e2) {
      if (e2.field === 'address') setFieldErr(apiErrorText(t, e2));
      else setErr(e2);
    }
  };
  return (
    <Dialog
      open={open}
      onOpenChange={onOpenChange}
      title={t('ntun.address_title')}
      description={t('ntun.address_help')}
    >
      <form onSubmit={submit} noValidate className="space-y-3">
        <Field label={t('ntun.address')} error={fieldErr} hint={t('ntun.address_hint')}>
          {(c) => <Input {...c} value={value} onChange={(e) => setValue(e.target.value)} />}
        </Field>
        <ErrorBanner error={err} />
        <div className="flex justify-end gap-2">
          <Button variant="secondary" onClick={() => onOpenChange(false)}>
            {t('common.cancel')}
          </Button>
          <Button type="submit">{t('common.save')}</Button>
        </div>
      </form>
    </Dialog>
  );
}

export default function NodeTunnels({ node, onSaved }) {
  const { t } = useI18n();
  const writable = useCanWrite();
  const [open, setOpen] = useState(false);
  const tunnels = useResource(() => api.tunnels({ node: node.name }), [node.name]);
  const list = tunnels.data || [];
  const roleOf = (tu) => {
    for (const p of tu.path || []) if ((p.nodes || []).some((n) => n.id === node.id)) return p.role;
    return null;
  };
  return (
    <Card
      title={t('ntun.title')}
      actions={
        writable ? (
          <Button variant="secondary" onClick={() => setOpen(true)}>
            {t('ntun.set_address')}
          </Button>
        ) : null
      }
    >
      <dl className="mb-3 grid grid-cols-1 gap-3 md:grid-cols-3">
        <div className="min-w-0">
          <dt className="text-xs text-slate-500">{t('ntun.address')}</dt>
          <dd className="break-words text-sm" data-testid="node-address">
            {node.address || node.session_address || t('ntun.no_address')}
            <span className="block text-xs text-slate-500">
              {node.address ? t('ntun.address_set') : node.session_address ? t('ntun.address_session') : ''}
            </span>
          </dd>
        </div>
        <div className="min-w-0 md:col-span-2">
          <dt className="text-xs text-slate-500">{t('ntun.fingerprint')}</dt>
          <dd className="break-all font-mono text-xs" data-testid="node-fingerprint">
            {node.fingerprint || t('ntun.no_fingerprint')}
          </dd>
        </div>
      </dl>
      <ErrorBanner error={tunnels.error} />
      {list.length === 0 ? (
        <Empty>{t('ntun.none')}</Empty>
      ) : (
        <ul className="space-y-2">
          {list.map((tu) => (
            <li key={tu.id} className="flex flex-wrap items-center gap-2 text-sm">
              <Link to={`/tunnels/${tu.id}`} className="font-medium text-sky-800 underline">
                {tu.name}
              </Link>
              <span className="text-xs text-slate-600">{t('tun.role_' + (roleOf(tu) || 'entry'))}</span>
              <TunnelPath tunnel={tu} compact />
            </li>
          ))}
        </ul>
      )}
      <AddressDialog node={node} open={open} onOpenChange={setOpen} onSaved={onSaved} />
    </Card>
  );
}
