"""--connect-timeout and --idle-timeout.

10.77.3.0/24 is routed from the node into the targets namespace, which drops it
(IP forwarding off), so a connect to 10.77.3.9 gets no answer at all.
"""

import time

import fgnet
from conftest import BLACKHOLE_IP, NODE_IP, TARGET_IPS


def test_connect_timeout_closes_client_when_only_target_does_not_answer(flowgate, port, client):
    lp = port()
    dead = f"{BLACKHOLE_IP}:80"
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", dead, "--connect-timeout", "1s"],
                  wait_tcp=[lp])
    s = client.connect((NODE_IP, lp))
    t0 = time.monotonic()
    how, data = fgnet.wait_closed(s, timeout=5)
    took = time.monotonic() - t0
    s.close()
    assert data == b""
    assert 0.8 <= took <= 2.5, f"client closed after {took:.2f}s with --connect-timeout 1s"
    m = fg.wait_metric("flowgate_forward_target_errors_total", 1, forward="cli", target=dead,
                       cmp=lambda v: v is not None and v >= 1)
    assert m.get("flowgate_forward_target_up", forward="cli", target=dead) == 0


def test_connect_timeout_fails_over_to_next_target_without_client_error(peers, flowgate, port,
                                                                       client):
    tp, lp = port(), port()
    dead = f"{BLACKHOLE_IP}:80"
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", dead, "-r", f"{TARGET_IPS[0]}:{tp}",
                   "--balance", "failover", "--connect-timeout", "1s"], wait_tcp=[lp])
    t0 = time.monotonic()
    s = client.connect((NODE_IP, lp))
    assert fgnet.echo_roundtrip(s, b"first\n", timeout=5), "first connection failed"
    took = time.monotonic() - t0
    s.close()
    assert 0.8 <= took <= 3.0, f"first connection took {took:.2f}s (expected ~1s connect timeout)"
    # the dead target is now down: the next connection goes straight to the live one
    t0 = time.monotonic()
    s = client.connect((NODE_IP, lp))
    assert fgnet.echo_roundtrip(s, b"second\n", timeout=5)
    took = time.monotonic() - t0
    s.close()
    assert took < 0.5, f"second connection took {took:.2f}s: the timed-out target was retried"
    m = fg.metrics()
    assert m.get("flowgate_forward_target_up", forward="cli", target=dead) == 0
    assert m.get("flowgate_forward_target_errors_total", forward="cli", target=dead) >= 1


def test_idle_timeout_closes_idle_connection_on_both_sides(peers, flowgate, port, client):
    tp, lp = port(), port()
    srv = peers("echo", f"{TARGET_IPS[0]}:{tp}")
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}",
                   "--idle-timeout", "1s"], wait_tcp=[lp])
    s = client.connect((NODE_IP, lp))
    assert fgnet.echo_roundtrip(s, b"then silence\n")
    t0 = time.monotonic()
    how, data = fgnet.wait_closed(s, timeout=5)
    took = time.monotonic() - t0
    s.close()
    assert data == b""
    assert 0.8 <= took <= 2.5, f"idle connection closed after {took:.2f}s with --idle-timeout 1s"
    acc = srv.wait_event(event="accept")
    srv.wait_event(event="close", conn=acc["conn"], timeout=3)
    fg.wait_metric("flowgate_forward_connections_active", 0, forward="cli")


def test_idle_timeout_not_triggered_while_bytes_flow(peers, flowgate, port, client):
    tp, lp = port(), port()
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}",
              "--idle-timeout", "1s"], wait_tcp=[lp])
    s = client.connect((NODE_IP, lp))
    end = time.monotonic() + 3.0
    i = 0
    while time.monotonic() < end:
        assert fgnet.echo_roundtrip(s, b"tick %d\n" % i), f"echo {i} failed"
        i += 1
        assert fgnet.is_open(s, wait=0.3), f"closed after {i} ticks though bytes kept flowing"
    s.close()


def test_idle_timeout_counts_one_direction_as_activity(peers, flowgate, port, client):
    """Bytes only target->client (client silent) keep the connection alive."""
    tp, lp = port(), port()
    peers("source", f"{TARGET_IPS[0]}:{tp}", bytes=-1, seed=1)
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}",
              "--idle-timeout", "1s", "--rate-down", "64KiB"], wait_tcp=[lp])
    s = client.connect((NODE_IP, lp))
    got = 0
    end = time.monotonic() + 2.5
    s.settimeout(1.0)
    while time.monotonic() < end:
        d = s.recv(65536)
        assert d, f"connection closed after {got} bytes though data kept flowing down"
        got += len(d)
    fgnet.abort(s)
