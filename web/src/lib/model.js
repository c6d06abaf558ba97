// Pure helpers joining the REST objects with the live feed.

// The node with the live feed's fresher online/last_seen/applied_rev.
export function withLive(node, liveNodes) {
  const l = liveNodes?.[node.id] ?? liveNodes?.[node.name];
  if (!l) return node;
  return {
    ...node,
    online: l.online ?? node.online,
    last_seen: l.last_seen ?? node.last_seen,
    applied_rev: l.applied_rev ?? node.applied_rev,
    desired_rev: l.desired_rev ?? node.desired_rev,
    errors: Array.isArray(l.errors) ? l.errors : node.errors,
  };
}

// Does forward f run on node n? Directly (f.node is its id or name) or
// through one of n's groups.
export function forwardOnNode(f, n) {
  if (f.node !== undefined && f.node !== null && f.node !== '')
    return String(f.node) === String(n.id) || f.node === n.name;
  if (f.group) return (n.groups || []).includes(f.group);
  return false;
}

export function liveOf(f, liveForwards) {
  return liveForwards?.[f.id] || { bytes_up: 0, bytes_down: 0, conns_active: 0, up_bps: 0, down_bps: 0 };
}

// A forward's live counters on one node: the server sends each forward's
// fleet-wide sums and, under "nodes", the share of every node it runs on.
export function liveOfOnNode(f, liveForwards, nodeId) {
  const l = liveForwards?.[f.id];
  if (!l) return liveOf(f, liveForwards);
  if (!l.nodes) return l;
  const n = l.nodes[nodeId];
  if (!n) return { bytes_up: 0, bytes_down: 0, conns_active: 0, up_bps: 0, down_bps: 0 };
  return {
    bytes_up: n.bytes_up ?? 0,
    bytes_down: n.bytes_down ?? 0,
    conns_active: n.active ?? n.conns_active ?? 0,
    up_bps: n.rate_up ?? n.up_bps ?? 0,
    down_bps: n.rate_down ?? n.down_bps ?? 0,
  };
}

// Sum of live rates and connections over forwards (on one node when
// nodeId is given).
export function sumLive(forwards, liveForwards, nodeId) {
  const s = { up_bps: 0, down_bps: 0, conns_active: 0, bytes_up: 0, bytes_down: 0 };
  for (const f of forwards) {
    const l = nodeId === undefined ? liveOf(f, liveForwards) : liveOfOnNode(f, liveForwards, nodeId);
    s.up_bps += Number(l.up_bps) || 0;
    s.down_bps += Number(l.down_bps) || 0;
    s.conns_active += Number(l.conns_active) || 0;
    s.bytes_up += Number(l.bytes_up) || 0;
    s.bytes_down += Number(l.bytes_down) || 0;
  }
  return s;
}

// Sum of every live forward entry (the whole fleet).
export function fleetLive(liveForwards) {
  return sumLive(
    Object.keys(liveForwards || {}).map((id) => ({ id })),
    liveForwards,
  );
}

// The apply error of a node in words: which object, and the reason with
// the common kernel errors spelled out. Returns [key, vars] for t().
const KNOWN = [
  [/address already in use|eaddrinuse/i, 'applyerr.addrinuse'],
  [/permission denied|eacces|eperm|operation not permitted/i, 'applyerr.perm'],
  [/cannot assign requested address|eaddrnotavail/i, 'applyerr.addrnotavail'],
  [/resolve|name or service not known|nxdomain|no such host/i, 'applyerr.resolve'],
  [/too many open files|emfile|enfile/i, 'applyerr.fds'],
  [/rolled back: the server did not answer/i, 'applyerr.rolled_back'],
  [/^not applied: policy .* was refused/i, 'applyerr.held_back'],
  [/ruleset:\d+:\d+|^Error: /i, 'applyerr.nft'],
];

export function applyErrorWords(e) {
  const reason = String(e?.error ?? '');
  const known = KNOWN.find(([re]) => re.test(reason));
  return {
    kindKey: 'kind.' + (e?.kind || 'object'),
    name: e?.name || (e?.id !== undefined ? '#' + e.id : ''),
    explainKey: known ? known[1] : null,
    reason,
  };
}

export function chartPoints(series, step) {
  return (series || []).map((p) => ({
    t: Number(p.t),
    up: (Number(p.bytes_up) || 0) / step,
    down: (Number(p.bytes_down) || 0) / step,
    conns: Number(p.conns) || 0,
  }));
}
