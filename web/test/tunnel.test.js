import { describe, expect, it } from 'vitest';
import en from '../src/i18n/en.js';
import zh from '../src/i18n/zh-CN.js';
import {
  bodyFromTunnelForm,
  DIRECTIONS,
  emptyTunnelForm,
  EXIT_BALANCES,
  fitLinks,
  formFieldForTunnelField,
  formFromTunnel,
  NODE_STATES,
  hopRtts,
  pathOf,
  TRANSPORTS,
  tunnelLive,
  validateTunnel,
  withLiveLinks,
  worstState,
} from '../src/lib/tunnel.js';

const good = () => ({
  ...emptyTunnelForm(),
  name: 'db',
  entry_node: 'n1',
  listen_ports: '5432',
  hops: ['n2'],
  exits: ['n3'],
  target: '10.0.0.5:5432',
});

// What the API answers for a tunnel (doc/api.md): names for nodes, the
// allocated link port, the computed path.
const stored = {
  id: 7,
  name: 'db',
  enabled: true,
  entry: { node: 'n1', listen: '0.0.0.0:5432' },
  hops: ['n2'],
  exit: 'n3',
  target: '10.0.0.5:5432',
  transport: 'wss',
  ws_path: '/t',
  link_port: 20000,
  rate_down: '50mbit',
  max_conns: 10,
  links: [
    { transport: 'aead', mux: false },
    { port: 8443, direction: 'exit_to_entry' },
  ],
  path: [
    { role: 'entry', nodes: [{ id: 1, name: 'n1', state: 'ok', online: true }] },
    { role: 'relay', nodes: [{ id: 2, name: 'n2', state: 'waiting', detail: 'node n3 has no address yet' }] },
    { role: 'exit', nodes: [{ id: 3, name: 'n3', state: 'offline' }] },
  ],
  problems: ['n2: node n3 has no address yet', 'n3: offline'],
};

describe('tunnel form <-> API', () => {
  it('a stored tunnel round-trips through the form', () => {
    const f = formFromTunnel(stored);
    expect(f.entry_node).toBe('n1');
    expect(f.listen_addr).toBe('0.0.0.0');
    expect(f.listen_ports).toBe('5432');
    expect(f.exits).toEqual(['n3']);
    expect(f.link_port).toBe('20000');
    expect(f.per_link).toBe(true);
    expect(f.links).toHaveLength(2);
    expect(f.links[0]).toMatchObject({ transport: 'aead', mux: 'off' });
    const b = bodyFromTunnelForm(f, true);
    expect(b.entry).toEqual({ node: 'n1', listen: '0.0.0.0:5432' });
    expect(b.exit).toBe('n3');
    expect(b.exits).toBeUndefined();
    expect(b.hops).toEqual(['n2']);
    expect(b.transport).toBe('wss');
    expect(b.ws_path).toBe('/t');
    expect(b.link_port).toBe(20000);
    expect(b.rate_down).toBe('50mbit');
    expect(b.max_conns).toBe(10);
    expect(b.links).toEqual([
      { transport: 'aead', mux: false },
      { port: 8443, direction: 'exit_to_entry' },
    ]);
    // cleared optional fields are removed on edit, not sent as ""
    expect(b.rate_up).toBe(null);
    expect(b.ws_host).toBe(null);
  });
  it('a new tunnel leaves out what is empty; several exits carry the balance', () => {
    const b = bodyFromTunnelForm({ ...good(), exits: ['n3', 'n4'], balance: 'round-robin' });
    expect(b.exits).toEqual(['n3', 'n4']);
    expect(b.exit).toBeUndefined();
    expect(b.balance).toBe('round-robin');
    expect('rate_up' in b).toBe(false);
    expect('link_port' in b).toBe(false); // the server allocates one
    expect('links' in b).toBe(false);
    expect(b.entry).toEqual({ node: 'n1', listen: '0.0.0.0:5432' });
  });
  it('a group entry and a bare port', () => {
    const f = formFromTunnel({ ...stored, entry: { group: 'edge', listen: '7202' }, links: undefined });
    expect(f.entry_scope).toBe('group');
    expect(f.entry_group).toBe('edge');
    expect(f.listen_ports).toBe('7202');
    expect(bodyFromTunnelForm(f).entry).toEqual({ group: 'edge', listen: '0.0.0.0:7202' });
  });
  it('per-link rows follow the number of hops', () => {
    let f = fitLinks({ ...good(), per_link: true });
    expect(f.links).toHaveLength(2);
    f = fitLinks({ ...f, hops: ['n2', 'n4'] });
    expect(f.links).toHaveLength(3);
    f = fitLinks({ ...f, hops: [] });
    expect(f.links).toHaveLength(1);
  });
});

describe('tunnel checks', () => {
  it('a good tunnel passes', () => expect(validateTunnel(good())).toEqual({}));
  it('each mistake names its field', () => {
    const cases = [
      [{ name: '' }, 'name', 'v.required'],
      [{ name: '123' }, 'name', 'v.tun_name'],
      [{ name: 'a b' }, 'name', 'v.tun_name'],
      [{ entry_node: '' }, 'entry_node', 'v.pick_node'],
      [{ entry_scope: 'group' }, 'entry_group', 'v.pick_group'],
      [{ listen_ports: '70000' }, 'listen_ports', 'v.port'],
      [{ listen_addr: 'example.com' }, 'listen_addr', 'v.listen_addr'],
      [{ hops: ['n1'] }, 'hops[0]', 'v.tun_node_twice'],
      [{ hops: [''] }, 'hops[0]', 'v.pick_node'],
      [{ exits: ['n2'] }, 'exits[0]', 'v.tun_node_twice'],
      [{ exits: [''] }, 'exits[0]', 'v.pick_node'],
      [{ target: 'nope' }, 'target', 'v.target_port'],
      [{ link_port: '0' }, 'link_port', 'v.port'],
      [{ ws_path: '/x' }, 'ws_path', 'v.tun_ws_only'],
      [{ transport: 'ws', ws_path: 'x' }, 'ws_path', 'v.tun_ws_path'],
      [{ rate_up: 'fast' }, 'rate_up', 'v.rate'],
      [{ max_conns: '-1' }, 'max_conns', 'v.count'],
      [{ idle_timeout: 'soon' }, 'idle_timeout', 'v.duration'],
      [{ entry_scope: 'group', entry_group: 'g', direction: 'exit_to_entry' }, 'direction', 'v.tun_reverse_group'],
    ];
    for (const [patch, field, key] of cases) {
      const e = validateTunnel({ ...good(), ...patch });
      expect(e[field], JSON.stringify(patch)).toBe(key);
    }
  });
  it('per-link fields are checked against that link’s transport', () => {
    const f = fitLinks({ ...good(), per_link: true });
    f.links[1] = { ...f.links[1], transport: 'wss', ws_path: '/ok' };
    expect(validateTunnel(f)).toEqual({});
    f.links[0] = { ...f.links[0], ws_path: '/x', port: '99999' };
    const e = validateTunnel(f);
    expect(e['links[0].ws_path']).toBe('v.tun_ws_only');
    expect(e['links[0].port']).toBe('v.port');
  });
});

describe('API error fields land on form fields', () => {
  it.each([
    ['entry.listen', 'entry.listen: "0.0.0.0:99999": port out of range', 'listen_ports'],
    ['entry.listen', 'entry.listen: "1.2.3:80": not an IP address', 'listen_addr'],
    ['entry.node', '', 'entry_node'],
    ['entry.group', '', 'entry_group'],
    ['exit', '', 'exits[0]'],
    ['exits[1]', '', 'exits[1]'],
    ['hops[0]', '', 'hops[0]'],
    ['links', '', 'per_link'],
    ['links[1].ws_path', '', 'links[1].ws_path'],
    ['link_port', '', 'link_port'],
    ['rate_up', '', 'rate_up'],
    [null, '', null],
  ])('%s', (field, msg, want) => expect(formFieldForTunnelField(field, msg)).toBe(want));
});

describe('path and live view', () => {
  it('the worst node state sums the tunnel up', () => {
    expect(worstState(stored)).toBe('waiting');
    expect(worstState({ path: [] })).toBe('unknown');
  });
  it('a node that has not applied the tunnel yet is pending, between ok and offline', () => {
    const path = (a, b) => ({
      path: [
        { role: 'entry', nodes: [{ state: a }] },
        { role: 'exit', nodes: [{ state: b }] },
      ],
    });
    expect(worstState(path('ok', 'pending'))).toBe('pending');
    expect(worstState(path('ok', 'ok'))).toBe('ok');
    expect(worstState(path('pending', 'offline'))).toBe('offline');
    expect(worstState(path('pending', 'disabled'))).toBe('pending');
  });
  it('a node running with a run-time problem is degraded: worse than pending, better than offline', () => {
    const path = (a, b) => ({
      path: [
        { role: 'entry', nodes: [{ state: a }] },
        { role: 'exit', nodes: [{ state: b, detail: '1 name unresolved: targets[0] "db.internal" (…)' }] },
      ],
    });
    expect(NODE_STATES).toContain('degraded');
    expect(worstState(path('ok', 'degraded'))).toBe('degraded');
    expect(worstState(path('pending', 'degraded'))).toBe('degraded');
    expect(worstState(path('degraded', 'offline'))).toBe('offline');
    expect(worstState(path('degraded', 'waiting'))).toBe('waiting');
    expect(worstState(path('degraded', 'error'))).toBe('error');
  });
  it('every node state has a label in both languages', () => {
    for (const s of [...NODE_STATES, 'unknown']) {
      expect(en['tstate.' + s]).toBeTruthy();
      expect(zh['tstate.' + s]).toBeTruthy();
    }
  });
  it('the live feed refreshes the link health of running nodes only', () => {
    const t = {
      id: 7,
      path: [
        { role: 'entry', nodes: [{ id: 1, name: 'n1', state: 'ok', links_up: 0, rtt_next_ms: null, rtt_ms: null }] },
        { role: 'relay', nodes: [{ id: 2, name: 'n2', state: 'offline', links_up: null }] },
        {
          role: 'exit',
          nodes: [{ id: 3, name: 'n3', state: 'degraded', detail: 'x', links_up: 0, rtt_prev_ms: null }],
        },
      ],
      problems: ['n3: x'],
    };
    const live = {
      7: {
        nodes: {
          1: { bytes_up: 5, links_up: 1, rtt_prev_ms: null, rtt_next_ms: 2.5, warn: '' },
          2: { bytes_up: 5, links_up: 2, rtt_prev_ms: 3, rtt_next_ms: 4, warn: '' },
          3: { bytes_up: 5, links_up: 1, rtt_prev_ms: 4.5, rtt_next_ms: null, warn: '' },
        },
      },
    };
    const got = withLiveLinks(t, live);
    const [n1, n2, n3] = got.path.map((p) => p.nodes[0]);
    expect(n1).toMatchObject({ links_up: 1, rtt_next_ms: 2.5, rtt_ms: 2.5, state: 'ok' });
    // offline in the API: the hub's last values are stale, not shown
    expect(n2).toEqual(t.path[1].nodes[0]);
    // the exit's hop is the one it accepts; state and detail stay the API's
    expect(n3).toMatchObject({ links_up: 1, rtt_prev_ms: 4.5, rtt_ms: 4.5, state: 'degraded', detail: 'x' });
    expect(got.problems).toEqual(['n3: x']);
    expect(t.path[0].nodes[0].links_up).toBe(0); // not mutated
    // an older server's live entry has no link fields; no live entry at all
    expect(withLiveLinks(t, { 7: { nodes: { 1: { bytes_up: 1 } } } }).path[0].nodes[0].links_up).toBe(0);
    expect(withLiveLinks(t, {})).toBe(t);
    expect(withLiveLinks(t, undefined)).toBe(t);
  });
  it('each hop’s round trip is the slowest either end measured', () => {
    const path = [
      { role: 'entry', nodes: [{ rtt_next_ms: 1.2, rtt_prev_ms: null }, { rtt_next_ms: 3.4 }] },
      { role: 'relay', nodes: [{ rtt_prev_ms: 1.1, rtt_next_ms: 21.7 }] },
      { role: 'exit', nodes: [{ rtt_prev_ms: 22.5 }, { rtt_prev_ms: null }] },
      { role: 'exit', nodes: [] },
    ];
    expect(hopRtts(path)).toEqual([3.4, 22.5, null]);
    expect(
      hopRtts([
        { role: 'entry', nodes: [{}] },
        { role: 'exit', nodes: [{}] },
      ]),
    ).toEqual([null]);
    expect(hopRtts([])).toEqual([]);
    expect(hopRtts(undefined)).toEqual([]);
  });
  it('before a save the path comes from the body', () => {
    const p = pathOf({ entry: { group: 'edge' }, hops: ['r'], exits: ['a', 'b'] });
    expect(p.map((x) => x.role)).toEqual(['entry', 'relay', 'exit']);
    expect(p[2].nodes.map((n) => n.name)).toEqual(['a', 'b']);
  });
  it('live traffic is the entry’s, not the sum over nodes (each passes the same bytes)', () => {
    const live = {
      7: {
        nodes: {
          1: { bytes_up: 100, bytes_down: 50, active: 1, rate_up: 10, rate_down: 5 },
          2: { bytes_up: 104, bytes_down: 50, active: 1, rate_up: 10, rate_down: 5 },
          3: { bytes_up: 100, bytes_down: 50, active: 1, rate_up: 10, rate_down: 5 },
        },
      },
    };
    expect(tunnelLive(stored, live)).toEqual({
      bytes_up: 100,
      bytes_down: 50,
      conns_active: 1,
      up_bps: 10,
      down_bps: 5,
    });
    expect(tunnelLive(stored, {})).toBe(null);
  });
  it('every key built at run time exists in both languages', () => {
    const need = [
      ...TRANSPORTS.map((x) => 'transport.' + x),
      ...DIRECTIONS.map((x) => 'dir.' + x),
      ...EXIT_BALANCES.map((x) => 'balance.' + x),
      ...[...NODE_STATES, 'unknown'].map((x) => 'tstate.' + x),
      ...['entry', 'relay', 'exit'].map((x) => 'tun.role_' + x),
      'tun.rtt',
      'tun.links_up',
      'tun.hop_rtt',
    ];
    expect(need.filter((k) => !(k in en) || !(k in zh))).toEqual([]);
  });
});
