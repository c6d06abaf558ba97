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
    addr = f"{tn.ENT_C}:{cport}"

    big = os.urandom(8 << 20)
    got = tn.transfer(net.cli, addr, big)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(big).hexdigest(), \
        f"8 MiB echo differs: got {len(got)} bytes"

    ok, bad = tn.many_transfers(net.cli, addr, 200, 32 << 10)
    assert ok == 200, f"{200 - ok} of 200 concurrent streams failed: {bad[:5]}"

    total = len(big) + 200 * (32 << 10)
    # counters equal the bytes delivered: up at the exit (to the target), down at
    # the entry (to the client); each side's own direction too
    ex.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == total, direction="up")
    en.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == total, direction="down")
    en.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == total, direction="up")
    ex.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == total, direction="down")
    en.wait_metric("flowgate_tunnel_connections_total", lambda v: v == 201)
    en.wait_metric("flowgate_tunnel_connections_active", lambda v: v == 0)
    ex.wait_metric("flowgate_tunnel_connections_active", lambda v: v == 0)
    assert en.metric("flowgate_tunnel_refused_total") == 0


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


def test_replayed_handshake_is_refused_before_any_byte_reaches_the_target(nodes, targets, port,
                                                                          net):
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
    # replay the whole captured dialer side on fresh connections
    for _ in range(3):
        r = net.ent.connect(f"{tn.EXT}:{lport}")
        r.sendall(captured)
        how, data = fgnet.wait_closed(r, 5)
        r.close()
        assert b"FGT\x01\x03" not in data  # no ACCEPT
    ex.wait_metric("flowgate_tunnel_handshakes_refused_total", lambda v: v == refused0 + 3)
    time.sleep(0.3)
    accepts = [e for e in tgt.drain() if e.get("event") == "accept"]
    assert len(accepts) == 1, f"a replayed handshake reached the target: {accepts}"
