import { describe, expect, it } from 'vitest';
import {
  bodyFromForm,
  checkTarget,
  emptyForm,
  formFieldForApiField,
  formFromForward,
  joinHostPort,
  parsePorts,
  parseRate,
  splitHostPort,
  validateForm,
} from '../src/lib/forward.js';

const good = () => ({ ...emptyForm(), name: 'web', node: 'n1', ports: '9000', targets: ['10.0.0.2:80'] });

describe('parseRate mirrors the engine (src/core/units.c)', () => {
  it('plain integers are bytes/s', () => expect(parseRate('1000')).toBe(1000));
  it('bits ×1000', () => {
    expect(parseRate('10mbit')).toBe(1250000);
    expect(parseRate('1.5mbit')).toBe(187500);
    expect(parseRate('8kbps')).toBe(1000);
  });
  it('bytes ×1000 and ×1024, any case, optional /s', () => {
    expect(parseRate('10MB/s')).toBe(10000000);
    expect(parseRate('2MiB')).toBe(2097152);
    expect(parseRate('1gib/s')).toBe(1073741824);
  });
  it('empty is no limit; bad spellings are null', () => {
    expect(parseRate('')).toBe(0);
    expect(parseRate('12 parsecs')).toBe(null);
    expect(parseRate('10 MB')).toBe(null);
    expect(parseRate('5b')).toBe(null);
    expect(parseRate('-1')).toBe(null);
  });
});

describe('ports and addresses', () => {
  it('parsePorts takes a port or an ordered range within 1..65535', () => {
    expect(parsePorts('9000')).toEqual({ lo: 9000, hi: 9000 });
    expect(parsePorts('10000-10100')).toEqual({ lo: 10000, hi: 10100 });
    expect(parsePorts('0')).toBe(null);
    expect(parsePorts('70000')).toBe(null);
    expect(parsePorts('10-5')).toBe(null);
    expect(parsePorts('80,443')).toBe(null);
    expect(parsePorts('')).toBe(null);
  });
  it('split and join keep IPv6 brackets', () => {
    expect(splitHostPort('0.0.0.0:9000-9010')).toEqual({ addr: '0.0.0.0', ports: '9000-9010' });
    expect(splitHostPort('[::]:80')).toEqual({ addr: '::', ports: '80' });
    expect(joinHostPort('::', '80')).toBe('[::]:80');
    expect(joinHostPort('', '80')).toBe('0.0.0.0:80');
  });
  it('checkTarget names what is wrong', () => {
    expect(checkTarget('10.0.0.2:80')).toBe(null);
    expect(checkTarget('example.com:443')).toBe(null);
    expect(checkTarget('[2001:db8::1]:443')).toBe(null);
    expect(checkTarget('10.0.0.2:1000-1010')).toBe(null);
    expect(checkTarget('10.0.0.2')).toBe('v.target_port');
    expect(checkTarget('bad host:80')).toBe('v.target_host');
    expect(checkTarget('x:99999')).toBe('v.target_port');
  });
});

describe('validateForm', () => {
  it('a complete form is valid', () => expect(validateForm(good())).toEqual({}));
  it('flags a bad port beside the port field', () => {
    expect(validateForm({ ...good(), ports: '70000' })).toEqual({ ports: 'v.port' });
    expect(validateForm({ ...good(), ports: '' })).toEqual({ ports: 'v.required' });
  });
  it('flags each bad target on its own row', () => {
    const e = validateForm({ ...good(), targets: ['10.0.0.2:80', 'nope'] });
    expect(e).toEqual({ 'targets[1]': 'v.target_port' });
  });
  it('needs a name, a node, one target, good limits and address', () => {
    const e = validateForm({
      ...emptyForm(),
      ports: '80',
      listen_addr: 'not-an-ip',
      rate_up: 'fast',
      max_conns: '-3',
    });
    expect(e).toEqual({
      name: 'v.required',
      node: 'v.pick_node',
      listen_addr: 'v.listen_addr',
      'targets[0]': 'v.target_one',
      rate_up: 'v.rate',
      max_conns: 'v.count',
    });
  });
  it('a group forward needs a group', () => {
    expect(validateForm({ ...good(), scope: 'group', group: '' })).toEqual({ group: 'v.pick_group' });
  });
});

describe('API body and back', () => {
  it('builds the whole model', () => {
    const b = bodyFromForm({
      ...good(),
      targets: ['10.0.0.2:80', ' ', '10.0.0.3:80'],
      rate_up: '10MB/s',
      rate_down: '5000',
      max_conns: '100',
      proxy_protocol: 'v2',
      balance: 'least-conn',
    });
    expect(b).toEqual({
      name: 'web',
      node: 'n1',
      listen: '0.0.0.0:9000',
      proto: 'tcp',
      targets: ['10.0.0.2:80', '10.0.0.3:80'],
      balance: 'least-conn',
      rate_up: '10MB/s',
      rate_down: 5000,
      max_conns: 100,
      max_conns_per_ip: 0,
      proxy_protocol: 'v2',
      enabled: true,
    });
  });
  it('no PROXY protocol is null; a group forward names the group', () => {
    const b = bodyFromForm({ ...good(), scope: 'group', group: 'edge' });
    expect(b.proxy_protocol).toBe(null);
    expect(b.group).toBe('edge');
    expect(b.node).toBe(undefined);
  });
  it('round-trips an API forward', () => {
    const f = {
      id: 7,
      name: 'ssh',
      group: 'edge',
      listen: '[::]:2222-2230',
      proto: 'both',
      targets: ['10.0.0.9:22'],
      balance: 'failover',
      rate_up: 0,
      rate_down: 1000000,
      max_conns: 0,
      max_conns_per_ip: 4,
      proxy_protocol: 'v1',
      enabled: false,
    };
    const form = formFromForward(f);
    expect(form.scope).toBe('group');
    expect(form.listen_addr).toBe('::');
    expect(form.ports).toBe('2222-2230');
    expect(form.rate_up).toBe('');
    const b = bodyFromForm(form);
    expect(b.listen).toBe(f.listen);
    expect(b.rate_down).toBe(1000000);
    expect(b.max_conns_per_ip).toBe(4);
    expect(b.enabled).toBe(false);
    expect(b.group).toBe('edge');
  });
  it('maps API error fields onto form fields', () => {
    expect(formFieldForApiField('listen', 'port 70000 out of range')).toBe('ports');
    expect(formFieldForApiField('listen', 'address already used by forward "a"')).toBe('ports');
    expect(formFieldForApiField('listen', 'not an IP address')).toBe('listen_addr');
    expect(formFieldForApiField('targets[1]', 'x')).toBe('targets[1]');
    expect(formFieldForApiField('targets', 'x')).toBe('targets[0]');
    expect(formFieldForApiField('rate_up', 'x')).toBe('rate_up');
    expect(formFieldForApiField(undefined, 'x')).toBe(null);
  });
});

describe('advanced fields', () => {
  it('durations and sizes in the engine spellings', async () => {
    const { parseDuration, parseSize } = await import('../src/lib/forward.js');
    expect(parseDuration('30')).toBe(30);
    expect(parseDuration('500ms')).toBe(0.5);
    expect(parseDuration('5m')).toBe(300);
    expect(parseDuration('1h')).toBe(3600);
    expect(parseDuration('5 m')).toBe(null);
    expect(parseDuration('soon')).toBe(null);
    expect(parseSize('64KiB')).toBe(65536);
    expect(parseSize('1MB/s')).toBe(null);
  });
  it('a new forward leaves empty advanced fields out; an edit sends null to remove them', () => {
    const b = bodyFromForm(good());
    for (const k of ['burst', 'idle_timeout', 'health_check', 'rate_up_per_conn']) expect(k in b).toBe(false);
    const e = bodyFromForm(good(), true);
    for (const k of ['burst', 'idle_timeout', 'health_check', 'rate_up_per_conn']) expect(e[k]).toBe(null);
  });
  it('round-trips a health check and timeouts', async () => {
    const { hasAdvanced } = await import('../src/lib/forward.js');
    const f = {
      name: 'x',
      node: 'n1',
      listen: '0.0.0.0:80',
      targets: ['a.example:80'],
      idle_timeout: '600s',
      burst: 65536,
      health_check: { interval: '2s', timeout: '1s', rise: 1, fall: 3 },
    };
    const form = formFromForward(f);
    expect(hasAdvanced(form)).toBe(true);
    expect(hasAdvanced(good())).toBe(false);
    expect(form).toMatchObject({
      hc_enabled: true,
      hc_interval: '2s',
      hc_fall: '3',
      idle_timeout: '600s',
      burst: '65536',
    });
    const b = bodyFromForm(form, true);
    expect(b.health_check).toEqual({ interval: '2s', timeout: '1s', rise: 1, fall: 3 });
    expect(b.idle_timeout).toBe('600s');
    expect(b.burst).toBe(65536);
    expect(b.connect_timeout).toBe(null);
  });
  it('flags bad advanced values on their own fields', () => {
    const e = validateForm({
      ...good(),
      burst: '1MB/s',
      idle_timeout: 'long',
      hc_enabled: true,
      hc_rise: '0',
      hc_interval: '0s',
    });
    expect(e).toEqual({
      burst: 'v.size',
      idle_timeout: 'v.duration',
      hc_rise: 'v.count_min1',
      hc_interval: 'v.duration',
    });
    // health-check fields are not checked while it is off
    expect(validateForm({ ...good(), hc_enabled: false, hc_rise: '0' })).toEqual({});
  });
  it('a health_check error from the server lands on the interval field', () => {
    expect(formFieldForApiField('health_check', 'x')).toBe('hc_interval');
  });
});
