// The dictionaries are complete and the components hold no text of their
// own: every string a reader sees goes through t().
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from '@babel/parser';
import en from '../src/i18n/en.js';
import zh from '../src/i18n/zh-CN.js';
import { BALANCES, PROTOS, PROXY_PROTOCOLS } from '../src/lib/forward.js';
import { RANGES } from '../src/lib/format.js';

const SRC = join(__dirname, '..', 'src');

function files(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}
const sources = files(SRC).filter((f) => /\.(jsx?|tsx?)$/.test(f) && !f.includes(join('src', 'i18n') + '/'));

// Strings that read the same in both languages on purpose.
const SAME = new Set([
  'app.name',
  'lang.en',
  'lang.zh-CN',
  'proto.tcp',
  'proto.udp',
  'proto.both',
  'live.up_down',
  'node.rev_numbers',
  'traffic.chart_title',
]);

const placeholders = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe('dictionaries', () => {
  it('en and zh-CN have exactly the same keys', () => {
    const a = Object.keys(en).sort();
    const b = Object.keys(zh).sort();
    expect(b.filter((k) => !en[k])).toEqual([]);
    expect(a.filter((k) => !zh[k])).toEqual([]);
    expect(a).toEqual(b);
  });
  it('no value is empty, and placeholders match', () => {
    for (const k of Object.keys(en)) {
      expect(en[k].trim(), k).not.toBe('');
      expect(zh[k].trim(), k).not.toBe('');
      expect(placeholders(zh[k]), k).toEqual(placeholders(en[k]));
    }
  });
  it('every Chinese string is translated (differs from English unless listed)', () => {
    const same = Object.keys(en).filter((k) => en[k] === zh[k] && !SAME.has(k));
    expect(same).toEqual([]);
    const noHan = Object.keys(zh).filter((k) => !SAME.has(k) && !/\p{Script=Han}/u.test(zh[k]));
    expect(noHan).toEqual([]);
  });
});

describe('components', () => {
  it('every t("key") used in src/ exists', () => {
    const missing = [];
    for (const f of sources) {
      const s = readFileSync(f, 'utf8');
      for (const m of s.matchAll(/\bt\(\s*'([^']+)'\s*[,)]/g)) if (!(m[1] in en)) missing.push(`${f}: ${m[1]}`);
      // keys held in data (validation results, nav entries) are quoted
      // with a known prefix
      for (const m of s.matchAll(/'((?:v|applyerr|nav)\.[a-z_]+)'/g)) if (!(m[1] in en)) missing.push(`${f}: ${m[1]}`);
    }
    expect(missing).toEqual([]);
  });
  it('keys built at run time exist for every value', () => {
    const need = [
      ...PROTOS.map((p) => 'proto.' + p),
      ...BALANCES.map((b) => 'balance.' + b),
      ...PROXY_PROTOCOLS.map((p) => 'pp.' + (p || 'off')),
      ...['synced', 'lagging', 'failed', 'unknown'].map((s) => 'rev.' + s),
      ...['s', 'm', 'h', 'd'].map((u) => 'time.ago_' + u),
      ...Object.keys(RANGES).flatMap((r) => ['range.' + r, 'range.' + r + '_long']),
      ...['fleet', 'nodes', 'groups', 'forwards'].map((s) => 'traffic.scope_' + s),
      ...['nodes', 'groups', 'forwards'].map((s) => 'traffic.object_' + s),
      ...['node', 'group'].map((s) => 'fwd.scope_' + s),
      ...['on', 'polling', 'wait', 'lost'].map((s) => 'live.' + s),
      ...['viewer', 'operator', 'admin'].map((r) => 'role.' + r),
      ...['en', 'zh-CN'].map((l) => 'lang.' + l),
      'kind.forward',
      'kind.object',
      'kind.policy',
      'kind.firewall',
    ];
    expect(need.filter((k) => !(k in en))).toEqual([]);
  });
  it('no JSX text or user-facing attribute is a literal', () => {
    const ATTRS = new Set([
      'aria-label',
      'title',
      'placeholder',
      'alt',
      'label',
      'legend',
      'description',
      'confirmLabel',
      'hint',
      'emptyText',
    ]);
    const bad = [];
    for (const f of sources.filter((x) => x.endsWith('.jsx'))) {
      const code = readFileSync(f, 'utf8');
      const ast = parse(code, { sourceType: 'module', plugins: ['jsx'] });
      const walk = (node) => {
        if (!node || typeof node.type !== 'string') return;
        if (node.type === 'JSXText' && /\p{L}/u.test(node.value))
          bad.push(`${f}:${node.loc.start.line} text "${node.value.trim()}"`);
        if (
          node.type === 'JSXAttribute' &&
          ATTRS.has(node.name.name) &&
          node.value &&
          node.value.type === 'StringLiteral' &&
          /\p{L}/u.test(node.value.value)
        )
          bad.push(`${f}:${node.loc.start.line} ${node.name.name}="${node.value.value}"`);
        if (
          node.type === 'JSXExpressionContainer' &&
          node.expression.type === 'StringLiteral' &&
          /\p{L}/u.test(node.expression.value)
        )
          bad.push(`${f}:${node.loc.start.line} {"${node.expression.value}"}`);
        for (const v of Object.values(node)) {
          if (Array.isArray(v)) v.forEach(walk);
          else if (v && typeof v === 'object' && typeof v.type === 'string') walk(v);
        }
      };
      walk(ast.program);
    }
    expect(bad).toEqual([]);
  });
  it('the scanner catches a literal (self-check)', () => {
    const ast = parse('const x = <p>Hello</p>;', { sourceType: 'module', plugins: ['jsx'] });
    const text = JSON.stringify(ast.program);
    expect(text).toContain('"type":"JSXText"');
  });
});
