// The forward form model: API object <-> form state, client-side checks and
// the mapping of API error fields onto form fields. Errors are i18n keys
// (plus values) so the page shows them in the reader's language.

export const PROTOS = ['tcp', 'udp', 'both'];
export const BALANCES = ['round-robin', 'least-conn', 'ip-hash', 'failover'];
export const PROXY_PROTOCOLS = ['', 'v1', 'v2'];

// The rate spellings `flowgate forward` accepts (src/core/units.c): a plain
// integer is bytes/s; bits ×1000 with kbit/mbit/gbit (kbps...); bytes ×1000
// with k/kb/m/mb/g/gb; bytes ×1024 with kib/mib/gib; any case; optional /s.
const RATE_UNITS = {
  '': 1,
  B: 1,
  bit: 1 / 8,
  kbit: 1000 / 8,
  mbit: 1e6 / 8,
  gbit: 1e9 / 8,
  kbps: 1000 / 8,
  mbps: 1e6 / 8,
  gbps: 1e9 / 8,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  kib: 1024,
  mib: 1024 * 1024,
  gib: 1024 * 1024 * 1024,
};

// "10MB/s" -> 10000000; "" -> 0 (no limit); a bad spelling -> null.
export function parseRate(s) {
  if (s === null || s === undefined) return 0;
  if (typeof s === 'number') return s >= 0 ? Math.floor(s) : null;
  s = String(s).trim();
  if (s === '') return 0;
  const m = /^(\d+(?:\.\d+)?)([A-Za-z]*)(\/s)?$/.exec(s);
  if (!m) return null;
  const unit = m[2];
  if (unit === 'b') return null; // bit or byte? the engine refuses it too
  const key = Object.keys(RATE_UNITS).find((k) => k.toLowerCase() === unit.toLowerCase());
  if (key === undefined) return null;
  return Math.floor(Number(m[1]) * RATE_UNITS[key]);
}

// A size (burst): a rate's spellings without "/s".
export function parseSize(s) {
  if (typeof s === 'string' && /\/s$/.test(s.trim())) return null;
  return parseRate(s);
}

// Durations as the engine takes them: a plain number is seconds; ms, s, m, h.
export function parseDuration(s) {
  s = String(s ?? '').trim();
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s);
  if (!m) return null;
  const k = { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] || 's'];
  return Number(m[1]) * k;
}

// "1-65535" ports; "9000" or "9000-9010".
export function parsePorts(s) {
  s = String(s ?? '').trim();
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s);
  if (!m) return null;
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo < 1 || lo > 65535 || hi < 1 || hi > 65535 || hi < lo) return null;
  return { lo, hi };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOSTNAME =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

export function isIPv4(s) {
  return IPV4.test(s);
}

export function isIPv6(s) {
  if (!/^[0-9A-Fa-f:.]+$/.test(s) || !s.includes(':')) return false;
  try {
    // The URL parser is a strict IPv6 checker that ships with every runtime.
    new URL('http://[' + s + ']/');
    return true;
  } catch {
    return false;
  }
}

export function isHost(s) {
  return isIPv4(s) || isIPv6(s) || HOSTNAME.test(s);
}

// "0.0.0.0:9000-9010" -> {addr:"0.0.0.0", ports:"9000-9010"}; "[::]:80" ->
// {addr:"::", ports:"80"}.
export function splitHostPort(s) {
  s = String(s ?? '').trim();
  let m = /^\[([^\]]*)\]:(.*)$/.exec(s);
  if (m) return { addr: m[1], ports: m[2] };
  const i = s.lastIndexOf(':');
  if (i < 0) return { addr: s, ports: '' };
  return { addr: s.slice(0, i), ports: s.slice(i + 1) };
}

export function joinHostPort(addr, ports) {
  addr = String(addr ?? '').trim() || '0.0.0.0';
  return (addr.includes(':') ? '[' + addr + ']' : addr) + ':' + String(ports ?? '').trim();
}

// A target is host:port or host:port-range (a range maps port by port).
export function checkTarget(s) {
  const { addr, ports } = splitHostPort(s);
  if (!String(s ?? '').trim()) return 'v.target_empty';
  if (!addr || !isHost(addr)) return 'v.target_host';
  if (!parsePorts(ports)) return 'v.target_port';
  return null;
}

export function emptyForm() {
  return {
    name: '',
    scope: 'node',
    node: '',
    group: '',
    listen_addr: '0.0.0.0',
    ports: '',
    proto: 'tcp',
    targets: [''],
    balance: 'round-robin',
    rate_up: '',
    rate_down: '',
    max_conns: '',
    max_conns_per_ip: '',
    proxy_protocol: '',
    enabled: true,
    ...emptyAdvanced(),
  };
}

// The engine's less common fields, in the form's "Advanced" section.
export const ADV_RATES = ['rate_up_per_conn', 'rate_down_per_conn'];
export const ADV_DURATIONS = ['connect_timeout', 'idle_timeout', 'udp_idle_timeout'];
const HC_FIELDS = ['interval', 'timeout', 'rise', 'fall'];

function emptyAdvanced() {
  return {
    rate_up_per_conn: '',
    rate_down_per_conn: '',
    burst: '',
    connect_timeout: '',
    idle_timeout: '',
    udp_idle_timeout: '',
    hc_enabled: false,
    hc_interval: '',
    hc_timeout: '',
    hc_rise: '',
    hc_fall: '',
  };
}

// Is anything in the Advanced section set (so the page opens it)?
export function hasAdvanced(form) {
  return form.hc_enabled || [...ADV_RATES, 'burst', ...ADV_DURATIONS].some((k) => String(form[k] ?? '').trim());
}

const numOrEmpty = (v) => (v === null || v === undefined || v === 0 || v === '0' ? '' : String(v));

export function formFromForward(f) {
  const { addr, ports } = splitHostPort(f.listen);
  return {
    name: f.name ?? '',
    scope: f.group ? 'group' : 'node',
    node: f.node ?? '',
    group: f.group ?? '',
    listen_addr: addr || '0.0.0.0',
    ports,
    proto: f.proto || 'tcp',
    targets: f.targets && f.targets.length ? [...f.targets] : [''],
    balance: f.balance || 'round-robin',
    rate_up: numOrEmpty(f.rate_up),
    rate_down: numOrEmpty(f.rate_down),
    max_conns: numOrEmpty(f.max_conns),
    max_conns_per_ip: numOrEmpty(f.max_conns_per_ip),
    proxy_protocol: f.proxy_protocol && f.proxy_protocol !== 'none' ? f.proxy_protocol : '',
    enabled: f.enabled !== false,
    rate_up_per_conn: numOrEmpty(f.rate_up_per_conn),
    rate_down_per_conn: numOrEmpty(f.rate_down_per_conn),
    burst: numOrEmpty(f.burst),
    connect_timeout: f.connect_timeout === undefined || f.connect_timeout === null ? '' : String(f.connect_timeout),
    idle_timeout: f.idle_timeout === undefined || f.idle_timeout === null ? '' : String(f.idle_timeout),
    udp_idle_timeout: f.udp_idle_timeout === undefined || f.udp_idle_timeout === null ? '' : String(f.udp_idle_timeout),
    hc_enabled: !!f.health_check,
    ...Object.fromEntries(
      HC_FIELDS.map((k) => [
        'hc_' + k,
        f.health_check && f.health_check[k] !== undefined ? String(f.health_check[k]) : '',
      ]),
    ),
  };
}

// Client-side checks, the same ones the server makes, so most mistakes are
// shown before a round trip. Returns {field: i18nKey}; empty when valid.
// Field names are form fields; targets[i] names the i-th target row.
export function validateForm(form) {
  const e = {};
  if (!form.name.trim()) e.name = 'v.required';
  else if (form.name.trim().length > 64) e.name = 'v.name_long';
  if (form.scope === 'node' && !form.node) e.node = 'v.pick_node';
  if (form.scope === 'group' && !form.group) e.group = 'v.pick_group';
  const addr = form.listen_addr.trim();
  if (addr && !isIPv4(addr) && !isIPv6(addr)) e.listen_addr = 'v.listen_addr';
  const ports = form.ports.trim();
  if (!ports) e.ports = 'v.required';
  else if (!parsePorts(ports)) e.ports = 'v.port';
  const targets = form.targets.map((x) => x.trim());
  if (!targets.some((x) => x)) e['targets[0]'] = 'v.target_one';
  targets.forEach((x, i) => {
    if (!x) return; // blank rows are dropped before saving
    const err = checkTarget(x);
    if (err) e[`targets[${i}]`] = err;
  });
  for (const k of ['rate_up', 'rate_down']) if (parseRate(form[k]) === null) e[k] = 'v.rate';
  for (const k of ['max_conns', 'max_conns_per_ip']) {
    const v = form[k].trim();
    if (v && !/^\d+$/.test(v)) e[k] = 'v.count';
  }
  for (const k of ADV_RATES) if (parseRate(form[k] ?? '') === null) e[k] = 'v.rate';
  if (parseSize(form.burst ?? '') === null) e.burst = 'v.size';
  for (const k of ADV_DURATIONS) {
    const v = String(form[k] ?? '').trim();
    if (v && parseDuration(v) === null) e[k] = 'v.duration';
  }
  if (form.hc_enabled) {
    for (const k of ['hc_interval', 'hc_timeout']) {
      const v = String(form[k] ?? '').trim();
      if (v && !(parseDuration(v) > 0)) e[k] = 'v.duration';
    }
    for (const k of ['hc_rise', 'hc_fall']) {
      const v = String(form[k] ?? '').trim();
      if (v && !(/^\d+$/.test(v) && Number(v) >= 1)) e[k] = 'v.count_min1';
    }
  }
  return e;
}

// Form -> API body. Rates go as typed (the server parses the same
// spellings), an empty one as 0 = unlimited. An empty Advanced field is left
// out of a new forward and sent as null (= remove, back to the engine's
// default) when editing one.
export function bodyFromForm(form, editing = false) {
  const targets = form.targets.map((x) => x.trim()).filter(Boolean);
  const b = {
    name: form.name.trim(),
    listen: joinHostPort(form.listen_addr, form.ports),
    proto: form.proto,
    targets,
    balance: form.balance,
    rate_up: form.rate_up.trim() || 0,
    rate_down: form.rate_down.trim() || 0,
    max_conns: form.max_conns.trim() ? Number(form.max_conns) : 0,
    max_conns_per_ip: form.max_conns_per_ip.trim() ? Number(form.max_conns_per_ip) : 0,
    proxy_protocol: form.proxy_protocol || null,
    enabled: !!form.enabled,
  };
  if (/^\d+$/.test(String(b.rate_up))) b.rate_up = Number(b.rate_up);
  if (/^\d+$/.test(String(b.rate_down))) b.rate_down = Number(b.rate_down);
  const opt = (k, v) => {
    if (v !== '' && v !== undefined) b[k] = v;
    else if (editing) b[k] = null;
  };
  const rateVal = (v) => {
    v = String(v ?? '').trim();
    return /^\d+$/.test(v) ? Number(v) : v;
  };
  for (const k of [...ADV_RATES, 'burst']) opt(k, rateVal(form[k]));
  for (const k of ADV_DURATIONS) opt(k, String(form[k] ?? '').trim());
  if (form.hc_enabled) {
    const hc = {};
    for (const k of HC_FIELDS) {
      const v = String(form['hc_' + k] ?? '').trim();
      if (v) hc[k] = k === 'rise' || k === 'fall' ? Number(v) : v;
    }
    b.health_check = hc;
  } else opt('health_check', '');
  if (form.scope === 'group') b.group = form.group;
  else b.node = form.node;
  return b;
}

// Which form field an API error field belongs to: "listen" is the address
// and port pair (shown beside the port, unless the message names the
// address), "targets[1]" the second target row, "node"/"group" the scope.
export function formFieldForApiField(field, message) {
  if (!field) return null;
  if (field === 'listen') {
    const m = message || '';
    return /\b(ip|ipv4|ipv6|host)\b/i.test(m) && !/port/i.test(m) ? 'listen_addr' : 'ports';
  }
  if (field === 'targets') return 'targets[0]';
  if (field === 'health_check') return 'hc_interval';
  const m = /^targets\[(\d+)\]/.exec(field);
  if (m) return `targets[${m[1]}]`;
  return field;
}
