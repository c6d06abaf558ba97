import { useState } from 'react';
import { useI18n } from '../i18n/index.jsx';
import { useAuth } from '../auth.jsx';
import { api } from '../lib/api.js';
import { Button, Card, ErrorBanner, Field, Input, PageHeader } from '../components/ui.jsx';

export const MIN_PASSWORD = 8;

// Client checks of the change-password form; {field: i18nKey}.
export function checkPasswords(oldPw, newPw, confirm) {
  const e = {};
  if (!oldPw) e.old_password = 'v.required';
  if (!newPw) e.new_password = 'v.required';
  else if (newPw.length < MIN_PASSWORD) e.new_password = 'v.password_short';
  if (newPw && confirm !== newPw) e.confirm = 'v.password_mismatch';
  return e;
}

export default function Account() {
  const { t } = useI18n();
  const { user } = useAuth();
  const [oldPw, setOld] = useState('');
  const [newPw, setNew] = useState('');
  const [confirm, setConfirm] = useState('');
  const [errs, setErrs] = useState({});
  const [err, setErr] = useState(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setDone(false);
    setErr(null);
    const v = checkPasswords(oldPw, newPw, confirm);
    setErrs(Object.fromEntries(Object.entries(v).map(([k, key]) => [k, t(key, { n: MIN_PASSWORD })])));
    if (Object.keys(v).length) return;
    setBusy(true);
    try {
      await api.changePassword(oldPw, newPw);
      setDone(true);
      setOld('');
      setNew('');
      setConfirm('');
    } catch (e2) {
      // the server names old_password when it is wrong; say so in the
      // reader's language rather than the server's English
      if (e2.field === 'old_password' || e2.code === 'bad_credentials')
        setErrs({ old_password: t('account.wrong_old') });
      else if (e2.field) setErrs({ [e2.field]: t('v.server', { message: e2.message }) });
      else setErr(e2);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="space-y-4">
      <PageHeader title={t('account.title')} />
      <Card title={t('account.change_password')} className="max-w-lg">
        <p className="mb-3 text-sm text-slate-600">{t('account.signed_in_as', { name: user?.name || '' })}</p>
        <form onSubmit={submit} className="space-y-3" noValidate>
          <Field label={t('account.old')} error={errs.old_password}>
            {(c) => (
              <Input
                {...c}
                type="password"
                autoComplete="current-password"
                value={oldPw}
                onChange={(e) => setOld(e.target.value)}
              />
            )}
          </Field>
          <Field label={t('account.new')} error={errs.new_password} hint={t('account.new_hint', { n: MIN_PASSWORD })}>
            {(c) => (
              <Input
                {...c}
                type="password"
                autoComplete="new-password"
                value={newPw}
                onChange={(e) => setNew(e.target.value)}
              />
            )}
          </Field>
          <Field label={t('account.confirm')} error={errs.confirm}>
            {(c) => (
              <Input
                {...c}
                type="password"
                autoComplete="new-password"
                value={confirm}
                onChange={(e) => setConfirm(e.target.value)}
              />
            )}
          </Field>
          <ErrorBanner error={err} />
          {done ? (
            <p role="status" className="text-sm text-green-800">
              {t('account.changed')}
            </p>
          ) : null}
          <Button type="submit" disabled={busy}>
            {t('account.submit')}
          </Button>
        </form>
      </Card>
    </div>
  );
}
