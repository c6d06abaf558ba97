"""TCP data path: byte-exact bulk transfer, half-close, reset propagation,
1,000 concurrent connections, host-name targets, listen forms."""

import hashlib
import os
import selectors
import socket
import threading
import time

import pytest

import fgnet
from conftest import CLIENT_IP, NODE_IP, NODE_IP_T, TARGET_IPS

BULK = int(os.environ.get("FG_BULK_MIB", "256")) << 20


@pytest.mark.slow
def test_bulk_transfer_256MiB_each_way_is_byte_exact_and_counted(peers, flowgate, port, client):
    """>=256 MiB client->target and >=256 MiB target->client at the same time on one
    connection; sha256 checked on both ends; bytes_total{up,down} equal the bytes sent."""
    tp, lp = port(), port()
    up_seed, down_seed = 11, 23
    srv = peers("duplex", f"{TARGET_IPS[0]}:{tp}", bytes=BULK, seed=down_seed)
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])

    s = client.connect((NODE_IP, lp))
    s.settimeout(120)
    sent = {"sha": None, "bytes": 0, "err": None}

    def sender():
        h = hashlib.sha256()
        try:
            for chunk in fgnet.gen_blocks(up_seed, BULK):
                s.sendall(chunk)
                h.update(chunk)
                sent["bytes"] += len(chunk)
            s.shutdown(socket.SHUT_WR)
        except Exception as e:  # noqa: BLE001
            sent["err"] = e
        sent["sha"] = h.hexdigest()

    t0 = time.monotonic()
    th = threading.Thread(target=sender, daemon=True)
    th.start()
    h = hashlib.sha256()
    got = 0
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    while True:
        n = s.recv_into(buf)
        if n == 0:
            break
        h.update(mv[:n])
        got += n
    th.join(120)
    elapsed = time.monotonic() - t0
    assert not th.is_alive(), "sender did not finish"
    assert sent["err"] is None, f"sending failed: {sent['err']!r}"
    s.close()

    up = srv.wait_event(event="sink", timeout=60)
    down = srv.wait_event(event="source", timeout=60)
    assert up["how"] == "eof"
    assert up["bytes"] == BULK, f"target received {up['bytes']} of {BULK} bytes"
    assert up["sha256"] == sent["sha"], "client->target stream corrupted"
    assert down["bytes"] == BULK and down["how"] == "done"
    assert got == BULK, f"client received {got} of {BULK} bytes"
    assert h.hexdigest() == down["sha256"] == fgnet.stream_sha256(down_seed, BULK), \
        "target->client stream corrupted"

    fg.wait_metric("flowgate_forward_bytes_total", BULK, forward="cli", direction="up")
    m = fg.wait_metric("flowgate_forward_bytes_total", BULK, forward="cli", direction="down")
    assert m.get("flowgate_forward_connections_total", forward="cli") == 1
    print(f"2 x {BULK >> 20} MiB in {elapsed:.1f}s")


def test_half_close_from_client_is_forwarded_and_reply_still_delivered(peers, flowgate, port,
                                                                      client):
    """Client sends then shutdown(SHUT_WR): target sees EOF, then replies; the client
    receives the whole reply."""
    tp, lp = port(), port()
    req_n, reply_n = 3 << 20, 5 << 20
    srv = peers("halfclose", f"{TARGET_IPS[0]}:{tp}", bytes=reply_n, seed=5)
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])

    s = client.connect((NODE_IP, lp))
    s.settimeout(10)
    for chunk in fgnet.gen_blocks(9, req_n):
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    ev = srv.wait_event(event="sink", timeout=10, what="target to see EOF")
    assert ev["how"] == "eof" and ev["bytes"] == req_n
    assert ev["sha256"] == fgnet.stream_sha256(9, req_n)
    reply = fgnet.recv_all(s, timeout=15)
    assert len(reply) == reply_n
    assert hashlib.sha256(reply).hexdigest() == fgnet.stream_sha256(5, reply_n)
    s.close()


def test_half_close_from_target_is_forwarded_and_client_can_still_send(peers, flowgate, port,
                                                                       client):
    """Target sends then shutdown(SHUT_WR): the client reads the data then EOF, and its
    later data still reaches the target."""
    tp, lp = port(), port()
    first_n, later_n = 2 << 20, 3 << 20
    srv = peers("earlyclose", f"{TARGET_IPS[0]}:{tp}", bytes=first_n, seed=31)
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])

    s = client.connect((NODE_IP, lp))
    got = fgnet.recv_all(s, timeout=10)  # returns at EOF
    assert hashlib.sha256(got).hexdigest() == fgnet.stream_sha256(31, first_n)
    s.settimeout(10)
    for chunk in fgnet.gen_blocks(32, later_n):
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    ev = srv.wait_event(event="sink", timeout=10)
    assert ev["bytes"] == later_n and ev["sha256"] == fgnet.stream_sha256(32, later_n)
    how, data = fgnet.wait_closed(s, 5)
    assert data == b""
    s.close()


def test_client_reset_resets_target_side(peers, flowgate, port, client):
    tp, lp = port(), port()
    srv = peers("echo", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    s = client.connect((NODE_IP, lp))
    assert fgnet.echo_roundtrip(s, b"hello\n")
    acc = srv.wait_event(event="accept")
    fgnet.abort(s)
    ev = srv.wait_event(event="close", conn=acc["conn"], timeout=5)
    assert ev["how"] == "reset", f"target saw {ev['how']} instead of a reset"


def test_target_reset_resets_client_side(peers, flowgate, port, client, topo):
    """A target that aborts (RST) must make the client see a reset, not a clean EOF."""
    tp, lp = port(), port()
    lsock = topo.targets.listen_tcp((TARGET_IPS[0], tp))
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    try:
        s = client.connect((NODE_IP, lp))
        lsock.settimeout(5)
        c, _ = lsock.accept()
        c.sendall(b"x" * 1000)
        assert fgnet.recv_exact(s, 1000) == b"x" * 1000
        fgnet.abort(c)
        how, data = fgnet.wait_closed(s, 5)
        assert how == "reset", "client saw a clean EOF where the target reset the connection"
        s.close()
    finally:
        lsock.close()


@pytest.mark.slow
def test_1000_concurrent_connections_held_open_each_echo_their_payload(peers, flowgate, port,
                                                                      client):
    N = 1000
    tp, lp = port(), port()
    srv = peers("echo", f"{TARGET_IPS[0]}:{tp}")
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])

    socks = []
    try:
        for i in range(N):
            socks.append(client.connect((NODE_IP, lp), timeout=10))
        payloads = {}
        sel = selectors.DefaultSelector()
        for i, s in enumerate(socks):
            p = (f"conn-{i:04d}-" + os.urandom(24).hex() + "\n").encode() * (1 + i % 5)
            payloads[s] = [p, bytearray()]
            s.setblocking(False)
            s.sendall(p)  # small: fits the send buffer
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        pending = N
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                want, got = payloads[s]
                d = s.recv(65536)
                assert d, f"connection closed after {len(got)} of {len(want)} echoed bytes"
                got += d
                if len(got) >= len(want):
                    sel.unregister(s)
                    pending -= 1
        assert pending == 0, f"{pending} of {N} connections did not get their echo in 30s"
        bad = [i for i, s in enumerate(socks) if bytes(payloads[s][1]) != payloads[s][0]]
        assert not bad, f"{len(bad)} connections got a wrong echo (first: {bad[:5]})"

        fg.wait_metric("flowgate_forward_connections_active", N, timeout=10, forward="cli")
        # "an idle connection holds no pipe": 2 sockets per connection, no pipe pairs
        nfd = len(os.listdir(f"/proc/{fg.pid}/fd"))
        assert nfd <= 2 * N + 300, \
            f"flowgate holds {nfd} fds for {N} idle connections (pipes kept while idle?)"
        accepts = [e for e in srv.drain() if e.get("event") == "accept"]
        assert len(accepts) == N
        assert all(fgnet.is_open(s) for s in socks), "a connection was closed while held open"
    finally:
        for s in socks:
            s.close()
    fg.wait_metric("flowgate_forward_connections_active", 0, timeout=15, forward="cli")
    m = fg.metrics()
    assert m.get("flowgate_forward_connections_total", forward="cli") == N


def test_target_given_as_host_name_is_resolved(peers, flowgate, port, client):
    """-r NAME:PORT; names come from the node namespace's /etc/hosts (see conftest)."""
    tp, lp = port(), port()
    peers("whoami", f"{TARGET_IPS[1]}:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"fgtarget2.test:{tp}"], wait_tcp=[lp])
    assert fgnet.whoami(client, (NODE_IP, lp)) == f"{TARGET_IPS[1]}:{tp}"


@pytest.mark.parametrize("form", [":{p}", "{p}", "0.0.0.0:{p}"])
def test_listen_without_host_listens_on_all_ipv4_addresses(peers, flowgate, port, client, form):
    tp, lp = port(), port()
    peers("whoami", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", form.format(p=lp), "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    for dst in (NODE_IP, NODE_IP_T, "10.77.9.1"):
        assert fgnet.whoami(client, (dst, lp)) == f"{TARGET_IPS[0]}:{tp}"


def test_listen_on_specific_address_does_not_answer_on_others(peers, flowgate, port, client):
    tp, lp = port(), port()
    peers("whoami", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    assert fgnet.whoami(client, (NODE_IP, lp)) == f"{TARGET_IPS[0]}:{tp}"
    with pytest.raises(ConnectionRefusedError):
        client.connect((NODE_IP_T, lp), timeout=3)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_stop_signal_exits_0_and_closes_listener(flowgate, port, peers, sig):
    import signal as _signal
    tp, lp = port(), port()
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    fg.signal(getattr(_signal, sig))
    try:
        rc = fg.proc.wait(5)
    except Exception:  # noqa: BLE001
        rc = None
    assert rc == 0, f"exit status after {sig}: {rc}\n{fg.stderr_text()[-2000:]}"
    fg.wait_listening(tcp=[lp], gone=True, timeout=2)


def test_workers_option_1_forwards(peers, flowgate, port, client):
    tp, lp = port(), port()
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}", "--workers", "1"],
             wait_tcp=[lp])
    for i in range(20):
        s = client.connect((NODE_IP, lp))
        assert fgnet.echo_roundtrip(s, f"w1-{i}\n".encode())
        s.close()


def test_client_source_address_seen_by_flowgate_not_rewritten(peers, flowgate, port, client):
    """Sanity of the topology: the target sees the node's address (10.77.2.1), never the client."""
    tp, lp = port(), port()
    srv = peers("echo", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    s = client.connect((NODE_IP, lp), src=CLIENT_IP)
    assert fgnet.echo_roundtrip(s, b"abc\n")
    ev = srv.wait_event(event="accept")
    assert ev["peer"].startswith(NODE_IP_T + ":")
    s.close()


def test_sighup_without_config_file_does_not_stop_forwarding(peers, flowgate, port, client):
    import signal as _signal
    tp, lp = port(), port()
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    s = client.connect((NODE_IP, lp))
    assert fgnet.echo_roundtrip(s, b"before\n")
    fg.signal(_signal.SIGHUP)
    time.sleep(0.3)  # give a (wrong) default SIGHUP action time to kill it
    assert fg.alive(), f"flowgate died on SIGHUP: {fg.stderr_text()[-1000:]}"
    assert fgnet.echo_roundtrip(s, b"after\n")
    s2 = client.connect((NODE_IP, lp))
    assert fgnet.echo_roundtrip(s2, b"new\n")
    s.close()
    s2.close()


def test_unresolvable_target_name_is_skipped_not_fatal(peers, flowgate, port, client):
    """One target name does not resolve (no DNS in the namespace): flowgate starts, and
    every connection reaches the other target without a client-visible error."""
    tp, lp = port(), port()
    peers("whoami", f"{TARGET_IPS[2]}:{tp}")
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"no-such-host.invalid:{tp}",
                   "-r", f"fgtarget3:{tp}"], wait_tcp=[lp])
    for i in range(8):
        assert fgnet.whoami(client, (NODE_IP, lp)) == f"{TARGET_IPS[2]}:{tp}", f"connection {i}"
    assert fg.alive()


@pytest.mark.parametrize("how", ["shutdown", "close"])
def test_data_sent_and_closed_before_target_connects_is_delivered(peers, flowgate, port, client,
                                                                  how):
    """The client sends 1 MiB and closes right after connect(), before flowgate can have
    connected upstream: the target must still get every byte, then EOF."""
    tp, lp = port(), port()
    n = 1 << 20
    srv = peers("sink", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    for i in range(3):
        s = client.connect((NODE_IP, lp))
        s.settimeout(10)
        for chunk in fgnet.gen_blocks(40 + i, n):
            s.sendall(chunk)
        if how == "shutdown":
            s.shutdown(socket.SHUT_WR)
        else:
            s.close()
        ev = srv.wait_event(event="sink", timeout=10)
        assert ev["how"] == "eof", f"target saw {ev['how']}"
        assert ev["bytes"] == n and ev["sha256"] == fgnet.stream_sha256(40 + i, n), \
            f"target got {ev['bytes']} of {n} bytes (round {i})"
        if how == "shutdown":
            assert fgnet.wait_closed(s, 5)[1] == b""
            s.close()


def test_target_eof_delivered_after_rate_limited_data_drains(peers, flowgate, port, client):
    """The target sends 1.5 MiB and closes its write side at once; with --rate-down
    1MiB the data is still in flight: the client must get all of it, then EOF."""
    tp, lp = port(), port()
    n = 3 << 19
    peers("source", f"{TARGET_IPS[0]}:{tp}", bytes=n, seed=77)
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}", "--rate-down", "1MiB"],
             wait_tcp=[lp])
    s = client.connect((NODE_IP, lp))
    t0 = time.monotonic()
    got = fgnet.recv_all(s, timeout=10)
    took = time.monotonic() - t0
    s.close()
    assert len(got) == n, f"client got {len(got)} of {n} bytes before EOF"
    assert hashlib.sha256(got).hexdigest() == fgnet.stream_sha256(77, n)
    assert took >= 1.0, f"1.5 MiB at 1MiB/s arrived in {took:.2f}s: limit not applied"


def test_rate_zero_means_unlimited(peers, flowgate, port, client):
    tp, lp = port(), port()
    n = 64 << 20
    peers("source", f"{TARGET_IPS[0]}:{tp}", bytes=n, seed=2)
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}", "--rate-down", "0",
              "--rate-up", "0"], wait_tcp=[lp])
    s = client.connect((NODE_IP, lp))
    t0 = time.monotonic()
    got = 0
    s.settimeout(20)
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        got += len(d)
    took = time.monotonic() - t0
    s.close()
    assert got == n
    assert n / took > 20e6, f"--rate-down 0 moved only {n / took / 1e6:.1f} MB/s"


def test_metrics_endpoint_not_blocked_by_idle_or_bad_clients(flowgate, port, peers, topo):
    """A silent connection, a half request and garbage on the metrics port must not stop
    another client's scrape; an unknown path gets a 404."""
    tp, lp = port(), port()
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    idle = topo.node.connect(fg.metrics_addr)
    half = topo.node.connect(fg.metrics_addr)
    half.sendall(b"GET /metr")
    junk = topo.node.connect(fg.metrics_addr)
    junk.sendall(os.urandom(4096) + b"\r\n\r\n")
    try:
        t0 = time.monotonic()
        m = fg.metrics()
        assert time.monotonic() - t0 < 2
        assert m.get("flowgate_forward_connections_total", forward="cli") == 0
        s = topo.node.connect(fg.metrics_addr)
        try:
            s.settimeout(3)
            s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status = fgnet.recv_line(s, timeout=3)
            assert " 404" in status, status
        finally:
            s.close()
    finally:
        for x in (idle, half, junk):
            x.close()
    assert fg.alive()
