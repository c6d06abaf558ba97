import { useState } from 'react';
import { Navigate, useLocation, useNavigate } from 'react-router-dom';
import { useAuth } from '../auth.jsx';
import { useI18n } from '../i18n/index.jsx';
import { Button, ErrorBanner, Field, Input } from '../components/ui.jsx';
import LangSwitch from '../components/LangSwitch.jsx';

export default function Login() {
  const { t } = useI18n();
  const { user, login } = useAuth();
  const nav = useNavigate();
  const loc = useLocation();
  const [username, setUsername] = useState('admin');
  const [password, setPassword] = useState('');
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  if (user) return <Navigate to={loc.state?.from || '/'} replace />;

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      await login(username.trim(), password);
      nav(loc.state?.from || '/', { replace: true });
    } catch (e2) {
      setErr(e2.status === 401 || e2.status === 403 ? t('login.bad') : e2);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="flex min-h-screen items-center justify-center px-3">
      <div className="w-full max-w-sm rounded-lg border border-slate-200 bg-white p-6 shadow-sm">
        <div className="mb-4 flex items-center justify-between gap-2">
          <h1 className="text-xl font-semibold">{t('login.title')}</h1>
          <LangSwitch />
        </div>
        <form onSubmit={submit} className="space-y-3" noValidate>
          <Field label={t('login.username')}>
            {(c) => (
              <Input
                {...c}
                autoComplete="username"
                value={username}
                onChange={(e) => setUsername(e.target.value)}
                required
              />
            )}
          </Field>
          <Field label={t('login.password')}>
            {(c) => (
              <Input
                {...c}
                type="password"
                autoComplete="current-password"
                value={password}
                onChange={(e) => setPassword(e.target.value)}
                required
              />
            )}
          </Field>
          <ErrorBanner error={err} />
          <Button type="submit" disabled={busy} className="w-full">
            {busy ? t('login.signing_in') : t('login.submit')}
          </Button>
        </form>
      </div>
    </main>
  );
}
