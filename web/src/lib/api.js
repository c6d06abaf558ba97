// The REST client: one fetch wrapper that adds the bearer token, turns the
// API's error body {"error":{"code","message","field"}} into an ApiError,
// and tells the app when the session has ended (401).

const TOKEN_KEY = 'flowgate.token';
const BASE = '/api/v1';

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || 'error';
    this.field = field || null;
  }
}

// Reads an error body in the documented shape, or anything else a proxy
// in between may have answered with.
export function errorFromBody(status, body) {
  const e = body && typeof body === 'object' ? body.error : null;
  if (e && typeof e === 'object') return new ApiError(status, e.code, e.message, e.field);
  if (typeof e === 'string') return new ApiError(status, 'error', e, null);
  return new ApiError(status, status === 401 ? 'unauthorized' : 'error', null, null);
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

function store() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

export function getToken() {
  return store()?.getItem(TOKEN_KEY) || null;
}

export function setToken(tok) {
  const s = store();
  if (!s) return;
  if (tok) s.setItem(TOKEN_KEY, tok);
  else s.removeItem(TOKEN_KEY);
}

export async function request(method, path, body, opts = {}) {
  const headers = { Accept: opts.raw ? '*/*' : 'application/json' };
  const tok = getToken();
  if (tok) headers.Authorization = 'Bearer ' + tok;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, 'network', err && err.message, null);
  }
  if (!res.ok) {
    let parsed = null;
    try {
      parsed = await res.json();
    } catch {
      /* not JSON */
    }
    const e = errorFromBody(res.status, parsed);
    if (res.status === 401 && !opts.noAuthRedirect) onUnauthorized();
    throw e;
  }
  if (opts.raw) return res;
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

const enc = encodeURIComponent;

export function statsPath(scope, id, from, to, step, csv) {
  const q = `from=${from}&to=${to}&step=${step}` + (csv ? '&format=csv' : '');
  if (scope === 'fleet') return `/stats?${q}`;
  return `/${scope}/${enc(id)}/stats?${q}`;
}

export const api = {
  login: (username, password) => request('POST', '/login', { username, password }, { noAuthRedirect: true }),
  logout: () => request('POST', '/logout', {}, { noAuthRedirect: true }),
  me: () => request('GET', '/me'),
  changePassword: (old_password, new_password) =>
    request('POST', '/me/password', { old_password, new_password }, { noAuthRedirect: true }),

  nodes: () => request('GET', '/nodes').then((r) => r?.nodes ?? []),
  node: (id) => request('GET', `/nodes/${enc(id)}`),
  createNode: (body) => request('POST', '/nodes', body),
  updateNode: (id, body) => request('PATCH', `/nodes/${enc(id)}`, body),
  deleteNode: (id) => request('DELETE', `/nodes/${enc(id)}`),

  groups: () => request('GET', '/groups').then((r) => r?.groups ?? []),
  createGroup: (body) => request('POST', '/groups', body),
  updateGroup: (id, body) => request('PATCH', `/groups/${enc(id)}`, body),
  deleteGroup: (id) => request('DELETE', `/groups/${enc(id)}`),

  forwards: (filter) => {
    let q = '';
    if (filter?.node) q = `?node=${enc(filter.node)}`;
    else if (filter?.group) q = `?group=${enc(filter.group)}`;
    return request('GET', `/forwards${q}`).then((r) => r?.forwards ?? []);
  },
  forward: (id) => request('GET', `/forwards/${enc(id)}`),
  createForward: (body) => request('POST', '/forwards', body),
  updateForward: (id, body) => request('PATCH', `/forwards/${enc(id)}`, body),
  deleteForward: (id) => request('DELETE', `/forwards/${enc(id)}`),

  tunnels: (filter) =>
    request('GET', `/tunnels${filter?.node ? `?node=${enc(filter.node)}` : ''}`).then((r) => r?.tunnels ?? []),
  tunnel: (id) => request('GET', `/tunnels/${enc(id)}`),
  createTunnel: (body) => request('POST', '/tunnels', body),
  updateTunnel: (id, body) => request('PATCH', `/tunnels/${enc(id)}`, body),
  deleteTunnel: (id) => request('DELETE', `/tunnels/${enc(id)}`),
  rotateTunnelKey: (id) => request('POST', `/tunnels/${enc(id)}/rotate-key`),
  policies: () => request('GET', '/policies').then((r) => r?.policies ?? []),
  createPolicy: (body) => request('POST', '/policies', body),
  updatePolicy: (id, body) => request('PATCH', `/policies/${enc(id)}`, body),
  deletePolicy: (id) => request('DELETE', `/policies/${enc(id)}`),
  importIptables: (body) => request('POST', '/policies/import-iptables', body),
  nodeFirewall: (node) => request('GET', `/nodes/${enc(node)}/firewall`),

  stats: (scope, id, from, to, step) => request('GET', statsPath(scope, id, from, to, step, false)),
  statsCsv: (scope, id, from, to, step) =>
    request('GET', statsPath(scope, id, from, to, step, true), undefined, { raw: true }).then((r) => r.blob()),
  live: () => request('GET', '/live'),
};
