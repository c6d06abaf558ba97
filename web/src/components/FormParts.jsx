// Pieces shared by the forward and tunnel editors: both carry the same
// limit and timeout fields (the same names in the engine's JSON), and end
// with the same save/cancel bar.
import { useI18n } from '../i18n/index.jsx';
import { Button, Field, Input } from './ui.jsx';

// How each limit field is entered: rates and byte sizes take units, counts
// are numeric, durations show the engine's default.
const LIMIT_KIND = {
  rate_up: { hint: 'fwd.rate_hint' },
  rate_down: { hint: 'fwd.rate_hint' },
  rate_up_per_conn: {},
  rate_down_per_conn: {},
  burst: { hint: 'fwd.burst_hint' },
  max_conns: { numeric: true },
  max_conns_per_ip: { numeric: true },
  connect_timeout: { duration: '5s' },
  idle_timeout: { duration: '300s' },
  udp_idle_timeout: { duration: '60s' },
};

// One input per named limit field, labelled fwd.<field>; errors from the
// API land beside the field they name.
export function LimitFields({ fields, form, err, setEv }) {
  const { t } = useI18n();
  return fields.map((f) => {
    const kind = LIMIT_KIND[f];
    const hint = kind.duration ? t('fwd.duration_hint', { d: kind.duration }) : kind.hint ? t(kind.hint) : undefined;
    return (
      <Field key={f} label={t('fwd.' + f)} error={err(f)} hint={hint}>
        {(c) => <Input {...c} value={form[f]} onChange={setEv(f)} inputMode={kind.numeric ? 'numeric' : undefined} />}
      </Field>
    );
  });
}

// Save and cancel for a writer (every dialog and editor ends with them); a
// note saying why not for a reader.
export function FormActions({ writable = true, busy = false, submitLabel, onCancel, role }) {
  const { t } = useI18n();
  if (!writable)
    return (
      <p role="note" className="text-sm text-slate-600">
        {t('common.read_only', { role: t('role.' + (role || 'viewer')) })}
      </p>
    );
  return (
    <div className="flex justify-end gap-2">
      <Button variant="secondary" onClick={onCancel}>
        {t('common.cancel')}
      </Button>
      <Button type="submit" disabled={busy}>
        {submitLabel || t('common.save')}
      </Button>
    </div>
  );
}
