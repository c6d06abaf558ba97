"""Connection limits (--max-conns, --max-conns-per-ip) and the PROXY protocol header."""

import hashlib
import json
import socket

import pytest

import fgnet
from conftest import CLIENT_IPS, NODE_IP, TARGET_IPS


def open_echo(client, lp, src=None, tag=b"x"):
    s = client.connect((NODE_IP, lp), src=src)
    assert fgnet.echo_roundtrip(s, b"hello-" + tag + b"\n"), "echo through the forward failed"
    return s


def test_max_conns_refuses_the_extra_connection_at_once_and_counts_it(peers, flowgate, port,
                                                                      client):
    tp, lp = port(), port()
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}", "--max-conns", "5"],
                  wait_tcp=[lp])
    held = [open_echo(client, lp, tag=str(i).encode()) for i in range(5)]
    try:
        fg.wait_metric("flowgate_forward_connections_active", 5, forward="cli")
        sixth = client.connect_refusable((NODE_IP, lp))
        fgnet.assert_refused(sixth, timeout=2.0)
        if sixth:
            sixth.close()
        m = fg.wait_metric("flowgate_forward_refused_total", 1, forward="cli", reason="max_conns")
        assert m.get("flowgate_forward_connections_active", forward="cli") == 5
        # the 5 held connections are untouched
        for i, s in enumerate(held):
            assert fgnet.echo_roundtrip(s, b"still-%d\n" % i)

        held.pop().close()
        fg.wait_metric("flowgate_forward_connections_active", 4, forward="cli")
        held.append(open_echo(client, lp, tag=b"after-free"))
        seventh = client.connect_refusable((NODE_IP, lp))
        fgnet.assert_refused(seventh, timeout=2.0)
        if seventh:
            seventh.close()
        fg.wait_metric("flowgate_forward_refused_total", 2, forward="cli", reason="max_conns")
    finally:
        for s in held:
            s.close()


def test_max_conns_per_ip_refuses_third_connection_per_client_ip(peers, flowgate, port, client):
    tp, lp = port(), port()
    a, b = CLIENT_IPS[0], CLIENT_IPS[1]
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}",
                   "--max-conns-per-ip", "2"], wait_tcp=[lp])
    held_a = [open_echo(client, lp, src=a, tag=b"a%d" % i) for i in range(2)]
    held_b = []
    try:
        s = client.connect_refusable((NODE_IP, lp), src=a)
        fgnet.assert_refused(s)
        if s:
            s.close()
        fg.wait_metric("flowgate_forward_refused_total", 1, forward="cli",
                       reason="max_conns_per_ip")
        # another IP is not affected by a's connections
        held_b = [open_echo(client, lp, src=b, tag=b"b%d" % i) for i in range(2)]
        s = client.connect_refusable((NODE_IP, lp), src=b)
        fgnet.assert_refused(s)
        if s:
            s.close()
        m = fg.wait_metric("flowgate_forward_refused_total", 2, forward="cli",
                           reason="max_conns_per_ip")
        assert m.get("flowgate_forward_connections_active", forward="cli") == 4
        assert m.get("flowgate_forward_refused_total", 0, forward="cli", reason="max_conns") == 0

        held_a.pop().close()
        fg.wait_metric("flowgate_forward_connections_active", 3, forward="cli")
        held_a.append(open_echo(client, lp, src=a, tag=b"a-again"))
        for s in held_a + held_b:
            assert fgnet.echo_roundtrip(s, b"ok\n")
    finally:
        for s in held_a + held_b:
            s.close()


@pytest.mark.parametrize("listen_host", [NODE_IP, "0.0.0.0"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_protocol_header_carries_real_client_and_forward_address(
        peers, flowgate, port, client, version, listen_host):
    tp, lp = port(), port()
    src_ip = CLIENT_IPS[3]
    srv = peers("proxy", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"{listen_host}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}",
              "--proxy-protocol", version], wait_tcp=[lp])
    s = client.connect((NODE_IP, lp), src=src_ip)
    sport = s.getsockname()[1]
    s.sendall(b"payload after header\n")
    info = json.loads(fgnet.recv_line(s, timeout=5))
    assert info["version"] == int(version[1])
    if version == "v1":
        assert info["raw"] == f"PROXY TCP4 {src_ip} {NODE_IP} {sport} {lp}", info["raw"]
    else:
        assert info["ver_cmd"] == 0x21, "v2 header must be version 2, command PROXY"
        assert info["fam"] == 0x11, "v2 header must be AF_INET/STREAM"
        assert info["len"] >= 12
    assert (info["src"], info["sport"]) == (src_ip, sport), info
    assert (info["dst"], info["dport"]) == (NODE_IP, lp), info
    # the payload follows the header intact
    assert fgnet.recv_line(s, timeout=5) == "payload after header"
    assert fgnet.echo_roundtrip(s, b"more\n")
    s.close()
    srv.wait_event(event="proxy")


def test_no_proxy_header_by_default(peers, flowgate, port, client):
    """Same setup without --proxy-protocol: the target's first bytes are the client's."""
    tp, lp = port(), port()
    srv = peers("sink", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    s = client.connect((NODE_IP, lp))
    data = b"exactly these bytes"
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    ev = srv.wait_event(event="sink", timeout=5)
    assert ev["bytes"] == len(data) and ev["sha256"] == hashlib.sha256(data).hexdigest()
    s.close()


def _burst_connect(client, lp, n, src=None):
    """Start n connects at once (non-blocking), return the connected sockets."""
    import select
    import errno as _errno
    socks = []
    for _ in range(n):
        s = client.socket()
        if src:
            s.bind((src, 0))
        s.setblocking(False)
        rc = s.connect_ex((NODE_IP, lp))
        assert rc in (0, _errno.EINPROGRESS), rc
        socks.append(s)
    pending = list(socks)
    deadline = __import__("time").monotonic() + 5
    while pending:
        _, w, _ = select.select([], pending, [], max(0.0, deadline - __import__("time").monotonic()))
        assert w or __import__("time").monotonic() < deadline, "connects did not complete"
        for s in w:
            pending.remove(s)
    return socks


@pytest.mark.parametrize("opt,limit", [("--max-conns", 5), ("--max-conns-per-ip", 3)])
def test_limit_holds_exactly_under_simultaneous_connects(peers, flowgate, port, client, opt,
                                                         limit):
    """40 connects at once from one IP (spread over the workers): exactly `limit` of them
    may be served, the rest closed and counted."""
    tp, lp = port(), port()
    n = 40
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}", opt, str(limit)],
                  wait_tcp=[lp])
    socks = _burst_connect(client, lp, n)
    try:
        reason = "max_conns" if opt == "--max-conns" else "max_conns_per_ip"
        fg.wait_metric("flowgate_forward_refused_total", n - limit, forward="cli", reason=reason)
        served = 0
        for s in socks:
            s.setblocking(True)
            try:
                if fgnet.echo_roundtrip(s, b"who?\n", timeout=2):
                    served += 1
            except (OSError, EOFError, AssertionError):
                pass
        assert served == limit, f"{served} connections served with {opt} {limit}"
        m = fg.metrics()
        assert m.get("flowgate_forward_connections_active", forward="cli") == limit
    finally:
        for s in socks:
            s.close()
