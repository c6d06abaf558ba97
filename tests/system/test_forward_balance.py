"""Port ranges and the balance modes (round-robin, least-conn, ip-hash, failover),
passive failure detection and the active health check."""

import collections
import time

import fgnet
from conftest import CLIENT_IPS, NODE_IP, TARGET_IPS


def test_port_range_maps_port_by_port(peers, flowgate, client):
    peers("whoami", [f"{TARGET_IPS[0]}:{30000 + i}" for i in range(10)])
    fg = flowgate(["-l", "0.0.0.0:20000-20009", "-r", f"{TARGET_IPS[0]}:30000-30009"],
                  wait_tcp=range(20000, 20010))
    for rnd in range(2):
        for i in range(10):
            got = fgnet.whoami(client, (NODE_IP, 20000 + i))
            assert got == f"{TARGET_IPS[0]}:{30000 + i}", f"listen port {20000 + i} -> {got}"
    assert fg.metrics().get("flowgate_forward_connections_total", forward="cli") == 20


def test_port_range_to_single_target_port(peers, flowgate, client):
    peers("whoami", f"{TARGET_IPS[1]}:30010")
    flowgate(["-l", "0.0.0.0:20010-20019", "-r", f"{TARGET_IPS[1]}:30010"],
             wait_tcp=range(20010, 20020))
    for i in range(10):
        assert fgnet.whoami(client, (NODE_IP, 20010 + i)) == f"{TARGET_IPS[1]}:30010"


def test_port_range_with_proxy_protocol_reports_each_listen_port(peers, flowgate, client):
    import json
    peers("proxy", [f"{TARGET_IPS[0]}:{30020 + i}" for i in range(4)])
    flowgate(["-l", f"{NODE_IP}:20020-20023", "-r", f"{TARGET_IPS[0]}:30020-30023",
              "--proxy-protocol", "v1"], wait_tcp=range(20020, 20024))
    for i in range(4):
        s = client.connect((NODE_IP, 20020 + i))
        info = json.loads(fgnet.recv_line(s, timeout=5))
        s.close()
        assert (info["dst"], info["dport"]) == (NODE_IP, 20020 + i), info


def three_targets(peers, port):
    tp = port()
    ps = [peers("whoami", f"{ip}:{tp}", name=f"whoami-{ip}") for ip in TARGET_IPS]
    return tp, ps, [f"{ip}:{tp}" for ip in TARGET_IPS]


def test_round_robin_spreads_evenly_over_three_targets(peers, flowgate, port, client):
    tp, _, targets = three_targets(peers, port)
    lp = port()
    flowgate(["-l", f"{NODE_IP}:{lp}"] + sum((["-r", t] for t in targets), []) +
             ["--balance", "round-robin"], wait_tcp=[lp])
    counts = collections.Counter(fgnet.whoami(client, (NODE_IP, lp)) for _ in range(30))
    assert set(counts) == set(targets), f"not every target used: {dict(counts)}"
    assert max(counts.values()) - min(counts.values()) <= 2, f"uneven spread: {dict(counts)}"


def test_round_robin_is_the_default(peers, flowgate, port, client):
    tp, _, targets = three_targets(peers, port)
    lp = port()
    flowgate(["-l", f"{NODE_IP}:{lp}"] + sum((["-r", t] for t in targets), []), wait_tcp=[lp])
    counts = collections.Counter(fgnet.whoami(client, (NODE_IP, lp)) for _ in range(30))
    assert set(counts) == set(targets) and max(counts.values()) - min(counts.values()) <= 2, \
        dict(counts)


def test_least_conn_picks_target_with_fewest_open_connections(peers, flowgate, port, client):
    tp, _, targets = three_targets(peers, port)
    lp = port()
    fg = flowgate(["-l", f"{NODE_IP}:{lp}"] + sum((["-r", t] for t in targets), []) +
                  ["--balance", "least-conn"], wait_tcp=[lp])
    held = []
    try:
        for _ in range(6):
            held.append(fgnet.whoami(client, (NODE_IP, lp), keep=True))
        counts = collections.Counter(t for _, t in held)
        assert sorted(counts.values()) == [2, 2, 2], f"6 held connections spread {dict(counts)}"

        # free both connections of one target: it now has 0 open, the others 2
        victim = held[0][1]
        for s, t in [h for h in held if h[1] == victim]:
            s.close()
        held = [h for h in held if h[1] != victim]
        fg.wait_metric("flowgate_forward_connections_active", 4, forward="cli")

        s, t = fgnet.whoami(client, (NODE_IP, lp), keep=True)
        held.append((s, t))
        assert t == victim, f"least-conn chose {t} (2 open) over {victim} (0 open)"
        s, t = fgnet.whoami(client, (NODE_IP, lp), keep=True)
        held.append((s, t))
        assert t == victim, f"least-conn chose {t} (2 open) over {victim} (1 open)"

        # now 2/2/2 again; close one on another target -> it gets the next one
        other = next(t for _, t in held if t != victim)
        i = next(i for i, h in enumerate(held) if h[1] == other)
        held.pop(i)[0].close()
        fg.wait_metric("flowgate_forward_connections_active", 5, forward="cli")
        s, t = fgnet.whoami(client, (NODE_IP, lp), keep=True)
        held.append((s, t))
        assert t == other, f"least-conn chose {t} instead of {other} (1 open)"
    finally:
        for s, _ in held:
            s.close()


def test_ip_hash_same_client_ip_same_target_and_dead_target_moves_only_its_clients(
        peers, flowgate, port, client):
    tp, procs, targets = three_targets(peers, port)
    lp = port()
    fg = flowgate(["-l", f"{NODE_IP}:{lp}"] + sum((["-r", t] for t in targets), []) +
                  ["--balance", "ip-hash"], wait_tcp=[lp])
    mapping = {}
    for ip in CLIENT_IPS:
        seen = {fgnet.whoami(client, (NODE_IP, lp), src=ip) for _ in range(3)}
        assert len(seen) == 1, f"client {ip} went to several targets: {seen}"
        mapping[ip] = seen.pop()
    used = collections.Counter(mapping.values())
    assert len(used) >= 2, f"{len(CLIENT_IPS)} client IPs all hashed to one target: {dict(used)}"

    # kill the most used target: its clients move, nobody else's does, no client error
    dead = used.most_common(1)[0][0]
    procs[targets.index(dead)].close()
    for ip in CLIENT_IPS:
        seen = {fgnet.whoami(client, (NODE_IP, lp), src=ip) for _ in range(2)}
        assert len(seen) == 1, f"client {ip} went to several targets after a failure: {seen}"
        now = seen.pop()
        if mapping[ip] == dead:
            assert now != dead
        else:
            assert now == mapping[ip], \
                f"client {ip} moved from live target {mapping[ip]} to {now} when {dead} died"
    fg.wait_metric("flowgate_forward_target_up", 0, forward="cli", target=dead)


def test_failover_uses_first_target_then_second_when_first_dies(peers, flowgate, port, client):
    tp = port()
    t1 = peers("whoami", f"{TARGET_IPS[0]}:{tp}", name="t1")
    peers("whoami", f"{TARGET_IPS[1]}:{tp}", name="t2")
    a1, a2 = f"{TARGET_IPS[0]}:{tp}", f"{TARGET_IPS[1]}:{tp}"
    lp = port()
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", a1, "-r", a2, "--balance", "failover"],
                  wait_tcp=[lp])
    for _ in range(6):
        assert fgnet.whoami(client, (NODE_IP, lp)) == a1
    m = fg.metrics()
    assert m.get("flowgate_forward_target_up", forward="cli", target=a1) == 1
    assert m.get("flowgate_forward_target_up", forward="cli", target=a2) == 1

    t1.close()  # first target dies (its port now refuses)
    for i in range(10):
        # every new connection must succeed, none may see an error
        assert fgnet.whoami(client, (NODE_IP, lp)) == a2, f"connection {i} after failure"
    m = fg.wait_metric("flowgate_forward_target_up", 0, forward="cli", target=a1)
    assert m.get("flowgate_forward_target_errors_total", forward="cli", target=a1) >= 1
    assert m.get("flowgate_forward_target_up", forward="cli", target=a2) == 1


def test_failover_with_health_check_returns_to_restarted_first_target(peers, flowgate, port,
                                                                      client):
    tp = port()
    t1 = peers("whoami", f"{TARGET_IPS[0]}:{tp}", name="t1")
    peers("whoami", f"{TARGET_IPS[1]}:{tp}", name="t2")
    a1, a2 = f"{TARGET_IPS[0]}:{tp}", f"{TARGET_IPS[1]}:{tp}"
    lp = port()
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", a1, "-r", a2, "--balance", "failover",
                   "--health-check", "200ms"], wait_tcp=[lp])
    assert fgnet.whoami(client, (NODE_IP, lp)) == a1

    t1.close()
    # the active check marks it down without any client connection failing
    fg.wait_metric("flowgate_forward_target_up", 0, timeout=5, forward="cli", target=a1)
    for _ in range(5):
        assert fgnet.whoami(client, (NODE_IP, lp)) == a2

    peers("whoami", f"{TARGET_IPS[0]}:{tp}", name="t1-restarted")
    t0 = time.monotonic()
    fg.wait_metric("flowgate_forward_target_up", 1, timeout=5, forward="cli", target=a1)
    took = time.monotonic() - t0
    for _ in range(5):
        assert fgnet.whoami(client, (NODE_IP, lp)) == a1
    assert took < 5


def test_all_targets_down_refuses_with_no_target_reason(peers, flowgate, port, client):
    tp = port()
    lp = port()
    # nothing listens on either target: connect is refused at once
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}",
                   "-r", f"{TARGET_IPS[1]}:{tp}"], wait_tcp=[lp])
    s = client.connect_refusable((NODE_IP, lp))
    fgnet.assert_refused(s, timeout=5)
    if s:
        s.close()
    fg.wait_metric("flowgate_forward_refused_total", 1, forward="cli", reason="no_target",
                   cmp=lambda v: v is not None and v >= 1)
    m = fg.metrics()
    assert m.get("flowgate_forward_target_up", forward="cli",
                 target=f"{TARGET_IPS[0]}:{tp}") == 0
    assert m.get("flowgate_forward_target_up", forward="cli",
                 target=f"{TARGET_IPS[1]}:{tp}") == 0
