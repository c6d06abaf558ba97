"""Tunnels end to end: client -> entry -> [relay ->] exit -> target, each node a real
`flowgate forward -c` process in its own network namespace (tunnelnet.py).

Bytes are checked by SHA-256 both ways (an echo target sends back what the client
sent); counters are read from /metrics.
"""

import atexit
import hashlib
import os
import signal
import socket
import threading
import time

import pytest

import fgnet
import tunnelnet as tn
from conftest import Peer, Proc
from fgnet import wait_for

TRANSPORTS = ["tcp", "tls", "ws", "wss", "aead"]
PINNED = ("tls", "wss")


@pytest.fixture(scope="module")
def net():
    if os.geteuid() != 0:
        pytest.skip("system tests need root (network namespaces)")
    tn.cleanup_stale()
    t = tn.TunnelNet()
    atexit.register(t.destroy)
    try:
        t.create()
    except BaseException:
        t.destroy()
        raise
    yield t
    t.destroy()


@pytest.fixture
def nodes(net, fg_bin, logdir, port, request):
    """Factory: nodes(ns_role, doc, name) -> tn.Node, waited until up. At teardown each
    gets SIGTERM and must exit 0 with no sanitizer report."""
    started = []

    def start(role, doc, name, wait=True, extra=()):
        n = tn.Node(Proc, fg_bin, net.ns[role], doc, logdir, name, port(), extra)
        started.append(n)
        return n.wait_up() if wait else n

    start.started = started
    yield start
    problems = []
    for n in started:
        alive = n.proc.alive()
        rc = n.proc.stop(5.0)
        err = n.proc.stderr_text()
        n.proc.close()
        san = [m for m in tn.SANITIZER_MARKERS if m in err]
        if san:
            problems.append(f"{n.name}: sanitizer report:\n{err[-4000:]}")
        if alive and rc != 0:
            problems.append(f"{n.name}: exit status {rc} after SIGTERM:\n{err[-2000:]}")
    if problems and not getattr(request.node, "_call_failed", False):
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def targets(net, logdir):
    started = []

    def start(mode, listen, role="tgt", **opts):
        p = Peer(None, mode, [listen] if isinstance(listen, str) else listen, logdir,
                 f"target{len(started) + 1}-{mode}", ns=net.ns[role], **opts)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def start_exit(nodes, transport, mux, link_port, targets, name="exit", role="ext",
               listen_ip=tn.EXT, prev=None, **kw):
    doc = {"tunnels": [{"name": "t", "id": "17", "role": "exit", "targets": targets,
                        "prev": prev or tn.link(transport, mux, listen=f"{listen_ip}:{link_port}"),
                        **kw}]}
    return nodes(role, doc, name)


def peer_of(node, transport, addr):
    p = {"address": addr}
    if transport in PINNED:
        p["fingerprint"] = node.fingerprint()
    return p


def start_entry(nodes, transport, mux, listen, peers=None, next_link=None, name="entry", **kw):
    nl = next_link or tn.link(transport, mux, peers=peers)
    doc = {"tunnels": [{"name": "t", "id": "17", "role": "entry", "listen": listen,
                        "next": nl, **kw}]}
    return nodes("ent", doc, name)


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mux", [True, False], ids=["mux", "nomux"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tunnel_carries_bytes_both_ways_over_every_transport(nodes, targets, port, net,
                                                             transport, mux):
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    ex = start_exit(nodes, transport, mux, lport, [f"{tn.TGT}:{tport}"])
    en = start_entry(nodes, transport, mux, f"{tn.ENT_C}:{cport}",
                     [peer_of(ex, transport, f"{tn.EXT}:{lport}")])
    tn.echo_load_exact(net, en, ex, f"{tn.ENT_C}:{cport}")
    # both ends measured the hop's round trip (mux PING, else the kernel's
    # TCP estimate, kept after the per-stream links closed): one veth, so
    # above 0 and well below 200 ms; no side the role does not have
    rtt = "flowgate_tunnel_link_rtt_microseconds"
    en.wait_metric(rtt, lambda v: 0 < v < 200_000, side="next")
    ex.wait_metric(rtt, lambda v: 0 < v < 200_000, side="prev")
    assert en.metric(rtt, side="prev") is None and ex.metric(rtt, side="next") is None


@pytest.mark.parametrize("mux", [True, False], ids=["mux", "nomux"])
@pytest.mark.parametrize("transport", ["tcp", "tls", "aead", "wss"])
def test_reverse_tunnel_exit_behind_nat_dials_the_entry(nodes, targets, port, net, transport,
                                                        mux):
    tport, lport, cport = port(), port(), port()
    # the private service, reachable only from inside prv
    targets("echo", f"{tn.PRV}:{tport}", role="prv")
    # nothing gets in to prv from the entry's side
    assert tn.connect_fails(net.ent, f"{tn.PRV}:{tport}", timeout=1.0)
    assert tn.connect_fails(net.ent, f"{tn.RTR_E}:{tport}", timeout=1.0)

    en = start_entry(nodes, transport, mux, f"{tn.ENT_C}:{cport}",
                     next_link=tn.link(transport, mux, listen=f"{tn.ENT_N}:{lport}"))
    prev = tn.link(transport, mux, peers=[peer_of(en, transport, f"{tn.ENT_N}:{lport}")])
    ex = start_exit(nodes, transport, mux, None, [f"{tn.PRV}:{tport}"], role="prv", prev=prev)
    en.wait_metric("flowgate_tunnel_links_up", lambda v: v >= 1)

    addr = f"{tn.ENT_C}:{cport}"
    big = os.urandom(4 << 20)
    got = tn.transfer(net.cli, addr, big)
    assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
    ok, bad = tn.many_transfers(net.cli, addr, 200, 16 << 10)
    assert ok == 200, f"{200 - ok} of 200 streams failed: {bad[:5]}"
    ex.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == len(big) + 200 * (16 << 10),
                   direction="up")
    # idle pooled links (mux off) are not connections
    ex.wait_metric("flowgate_tunnel_connections_total", lambda v: v == 201)


def test_two_hops_through_a_relay_with_different_transports(nodes, targets, port, net):
    tport, l1, l2, cport = port(), port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    ex = start_exit(nodes, "aead", False, l2, [f"{tn.TGT}:{tport}"])
    relay_doc = {"tunnels": [{"name": "t", "id": "17", "role": "relay",
                              "prev": tn.link("tls", True, listen=f"{tn.EXT}:{l1}"),
                              "next": tn.link("aead", False, peers=[{"address":
                                                                     f"{tn.EXT}:{l2}"}])}]}
    rl = nodes("ext", relay_doc, "relay")
    start_entry(nodes, "tls", True, f"{tn.ENT_C}:{cport}",
                [peer_of(rl, "tls", f"{tn.EXT}:{l1}")])
    addr = f"{tn.ENT_C}:{cport}"
    big = os.urandom(4 << 20)
    assert hashlib.sha256(tn.transfer(net.cli, addr, big)).digest() == \
        hashlib.sha256(big).digest()
    ok, bad = tn.many_transfers(net.cli, addr, 50, 64 << 10)
    assert ok == 50, bad[:5]
    total = len(big) + 50 * (64 << 10)
    rl.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == total, direction="up")
    rl.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == total, direction="down")
    ex.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == total, direction="up")


class Recorder:
    """A TCP relay in ent that records the first connection's client->server bytes."""

    def __init__(self, ns, listen, upstream):
        self.ls = ns.listen_tcp(listen)
        self.ns = ns
        self.upstream = upstream
        self.captured = bytearray()
        self.first = True
        threading.Thread(target=self._run, daemon=True).start()

    def _pipe(self, a, b, rec):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                if rec:
                    self.captured += d
                b.sendall(d)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _run(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            u = self.ns.connect(self.upstream)
            rec, self.first = self.first, False
            threading.Thread(target=self._pipe, args=(c, u, rec), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False), daemon=True).start()


def check_replay_refused(nodes, targets, port, net, start_exit, start_entry, times):
    """A plain tcp tunnel whose entry dials the exit through a Recorder carries
    one stream; the captured dialer side is then replayed `times` times on
    fresh connections to the exit: each is refused (no ACCEPT, counted) and
    nothing but the original stream reaches the target."""
    tport, lport, rport, cport = port(), port(), port(), port()
    tgt = targets("sink", f"{tn.TGT}:{tport}")
    ex = start_exit(nodes, "tcp", False, lport, [f"{tn.TGT}:{tport}"])
    # the entry dials the exit through a recorder on its own namespace
    rec = Recorder(net.ent, f"127.0.0.1:{rport}", f"{tn.EXT}:{lport}")
    start_entry(nodes, "tcp", False, f"{tn.ENT_C}:{cport}", [{"address": f"127.0.0.1:{rport}"}])
    s = net.cli.connect(f"{tn.ENT_C}:{cport}")
    s.sendall(b"secret payload\n")
    s.shutdown(socket.SHUT_WR)
    fgnet.wait_closed(s, 10)
    s.close()
    tgt.wait_event(event="sink", timeout=10)
    wait_for(lambda: len(rec.captured) > 83, 5, what="captured handshake")
    captured = bytes(rec.captured)
    refused0 = ex.metric("flowgate_tunnel_handshakes_refused_total")
    for _ in range(times):
        r = net.ent.connect(f"{tn.EXT}:{lport}")
        r.sendall(captured)
        how, data = fgnet.wait_closed(r, 5)
        r.close()
        assert b"FGT\x01\x03" not in data  # no ACCEPT
    ex.wait_metric("flowgate_tunnel_handshakes_refused_total",
                   lambda v: v == refused0 + times)
    time.sleep(0.3)
    accepts = [e for e in tgt.drain() if e.get("event") == "accept"]
    assert len(accepts) == 1, f"a replayed handshake reached the target: {accepts}"


def test_replayed_handshake_is_refused_before_any_byte_reaches_the_target(nodes, targets, port,
                                                                          net):
    check_replay_refused(nodes, targets, port, net, start_exit, start_entry, 3)


@pytest.mark.parametrize("case", ["wrong_key", "unknown_key_id"])
def test_wrong_or_missing_key_is_refused_and_nothing_reaches_the_target(nodes, targets, port,
                                                                        net, case):
    tport, lport, cport = port(), port(), port()
    tgt = targets("sink", f"{tn.TGT}:{tport}")
    ex = start_exit(nodes, "aead", False, lport, [f"{tn.TGT}:{tport}"])
    psk = tn.WRONG_PSK if case == "wrong_key" else dict(tn.PSK, id=8)
    en = start_entry(nodes, "aead", False, f"{tn.ENT_C}:{cport}",
                     next_link=tn.link("aead", False, psk=psk,
                                       peers=[{"address": f"{tn.EXT}:{lport}"}]))
    for _ in range(3):
        s = net.cli.connect_refusable(f"{tn.ENT_C}:{cport}")
        fgnet.assert_refused(s, timeout=5)
        if s:
            s.close()
    ex.wait_metric("flowgate_tunnel_handshakes_refused_total", lambda v: v >= 3)
    en.wait_metric("flowgate_tunnel_link_failures_total", lambda v: v >= 3)
    assert "handshake refused by the peer" in en.stderr()
    time.sleep(0.3)
    assert [e for e in tgt.drain() if e.get("event") == "accept"] == []


@pytest.mark.parametrize("transport", PINNED)
def test_link_per_stream_resumes_tls_only_under_the_same_pin(nodes, targets, port, net,
                                                             transport):
    """Without mux every client connection is a new link. After the first (full) TLS
    handshake the entry resumes the exit's session from its ticket, and both nodes count
    it. The session belongs to the pin: once the entry pins another certificate, the exit
    (still the same process, whose ticket the entry holds) is refused and nothing
    resumes; with the right pin back, the kept session resumes again."""
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    ex = start_exit(nodes, transport, False, lport, [f"{tn.TGT}:{tport}"])
    peer = peer_of(ex, transport, f"{tn.EXT}:{lport}")
    entry_t = {"name": "t", "id": "17", "role": "entry", "listen": f"{tn.ENT_C}:{cport}",
               "next": tn.link(transport, False, peers=[peer])}
    en = nodes("ent", {"tunnels": [entry_t]}, "entry")
    addr = f"{tn.ENT_C}:{cport}"
    n = 10
    for i in range(n):
        data = os.urandom(50000 + i)
        assert tn.transfer(net.cli, addr, data) == data
    en.wait_metric("flowgate_tunnel_tls_resumed_total", lambda v: v == n - 1)
    ex.wait_metric("flowgate_tunnel_tls_resumed_total", lambda v: v == n - 1)
    ex.wait_metric("flowgate_tunnel_connections_total", lambda v: v == n)

    def reload(fp):
        k = en.stderr().count("reloaded")
        en.write({"tunnels": [dict(entry_t, next=dict(entry_t["next"],
                                                      peers=[dict(peer, fingerprint=fp)]))]})
        en.proc.signal(signal.SIGHUP)
        wait_for(lambda: en.stderr().count("reloaded") > k, 5, what="reloaded")

    reload(":".join(["AB"] * 32))
    for _ in range(3):
        s = net.cli.connect_refusable(addr)
        fgnet.assert_refused(s, timeout=5)
        if s:
            s.close()
    en.wait_metric("flowgate_tunnel_link_failures_total", lambda v: v >= 3)
    assert "certificate fingerprint mismatch" in en.stderr()
    assert ex.metric("flowgate_tunnel_tls_resumed_total") == n - 1
    assert ex.metric("flowgate_tunnel_connections_total") == n

    reload(peer["fingerprint"])
    data = os.urandom(70000)

    def works():
        try:
            return tn.transfer(net.cli, addr, data, timeout=5) == data
        except OSError:
            return False
    wait_for(works, 15, interval=0.5, what="transfer with the right pin")
    assert ex.metric("flowgate_tunnel_tls_resumed_total") >= n


def test_exit_connects_only_to_the_targets_its_tunnel_names(nodes, targets, port, net):
    """The entry forwards a 3-port range; the exit names a 2-port target range: the third
    port's streams are refused although a server listens on the port it would map to."""
    lport, cport = port(), port(3)
    tports = port(3)
    echo = targets("echo", [f"{tn.TGT}:{p}" for p in tports])
    ex = start_exit(nodes, "tcp", True, lport, [f"{tn.TGT}:{tports[0]}-{tports[1]}"])
    start_entry(nodes, "tcp", True, f"{tn.ENT_C}:{cport[0]}-{cport[2]}",
                [{"address": f"{tn.EXT}:{lport}"}])
    for i in range(2):
        data = os.urandom(1000)
        assert tn.transfer(net.cli, f"{tn.ENT_C}:{cport[i]}", data) == data
    def accepts():
        return [e for e in echo.drain() if e.get("event") == "accept"]
    wait_for(lambda: len(accepts()) >= 2, 5, what="two accepts")
    assert sorted(int(e["local"].rsplit(":", 1)[1]) for e in accepts()) == tports[:2]
    s = net.cli.connect_refusable(f"{tn.ENT_C}:{cport[2]}")
    fgnet.assert_refused(s, timeout=5)
    ex.wait_metric("flowgate_tunnel_refused_total", lambda v: v == 1)
    time.sleep(0.3)
    assert len(accepts()) == 2, f"the exit connected outside its targets: {accepts()}"


def test_a_stalled_reader_does_not_slow_the_other_streams(nodes, targets, port, net):
    """Listen port 0 reaches an echo server, port 1 an endless source. A client that
    never reads the source parks its stream; 10 echo streams on the same mux link still
    complete, byte-exact, in about the time they take alone."""
    lport, cport, tport = port(), port(2), port(2)
    targets("echo", f"{tn.TGT}:{tport[0]}")
    targets("source", f"{tn.TGT}:{tport[1]}", bytes=-1, seed=3)
    ex = start_exit(nodes, "tls", True, lport, [f"{tn.TGT}:{tport[0]}-{tport[1]}"])
    en = start_entry(nodes, "tls", True, f"{tn.ENT_C}:{cport[0]}-{cport[1]}",
                     [peer_of(ex, "tls", f"{tn.EXT}:{lport}")])
    echo = f"{tn.ENT_C}:{cport[0]}"

    t0 = time.monotonic()
    ok, bad = tn.many_transfers(net.cli, echo, 10, 2 << 20)
    alone = time.monotonic() - t0
    assert ok == 10, bad

    stalled = net.cli.connect(f"{tn.ENT_C}:{cport[1]}")
    # the stalled stream fills the client socket, the entry's queue, its mux window
    # and the exit's queue, then stops
    def parked():
        m = en.metrics()
        return m.get("flowgate_tunnel_bytes_total", tunnel="t", direction="down") or 0
    wait_for(lambda: parked() > 0, 5, what="source bytes flowing")
    time.sleep(1.0)
    before = parked()
    time.sleep(0.5)
    assert parked() - before < (1 << 20), "the stalled stream keeps moving bytes"

    t0 = time.monotonic()
    ok, bad = tn.many_transfers(net.cli, echo, 10, 2 << 20)
    with_stall = time.monotonic() - t0
    assert ok == 10, f"streams failed next to a stalled one: {bad}"
    assert with_stall < max(3 * alone, 5.0), \
        f"10 streams took {with_stall:.2f}s next to a stalled one, {alone:.2f}s alone"
    # the stalled stream is still there, not reset
    assert fgnet.is_open(stalled)
    stalled.close()


def test_entry_reconnects_after_the_exit_is_killed_and_restarted(nodes, targets, port, net):
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    ex = start_exit(nodes, "aead", True, lport, [f"{tn.TGT}:{tport}"])
    en = start_entry(nodes, "aead", True, f"{tn.ENT_C}:{cport}",
                     [{"address": f"{tn.EXT}:{lport}"}], connect_timeout="2s")
    addr = f"{tn.ENT_C}:{cport}"
    assert tn.transfer(net.cli, addr, b"before") == b"before"
    ex.proc.kill()
    en.wait_metric("flowgate_tunnel_links_up", lambda v: v == 0)
    # while the exit is down a client is refused (after the connect timeout)
    s = net.cli.connect_refusable(addr)
    fgnet.assert_refused(s, timeout=5)
    doc = {"tunnels": [{"name": "t", "id": "17", "role": "exit",
                        "targets": [f"{tn.TGT}:{tport}"],
                        "prev": tn.link("aead", True, listen=f"{tn.EXT}:{lport}")}]}
    nodes("ext", doc, "exit-again")
    en.wait_metric("flowgate_tunnel_links_up", lambda v: v == 1, timeout=15)
    ok, bad = tn.many_transfers(net.cli, addr, 20, 256 << 10)
    assert ok == 20, bad
    assert en.metric("flowgate_tunnel_link_failures_total") >= 1


@pytest.mark.parametrize("mux", [True, False], ids=["mux", "nomux"])
def test_failover_to_the_second_exit(nodes, targets, port, net, mux):
    tport, l1, l2, cport = port(), port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    ex1 = start_exit(nodes, "tcp", mux, l1, [f"{tn.TGT}:{tport}"], name="exit1")
    ex2 = start_exit(nodes, "tcp", mux, l2, [f"{tn.TGT}:{tport}"], name="exit2")
    en = start_entry(nodes, "tcp", mux, f"{tn.ENT_C}:{cport}",
                     [{"address": f"{tn.EXT}:{l1}"}, {"address": f"{tn.EXT}:{l2}"}],
                     connect_timeout="2s")
    if mux:
        en.wait_metric("flowgate_tunnel_links_up", lambda v: v == 2)
    addr = f"{tn.ENT_C}:{cport}"
    ok, _ = tn.many_transfers(net.cli, addr, 10, 10000)
    assert ok == 10
    assert ex1.metric("flowgate_tunnel_connections_total") == 10
    assert ex2.metric("flowgate_tunnel_connections_total") == 0
    ex1.proc.kill()
    if mux:
        en.wait_metric("flowgate_tunnel_links_up", lambda v: v == 1)
    ok, bad = tn.many_transfers(net.cli, addr, 10, 10000)
    assert ok == 10, bad
    ex2.wait_metric("flowgate_tunnel_connections_total", lambda v: v == 10)


def test_bad_tunnel_file_exits_2_naming_the_field(fg_bin, net, logdir):
    path = os.path.join(logdir, "bad.json")
    with open(path, "w") as f:
        f.write('{"tunnels":[{"name":"t","role":"entry","listen":"0.0.0.0:1",'
                '"next":{"transport":"tls","psk":{"id":1,"key":"AAECAwQFBgcICQoLDA0ODw=="},'
                '"peers":[{"address":"10.0.0.1:5"}]}}]}')
    r = tn.sh("ip", "netns", "exec", net.name["ent"], fg_bin, "forward", "-c", path,
              check=False)
    assert r.returncode == 2, r.stderr
    assert "tunnels[0].next.peers[0].fingerprint: required" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_entry_limits_rate_down_and_closes_idle_streams(nodes, targets, port, net):
    """rate_down at the entry paces what the client receives (burst + rate x T);
    idle_timeout closes a stream with no bytes either way."""
    sport, eport, lport, cport = port(), port(), port(), port(2)
    targets("source", f"{tn.TGT}:{sport}", bytes=3 << 20, seed=5)
    targets("echo", f"{tn.TGT}:{eport}")
    ex = start_exit(nodes, "tcp", True, lport, [f"{tn.TGT}:{sport}", f"{tn.TGT}:{eport}"],
                    target_balance="round-robin", idle_timeout="1s")
    start_entry(nodes, "tcp", True, f"{tn.ENT_C}:{cport[0]}", [{"address": f"{tn.EXT}:{lport}"}],
                rate_down="16mbit", burst="64KiB", idle_timeout="1s")
    addr = f"{tn.ENT_C}:{cport[0]}"
    s = net.cli.connect(addr)
    t0 = time.monotonic()
    got = fgnet.recv_all(s, timeout=20)
    elapsed = time.monotonic() - t0
    s.close()
    assert hashlib.sha256(got).hexdigest() == fgnet.stream_sha256(5, 3 << 20)
    expect = ((3 << 20) - 65536) / 2_000_000
    assert expect * 0.85 <= elapsed <= expect * 1.3, \
        f"3 MiB at 16 mbit took {elapsed:.2f}s, expected about {expect:.2f}s"
    # the next stream goes to the echo target; leave it idle
    s = net.cli.connect(addr)
    assert fgnet.echo_roundtrip(s, b"ping\n")
    t0 = time.monotonic()
    how, _ = fgnet.wait_closed(s, 5)
    assert 0.8 <= time.monotonic() - t0 <= 3.0, how
    s.close()
    ex.wait_metric("flowgate_tunnel_connections_active", lambda v: v == 0)


def test_sighup_keeps_unchanged_tunnels_and_rejects_a_bad_file(nodes, targets, port, net):
    tport, lport, cport, fport = port(), port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    start_exit(nodes, "tls", True, lport, [f"{tn.TGT}:{tport}"])
    ex = nodes.started[-1]
    entry_t = {"name": "t", "id": "17", "role": "entry", "listen": f"{tn.ENT_C}:{cport}",
               "next": tn.link("tls", True, peers=[peer_of(ex, "tls", f"{tn.EXT}:{lport}")])}
    en = nodes("ent", {"tunnels": [entry_t]}, "entry")
    addr = f"{tn.ENT_C}:{cport}"
    c1 = net.cli.connect(addr)
    assert fgnet.echo_roundtrip(c1, b"one\n")

    def reload(doc, expect):
        n = en.stderr().count(expect)
        en.write(doc)
        en.proc.signal(signal.SIGHUP)
        wait_for(lambda: en.stderr().count(expect) > n, 5, what=expect)

    # unchanged tunnel + a new tunnel-less forward: c1 lives on
    reload({"forwards": [{"name": "f", "listen": f"{tn.ENT_C}:{fport}",
                          "targets": [f"{tn.EXT}:{lport}"]}], "tunnels": [entry_t]},
           "reloaded")
    assert fgnet.echo_roundtrip(c1, b"two\n")
    # a bad tunnel: rejected as a whole, c1 lives on
    bad = dict(entry_t, next=dict(entry_t["next"], transport="quic"))
    reload({"tunnels": [bad]}, "reload rejected")
    assert "tunnels[0].next.transport" in en.stderr()
    assert fgnet.echo_roundtrip(c1, b"three\n")
    # a changed tunnel restarts: c1 ends, new connections flow
    reload({"tunnels": [dict(entry_t, connect_timeout="3s")]}, "reloaded")
    how, _ = fgnet.wait_closed(c1, 5)
    c1.close()
    data = os.urandom(100000)
    assert tn.transfer(net.cli, addr, data) == data


def test_entry_max_conns_and_max_conns_per_ip(nodes, targets, port, net):
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    start_exit(nodes, "tcp", True, lport, [f"{tn.TGT}:{tport}"])
    en = start_entry(nodes, "tcp", True, f"{tn.ENT_C}:{cport}",
                     [{"address": f"{tn.EXT}:{lport}"}], max_conns=3, max_conns_per_ip=2)
    addr = f"{tn.ENT_C}:{cport}"
    held = [net.cli.connect(addr, src="10.79.1.2") for _ in range(2)]
    for s in held:
        assert fgnet.echo_roundtrip(s, b"x\n")
    # a third from the same IP is refused, one from another IP is fine
    fgnet.assert_refused(net.cli.connect_refusable(addr, src="10.79.1.2"))
    other = net.cli.connect(addr, src="10.79.1.3")
    assert fgnet.echo_roundtrip(other, b"y\n")
    # max_conns (3) is reached: anyone is refused
    fgnet.assert_refused(net.cli.connect_refusable(addr, src="10.79.1.3"))
    en.wait_metric("flowgate_tunnel_refused_total", lambda v: v == 2)
    # a freed slot is usable again
    held.pop().close()
    en.wait_metric("flowgate_tunnel_connections_active", lambda v: v == 2)
    s = net.cli.connect(addr, src="10.79.1.2")
    assert fgnet.echo_roundtrip(s, b"z\n")
    for x in held + [other, s]:
        x.close()


def test_keepalive_notices_a_silently_dead_link_and_the_entry_redials(nodes, targets, port, net):
    """The exit's namespace starts dropping every packet of the link (no FIN, no RST):
    mux PINGs go unanswered, the entry ends the link within 3 keepalives, and once the
    path is back it dials again and new connections flow."""
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    start_exit(nodes, "aead", True, lport, [f"{tn.TGT}:{tport}"])
    en = start_entry(nodes, "aead", True, f"{tn.ENT_C}:{cport}",
                     next_link=tn.link("aead", True, keepalive="1s",
                                       peers=[{"address": f"{tn.EXT}:{lport}"}]))
    addr = f"{tn.ENT_C}:{cport}"
    assert tn.transfer(net.cli, addr, b"hello") == b"hello"
    en.wait_metric("flowgate_tunnel_links_up", lambda v: v == 1)
    ns = net.name["ext"]
    tn.sh("ip", "netns", "exec", ns, "nft", "-f", "-", input=f"""
table ip blackhole {{
  chain inp {{
    type filter hook input priority -10; policy accept;
    tcp dport {lport} drop
  }}
}}
""")
    try:
        t0 = time.monotonic()
        en.wait_metric("flowgate_tunnel_links_up", lambda v: v == 0, timeout=10)
        assert time.monotonic() - t0 <= 6.0
        assert "keepalive" in en.stderr()
    finally:
        tn.sh("ip", "netns", "exec", ns, "nft", "delete", "table", "ip", "blackhole")
    en.wait_metric("flowgate_tunnel_links_up", lambda v: v == 1, timeout=15)
    data = os.urandom(200000)
    assert tn.transfer(net.cli, addr, data) == data


@pytest.mark.parametrize("mux", [True, False], ids=["mux", "nomux"])
def test_relay_that_dials_back_to_the_entry_and_on_to_the_exit(nodes, targets, port, net, mux):
    """Two hops where the relay dials both: back to the entry (a reverse hop: it
    registers) and on to the exit (a forward hop)."""
    tport, l1, l2, cport = port(), port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    start_exit(nodes, "wss", mux, l2, [f"{tn.TGT}:{tport}"])
    ex = nodes.started[-1]
    en = start_entry(nodes, "tls", mux, f"{tn.ENT_C}:{cport}",
                     next_link=tn.link("tls", mux, listen=f"{tn.ENT_X}:{l1}"))
    relay_doc = {"tunnels": [{"name": "t", "id": "17", "role": "relay",
                              "prev": tn.link("tls", mux, peers=[peer_of(en, "tls",
                                                                         f"{tn.ENT_X}:{l1}")]),
                              "next": tn.link("wss", mux, peers=[peer_of(ex, "wss",
                                                                         f"{tn.EXT}:{l2}")])}]}
    rl = nodes("ext", relay_doc, "relay")
    en.wait_metric("flowgate_tunnel_links_up", lambda v: v >= 1)
    addr = f"{tn.ENT_C}:{cport}"
    big = os.urandom(2 << 20)
    assert hashlib.sha256(tn.transfer(net.cli, addr, big)).digest() == \
        hashlib.sha256(big).digest()
    ok, bad = tn.many_transfers(net.cli, addr, 50, 32 << 10)
    assert ok == 50, bad[:5]
    rl.wait_metric("flowgate_tunnel_connections_total", lambda v: v == 51)


def test_key_rotation_in_files_keeps_links_and_falls_back_for_a_peer_without_the_new_key(
        nodes, targets, port, net):
    """A key rotation as the server sends it ("keys": the new key to dial with, the
    old one still accepted), applied node by node with SIGHUP: a dialer whose peer
    has not got the new key yet (unknown key id) dials it again with the old key,
    so no client connection fails; the keys change in place, so a connection
    opened before keeps its link; once the old key is gone, a dialer that presents
    it is refused and nothing reaches the target."""
    tport, lport, cport, c2port = port(), port(), port(), port()
    tgt = targets("echo", f"{tn.TGT}:{tport}")
    old = tn.PSK  # id 7
    new = {"id": 8, "key": tn.WRONG_PSK["key"]}
    both = [dict(new, dial=True), old]
    ex = start_exit(nodes, "aead", False, lport, [f"{tn.TGT}:{tport}"])  # old key only
    peers = [{"address": f"{tn.EXT}:{lport}"}]

    def entry_t(**keys):
        return {"name": "t", "id": "17", "role": "entry", "listen": f"{tn.ENT_C}:{cport}",
                "next": {"transport": "aead", "mux": False, "peers": peers, **keys}}
    en = nodes("ent", {"tunnels": [entry_t(keys=both)]}, "entry")
    addr = f"{tn.ENT_C}:{cport}"

    # the entry got the new key first: every connection still goes through
    for i in range(5):
        data = os.urandom(50000 + i)
        assert tn.transfer(net.cli, addr, data) == data
    assert "does not know key id 8" in en.stderr()
    assert en.metric("flowgate_tunnel_refused_total") == 0
    c1 = net.cli.connect(addr)
    assert fgnet.echo_roundtrip(c1, b"before\n")

    def reload(node, doc):
        n = node.stderr().count("reloaded")
        node.write(doc)
        node.proc.signal(signal.SIGHUP)
        wait_for(lambda: node.stderr().count("reloaded") > n, 5, what="reloaded")

    exit_doc = {"tunnels": [{"name": "t", "id": "17", "role": "exit",
                             "targets": [f"{tn.TGT}:{tport}"],
                             "prev": {"transport": "aead", "mux": False,
                                      "listen": f"{tn.EXT}:{lport}"}}]}
    # the exit gets the rotation, then both drop the old key (the grace is over)
    exit_doc["tunnels"][0]["prev"]["keys"] = both
    reload(ex, exit_doc)
    assert "link keys changed" in ex.stderr()
    assert fgnet.echo_roundtrip(c1, b"exit rotated\n")
    del exit_doc["tunnels"][0]["prev"]["keys"]
    exit_doc["tunnels"][0]["prev"]["psk"] = new
    reload(ex, exit_doc)
    reload(en, {"tunnels": [entry_t(psk=new)]})
    # the connection from before the rotation kept its link throughout
    assert fgnet.echo_roundtrip(c1, b"after\n")
    c1.close()
    refused0 = ex.metric("flowgate_tunnel_handshakes_refused_total")
    for i in range(3):
        data = os.urandom(40000 + i)
        assert tn.transfer(net.cli, addr, data) == data
    assert ex.metric("flowgate_tunnel_handshakes_refused_total") == refused0

    # a node still dialing with the old key is refused; nothing reaches the target
    stale = nodes("ent", {"tunnels": [dict(entry_t(psk=old), name="s",
                                           listen=f"{tn.ENT_C}:{c2port}")]}, "stale")
    s = net.cli.connect_refusable(f"{tn.ENT_C}:{c2port}")
    fgnet.assert_refused(s, timeout=5)
    if s:
        s.close()
    ex.wait_metric("flowgate_tunnel_handshakes_refused_total", lambda v: v > refused0)
    assert "handshake refused by the peer: unknown key id" in stale.stderr()
    time.sleep(0.3)
    # the target saw exactly the 9 good connections (5 + c1 + 3)
    assert len([e for e in tgt.drain() if e.get("event") == "accept"]) == 9
