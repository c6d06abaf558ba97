"""Tunnels on several threads (`flowgate forward -c FILE --tunnel-workers 2`): each node
runs its tunnels on two shards, the kernel spreading client and link connections over
them (SO_REUSEPORT). What must stay exact across the threads: the bytes (SHA-256 both
ways), the counters (summed over the shards), max_conns / max_conns_per_ip (one count
per tunnel), and the replay cache (a handshake seen by one thread is refused by the
other). Same namespaces as test_tunnel.py (tunnelnet.py).
"""

import base64
import hashlib
import hmac
import os
import struct
import threading
import signal
import socket
import time

import pytest

import fgnet
import tunnelnet as tn
from fgnet import wait_for
from test_tunnel import (check_replay_refused, net, nodes, peer_of, targets,  # noqa: F401 (fixtures)
                         start_entry, start_exit)

MT = ("--tunnel-workers", "2")


def mt_exit(nodes, transport, mux, link_port, tgts, **kw):
    doc = {"tunnels": [{"name": "t", "id": "17", "role": "exit", "targets": tgts,
                        "prev": tn.link(transport, mux, listen=f"{tn.EXT}:{link_port}"),
                        **kw}]}
    return nodes("ext", doc, "exit", extra=MT)


def mt_entry(nodes, transport, mux, listen, peers, **kw):
    doc = {"tunnels": [{"name": "t", "id": "17", "role": "entry", "listen": listen,
                        "next": tn.link(transport, mux, peers=peers), **kw}]}
    return nodes("ent", doc, "entry", extra=MT)


def tunnel_threads(node):
    """Names of the node's tunnel shard threads (shard 0 is the main thread)."""
    pid = node.proc.proc.pid
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return sorted(n for n in names if n.startswith("fg-tunnel-"))


@pytest.mark.parametrize("mux", [True, False], ids=["mux", "nomux"])
@pytest.mark.parametrize("transport", ["tcp", "tls", "wss"])
def test_two_tunnel_threads_carry_exact_bytes_and_counters(nodes, targets, port, net,
                                                           transport, mux):
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    ex = mt_exit(nodes, transport, mux, lport, [f"{tn.TGT}:{tport}"])
    en = mt_entry(nodes, transport, mux, f"{tn.ENT_C}:{cport}",
                  [peer_of(ex, transport, f"{tn.EXT}:{lport}")])
    assert tunnel_threads(en) == ["fg-tunnel-1"] and tunnel_threads(ex) == ["fg-tunnel-1"]
    # the counters of both shards add up to exactly the bytes delivered
    tn.echo_load_exact(net, en, ex, f"{tn.ENT_C}:{cport}")
    if mux:
        # each entry shard keeps its own mux link to the exit: two links, and the
        # exit's shards between them hold both
        en.wait_metric("flowgate_tunnel_links_up", lambda v: v == 2)
        ex.wait_metric("flowgate_tunnel_links_up", lambda v: v == 2)
    if transport in ("tls", "wss") and not mux:
        # one TLS context per node for all threads: after the first link (the 8 MiB
        # stream), every link resumes, whichever thread dials it or accepts it
        en.wait_metric("flowgate_tunnel_tls_resumed_total", lambda v: v == 200)
        ex.wait_metric("flowgate_tunnel_tls_resumed_total", lambda v: v == 200)
    rtt = "flowgate_tunnel_link_rtt_microseconds"
    en.wait_metric(rtt, lambda v: 0 < v < 200_000, side="next")
    ex.wait_metric(rtt, lambda v: 0 < v < 200_000, side="prev")


def test_max_conns_is_exact_across_threads(nodes, targets, port, net):
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    ex = mt_exit(nodes, "tcp", True, lport, [f"{tn.TGT}:{tport}"])
    en = mt_entry(nodes, "tcp", True, f"{tn.ENT_C}:{cport}",
                  [{"address": f"{tn.EXT}:{lport}"}], max_conns=12, max_conns_per_ip=8)
    addr = f"{tn.ENT_C}:{cport}"
    held = []
    # 8 from one IP (its limit), spread by the kernel over both threads; the 9th
    # from that IP is refused whichever thread gets it
    for _ in range(8):
        s = net.cli.connect(addr, src="10.79.1.2")
        assert fgnet.echo_roundtrip(s, b"a\n")
        held.append(s)
    for _ in range(4):
        fgnet.assert_refused(net.cli.connect_refusable(addr, src="10.79.1.2"))
    # 4 more from another IP reach max_conns (12); then anyone is refused
    for _ in range(4):
        s = net.cli.connect(addr, src="10.79.1.3")
        assert fgnet.echo_roundtrip(s, b"b\n")
        held.append(s)
    for _ in range(6):
        fgnet.assert_refused(net.cli.connect_refusable(addr, src="10.79.1.3"))
    en.wait_metric("flowgate_tunnel_refused_total", lambda v: v == 10)
    en.wait_metric("flowgate_tunnel_connections_active", lambda v: v == 12)
    ex.wait_metric("flowgate_tunnel_connections_active", lambda v: v == 12)
    # freed places are usable again, on any thread, and only that many
    for s in held[:3]:
        s.close()
    del held[:3]
    en.wait_metric("flowgate_tunnel_connections_active", lambda v: v == 9)
    for _ in range(3):
        s = net.cli.connect(addr, src="10.79.1.3")
        assert fgnet.echo_roundtrip(s, b"c\n")
        held.append(s)
    fgnet.assert_refused(net.cli.connect_refusable(addr, src="10.79.1.3"))
    en.wait_metric("flowgate_tunnel_refused_total", lambda v: v == 11)
    for s in held:
        s.close()
    en.wait_metric("flowgate_tunnel_connections_active", lambda v: v == 0)


def test_a_replayed_handshake_is_refused_by_every_thread(nodes, targets, port, net):
    """The captured dialer side is replayed 12 times on fresh connections: the kernel
    puts them on both of the exit's threads, and each refuses (one replay cache per
    node), so nothing but the original stream reaches the target."""
    check_replay_refused(nodes, targets, port, net, mt_exit, mt_entry, 12)


def hs_dial(ns, addr, psk, dialer_nonce, tunnel_id=17, mux=0):
    """A dialer speaking the link handshake (doc/tunnel-protocol.md) over plain tcp
    with a dialer nonce of the caller's choice and a valid MAC: what a peer holding
    the key could send after the listener's nonce repeated. Returns the listener's
    answer: ("accept", b"") or ("refuse", reason)."""
    key = base64.b64decode(psk["key"])
    s = ns.connect(addr)
    try:
        hello = fgnet.recv_exact(s, 37, timeout=5)
        assert hello[:5] == b"FGT\x01\x01", hello
        req = bytes([0x01, 1, 1]) + bytes([0x02, 4]) + struct.pack(">I", tunnel_id) + \
            bytes([0x07, 1, mux])
        auth = b"FGT\x01\x02" + struct.pack(">I", psk["id"]) + dialer_nonce + \
            struct.pack(">QH", int(time.time()), len(req)) + req
        mac = hmac.new(key, b"flowgate hs v1 dialer" + b"\x00" + hello + auth,
                       hashlib.sha256).digest()
        s.sendall(auth + mac)
        head = fgnet.recv_exact(s, 6, timeout=5)
        if head[:5] == b"FGT\x01\x04":
            return "refuse", head[5]
        assert head[:5] == b"FGT\x01\x03", head
        return "accept", b""
    finally:
        s.close()


def test_a_repeated_dialer_nonce_is_refused_by_every_thread(nodes, targets, port, net):
    """The replay cache itself, across threads: a dialer holding the key authenticates
    once with a nonce, then again and again with the same nonce (each AUTH correctly
    MACed over the new HELLO, as if the listener's nonce had repeated). The kernel
    puts those connections on both of the exit's threads; every one after the first
    is refused as a replay (REFUSE reason 5), so one cache serves the node."""
    tport, lport = port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    ex = mt_exit(nodes, "tcp", False, lport, [f"{tn.TGT}:{tport}"])
    addr = f"{tn.EXT}:{lport}"
    # a fresh nonce is accepted on both threads (the test dialer is right), many times
    for _ in range(8):
        assert hs_dial(net.ent, addr, tn.PSK, os.urandom(32)) == ("accept", b"")
    nonce = os.urandom(32)
    assert hs_dial(net.ent, addr, tn.PSK, nonce) == ("accept", b"")
    refused0 = ex.metric("flowgate_tunnel_handshakes_refused_total")
    n = 16
    answers = [hs_dial(net.ent, addr, tn.PSK, nonce) for _ in range(n)]
    assert answers == [("refuse", 5)] * n, answers
    ex.wait_metric("flowgate_tunnel_handshakes_refused_total", lambda v: v == refused0 + n)


def test_reverse_tunnel_and_reload_with_two_threads(nodes, targets, port, net):
    """A reverse hop runs on the first thread only (its links are registered by the
    far side); it still carries every stream. SIGHUP with the file unchanged keeps an
    open stream; a bad file changes nothing."""
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.PRV}:{tport}", role="prv")
    doc = {"tunnels": [{"name": "t", "id": "17", "role": "entry",
                        "listen": f"{tn.ENT_C}:{cport}",
                        "next": tn.link("tls", True, listen=f"{tn.ENT_N}:{lport}")}]}
    en = nodes("ent", doc, "entry", extra=MT)
    prev = tn.link("tls", True, peers=[peer_of(en, "tls", f"{tn.ENT_N}:{lport}")])
    xdoc = {"tunnels": [{"name": "t", "id": "17", "role": "exit",
                         "targets": [f"{tn.PRV}:{tport}"], "prev": prev}]}
    nodes("prv", xdoc, "exit", extra=MT)
    # one registered link: the exit dials it from one thread, the entry holds it on one
    en.wait_metric("flowgate_tunnel_links_up", lambda v: v == 1)
    addr = f"{tn.ENT_C}:{cport}"
    ok, bad = tn.many_transfers(net.cli, addr, 100, 16 << 10)
    assert ok == 100, f"{100 - ok} of 100 streams failed: {bad[:5]}"
    time.sleep(0.5)
    assert en.metric("flowgate_tunnel_links_up") == 1

    c1 = net.cli.connect(addr)
    assert fgnet.echo_roundtrip(c1, b"one\n")

    def reload(d, expect):
        k = en.stderr().count(expect)
        en.write(d)
        en.proc.signal(signal.SIGHUP)
        wait_for(lambda: en.stderr().count(expect) > k, 5, what=expect)

    reload(doc, "reloaded")
    assert fgnet.echo_roundtrip(c1, b"two\n")
    bad_doc = {"tunnels": [dict(doc["tunnels"][0], next=dict(doc["tunnels"][0]["next"],
                                                               transport="quic"))]}
    reload(bad_doc, "reload rejected")
    assert fgnet.echo_roundtrip(c1, b"three\n")
    c1.close()


def test_tunnel_workers_out_of_range_exits_2(fg_bin, net, logdir):
    path = os.path.join(logdir, "mt.json")
    with open(path, "w") as f:
        f.write('{"tunnels": []}')
    for bad in ("0", "65", "two"):
        r = tn.sh("ip", "netns", "exec", net.name["ent"], fg_bin, "forward", "-c", path,
                  "--tunnel-workers", bad, check=False)
        assert r.returncode == 2, r.stderr
        assert f'--tunnel-workers: "{bad}" is not a number 1-64' in r.stderr


def test_aggregate_rate_down_is_one_bucket_across_threads(nodes, targets, port, net):
    """rate_down is the tunnel's, not each thread's: 8 clients (spread by the kernel over
    both of the entry's threads) downloading together get burst + rate x T in all."""
    sport, lport, cport = port(), port(), port()
    each = 768 << 10
    targets("source", f"{tn.TGT}:{sport}", bytes=each, seed=9)
    mt_exit(nodes, "tcp", True, lport, [f"{tn.TGT}:{sport}"])
    mt_entry(nodes, "tcp", True, f"{tn.ENT_C}:{cport}", [{"address": f"{tn.EXT}:{lport}"}],
             rate_down="16mbit", burst="64KiB")
    addr = f"{tn.ENT_C}:{cport}"
    socks = [net.cli.connect(addr) for _ in range(8)]
    got = [None] * len(socks)

    def recv(i):
        got[i] = fgnet.recv_all(socks[i], timeout=30)

    t0 = time.monotonic()
    th = [threading.Thread(target=recv, args=(i,)) for i in range(len(socks))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    want = fgnet.stream_sha256(9, each)
    assert all(hashlib.sha256(g).hexdigest() == want for g in got), [len(g) for g in got]
    expect = (len(socks) * each - 65536) / 2_000_000
    assert expect * 0.85 <= elapsed <= expect * 1.3, \
        f"8 x 768 KiB at 16 mbit took {elapsed:.2f}s, expected about {expect:.2f}s"
