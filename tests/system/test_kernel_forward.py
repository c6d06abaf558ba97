"""Kernel forwards (`engine: kernel`): nftables DNAT + masquerade in flowgate's
own table inet flowgate_forward, run by `flowgate forward` in the node namespace.

What is pinned: bytes arrive intact both ways (TCP, UDP), the named counters
equal what nft counts (L3 bytes: exact for UDP, bounded for TCP), round-robin
and port-range mapping, another tool's table is never touched, our table and
the IP forwarding we turned on are gone after exit, a bad forward changes
nothing, and a reload replaces the table in one transaction (no connection
fails while it happens).
"""

import hashlib
import json
import os
import socket
import subprocess
import threading
import time

import pytest

import fgnet
from conftest import (NODE_IP, NODE_IP6, NODE_IP_LO, NODE_IP_T, TARGET_IP6, TARGET_IPS,
                      run_flowgate_once)

TABLE = "flowgate_forward"
BULK = min(int(os.environ.get("FG_BULK_MIB", "64")), 64) << 20


def nft(topo, *args, check=True):
    r = subprocess.run(["ip", "netns", "exec", topo.node_name, "nft", *args],
                       capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise AssertionError(f"nft {' '.join(args)}: {r.stderr}")
    return r


def tables(topo):
    return nft(topo, "list", "tables").stdout.split("\n")


def our_table(topo):
    r = nft(topo, "-s", "list", "table", "inet", TABLE, check=False)
    return r.stdout if r.returncode == 0 else None


def ip_forward(topo):
    return topo.node.read_file("/proc/sys/net/ipv4/ip_forward").strip()


@pytest.fixture
def othertool(topo):
    """Another tool's table in the node namespace, with a rule and a set."""
    script = ("table inet othertool {\n"
              "  set blocked { type ipv4_addr; elements = { 192.0.2.1 } }\n"
              "  chain input { type filter hook input priority 10; policy accept;\n"
              "    ip saddr @blocked drop\n"
              "    tcp dport 9 drop\n  }\n}\n")
    r = subprocess.run(["ip", "netns", "exec", topo.node_name, "nft", "-f", "-"], input=script,
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    before = nft(topo, "list", "table", "inet", "othertool").stdout
    yield before
    nft(topo, "delete", "table", "inet", "othertool", check=False)


@pytest.fixture(autouse=True)
def clean_node(topo):
    """Leave the shared node namespace as found, even if a test failed."""
    yield
    nft(topo, "delete", "table", "inet", TABLE, check=False)
    nft(topo, "delete", "table", "inet", "flowgate", check=False)
    subprocess.run(["ip", "netns", "exec", topo.node_name, "sysctl", "-q", "-w",
                    "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"], check=False)


def wait_table(topo, fg, timeout=10.0):
    """Wait for the applied table. Not just for the table to exist: while nft
    checks a transaction (the dry run before every apply), a concurrent
    listing can see the new table empty for an instant (kernel 6.x), and a
    packet sent then meets no DNAT rule and pins an un-NATed conntrack entry."""
    def ok():
        if not fg.alive():
            raise AssertionError(f"flowgate exited: {fg.stderr_text()[-2000:]}")
        t = our_table(topo)
        return t if t and "dnat" in t and " in table inet " in fg.stderr_text() else None
    return fgnet.wait_for(ok, timeout, what=f"table inet {TABLE}")


def kernel_fwd(flowgate, topo, listen, targets, *extra):
    args = ["-l", listen, "--engine", "kernel"]
    for t in targets:
        args += ["-r", t]
    fg = flowgate(args + list(extra))
    wait_table(topo, fg)
    return fg


@pytest.mark.slow
def test_tcp_64MiB_each_way_is_byte_exact_masqueraded_and_counted(topo, peers, flowgate, port,
                                                                 client, othertool):
    tp, lp = port(), port()
    up_seed, down_seed = 41, 43
    srv = peers("duplex", f"{TARGET_IPS[0]}:{tp}", bytes=BULK, seed=down_seed)
    fg = kernel_fwd(flowgate, topo, f"{NODE_IP}:{lp}", [f"{TARGET_IPS[0]}:{tp}"])
    assert ip_forward(topo) == "1", "flowgate did not enable IP forwarding"
    assert "enabled IP forwarding" in fg.stderr_text()
    # nothing listens: the kernel does the forwarding
    assert lp not in {p for _, p in topo.node.listeners("tcp")}

    s = client.connect((NODE_IP, lp))
    s.settimeout(120)
    sent = {"sha": None, "err": None}

    def sender():
        h = hashlib.sha256()
        try:
            for chunk in fgnet.gen_blocks(up_seed, BULK):
                s.sendall(chunk)
                h.update(chunk)
            s.shutdown(socket.SHUT_WR)
        except Exception as e:  # noqa: BLE001
            sent["err"] = e
        sent["sha"] = h.hexdigest()

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    h = hashlib.sha256()
    got = 0
    buf = bytearray(1 << 20)
    while True:
        n = s.recv_into(buf)
        if n == 0:
            break
        h.update(memoryview(buf)[:n])
        got += n
    th.join(120)
    assert sent["err"] is None, f"sending failed: {sent['err']!r}"
    s.close()
    acc = srv.wait_event(event="accept", timeout=10)
    assert acc["peer"].startswith(NODE_IP_T + ":"), \
        f"target saw {acc['peer']}: replies only return through the node with masquerade"
    up = srv.wait_event(event="sink", timeout=60)
    down = srv.wait_event(event="source", timeout=60)
    assert up["bytes"] == BULK and up["sha256"] == sent["sha"], "client->target corrupted"
    assert got == BULK and h.hexdigest() == down["sha256"] == fgnet.stream_sha256(down_seed, BULK)

    # nft counts L3 bytes (IP + TCP headers, handshake, ACKs, retransmits) of
    # every packet it forwards: never less than the payload, and with
    # GRO/TSO-sized packets only a few percent more
    def counted():
        m = fg.metrics()
        u = m.get("flowgate_forward_bytes_total", forward="cli", direction="up")
        d = m.get("flowgate_forward_bytes_total", forward="cli", direction="down")
        return (u, d) if u and d and u >= BULK and d >= BULK else None
    u, d = fgnet.wait_for(counted, 10, what="counters >= payload")
    print(f"payload {BULK} each way; nft counted up {u:.0f} down {d:.0f} "
          f"(+{(u - BULK) / BULK:.2%}, +{(d - BULK) / BULK:.2%})")
    for v in (u, d):
        assert BULK <= v <= BULK * 1.06 + (1 << 20), f"counter {v} vs payload {BULK}"
    # one connection: the NAT rule saw one first packet
    assert fg.metrics().get("flowgate_forward_connections_total", forward="cli") == 1
    # the metric is the nft counter, not an estimate
    live = json.loads(nft(topo, "-j", "list", "counters", "table", "inet", TABLE).stdout)
    byname = {c["counter"]["name"]: c["counter"]["bytes"]
              for c in live["nftables"] if "counter" in c}
    assert byname["fwd_cli_up"] >= u and byname["fwd_cli_down"] >= d
    assert nft(topo, "list", "table", "inet", "othertool").stdout == othertool


def test_udp_round_trips_and_counters_are_exact_l3_bytes(topo, peers, flowgate, port, client):
    tp, lp = port(), port()
    peers("udpecho", f"{TARGET_IPS[1]}:{tp}")
    fg = kernel_fwd(flowgate, topo, f"{NODE_IP}:{lp}", [f"{TARGET_IPS[1]}:{tp}"],
                    "--proto", "udp", "--name", "dns")
    u = client.udp()
    u.settimeout(5)
    sizes = [1, 2, 100, 512, 1000, 1400, 1472] * 10
    total = 0
    for i, n in enumerate(sizes):
        payload = bytes((i + k) % 251 for k in range(n))
        u.sendto(payload, (NODE_IP, lp))
        try:
            d, a = u.recvfrom(65536)
        except socket.timeout:
            raise AssertionError(
                f"datagram {i} ({n} bytes) got no answer; table:\n"
                f"{nft(topo, 'list', 'table', 'inet', TABLE).stdout}\n"
                f"{nft(topo, 'list', 'ruleset').stdout}") from None
        assert d == payload, f"datagram {i} ({n} bytes) came back changed"
        assert a == (NODE_IP, lp), f"reply from {a}, not from the address the client sent to"
        total += n
    u.close()
    # UDP over IPv4 without options: every datagram is payload + 8 + 20 bytes
    want = total + 28 * len(sizes)
    fg.wait_metric("flowgate_forward_bytes_total", want, forward="dns", direction="up")
    m = fg.wait_metric("flowgate_forward_bytes_total", want, forward="dns", direction="down")
    # one client socket = one conntrack flow = one "connection", as the proxy counts sessions
    assert m.get("flowgate_forward_connections_total", forward="dns") == 1


def test_round_robin_over_three_targets_and_port_range_mapping(topo, peers, flowgate, port,
                                                               client, tmp_path):
    tp, lp = port(), port()
    lo = port(4)
    tlo = port(4)
    for ip in TARGET_IPS:
        peers("whoami", f"{ip}:{tp}")
    peers("whoami", [f"{TARGET_IPS[2]}:{p}" for p in tlo])
    cfg = tmp_path / "fw.json"
    cfg.write_text(json.dumps({"forwards": [
        {"name": "rr", "engine": "kernel", "listen": f"{NODE_IP}:{lp}",
         "targets": [f"{ip}:{tp}" for ip in TARGET_IPS]},
        {"name": "range", "engine": "kernel", "listen": f"{NODE_IP}:{lo[0]}-{lo[-1]}",
         "targets": [f"{TARGET_IPS[2]}:{tlo[0]}-{tlo[-1]}"]},
    ]}))
    fg = flowgate(["-c", cfg])
    wait_table(topo, fg)
    seen = [fgnet.whoami(client, (NODE_IP, lp)) for _ in range(6)]
    assert sorted(seen) == sorted([f"{ip}:{tp}" for ip in TARGET_IPS] * 2), seen
    # numgen inc: strictly in turn, so the second round repeats the first
    assert len(set(seen[:3])) == 3 and seen[:3] == seen[3:], f"not round-robin: {seen}"
    for i, p in enumerate(lo):
        assert fgnet.whoami(client, (NODE_IP, p)) == f"{TARGET_IPS[2]}:{tlo[i]}"


def test_other_table_untouched_and_ours_gone_after_exit(topo, peers, flowgate, port, client,
                                                        othertool):
    tp, lp = port(), port()
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    assert ip_forward(topo) == "0"
    fg = kernel_fwd(flowgate, topo, f"{NODE_IP}:{lp}", [f"{TARGET_IPS[0]}:{tp}"])
    s = client.connect((NODE_IP, lp))
    assert fgnet.echo_roundtrip(s, b"hello kernel\n")
    assert nft(topo, "list", "table", "inet", "othertool").stdout == othertool
    assert "table inet othertool" in tables(topo) and f"table inet {TABLE}" in tables(topo)
    assert fg.stop(5) == 0
    s.close()
    assert f"table inet {TABLE}" not in tables(topo), "our table outlived flowgate"
    assert nft(topo, "list", "table", "inet", "othertool").stdout == othertool
    assert ip_forward(topo) == "0", "IP forwarding we turned on was not restored"
    err = fg.stderr_text()
    assert "table inet flowgate_forward removed" in err


def test_bad_forward_is_refused_naming_the_field_and_changes_nothing(topo, flowgate, port,
                                                                     peers, client, tmp_path):
    lp = port()
    for flags, needle in ((["--max-conns", "5"], "--max-conns:"),
                          (["--proxy-protocol", "v2"], "--proxy-protocol:"),
                          (["--balance", "least-conn"], "--balance:"),
                          (["--rate-up-per-conn", "1mbit"], "--rate-up-per-conn:")):
        r = run_flowgate_once(topo, fg_bin_of(flowgate), ["-l", f"{NODE_IP}:{lp}", "-r",
                                                           f"{TARGET_IPS[0]}:80", "--engine",
                                                           "kernel", *flags])
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and "engine kernel" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert our_table(topo) is None
    r = run_flowgate_once(topo, fg_bin_of(flowgate), ["-l", f"{NODE_IP}:{lp}", "-r",
                                                       "fgtarget1.test:80", "--engine", "kernel"])
    assert r.returncode == 2 and "host name" in r.stderr, r.stderr

    # a running set is kept when the reloaded file is bad
    tp = port()
    peers("whoami", f"{TARGET_IPS[0]}:{tp}")
    cfg = tmp_path / "fw.json"
    good = {"forwards": [{"name": "a", "engine": "kernel", "listen": f"{NODE_IP}:{lp}",
                          "targets": [f"{TARGET_IPS[0]}:{tp}"]}]}
    cfg.write_text(json.dumps(good))
    fg = flowgate(["-c", cfg])
    before = wait_table(topo, fg)
    bad = json.loads(json.dumps(good))
    bad["forwards"][0]["targets"] = [f"{TARGET_IPS[1]}:{tp}"]
    bad["forwards"][0]["proxy_protocol"] = "v1"
    cfg.write_text(json.dumps(bad))
    fg.sighup()
    fgnet.wait_for(lambda: "reload rejected" in fg.stderr_text(), 5, what="reload rejected")
    assert "forwards[0].proxy_protocol" in fg.stderr_text()
    assert our_table(topo) == before
    assert fgnet.whoami(client, (NODE_IP, lp)) == f"{TARGET_IPS[0]}:{tp}"


def fg_bin_of(flowgate):
    return os.path.abspath(os.environ.get("FLOWGATE_BIN") or
                           os.path.join(os.path.dirname(__file__), "..", "..", "build",
                                        "flowgate"))


def test_reload_replaces_the_table_atomically(topo, peers, flowgate, port, client, tmp_path):
    """Connections opened in a loop while the file flips between two target sets
    and reloads: every one reaches a target of the set in force (none refused or
    lost), and afterwards the table holds the last set only."""
    tp, lp, lp2 = port(), port(), port()
    for ip in TARGET_IPS:
        peers("whoami", f"{ip}:{tp}")
    cfg = tmp_path / "fw.json"

    def write(targets, extra=False):
        f = [{"name": "flip", "engine": "kernel", "listen": f"{NODE_IP}:{lp}",
              "targets": [f"{t}:{tp}" for t in targets]}]
        if extra:
            f.append({"name": "extra", "engine": "kernel", "listen": f"{NODE_IP}:{lp2}",
                      "targets": [f"{TARGET_IPS[2]}:{tp}"]})
        cfg.write_text(json.dumps({"forwards": f}))

    write([TARGET_IPS[0]])
    fg = flowgate(["-c", cfg])
    wait_table(topo, fg)
    stop = threading.Event()
    results, errors = [], []

    def prober():
        while not stop.is_set():
            try:
                results.append(fgnet.whoami(client, (NODE_IP, lp), timeout=3))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    th = threading.Thread(target=prober, daemon=True)
    th.start()
    for i in range(8):
        write([TARGET_IPS[1]] if i % 2 == 0 else [TARGET_IPS[0]], extra=(i % 2 == 0))
        n = fg.stderr_text().count("reloaded")
        fg.sighup()
        fgnet.wait_for(lambda: fg.stderr_text().count("reloaded") > n, 5, what="reload")
        time.sleep(0.1)
    stop.set()
    th.join(10)
    assert not errors, f"{len(errors)} connection(s) failed during reloads: {errors[:3]}"
    assert len(results) > 10
    assert set(results) <= {f"{TARGET_IPS[0]}:{tp}", f"{TARGET_IPS[1]}:{tp}"}
    # last write: TARGET_IPS[0] only, no "extra" forward
    t = our_table(topo)
    assert "fwd_flip_up" in t and "fwd_extra_up" not in t and TARGET_IPS[1] not in t
    assert fgnet.whoami(client, (NODE_IP, lp)) == f"{TARGET_IPS[0]}:{tp}"
    with pytest.raises(OSError):
        client.connect((NODE_IP, lp2), timeout=1)


def test_kernel_and_proxy_forwards_share_one_metrics_family(topo, peers, flowgate, port, client,
                                                            tmp_path):
    tp, lk, lpx = port(), port(), port()
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    cfg = tmp_path / "fw.json"
    cfg.write_text(json.dumps({"forwards": [
        {"name": "k", "engine": "kernel", "listen": f"{NODE_IP}:{lk}",
         "targets": [f"{TARGET_IPS[0]}:{tp}"]},
        {"name": "p", "listen": f"{NODE_IP}:{lpx}", "targets": [f"{TARGET_IPS[0]}:{tp}"]},
    ]}))
    fg = flowgate(["-c", cfg], wait_tcp=[lpx])
    wait_table(topo, fg)
    for lp in (lk, lpx):
        s = client.connect((NODE_IP, lp))
        assert fgnet.echo_roundtrip(s, b"x" * 1000)
        s.close()
    fg.wait_metric("flowgate_forward_bytes_total", 1000, forward="p", direction="up")
    m = fg.wait_metric("flowgate_forward_bytes_total", None, forward="k", direction="up",
                       cmp=lambda v: v is not None and v >= 1000)
    assert m.text.count("# TYPE flowgate_forward_bytes_total") == 1
    assert m.text.count("# TYPE flowgate_forward_connections_total") == 1
    assert m.get("flowgate_forward_connections_total", forward="k") == 1
    assert m.get("flowgate_forward_connections_total", forward="p") == 1


def test_wildcard_listen_reaches_every_local_address(topo, peers, flowgate, port, client):
    tp, lp = port(), port()
    peers("whoami", f"{TARGET_IPS[1]}:{tp}")
    kernel_fwd(flowgate, topo, f"0.0.0.0:{lp}", [f"{TARGET_IPS[1]}:{tp}"])
    for addr in (NODE_IP, NODE_IP_LO):
        assert fgnet.whoami(client, (addr, lp)) == f"{TARGET_IPS[1]}:{tp}"


def test_ipv6_kernel_forward_tcp_and_udp(topo, peers, flowgate, port, client):
    tp, lp = port(), port()
    peers("whoami", f"[{TARGET_IP6}]:{tp}")
    peers("udpecho", f"[{TARGET_IP6}]:{tp}")
    fg = kernel_fwd(flowgate, topo, f"[{NODE_IP6}]:{lp}", [f"[{TARGET_IP6}]:{tp}"],
                    "--proto", "both", "--name", "six")
    assert topo.node.read_file("/proc/sys/net/ipv6/conf/all/forwarding").strip() == "1"
    assert fgnet.whoami(client, (NODE_IP6, lp)) == f"[{TARGET_IP6}]:{tp}"
    u = client.udp(v6=True)
    u.settimeout(5)
    u.sendto(b"x" * 100, (NODE_IP6, lp))
    d, _ = u.recvfrom(1000)
    u.close()
    assert d == b"x" * 100
    # UDP over IPv6 is payload + 48 bytes; the TCP connection adds to both
    fg.wait_metric("flowgate_forward_bytes_total", None, forward="six", direction="down",
                   cmp=lambda v: v is not None and v >= 148)
    assert fg.stop(5) == 0
    assert topo.node.read_file("/proc/sys/net/ipv6/conf/all/forwarding").strip() == "0"


@pytest.mark.slow
def test_rate_down_is_an_nft_limit(topo, peers, flowgate, port, client):
    """--rate-down 1MiB: 4 MiB take at least ~3 s (drops make TCP back off) and arrive intact."""
    tp, lp = port(), port()
    n = 4 << 20
    peers("source", f"{TARGET_IPS[0]}:{tp}", bytes=n, seed=77)
    kernel_fwd(flowgate, topo, f"{NODE_IP}:{lp}", [f"{TARGET_IPS[0]}:{tp}"],
               "--rate-down", "1MiB", "--burst", "64KiB")
    assert "limit fwd_cli_down" in our_table(topo)
    t0 = time.monotonic()
    s = client.connect((NODE_IP, lp))
    data = fgnet.recv_all(s, timeout=60)
    elapsed = time.monotonic() - t0
    s.close()
    assert hashlib.sha256(data).hexdigest() == fgnet.stream_sha256(77, n)
    assert elapsed >= (n - (64 << 10)) / (1 << 20) * 0.75, f"{n} bytes in {elapsed:.2f}s"
    print(f"4 MiB at 1 MiB/s took {elapsed:.2f}s")


def test_agent_runs_kernel_forwards_from_its_state_file(topo, peers, port, client, fg_bin,
                                                        logdir, tmp_path, othertool):
    """The agent (no server reachable) loads state.json at boot: its engine kernel forward
    runs in table inet flowgate, its bytes reach /metrics, and at exit the table is gone."""
    from conftest import Proc
    tp, lp, mp = port(), port(), port()
    peers("whoami", f"{TARGET_IPS[2]}:{tp}")
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"rev": 3, "state": {"forwards": [
        {"name": "kf", "id": "17", "engine": "kernel", "listen": f"{NODE_IP}:{lp}",
         "targets": [f"{TARGET_IPS[2]}:{tp}"]}]}}))
    agent = Proc(topo.node, [fg_bin, "agent", "--server", "ws://127.0.0.1:1/agent", "--token",
                             "fgn_test", "--state", str(state), "--metrics", f"127.0.0.1:{mp}"],
                 "agent", logdir, json_stdout=False)
    try:
        def applied():
            if not agent.alive():
                raise AssertionError(f"agent exited: {agent.stderr_text()[-2000:]}")
            r = nft(topo, "list", "table", "inet", "flowgate", check=False)
            return r.returncode == 0 and "dnat" in r.stdout and \
                " in table inet flowgate" in agent.stderr_text()
        fgnet.wait_for(applied, 10, what="agent's kernel forward")
        assert fgnet.whoami(client, (NODE_IP, lp)) == f"{TARGET_IPS[2]}:{tp}"
        m = fgnet.wait_for(lambda: (lambda x: x if (x.get(
            "flowgate_forward_bytes_total", forward="kf", direction="down") or 0) > 0 else None)(
            fgnet.fetch_metrics(topo.node, f"127.0.0.1:{mp}")), 5, what="kernel bytes")
        assert m.get("flowgate_forward_bytes_total", forward="kf", direction="up") > 0
    finally:
        rc = agent.stop(5)
        err = agent.stderr_text()
        agent.close()
    assert rc == 0, err[-2000:]
    assert not any(s in err for s in ("AddressSanitizer", "LeakSanitizer", "runtime error:")), err
    assert nft(topo, "list", "table", "inet", "flowgate", check=False).returncode != 0
    assert nft(topo, "list", "table", "inet", "othertool").stdout == othertool
    assert ip_forward(topo) == "0"


def test_kernel_forward_created_through_the_api_runs_on_the_agent(topo, peers, port, client,
                                                                 fg_bin, logdir, tmp_path):
    """Server and agent in the node namespace: a forward POSTed with engine kernel reaches
    the agent and runs as DNAT; one the kernel cannot run is refused by the API naming the
    field (the API validates with the engine's own validator)."""
    from conftest import Proc
    from fgserver import ServerProc
    tp, lp, sp = port(), port(), port()
    peers("whoami", f"{TARGET_IPS[0]}:{tp}")
    srv = ServerProc(fg_bin, str(tmp_path / "data"), sp, logdir, ns=topo.node)
    agent = None
    try:
        api = srv.login()
        node = api.ok("POST", "/nodes", {"name": "n1"})
        st, body = api.post("/forwards", {"name": "bad", "node": "n1", "engine": "kernel",
                                          "listen": f"{NODE_IP}:{lp}", "max_conns": 5,
                                          "targets": [f"{TARGET_IPS[0]}:{tp}"]})
        assert st == 400 and "max_conns" in json.dumps(body), (st, body)
        api.ok("POST", "/forwards", {"name": "kweb", "node": "n1", "engine": "kernel",
                                     "listen": f"{NODE_IP}:{lp}",
                                     "targets": [f"{TARGET_IPS[0]}:{tp}"]})
        state = tmp_path / "agent"
        state.mkdir()
        agent = Proc(topo.node, [fg_bin, "agent", "--server", f"ws://127.0.0.1:{sp}/agent",
                                 "--token", node["token"], "--state", str(state)],
                     "agent", logdir, json_stdout=False)

        def applied():
            if not agent.alive():
                raise AssertionError(f"agent exited: {agent.stderr_text()[-2000:]}")
            r = nft(topo, "list", "table", "inet", "flowgate", check=False)
            return r.returncode == 0 and "dnat" in r.stdout and "fwd_kweb_up" in r.stdout
        fgnet.wait_for(applied, 15, what="agent applying the kernel forward")
        assert fgnet.whoami(client, (NODE_IP, lp)) == f"{TARGET_IPS[0]}:{tp}"
        assert lp not in {p for _, p in topo.node.listeners("tcp")}
    finally:
        if agent:
            rc = agent.stop(5)
            err = agent.stderr_text()
            agent.close()
            assert rc == 0, err[-2000:]
            assert "runtime error:" not in err and "Sanitizer" not in err, err[-3000:]
        problems = srv.stop()
        assert not problems, problems
    assert nft(topo, "list", "table", "inet", "flowgate", check=False).returncode != 0
