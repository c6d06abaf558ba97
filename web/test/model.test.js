import { describe, expect, it } from 'vitest';
import { applyErrorWords, chartPoints, fleetLive, forwardOnNode, sumLive, withLive } from '../src/lib/model.js';
import { withRates } from '../src/live.jsx';
import { niceMax, pathFor } from '../src/components/Chart.jsx';
import { csvName } from '../src/pages/Traffic.jsx';
import { checkPasswords } from '../src/pages/Account.jsx';
import { detectLang, translate } from '../src/i18n/index.jsx';

describe('live joins', () => {
  const n = { id: 1, name: 'n1', groups: ['edge'], online: false, applied_rev: 1 };
  it('withLive takes the fresher state', () => {
    expect(withLive(n, { 1: { online: true, applied_rev: 2 } })).toMatchObject({ online: true, applied_rev: 2 });
    expect(withLive(n, {})).toBe(n);
  });
  it('forwardOnNode by id, name or group', () => {
    expect(forwardOnNode({ node: 1 }, n)).toBe(true);
    expect(forwardOnNode({ node: 'n1' }, n)).toBe(true);
    expect(forwardOnNode({ node: 'n2' }, n)).toBe(false);
    expect(forwardOnNode({ group: 'edge' }, n)).toBe(true);
    expect(forwardOnNode({ group: 'core' }, n)).toBe(false);
  });
  it('sums rates and connections', () => {
    const live = {
      1: { up_bps: 10, down_bps: 20, conns_active: 1, bytes_up: 5, bytes_down: 6 },
      2: { up_bps: 1, down_bps: 2, conns_active: 3 },
    };
    expect(sumLive([{ id: 1 }, { id: 2 }, { id: 3 }], live)).toEqual({
      up_bps: 11,
      down_bps: 22,
      conns_active: 4,
      bytes_up: 5,
      bytes_down: 6,
    });
    expect(fleetLive(live).conns_active).toBe(4);
  });
  it('withRates derives a rate from two samples when the server sends none', () => {
    const prev = { 7: { bytes_up: 100, bytes_down: 1000 } };
    const next = { 7: { bytes_up: 300, bytes_down: 5000 }, 8: { bytes_up: 1, bytes_down: 1, up_bps: 9, down_bps: 9 } };
    const r = withRates(prev, next, 2);
    expect(r[7].up_bps).toBe(100);
    expect(r[7].down_bps).toBe(2000);
    expect(r[8].up_bps).toBe(9);
    // a counter reset (agent restart) never shows a negative rate
    expect(withRates({ 7: { bytes_up: 500, bytes_down: 0 } }, { 7: { bytes_up: 0, bytes_down: 0 } }, 2)[7].up_bps).toBe(
      0,
    );
  });
});

describe('apply errors in words', () => {
  it('spells out the common causes', () => {
    const w = applyErrorWords({
      kind: 'forward',
      id: 3,
      name: 'web',
      error: 'bind 0.0.0.0:80: Address already in use',
    });
    expect(w).toMatchObject({ kindKey: 'kind.forward', name: 'web', explainKey: 'applyerr.addrinuse' });
    expect(applyErrorWords({ kind: 'forward', id: 3, error: 'Permission denied' }).explainKey).toBe('applyerr.perm');
    expect(applyErrorWords({ kind: 'forward', id: 3, error: 'weird' })).toMatchObject({
      explainKey: null,
      name: '#3',
      reason: 'weird',
    });
  });
});

describe('charts', () => {
  it('niceMax rounds up to 1, 2, 2.5, 5 × 10^n', () => {
    expect(niceMax(0)).toBe(1);
    expect(niceMax(7)).toBe(10);
    expect(niceMax(180)).toBe(200);
    expect(niceMax(2100)).toBe(2500);
    expect(niceMax(4000)).toBe(5000);
  });
  it('points are bytes per step turned into rates', () => {
    expect(chartPoints([{ t: 60, bytes_up: 600, bytes_down: 1200, conns: 2 }], 60)).toEqual([
      { t: 60, up: 10, down: 20, conns: 2 },
    ]);
  });
  it('path spans the box', () => {
    const d = pathFor(
      [
        { t: 0, up: 0 },
        { t: 10, up: 5 },
      ],
      'up',
      0,
      10,
      10,
    );
    expect(d).toBe('M0.0 160.0 L600.0 80.0');
  });
  it('csv names are file-safe', () => {
    expect(csvName('forwards', 'web / ssh', '7d')).toBe('flowgate-forwards-web_ssh-7d.csv');
    expect(csvName('fleet', undefined, '1h')).toBe('flowgate-fleet-fleet-1h.csv');
  });
});

describe('passwords', () => {
  it('checks length and confirmation', () => {
    expect(checkPasswords('', '', '')).toEqual({ old_password: 'v.required', new_password: 'v.required' });
    expect(checkPasswords('a', 'short', 'short')).toEqual({ new_password: 'v.password_short' });
    expect(checkPasswords('a', 'longenough', 'other')).toEqual({ confirm: 'v.password_mismatch' });
    expect(checkPasswords('a', 'longenough', 'longenough')).toEqual({});
  });
});

describe('language', () => {
  it('follows the browser: any Chinese is zh-CN, else English', () => {
    expect(detectLang(['zh-TW', 'en'])).toBe('zh-CN');
    expect(detectLang(['zh'])).toBe('zh-CN');
    expect(detectLang(['en-GB', 'zh-CN'])).toBe('en');
    expect(detectLang(['fr-FR'])).toBe('en');
    expect(detectLang([])).toBe('en');
  });
  it('fills placeholders', () => {
    expect(translate({ k: '{n} nodes of {m}' }, 'k', { n: 2, m: 3 })).toBe('2 nodes of 3');
    expect(translate({}, 'missing.key')).toBe('missing.key');
  });
});

describe('per-node live share', () => {
  it('takes the node entry when the server splits a forward by node', async () => {
    const { liveOfOnNode } = await import('../src/lib/model.js');
    const live = {
      9: {
        bytes_up: 30,
        up_bps: 3,
        nodes: { 1: { bytes_up: 10, bytes_down: 1, active: 2, rate_up: 1, rate_down: 0 }, 2: { bytes_up: 20 } },
      },
    };
    expect(liveOfOnNode({ id: 9 }, live, 1)).toEqual({
      bytes_up: 10,
      bytes_down: 1,
      conns_active: 2,
      up_bps: 1,
      down_bps: 0,
    });
    expect(liveOfOnNode({ id: 9 }, live, 3).bytes_up).toBe(0);
    expect(sumLive([{ id: 9 }], live, 2).bytes_up).toBe(20);
    expect(sumLive([{ id: 9 }], live).bytes_up).toBe(30);
  });
});

describe('live socket', () => {
  it('follows the page scheme and carries the token in the query', async () => {
    const { liveSocketUrl } = await import('../src/live.jsx');
    expect(liveSocketUrl({ protocol: 'http:', host: '127.0.0.1:8080' }, 'fgs_a/b')).toBe(
      'ws://127.0.0.1:8080/api/v1/live/ws?access_token=fgs_a%2Fb',
    );
    expect(liveSocketUrl({ protocol: 'https:', host: 'gw:8443' }, 't')).toBe(
      'wss://gw:8443/api/v1/live/ws?access_token=t',
    );
  });
});

describe('roles', () => {
  it('viewers may not write; operators and admins may', async () => {
    const { canWrite } = await import('../src/auth.jsx');
    expect(canWrite({ role: 'viewer' })).toBe(false);
    expect(canWrite({ role: 'operator' })).toBe(true);
    expect(canWrite({ role: 'admin' })).toBe(true);
    expect(canWrite(null)).toBe(false);
  });
});
