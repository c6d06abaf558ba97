// A stand-in for `flowgate server` that keeps everything in memory, for
// working on the UI without a fleet: `node dev/mock-api.mjs [port]` serves
// dist/ and the /api/v1 contract (doc/ui.md) with made-up traffic.
// Sign in as admin / admin. Not used by the tests.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const PORT = Number(process.argv[2] || 8000);
const DIST = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'dist');
const now = () => Math.floor(Date.now() / 1000);

let seq = 10;
let password = 'admin';
const tokens = new Set();
const groups = [
  { id: 1, name: 'hk-edge' },
  { id: 2, name: 'jp' },
];
const nodes = [
  {
    id: 3,
    name: 'hk-1',
    groups: ['hk-edge'],
    online: true,
    last_seen: now(),
    version: '0.2.0',
    hostname: 'hk1.example.net',
    addresses: ['203.0.113.10', '2001:db8::10'],
    desired_rev: 5,
    applied_rev: 5,
    errors: [],
  },
  {
    id: 4,
    name: 'hk-2',
    groups: ['hk-edge'],
    online: true,
    last_seen: now(),
    version: '0.2.0',
    hostname: 'hk2.example.net',
    addresses: ['203.0.113.11'],
    desired_rev: 5,
    applied_rev: 4,
    errors: [{ kind: 'forward', id: 7, name: 'game', error: 'bind 0.0.0.0:443: Address already in use' }],
  },
  {
    id: 5,
    name: 'tokyo-1',
    groups: ['jp'],
    online: false,
    last_seen: now() - 7200,
    version: '0.1.9',
    hostname: 'tyo1',
    addresses: ['198.51.100.7'],
    desired_rev: 3,
    applied_rev: 2,
    errors: [],
  },
];
const forwards = [
  {
    id: 6,
    name: 'web',
    node: 'hk-1',
    listen: '0.0.0.0:8080',
    proto: 'tcp',
    targets: ['10.0.0.2:80', '10.0.0.3:80'],
    balance: 'round-robin',
    rate_up: 0,
    rate_down: 10000000,
    max_conns: 1000,
    max_conns_per_ip: 0,
    proxy_protocol: null,
    enabled: true,
  },
  {
    id: 7,
    name: 'game',
    group: 'hk-edge',
    listen: '0.0.0.0:443',
    proto: 'both',
    targets: ['game.example.com:443'],
    balance: 'failover',
    rate_up: 0,
    rate_down: 0,
    max_conns: 0,
    max_conns_per_ip: 8,
    proxy_protocol: 'v2',
    enabled: true,
  },
];
const counters = {};

const groupView = (g) => ({ ...g, nodes: nodes.filter((n) => n.groups.includes(g.name)).map((n) => n.name) });
const find = (list, key) => list.find((o) => String(o.id) === key || o.name === key);

function send(res, status, body, type = 'application/json') {
  res.writeHead(status, { 'Content-Type': type });
  res.end(type === 'application/json' ? JSON.stringify(body) : body);
}
const fail = (res, status, code, message, field) =>
  send(res, status, { error: { code, message, ...(field ? { field } : {}) } });

function checkForward(b, selfId) {
  if (!b.name) return ['name', 'name is required'];
  const m = /^(.*):(\d+)(?:-(\d+))?$/.exec(b.listen || '');
  if (!m) return ['listen', 'listen must be ADDR:PORT or ADDR:LO-HI'];
  const lo = Number(m[2]);
  const hi = m[3] ? Number(m[3]) : lo;
  if (lo < 1 || hi > 65535 || hi < lo) return ['listen', `port ${m[3] ? lo + '-' + hi : lo} is out of range 1-65535`];
  if (!Array.isArray(b.targets) || !b.targets.length) return ['targets', 'at least one target'];
  for (let i = 0; i < b.targets.length; i++)
    if (!/:\d+/.test(b.targets[i])) return [`targets[${i}]`, `"${b.targets[i]}" has no port`];
  const clash = forwards.find(
    (f) =>
      f.id !== selfId &&
      f.listen === b.listen &&
      (f.node || '') === (b.node || '') &&
      (f.group || '') === (b.group || ''),
  );
  if (clash) return ['listen', `${b.listen} is already used by forward "${clash.name}"`, 409];
  return null;
}

async function body(req) {
  let s = '';
  for await (const c of req) s += c;
  return s ? JSON.parse(s) : {};
}

async function api(req, res, path, q) {
  const m = req.method;
  if (path === '/login' && m === 'POST') {
    const b = await body(req);
    if (b.username !== 'admin' || b.password !== password)
      return fail(res, 401, 'unauthorized', 'wrong user name or password');
    const tok = 'fgu_' + Math.random().toString(36).slice(2);
    tokens.add(tok);
    return send(res, 200, { token: tok, user: { id: 1, name: 'admin', role: 'admin' } });
  }
  const tok = (req.headers.authorization || '').replace(/^Bearer /, '');
  if (!tokens.has(tok)) return fail(res, 401, 'unauthorized', 'sign in first');
  if (path === '/logout') return (tokens.delete(tok), send(res, 200, {}));
  if (path === '/me') return send(res, 200, { user: { id: 1, name: 'admin', role: 'admin' } });
  if (path === '/me/password') {
    const b = await body(req);
    if (b.old_password !== password) return fail(res, 403, 'forbidden', 'old password is wrong', 'old_password');
    if ((b.new_password || '').length < 8) return fail(res, 400, 'invalid', 'at least 8 characters', 'new_password');
    password = b.new_password;
    return send(res, 200, {});
  }
  if (path === '/live') {
    const out = { nodes: {}, forwards: {} };
    for (const n of nodes)
      out.nodes[n.id] = { online: n.online, last_seen: n.online ? now() : n.last_seen, applied_rev: n.applied_rev };
    for (const f of forwards) {
      const c = (counters[f.id] ||= { bytes_up: 0, bytes_down: 0 });
      const up = Math.round(20000 + Math.random() * 50000);
      const down = Math.round(200000 + Math.random() * 900000);
      c.bytes_up += up * 2;
      c.bytes_down += down * 2;
      out.forwards[f.id] = { ...c, conns_active: Math.round(Math.random() * 40), up_bps: up, down_bps: down };
    }
    return send(res, 200, out);
  }
  let mm;
  if ((mm = /^(?:\/(nodes|groups|forwards)\/([^/]+))?\/stats$/.exec(path))) {
    const from = Number(q.get('from')),
      to = Number(q.get('to')),
      step = Number(q.get('step')) || 60;
    const series = [];
    const total = { bytes_up: 0, bytes_down: 0, conns: 0 };
    for (let t = from - (from % step) + step; t <= to; t += step) {
      const wave = 1 + Math.sin(t / 7000);
      const p = {
        t,
        bytes_up: Math.round(step * 30000 * wave),
        bytes_down: Math.round(step * 400000 * wave),
        conns: Math.round((step / 10) * wave),
      };
      series.push(p);
      total.bytes_up += p.bytes_up;
      total.bytes_down += p.bytes_down;
      total.conns += p.conns;
    }
    if (q.get('format') === 'csv')
      return send(
        res,
        200,
        't,bytes_up,bytes_down,conns\n' +
          series.map((p) => `${p.t},${p.bytes_up},${p.bytes_down},${p.conns}`).join('\n') +
          '\n',
        'text/csv',
      );
    return send(res, 200, { series, total });
  }
  if (path === '/nodes' && m === 'GET') return send(res, 200, { nodes });
  if (path === '/nodes' && m === 'POST') {
    const b = await body(req);
    if (!b.name || !/^[A-Za-z0-9._-]+$/.test(b.name))
      return fail(res, 400, 'invalid', 'name: letters, digits, . _ -', 'name');
    if (find(nodes, b.name)) return fail(res, 409, 'conflict', 'a node with this name exists', 'name');
    const n = {
      id: ++seq,
      name: b.name,
      groups: b.groups || [],
      online: false,
      last_seen: null,
      version: '',
      hostname: '',
      addresses: [],
      desired_rev: 1,
      applied_rev: null,
      errors: [],
    };
    nodes.push(n);
    const token = 'fgn_' + Math.random().toString(36).slice(2);
    return send(res, 201, {
      id: n.id,
      name: n.name,
      token,
      enroll_command: `flowgate agent --server ws://${req.headers.host} --token ${token} --state /var/lib/flowgate/agent`,
    });
  }
  if ((mm = /^\/nodes\/([^/]+)$/.exec(path))) {
    const n = find(nodes, decodeURIComponent(mm[1]));
    if (!n) return fail(res, 404, 'not_found', 'no such node');
    if (m === 'GET') return send(res, 200, n);
    if (m === 'DELETE') return (nodes.splice(nodes.indexOf(n), 1), send(res, 204, ''));
    if (m === 'PATCH') return (Object.assign(n, await body(req)), send(res, 200, n));
  }
  if (path === '/groups' && m === 'GET') return send(res, 200, { groups: groups.map(groupView) });
  if (path === '/groups' && m === 'POST') {
    const b = await body(req);
    if (find(groups, b.name)) return fail(res, 409, 'conflict', 'a group with this name exists', 'name');
    const g = { id: ++seq, name: b.name };
    groups.push(g);
    for (const n of nodes) if ((b.nodes || []).includes(n.name)) n.groups.push(g.name);
    return send(res, 201, groupView(g));
  }
  if ((mm = /^\/groups\/([^/]+)$/.exec(path))) {
    const g = find(groups, decodeURIComponent(mm[1]));
    if (!g) return fail(res, 404, 'not_found', 'no such group');
    if (m === 'GET') return send(res, 200, groupView(g));
    if (m === 'DELETE') {
      groups.splice(groups.indexOf(g), 1);
      for (const n of nodes) n.groups = n.groups.filter((x) => x !== g.name);
      return send(res, 204, '');
    }
    if (m === 'PATCH') {
      const b = await body(req);
      const old = g.name;
      if (b.name) g.name = b.name;
      for (const n of nodes) {
        n.groups = n.groups.filter((x) => x !== old);
        if ((b.nodes || groupView({ name: old }).nodes).includes(n.name)) n.groups.push(g.name);
      }
      return send(res, 200, groupView(g));
    }
  }
  if (path === '/forwards' && m === 'GET') {
    let l = forwards;
    if (q.get('node')) l = l.filter((f) => f.node === q.get('node'));
    if (q.get('group')) l = l.filter((f) => f.group === q.get('group'));
    return send(res, 200, { forwards: l });
  }
  if (path === '/forwards' && m === 'POST') {
    const b = await body(req);
    const e = checkForward(b, null);
    if (e) return fail(res, e[2] || 400, e[2] ? 'conflict' : 'invalid', e[1], e[0]);
    const f = { id: ++seq, ...b };
    forwards.push(f);
    return send(res, 201, f);
  }
  if ((mm = /^\/forwards\/([^/]+)$/.exec(path))) {
    const f = find(forwards, decodeURIComponent(mm[1]));
    if (!f) return fail(res, 404, 'not_found', 'no such forward');
    if (m === 'GET') return send(res, 200, f);
    if (m === 'DELETE') return (forwards.splice(forwards.indexOf(f), 1), send(res, 204, ''));
    if (m === 'PATCH') {
      const b = { ...f, ...(await body(req)) };
      const e = checkForward(b, f.id);
      if (e) return fail(res, e[2] || 400, e[2] ? 'conflict' : 'invalid', e[1], e[0]);
      delete f.node;
      delete f.group;
      Object.assign(f, b);
      return send(res, 200, f);
    }
  }
  return fail(res, 404, 'not_found', 'no such endpoint');
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

createServer(async (req, res) => {
  const u = new URL(req.url, 'http://x');
  try {
    if (u.pathname.startsWith('/api/v1/')) return await api(req, res, u.pathname.slice(7), u.searchParams);
    let p = normalize(u.pathname).replace(/^(\.\.[/\\])+/, '');
    let file = join(DIST, p);
    let data;
    try {
      data = await readFile(file);
    } catch {
      file = join(DIST, 'index.html');
      data = await readFile(file);
    }
    send(res, 200, data, TYPES[extname(file)] || 'application/octet-stream');
  } catch (e) {
    fail(res, 500, 'internal', String(e));
  }
}).listen(PORT, '127.0.0.1', () => console.log(`mock flowgate API on http://127.0.0.1:${PORT}/ (admin / admin)`));
