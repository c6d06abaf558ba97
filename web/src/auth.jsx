// Who is signed in. The token lives in localStorage so a reload keeps the
// session; a 401 from any call signs the reader out.
import { createContext, useCallback, useContext, useEffect, useMemo, useState } from 'react';
import { api, getToken, setToken, setUnauthorizedHandler } from './lib/api.js';

const Ctx = createContext(null);

export function AuthProvider({ children }) {
  const [user, setUser] = useState(null);
  const [ready, setReady] = useState(!getToken());

  const clear = useCallback(() => {
    setToken(null);
    setUser(null);
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(clear);
    if (!getToken()) return;
    api
      .me()
      .then((r) => setUser(r?.user ?? r))
      .catch(() => clear())
      .finally(() => setReady(true));
  }, [clear]);

  const login = useCallback(async (username, password) => {
    const r = await api.login(username, password);
    setToken(r.token);
    setUser(r.user || { name: username });
    return r;
  }, []);

  const logout = useCallback(async () => {
    try {
      await api.logout();
    } catch {
      /* the token goes either way */
    }
    clear();
  }, [clear]);

  const value = useMemo(() => ({ user, ready, login, logout }), [user, ready, login, logout]);
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

export function useAuth() {
  return useContext(Ctx);
}

// Viewers may read everything and change nothing (the API refuses them
// with 403); the pages hide what they cannot do.
export function canWrite(user) {
  return !!user && user.role !== 'viewer';
}

export function useCanWrite() {
  return canWrite(useContext(Ctx).user);
}
