import { BrowserRouter, Navigate, NavLink, Outlet, Route, Routes, useLocation, useNavigate } from 'react-router-dom';
import * as RMenu from '@radix-ui/react-dropdown-menu';
import { I18nProvider, useI18n } from './i18n/index.jsx';
import LangSwitch from './components/LangSwitch.jsx';
import { AuthProvider, useAuth } from './auth.jsx';
import { LiveProvider, useLive } from './live.jsx';
import { cx, focus, Loading } from './components/ui.jsx';
import Login from './pages/Login.jsx';
import Overview from './pages/Overview.jsx';
import Nodes from './pages/Nodes.jsx';
import NodeDetail from './pages/NodeDetail.jsx';
import Groups from './pages/Groups.jsx';
import Forwards from './pages/Forwards.jsx';
import ForwardEdit from './pages/ForwardEdit.jsx';
import Tunnels from './pages/Tunnels.jsx';
import TunnelEdit from './pages/TunnelEdit.jsx';
import Traffic from './pages/Traffic.jsx';
import Account from './pages/Account.jsx';
import Firewall from './pages/Firewall.jsx';

const NAV = [
  ['/', 'nav.overview'],
  ['/nodes', 'nav.nodes'],
  ['/groups', 'nav.groups'],
  ['/forwards', 'nav.forwards'],
  ['/tunnels', 'nav.tunnels'],
  ['/firewall', 'nav.firewall'],
  ['/traffic', 'nav.traffic'],
];

function UserMenu() {
  const { t } = useI18n();
  const { user, logout } = useAuth();
  const nav = useNavigate();
  return (
    <RMenu.Root>
      <RMenu.Trigger
        className={cx('rounded-md border border-slate-300 bg-white px-2 py-1 text-sm text-slate-800', focus)}
        aria-label={t('user.menu', { name: user?.name || '' })}
      >
        {user?.name || t('user.account')}
      </RMenu.Trigger>
      <RMenu.Portal>
        <RMenu.Content
          align="end"
          sideOffset={4}
          className="z-50 min-w-[10rem] rounded-md border border-slate-200 bg-white p-1 shadow-lg"
        >
          <RMenu.Item
            className="cursor-pointer rounded px-2 py-1.5 text-sm outline-none data-[highlighted]:bg-sky-100"
            onSelect={() => nav('/account')}
          >
            {t('user.change_password')}
          </RMenu.Item>
          <RMenu.Item
            className="cursor-pointer rounded px-2 py-1.5 text-sm outline-none data-[highlighted]:bg-sky-100"
            onSelect={async () => {
              await logout();
              nav('/login');
            }}
          >
            {t('user.sign_out')}
          </RMenu.Item>
        </RMenu.Content>
      </RMenu.Portal>
    </RMenu.Root>
  );
}

// Whether the page is receiving live updates, and how.
function LiveStatus() {
  const { t } = useI18n();
  const { mode, error, at } = useLive();
  const state = error ? 'lost' : !at ? 'wait' : mode === 'ws' ? 'on' : 'polling';
  const dot = { lost: 'bg-red-600', wait: 'bg-slate-400', on: 'bg-green-600', polling: 'bg-amber-500' }[state];
  return (
    <span role="status" data-live-mode={state} className="flex items-center gap-1.5 text-xs text-slate-600">
      <span className={cx('inline-block h-2 w-2 rounded-full', dot)} aria-hidden="true" />
      <span className="hidden sm:inline">{t('live.' + state)}</span>
      <span className="sr-only sm:hidden">{t('live.' + state)}</span>
    </span>
  );
}

function Layout({ children }) {
  const { t } = useI18n();
  return (
    <div className="min-h-screen">
      <a
        href="#main"
        className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-50 focus:rounded focus:bg-white focus:px-3 focus:py-2"
      >
        {t('nav.skip')}
      </a>
      <header className="border-b border-slate-200 bg-white">
        <div className="mx-auto flex max-w-6xl flex-wrap items-center gap-x-4 gap-y-2 px-3 py-2 sm:px-4">
          <span className="text-lg font-bold text-sky-800">{t('app.name')}</span>
          <nav
            aria-label={t('nav.label')}
            className="order-3 -mx-1 flex w-full flex-wrap gap-1 md:order-none md:mx-0 md:w-auto md:flex-1"
          >
            {NAV.map(([to, key]) => (
              <NavLink
                key={to}
                to={to}
                end={to === '/'}
                className={({ isActive }) =>
                  cx(
                    'whitespace-nowrap rounded-md px-2.5 py-1.5 text-sm',
                    isActive ? 'bg-sky-100 font-semibold text-sky-900' : 'text-slate-700 hover:bg-slate-100',
                    focus,
                  )
                }
              >
                {t(key)}
              </NavLink>
            ))}
          </nav>
          <div className="ml-auto flex items-center gap-2">
            <LiveStatus />
            <LangSwitch />
            <UserMenu />
          </div>
        </div>
      </header>
      <main id="main" tabIndex={-1} className="mx-auto max-w-6xl px-3 py-4 focus:outline-none sm:px-4">
        {children}
      </main>
    </div>
  );
}

function RequireAuth() {
  const { user, ready } = useAuth();
  const loc = useLocation();
  if (!ready) return <Loading />;
  if (!user) return <Navigate to="/login" replace state={{ from: loc.pathname + loc.search }} />;
  return (
    <LiveProvider>
      <Layout>
        <Outlet />
      </Layout>
    </LiveProvider>
  );
}

export default function App() {
  return (
    <I18nProvider>
      <AuthProvider>
        <BrowserRouter>
          <Routes>
            <Route path="/login" element={<Login />} />
            <Route element={<RequireAuth />}>
              <Route path="/" element={<Overview />} />
              <Route path="/nodes" element={<Nodes />} />
              <Route path="/nodes/:id" element={<NodeDetail />} />
              <Route path="/groups" element={<Groups />} />
              <Route path="/forwards" element={<Forwards />} />
              <Route path="/forwards/new" element={<ForwardEdit />} />
              <Route path="/forwards/:id" element={<ForwardEdit />} />
              <Route path="/tunnels" element={<Tunnels />} />
              <Route path="/tunnels/new" element={<TunnelEdit />} />
              <Route path="/tunnels/:id" element={<TunnelEdit />} />
              <Route path="/firewall" element={<Firewall />} />
              <Route path="/traffic" element={<Traffic />} />
              <Route path="/account" element={<Account />} />
            </Route>
            <Route path="*" element={<Navigate to="/" replace />} />
          </Routes>
        </BrowserRouter>
      </AuthProvider>
    </I18nProvider>
  );
}
