"""`-c FILE` and SIGHUP reload: unchanged forwards keep connections and counters,
changed ones apply to new connections, added ones start, removed ones stop,
an invalid file (or a failing bind) changes nothing and logs the reason."""

import json
import os

import fgnet
from conftest import NODE_IP, TARGET_IPS


def write_config(path, forwards):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"forwards": forwards}, f, indent=2)
    os.replace(tmp, path)


def fwd(name, lp, targets, **kw):
    d = {"name": name, "listen": f"{NODE_IP}:{lp}", "targets": list(targets)}
    d.update(kw)
    return d


def wait_new_stderr(fg, before, needle, timeout=5.0):
    def check():
        new = fg.stderr_text()[len(before):]
        return new if needle in new else None
    try:
        return fgnet.wait_for(check, timeout, what=f"{needle!r} on stderr")
    except fgnet.Timeout:
        raise AssertionError(f"no {needle!r} logged on stderr within {timeout}s after SIGHUP; "
                             f"new stderr: {fg.stderr_text()[len(before):]!r}") from None


def test_reload_keeps_unchanged_forward_applies_changed_and_added(
        tmp_path, peers, flowgate, port, client):
    ep, wp = port(), port()
    peers("echo", f"{TARGET_IPS[0]}:{ep}")
    w1 = f"{TARGET_IPS[0]}:{wp}"
    w2 = f"{TARGET_IPS[1]}:{wp}"
    peers("whoami", w1)
    peers("whoami", w2)
    pa, pb, pc = port(), port(), port()
    cfg = str(tmp_path / "forwards.json")
    A = fwd("A", pa, [f"{TARGET_IPS[0]}:{ep}"])
    B = fwd("B", pb, [w1])
    write_config(cfg, [A, B])
    fg = flowgate(["-c", cfg], wait_tcp=[pa, pb])

    conn_a = client.connect((NODE_IP, pa))
    assert fgnet.echo_roundtrip(conn_a, b"A before\n")
    conn_b_old, t = fgnet.whoami(client, (NODE_IP, pb), keep=True)
    assert t == w1
    m0 = fg.metrics()
    a_up0 = m0.get("flowgate_forward_bytes_total", forward="A", direction="up")
    assert a_up0 == len(b"A before\n")

    # change B only, add C; A is byte-for-byte the same object
    B2 = fwd("B", pb, [w2])
    C = fwd("C", pc, [f"{TARGET_IPS[0]}:{ep}"])
    write_config(cfg, [A, B2, C])
    fg.sighup()
    fg.wait_listening(tcp=[pc])
    fgnet.wait_for(lambda: fgnet.whoami(client, (NODE_IP, pb)) == w2, 3,
                   what="B's new target to apply")
    assert fg.alive()

    # A: the same connection still works; its counters carried on
    assert fgnet.echo_roundtrip(conn_a, b"A after reload\n")
    # B: the connection opened before the reload finishes on the old target
    assert fgnet.echo_roundtrip(conn_b_old, b"old B conn\n")
    for _ in range(4):
        assert fgnet.whoami(client, (NODE_IP, pb)) == w2
    # C works
    s = client.connect((NODE_IP, pc))
    assert fgnet.echo_roundtrip(s, b"C!\n")
    s.close()
    m = fg.metrics()
    assert m.get("flowgate_forward_connections_total", forward="A") == 1, \
        "A (unchanged) lost its counters or its connection was re-counted"
    assert m.get("flowgate_forward_connections_active", forward="A") == 1
    assert m.get("flowgate_forward_bytes_total", forward="A", direction="up") == \
        len(b"A before\n") + len(b"A after reload\n")
    assert m.get("flowgate_forward_connections_total", forward="B") >= 6, \
        "B's counters did not carry over the change"

    # now an invalid file: nothing changes, the reason is logged
    before = fg.stderr_text()
    bad_B = fwd("B", pb, [w1])                         # would move B back ...
    bad_A = dict(A, rate_up="12 parsecs")              # ... but the file is invalid
    write_config(cfg, [bad_A, bad_B, C])
    fg.sighup()
    new = wait_new_stderr(fg, before, "12 parsecs")
    assert "rate_up" in new
    assert fg.alive(), "flowgate died on an invalid reload"
    assert fgnet.echo_roundtrip(conn_a, b"A after bad reload\n")
    assert fgnet.echo_roundtrip(conn_b_old, b"old B still\n")
    for _ in range(4):
        assert fgnet.whoami(client, (NODE_IP, pb)) == w2, "part of an invalid file was applied"
    s = client.connect((NODE_IP, pc))
    assert fgnet.echo_roundtrip(s, b"C still\n")
    s.close()
    m = fg.metrics()
    assert m.get("flowgate_forward_connections_total", forward="A") == 1
    conn_a.close()
    conn_b_old.close()


def test_reload_removed_forward_stops_listening_and_closes_its_connections(
        tmp_path, peers, flowgate, port, client):
    ep = port()
    peers("echo", f"{TARGET_IPS[0]}:{ep}")
    pa, pd = port(), port()
    cfg = str(tmp_path / "f.json")
    A = fwd("A", pa, [f"{TARGET_IPS[0]}:{ep}"])
    D = fwd("D", pd, [f"{TARGET_IPS[0]}:{ep}"])
    write_config(cfg, [A, D])
    fg = flowgate(["-c", cfg], wait_tcp=[pa, pd])
    conn_a = client.connect((NODE_IP, pa))
    conn_d = client.connect((NODE_IP, pd))
    assert fgnet.echo_roundtrip(conn_a, b"a\n") and fgnet.echo_roundtrip(conn_d, b"d\n")

    write_config(cfg, [A])
    fg.sighup()
    fg.wait_listening(tcp=[pd], gone=True, timeout=5)
    how, data = fgnet.wait_closed(conn_d, timeout=5)
    assert data == b""
    assert fgnet.echo_roundtrip(conn_a, b"a still\n")
    assert pa in {p for _, p in fg.topo.node.listeners("tcp")}
    conn_a.close()
    conn_d.close()


def test_reload_with_failing_bind_applies_nothing(tmp_path, peers, flowgate, port, client, topo):
    wp = port()
    w1, w2 = f"{TARGET_IPS[0]}:{wp}", f"{TARGET_IPS[1]}:{wp}"
    peers("whoami", w1)
    peers("whoami", w2)
    pa, pe = port(), port()
    cfg = str(tmp_path / "f.json")
    write_config(cfg, [fwd("A", pa, [w1])])
    fg = flowgate(["-c", cfg], wait_tcp=[pa])
    assert fgnet.whoami(client, (NODE_IP, pa)) == w1

    blocker = topo.node.listen_tcp((NODE_IP, pe))  # port held by "another program"
    try:
        before = fg.stderr_text()
        write_config(cfg, [fwd("A", pa, [w2]), fwd("extra-e", pe, [w1])])
        fg.sighup()
        new = wait_new_stderr(fg, before, f"{NODE_IP}:{pe}")
        assert "extra-e" in new, f"bind error does not name the forward: {new!r}"
        assert fg.alive()
        for _ in range(4):
            assert fgnet.whoami(client, (NODE_IP, pa)) == w1, \
                "A's change was applied although binding E failed"
    finally:
        blocker.close()


def test_disabled_forward_is_not_started_until_enabled_by_reload(
        tmp_path, peers, flowgate, port, client, topo):
    ep = port()
    peers("echo", f"{TARGET_IPS[0]}:{ep}")
    pa, pb = port(), port()
    cfg = str(tmp_path / "f.json")
    A = fwd("A", pa, [f"{TARGET_IPS[0]}:{ep}"])
    B = fwd("B", pb, [f"{TARGET_IPS[0]}:{ep}"], enabled=False)
    write_config(cfg, [A, B])
    fg = flowgate(["-c", cfg], wait_tcp=[pa])
    assert pb not in {p for _, p in topo.node.listeners("tcp")}
    B["enabled"] = True
    write_config(cfg, [A, B])
    fg.sighup()
    fg.wait_listening(tcp=[pb])
    s = client.connect((NODE_IP, pb))
    assert fgnet.echo_roundtrip(s, b"enabled\n")
    s.close()


def test_config_file_forward_options_apply(tmp_path, peers, flowgate, port, client):
    """A file forward with proto both, failover, max_conns and proxy_protocol behaves."""
    tp = port()
    peers("whoami", f"{TARGET_IPS[1]}:{tp}")
    pa = port()
    cfg = str(tmp_path / "f.json")
    write_config(cfg, [{
        "name": "web", "id": 17, "listen": f"{NODE_IP}:{pa}", "proto": "tcp",
        "targets": [f"{TARGET_IPS[0]}:{tp}", f"{TARGET_IPS[1]}:{tp}"],
        "balance": "failover", "max_conns": 2, "rate_down": "10mbit",
        "health_check": {"interval": "1s", "timeout": "500ms", "rise": 1, "fall": 1},
        "connect_timeout": "2s", "idle_timeout": "30s", "udp_idle_timeout": "10s",
        "proxy_protocol": None, "burst": "64KiB", "enabled": True,
    }])
    fg = flowgate(["-c", cfg], wait_tcp=[pa])
    held = [fgnet.whoami(client, (NODE_IP, pa), keep=True) for _ in range(2)]
    assert all(t == f"{TARGET_IPS[1]}:{tp}" for _, t in held)
    s = client.connect_refusable((NODE_IP, pa))
    fgnet.assert_refused(s)
    if s:
        s.close()
    fg.wait_metric("flowgate_forward_refused_total", 1, forward="web", reason="max_conns")
    for s, _ in held:
        s.close()


def test_reload_of_changed_forward_refuses_no_connection_attempt(
        tmp_path, peers, flowgate, port, client):
    """While B is changed by 20 reloads in a row, a client connecting in a loop never sees
    a refused, reset or dead connection (new listener bound before the old one closes)."""
    import threading
    import time
    wp = port()
    w1, w2 = f"{TARGET_IPS[0]}:{wp}", f"{TARGET_IPS[1]}:{wp}"
    peers("whoami", w1)
    peers("whoami", w2)
    pb = port()
    cfg = str(tmp_path / "f.json")
    write_config(cfg, [fwd("B", pb, [w1])])
    fg = flowgate(["-c", cfg], wait_tcp=[pb])
    listeners0 = [p for _, p in fg.topo.node.listeners("tcp")].count(pb)
    fds0 = len(os.listdir(f"/proc/{fg.pid}/fd"))

    stop = threading.Event()
    results = {"ok": 0, "errors": [], "seen": set()}

    def hammer():
        while not stop.is_set():
            stage = "connect"
            try:
                s = client.connect((NODE_IP, pb), timeout=3)
                stage = "read"
                with s:
                    line = fgnet.recv_line(s, timeout=3)
                results["seen"].add(line[3:])
                results["ok"] += 1
            except Exception as e:  # noqa: BLE001
                results["errors"].append(f"{stage}: {e!r} at +{time.monotonic() - t0:.2f}s")

    t0 = time.monotonic()
    th = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
    for t in th:
        t.start()
    hups = []
    try:
        for i in range(20):
            time.sleep(0.1)
            write_config(cfg, [fwd("B", pb, [w2 if i % 2 == 0 else w1], max_conns=1000 + i)])
            hups.append(round(time.monotonic() - t0, 2))
            fg.sighup()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in th:
            t.join(10)
    assert fg.alive()
    assert not results["errors"], \
        f"{len(results['errors'])} of {results['ok'] + len(results['errors'])} connection " \
        f"attempts failed during reloads: {results['errors'][:5]} (SIGHUPs at {hups})"
    assert results["ok"] > 20
    assert results["seen"] == {w1, w2}, "the reloads did not apply"
    # the old listeners are gone, nothing leaked
    fgnet.wait_for(lambda: [p for _, p in fg.topo.node.listeners("tcp")].count(pb) == listeners0,
                   3, what=f"{listeners0} listening sockets on port {pb} after the reloads")
    fds = len(os.listdir(f"/proc/{fg.pid}/fd"))
    assert fds <= fds0 + 4, f"fd count grew from {fds0} to {fds} over 20 reloads"
