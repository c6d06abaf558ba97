import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, errorFromBody, request, setToken, setUnauthorizedHandler, statsPath } from '../src/lib/api.js';

function memStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
  };
}

function reply(status, body, type = 'application/json') {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return Promise.resolve(new Response(status === 204 ? null : text, { status, headers: { 'Content-Type': type } }));
}

beforeEach(() => {
  globalThis.window = { localStorage: memStorage() };
});
afterEach(() => {
  vi.restoreAllMocks();
  delete globalThis.window;
});

describe('errorFromBody', () => {
  it('reads the documented error shape', () => {
    const e = errorFromBody(409, { error: { code: 'conflict', message: 'port in use', field: 'listen' } });
    expect(e).toBeInstanceOf(ApiError);
    expect([e.status, e.code, e.message, e.field]).toEqual([409, 'conflict', 'port in use', 'listen']);
  });
  it('copes with other bodies', () => {
    expect(errorFromBody(502, null).field).toBe(null);
    expect(errorFromBody(401, null).code).toBe('unauthorized');
    expect(errorFromBody(400, { error: 'bad' }).message).toBe('bad');
  });
});

describe('request', () => {
  it('sends the bearer token and JSON body', async () => {
    setToken('tok1');
    const f = vi.fn(() => reply(200, { id: 1 }));
    vi.stubGlobal('fetch', f);
    const r = await api.createGroup({ name: 'edge' });
    expect(r).toEqual({ id: 1 });
    const [url, init] = f.mock.calls[0];
    expect(url).toBe('/api/v1/groups');
    expect(init.method).toBe('POST');
    expect(init.headers.Authorization).toBe('Bearer tok1');
    expect(JSON.parse(init.body)).toEqual({ name: 'edge' });
  });
  it('turns a 400 into an ApiError with its field', async () => {
    vi.stubGlobal('fetch', () => reply(400, { error: { code: 'invalid', message: 'bad port', field: 'listen' } }));
    await expect(api.createForward({})).rejects.toMatchObject({ status: 400, field: 'listen', message: 'bad port' });
  });
  it('a 401 calls the sign-out handler, except on login', async () => {
    const h = vi.fn();
    setUnauthorizedHandler(h);
    vi.stubGlobal('fetch', () => reply(401, { error: { code: 'unauthorized', message: 'no' } }));
    await expect(api.nodes()).rejects.toMatchObject({ status: 401 });
    expect(h).toHaveBeenCalledTimes(1);
    await expect(api.login('a', 'b')).rejects.toMatchObject({ status: 401 });
    expect(h).toHaveBeenCalledTimes(1);
  });
  it('a network failure is code network', async () => {
    vi.stubGlobal('fetch', () => Promise.reject(new TypeError('Failed to fetch')));
    await expect(request('GET', '/me')).rejects.toMatchObject({ status: 0, code: 'network' });
  });
  it('unwraps lists and encodes names', async () => {
    const f = vi.fn(() => reply(200, { forwards: [{ id: 1 }] }));
    vi.stubGlobal('fetch', f);
    expect(await api.forwards({ group: 'a b' })).toEqual([{ id: 1 }]);
    expect(f.mock.calls[0][0]).toBe('/api/v1/forwards?group=a%20b');
  });
  it('204 is null', async () => {
    vi.stubGlobal('fetch', () => reply(204, ''));
    expect(await api.deleteForward(3)).toBe(null);
  });
});

describe('statsPath', () => {
  it('fleet and per object, CSV', () => {
    expect(statsPath('fleet', null, 1, 2, 60, false)).toBe('/stats?from=1&to=2&step=60');
    expect(statsPath('nodes', 'n 1', 1, 2, 60, true)).toBe('/nodes/n%201/stats?from=1&to=2&step=60&format=csv');
  });
});
