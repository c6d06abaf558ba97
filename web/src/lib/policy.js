// Firewall policy editor model: the form's fields -> the API body, and an
// API error's field -> the form field to show it under. Pure (unit tested).

// Returns { body } or { errors: { field: i18n key } }.
export function policyBody(form) {
  const errors = {};
  const name = (form.name || '').trim();
  if (!name) errors.name = 'v.required';
  else if (!/^[A-Za-z0-9_-]{1,48}$/.test(name) || /^[0-9]+$/.test(name)) errors.name = 'v.policy_name';
  const prio = String(form.priority ?? '').trim();
  if (prio !== '' && !/^-?[0-9]+$/.test(prio)) errors.priority = 'v.integer';
  const confirm = String(form.confirm ?? '').trim();
  if (confirm !== '' && (!/^[0-9]+$/.test(confirm) || +confirm < 5 || +confirm > 3600))
    errors.confirm_timeout = 'v.confirm';
  let rules, sets;
  try {
    rules = JSON.parse(form.rules || '[]');
    if (!Array.isArray(rules)) errors.rules = 'v.json_list';
  } catch {
    errors.rules = 'v.json';
  }
  try {
    sets = JSON.parse(form.sets || '[]');
    if (!Array.isArray(sets)) errors.sets = 'v.json_list';
  } catch {
    errors.sets = 'v.json';
  }
  if (Object.keys(errors).length) return { errors };
  const body = {
    name,
    priority: prio === '' ? 0 : parseInt(prio, 10),
    enabled: !!form.enabled,
    targets: { nodes: form.nodes || [], groups: form.groups || [] },
    rules,
    sets,
    description: (form.description || '').trim() || null,
    confirm_timeout: confirm === '' ? null : parseInt(confirm, 10),
  };
  return { body };
}

// "rules[3].dport" -> "rules", "targets.nodes[0]" -> "nodes", "sets[1].name" -> "sets".
export function policyFieldErrors(err) {
  const f = err?.field;
  if (!f) return null;
  if (f.startsWith('rules')) return 'rules';
  if (f.startsWith('sets')) return 'sets';
  if (f.startsWith('targets.nodes')) return 'nodes';
  if (f.startsWith('targets.groups')) return 'groups';
  if (f === 'targets') return 'nodes';
  return f;
}
