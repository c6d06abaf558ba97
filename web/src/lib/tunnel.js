// The tunnel form model (doc/api.md, "Tunnels"): API object <-> form
// state, client-side checks mirroring the server's, the mapping of the API's
// error fields ("entry.listen", "links[1].ws_path", "hops[0]") onto form
// fields, and the path view's summary. Errors are i18n keys.
import {
  isHost,
  isIPv4,
  isIPv6,
  joinHostPort,
  parseDuration,
  parsePorts,
  parseRate,
  splitHostPort,
  checkTarget,
} from './forward.js';

export const TRANSPORTS = ['tls', 'tcp', 'ws', 'wss', 'aead'];
export const DIRECTIONS = ['entry_to_exit', 'exit_to_entry'];
export const EXIT_BALANCES = ['failover', 'round-robin'];
// Per-node states of the API's path view, worst last.
// pending: online, but its agent has not applied the revision with the
// tunnel yet (it does not run it: never shown as running before it does).
// degraded: it runs the tunnel, but its agent reports a run-time problem
// (a peer or target name that does not resolve); detail says which. Worse
// than pending (something is broken now), better than not running at all.
export const NODE_STATES = ['ok', 'disabled', 'pending', 'degraded', 'offline', 'waiting', 'error'];
// States in which the node's engine runs the tunnel: its live link health
// is current (elsewhere the API shows none).
const RUNNING = new Set(['ok', 'degraded']);
const LINK_FIELDS = ['transport', 'mux', 'direction', 'ws_path', 'ws_host', 'port'];
const LIMITS = ['rate_up', 'rate_down', 'max_conns', 'max_conns_per_ip'];
const DURATIONS = ['connect_timeout', 'idle_timeout'];

const isWs = (t) => t === 'ws' || t === 'wss';
const str = (v) => (v === null || v === undefined ? '' : String(v));
const numOrEmpty = (v) => (v === null || v === undefined || v === 0 || v === '0' ? '' : String(v));

export function emptyLink() {
  return { transport: '', mux: '', direction: '', ws_path: '', ws_host: '', port: '' };
}

export function emptyTunnelForm() {
  return {
    name: '',
    enabled: true,
    entry_scope: 'node',
    entry_node: '',
    entry_group: '',
    listen_addr: '0.0.0.0',
    listen_ports: '',
    hops: [],
    exits: [''],
    balance: 'failover',
    target: '',
    transport: 'tls',
    mux: true,
    direction: 'entry_to_exit',
    ws_path: '',
    ws_host: '',
    link_port: '',
    per_link: false,
    links: [],
    rate_up: '',
    rate_down: '',
    max_conns: '',
    max_conns_per_ip: '',
    connect_timeout: '',
    idle_timeout: '',
  };
}

// Keeps one per-link row per link (hops + 1) when the hop list changes.
export function fitLinks(form) {
  const n = form.hops.length + 1;
  const links = form.links.slice(0, n);
  while (links.length < n) links.push(emptyLink());
  return { ...form, links };
}

export function formFromTunnel(t) {
  const en = t.entry || {};
  const { addr, ports } = splitHostPort(en.listen || '');
  const links = (t.links || []).map((l) => ({
    transport: str(l.transport),
    mux: l.mux === undefined ? '' : l.mux ? 'on' : 'off',
    direction: str(l.direction),
    ws_path: str(l.ws_path),
    ws_host: str(l.ws_host),
    port: str(l.port),
  }));
  const f = {
    ...emptyTunnelForm(),
    name: t.name ?? '',
    enabled: t.enabled !== false,
    entry_scope: en.group ? 'group' : 'node',
    entry_node: str(en.node),
    entry_group: str(en.group),
    listen_addr: ports ? addr || '0.0.0.0' : '0.0.0.0',
    listen_ports: ports || addr, // "9000" alone is a port
    hops: [...(t.hops || [])].map(String),
    exits: t.exits && t.exits.length ? t.exits.map(String) : [str(t.exit)],
    balance: t.balance || 'failover',
    target: str(t.target),
    transport: t.transport || 'tls',
    mux: t.mux !== false,
    direction: t.direction || 'entry_to_exit',
    ws_path: str(t.ws_path),
    ws_host: str(t.ws_host),
    link_port: str(t.link_port),
    per_link: links.length > 0,
    links,
  };
  for (const k of LIMITS) f[k] = numOrEmpty(t[k]);
  for (const k of DURATIONS) f[k] = str(t[k]);
  return f.per_link ? fitLinks(f) : f;
}

// The transport a link runs with (its own, else the tunnel's).
export function linkTransport(form, i) {
  return (form.per_link && form.links[i]?.transport) || form.transport;
}

// Client-side checks, the same the server makes. Returns {field: i18nKey};
// field names are form fields ("exits[1]", "links[0].ws_path").
export function validateTunnel(form) {
  const e = {};
  const name = form.name.trim();
  if (!name) e.name = 'v.required';
  else if (name.length > 64) e.name = 'v.name_long';
  else if (!/^[A-Za-z0-9._-]+$/.test(name) || /^\d+$/.test(name)) e.name = 'v.tun_name';
  if (form.entry_scope === 'node' && !form.entry_node) e.entry_node = 'v.pick_node';
  if (form.entry_scope === 'group' && !form.entry_group) e.entry_group = 'v.pick_group';
  const addr = form.listen_addr.trim();
  if (addr && !isIPv4(addr) && !isIPv6(addr)) e.listen_addr = 'v.listen_addr';
  const ports = form.listen_ports.trim();
  if (!ports) e.listen_ports = 'v.required';
  else if (!parsePorts(ports)) e.listen_ports = 'v.port';
  const seen = new Set(form.entry_scope === 'node' && form.entry_node ? [form.entry_node] : []);
  form.hops.forEach((h, i) => {
    if (!h) e[`hops[${i}]`] = 'v.pick_node';
    else if (seen.has(h)) e[`hops[${i}]`] = 'v.tun_node_twice';
    seen.add(h);
  });
  const exits = form.exits.filter((x, i) => x || i === 0);
  exits.forEach((x, i) => {
    if (!x) e[`exits[${i}]`] = 'v.pick_node';
    else if (seen.has(x)) e[`exits[${i}]`] = 'v.tun_node_twice';
    seen.add(x);
  });
  const terr = checkTarget(form.target);
  if (terr) e.target = terr;
  if (form.link_port.trim() && !/^\d+$/.test(form.link_port.trim())) e.link_port = 'v.port';
  else if (form.link_port.trim() && !parsePorts(form.link_port.trim())) e.link_port = 'v.port';
  const anyWs = isWs(form.transport) || (form.per_link && form.links.some((l) => isWs(l.transport)));
  for (const k of ['ws_path', 'ws_host']) if (form[k].trim() && !anyWs) e[k] = 'v.tun_ws_only';
  if (form.ws_path.trim() && !/^\/\S*$/.test(form.ws_path.trim())) e.ws_path = 'v.tun_ws_path';
  if (form.ws_host.trim() && !isHost(splitHostPort(form.ws_host.trim()).addr || form.ws_host.trim()))
    e.ws_host = 'v.tun_ws_host';
  if (form.per_link) {
    form.links.forEach((l, i) => {
      const p = `links[${i}].`;
      if (l.port.trim() && !parsePorts(l.port.trim())) e[p + 'port'] = 'v.port';
      const t = linkTransport(form, i);
      for (const k of ['ws_path', 'ws_host']) if (l[k].trim() && !isWs(t)) e[p + k] = 'v.tun_ws_only';
      if (l.ws_path.trim() && !/^\/\S*$/.test(l.ws_path.trim())) e[p + 'ws_path'] = 'v.tun_ws_path';
    });
  }
  const reverse0 = (form.per_link && form.links[0]?.direction) || form.direction;
  if (form.entry_scope === 'group' && reverse0 === 'exit_to_entry') e.direction = 'v.tun_reverse_group';
  for (const k of ['rate_up', 'rate_down']) if (parseRate(form[k]) === null) e[k] = 'v.rate';
  for (const k of ['max_conns', 'max_conns_per_ip']) {
    const v = form[k].trim();
    if (v && !/^\d+$/.test(v)) e[k] = 'v.count';
  }
  for (const k of DURATIONS) {
    const v = form[k].trim();
    if (v && parseDuration(v) === null) e[k] = 'v.duration';
  }
  return e;
}

// Form -> API body. Editing sends null for what was cleared (the API's
// "null removes"), so a PATCH says everything the form shows.
export function bodyFromTunnelForm(form, editing = false) {
  const b = {
    name: form.name.trim(),
    enabled: !!form.enabled,
    entry: {
      [form.entry_scope === 'group' ? 'group' : 'node']:
        form.entry_scope === 'group' ? form.entry_group : form.entry_node,
      listen: joinHostPort(form.listen_addr, form.listen_ports),
    },
    hops: form.hops.filter(Boolean),
    target: form.target.trim(),
    transport: form.transport,
    mux: !!form.mux,
    direction: form.direction,
  };
  const exits = form.exits.filter(Boolean);
  if (exits.length > 1) {
    b.exits = exits;
    b.balance = form.balance;
  } else {
    b.exit = exits[0] || '';
    if (editing) b.balance = null;
  }
  const opt = (k, v) => {
    if (v !== '' && v !== undefined && v !== null) b[k] = v;
    else if (editing) b[k] = null;
  };
  const rateVal = (v) => (/^\d+$/.test(v) ? Number(v) : v);
  opt('ws_path', form.ws_path.trim());
  opt('ws_host', form.ws_host.trim());
  // an emptied link port on edit keeps the one the server allocated
  if (form.link_port.trim()) b.link_port = Number(form.link_port.trim());
  for (const k of ['rate_up', 'rate_down']) opt(k, rateVal(form[k].trim()));
  for (const k of ['max_conns', 'max_conns_per_ip']) opt(k, form[k].trim() ? Number(form[k].trim()) : '');
  for (const k of DURATIONS) opt(k, form[k].trim());
  if (form.per_link) {
    b.links = fitLinks(form).links.map((l) => {
      const o = {};
      if (l.transport) o.transport = l.transport;
      if (l.mux) o.mux = l.mux === 'on';
      if (l.direction) o.direction = l.direction;
      if (l.ws_path.trim()) o.ws_path = l.ws_path.trim();
      if (l.ws_host.trim()) o.ws_host = l.ws_host.trim();
      if (l.port.trim()) o.port = Number(l.port.trim());
      return o;
    });
  } else if (editing) b.links = null;
  return b;
}

// Which form field an API error field is about.
export function formFieldForTunnelField(field, message) {
  if (!field) return null;
  if (field === 'entry.listen') {
    const m = message || '';
    return /\b(ip|ipv4|ipv6|host|address)\b/i.test(m) && !/port/i.test(m) ? 'listen_addr' : 'listen_ports';
  }
  if (field === 'entry' || field === 'entry.node') return 'entry_node';
  if (field === 'entry.group') return 'entry_group';
  if (field === 'exit') return 'exits[0]';
  if (field === 'exits') return 'exits[0]';
  if (field === 'hops') return 'hops[0]';
  if (field === 'links') return 'per_link';
  if (/^links\[\d+\]\.(transport|mux|direction|ws_path|ws_host|port)$/.test(field)) return field;
  if (/^links\[\d+\]/.test(field)) return 'per_link';
  return field;
}

// The path for a small drawing: [{role, nodes:[{name, state, detail, online}]}],
// from the API's "path", else from the form (before the first save).
export function pathOf(t) {
  if (t.path && t.path.length) return t.path;
  const ent = t.entry || {};
  const exits = t.exits || (t.exit ? [t.exit] : []);
  return [
    { role: 'entry', nodes: [{ name: ent.node || ent.group || '', state: 'unknown' }] },
    ...(t.hops || []).map((h) => ({ role: 'relay', nodes: [{ name: h, state: 'unknown' }] })),
    { role: 'exit', nodes: exits.map((x) => ({ name: x, state: 'unknown' })) },
  ];
}

// The worst state along the path (for the list's summary badge).
export function worstState(t) {
  let worst = -1;
  for (const p of t.path || []) for (const n of p.nodes || []) worst = Math.max(worst, NODE_STATES.indexOf(n.state));
  return worst < 0 ? 'unknown' : NODE_STATES[worst];
}

// The round trip of each hop of a path (hop i joins position i and i + 1),
// in ms, as the agents measured it: both ends of a hop measure it (the
// nearer node's rtt_next_ms, the farther one's rtt_prev_ms) and a position
// may hold several nodes (a group entry, balanced exits); the slowest one
// is the hop's. null where nothing was measured.
export function hopRtts(path) {
  const out = [];
  for (let i = 0; i + 1 < (path || []).length; i++) {
    const vals = [
      ...(path[i].nodes || []).map((n) => n.rtt_next_ms),
      ...(path[i + 1].nodes || []).map((n) => n.rtt_prev_ms),
    ].filter((v) => typeof v === 'number' && v >= 0);
    out.push(vals.length ? Math.max(...vals) : null);
  }
  return out;
}

// The tunnel with its path's link health (links_up, rtt_prev_ms,
// rtt_next_ms, rtt_ms) taken from the live feed (pushed every second)
// instead of the last re-read of the tunnel (every 5 s). Only nodes the
// path shows running take it; states, details and problems stay the API's.
export function withLiveLinks(t, liveTunnels) {
  const per = liveTunnels?.[String(t?.id)]?.nodes;
  if (!t || !per || !Array.isArray(t.path)) return t;
  const last = t.path.length - 1;
  const path = t.path.map((pos, i) => ({
    ...pos,
    nodes: (pos.nodes || []).map((n) => {
      const l = per[String(n.id)];
      if (!l || !RUNNING.has(n.state) || !('links_up' in l)) return n;
      const num = (v) => (typeof v === 'number' ? v : null);
      const prev = num(l.rtt_prev_ms);
      const next = num(l.rtt_next_ms);
      return {
        ...n,
        links_up: num(l.links_up),
        rtt_prev_ms: prev,
        rtt_next_ms: next,
        rtt_ms: i === last ? prev : next,
      };
    }),
  }));
  return { ...t, path };
}

// Live counters of a tunnel as its entry sees them (every node passes the
// same bytes: summing them would count each byte once per node).
export function tunnelLive(t, liveTunnels) {
  const l = liveTunnels?.[String(t.id)];
  if (!l || !l.nodes) return null;
  const entryIds = new Set(((t.path || [])[0]?.nodes || []).map((n) => String(n.id)));
  const out = { bytes_up: 0, bytes_down: 0, conns_active: 0, up_bps: 0, down_bps: 0 };
  let any = false;
  for (const [nid, v] of Object.entries(l.nodes)) {
    if (!entryIds.has(nid)) continue;
    any = true;
    out.bytes_up += v.bytes_up || 0;
    out.bytes_down += v.bytes_down || 0;
    out.conns_active += v.active || 0;
    out.up_bps += v.rate_up || 0;
    out.down_bps += v.rate_down || 0;
  }
  return any ? out : null;
}

export { LINK_FIELDS };
