import { describe, expect, it } from 'vitest';
import { policyBody, policyFieldErrors } from '../src/lib/policy.js';
import { applyErrorWords } from '../src/lib/model.js';

const form = {
  name: 'edge-base',
  priority: '10',
  enabled: true,
  confirm: '',
  description: '',
  nodes: ['fra1'],
  groups: ['edge'],
  rules: '[{"chain":"input","proto":"tcp","dport":22,"action":"accept"}]',
  sets: '[]',
};

describe('policy editor', () => {
  it('builds the API body', () => {
    const { body, errors } = policyBody(form);
    expect(errors).toBeUndefined();
    expect(body).toEqual({
      name: 'edge-base',
      priority: 10,
      enabled: true,
      targets: { nodes: ['fra1'], groups: ['edge'] },
      rules: [{ chain: 'input', proto: 'tcp', dport: 22, action: 'accept' }],
      sets: [],
      description: null,
      confirm_timeout: null,
    });
  });
  it('names what is wrong before asking the server', () => {
    expect(policyBody({ ...form, name: '' }).errors).toEqual({ name: 'v.required' });
    expect(policyBody({ ...form, name: 'a.b' }).errors).toEqual({ name: 'v.policy_name' });
    expect(policyBody({ ...form, name: '123' }).errors).toEqual({ name: 'v.policy_name' });
    expect(policyBody({ ...form, priority: 'x' }).errors).toEqual({ priority: 'v.integer' });
    expect(policyBody({ ...form, confirm: '2' }).errors).toEqual({ confirm_timeout: 'v.confirm' });
    expect(policyBody({ ...form, rules: '[' }).errors).toEqual({ rules: 'v.json' });
    expect(policyBody({ ...form, sets: '{}' }).errors).toEqual({ sets: 'v.json_list' });
    expect(policyBody({ ...form, confirm: '30' }).body.confirm_timeout).toBe(30);
  });
  it('maps the API error field onto the form', () => {
    expect(policyFieldErrors({ field: 'rules[3].dport' })).toBe('rules');
    expect(policyFieldErrors({ field: 'sets[0].name' })).toBe('sets');
    expect(policyFieldErrors({ field: 'targets.groups[1]' })).toBe('groups');
    expect(policyFieldErrors({ field: 'name' })).toBe('name');
    expect(policyFieldErrors({})).toBe(null);
  });
});

describe('firewall errors of a node in words', () => {
  it('tells nft refusals, held-back policies and rollbacks apart', () => {
    expect(
      applyErrorWords({
        kind: 'policy',
        id: 4,
        name: 'bad',
        error: 'Error: syntax error, unexpected string\nruleset:12:23-32: tcp dport 22 frobnicate',
      }),
    ).toMatchObject({ kindKey: 'kind.policy', name: 'bad', explainKey: 'applyerr.nft' });
    expect(
      applyErrorWords({
        kind: 'policy',
        error: 'not applied: policy "bad" was refused, and a firewall is applied whole',
      }).explainKey,
    ).toBe('applyerr.held_back');
    expect(
      applyErrorWords({
        kind: 'firewall',
        name: 'commit-confirm',
        error: 'rolled back: the server did not answer within 60 s after this firewall change',
      }),
    ).toMatchObject({ kindKey: 'kind.firewall', explainKey: 'applyerr.rolled_back' });
  });
});
