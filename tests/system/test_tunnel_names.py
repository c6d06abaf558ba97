"""Host names in tunnels: exits' targets and peers' addresses given as names are
resolved asynchronously (never at apply time, never blocking the loop) and re-resolved
when their TTL runs out (a hosts-file answer has none: the 5 s floor applies).

Names come from the namespaces' hosts files (tunnelnet.TunnelNet.set_hosts), which
c-ares reads at every lookup; the resolv.conf names a server that does not exist, so a
name missing from the file fails at once.
"""

import hashlib
import os
import signal
import time

import fgnet
import tunnelnet as tn
from fgnet import wait_for
from test_tunnel import net, nodes, targets

# pytest looks fixtures up by name in this module: the tunnel tests' namespaces,
# nodes and target servers
_FIXTURES = (net, nodes, targets)

REFRESH = 5.0  # the resolver's TTL floor (net/resolver.h)


def probe(ns, addr, timeout=3.0):
    """Which target answers a new stream: "echo" or the whoami target's "ip:port"."""
    s = ns.connect(addr, timeout=timeout)
    try:
        s.settimeout(timeout)
        s.sendall(b"?\n")
        line = fgnet.recv_line(s, timeout)
    finally:
        s.close()
    return "echo" if line == "?" else line.removeprefix("ME ")


def echo_round(s, n=64 << 10):
    data = os.urandom(n)
    s.sendall(data)
    got = fgnet.recv_exact(s, n, timeout=10.0)
    return hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def exit_doc(lport, target, transport="tcp", mux=True):
    return {"tunnels": [{"name": "t", "id": "17", "role": "exit", "targets": [target],
                         "prev": tn.link(transport, mux, listen=f"{tn.EXT}:{lport}")}]}


def entry_doc(cport, peer_addr, transport="tcp", mux=True):
    return {"tunnels": [{"name": "t", "id": "17", "role": "entry",
                         "listen": f"{tn.ENT_C}:{cport}",
                         "next": tn.link(transport, mux, peers=[{"address": peer_addr}])}]}


def refused(ns, addr):
    """A stream the tunnel cannot carry: the client sees its connection closed or
    reset without a byte."""
    try:
        got = tn.transfer(ns, addr, b"hello", timeout=10.0)
    except OSError:
        return True
    return got == b""


def test_exit_target_name_moves_new_streams_to_the_new_address_old_ones_stay(
        nodes, targets, port, net):
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    targets("whoami", f"{tn.TGT2}:{tport}")
    net.set_hosts("ext", {"fgtarget.test": tn.TGT})
    ex = nodes("ext", exit_doc(lport, f"fgtarget.test:{tport}"), "exit")
    en = nodes("ent", entry_doc(cport, f"{tn.EXT}:{lport}"), "entry")
    addr = f"{tn.ENT_C}:{cport}"

    wait_for(lambda: probe(net.cli, addr) == "echo", 5, what="the name's first address")
    big = os.urandom(2 << 20)
    got = tn.transfer(net.cli, addr, big)
    assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()

    old = net.cli.connect(addr, timeout=5.0)
    old.settimeout(10.0)
    try:
        assert echo_round(old)
        net.set_hosts("ext", {"fgtarget.test": tn.TGT2})
        t0 = time.monotonic()
        wait_for(lambda: probe(net.cli, addr) == f"{tn.TGT2}:{tport}", REFRESH + 5,
                 interval=0.2, what="new streams to reach the name's new address")
        took = time.monotonic() - t0
        assert took < REFRESH + 3, f"new address used only after {took:.1f}s"
        # the stream opened before the change still reaches the first target
        assert echo_round(old)
        assert echo_round(old)
    finally:
        old.close()
    # from now on every new stream goes to the new address
    for _ in range(5):
        assert probe(net.cli, addr) == f"{tn.TGT2}:{tport}"
    err = ex.stderr()
    assert f'targets[0] "fgtarget.test" is {tn.TGT}' in err, err[-2000:]
    assert f'targets[0] "fgtarget.test" is {tn.TGT2} now' in err, err[-2000:]
    assert en.metric("flowgate_tunnel_refused_total") == 0
    assert ex.metric("flowgate_tunnel_refused_total") == 0
    assert ex.metric("flowgate_tunnel_names_unresolved") == 0


def test_exit_whose_target_name_does_not_resolve_applies_refuses_then_carries(
        nodes, targets, port, net):
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    net.set_hosts("ext", {})
    t0 = time.monotonic()
    # wait_up: the exit's link port listens although its only target has no address
    ex = nodes("ext", exit_doc(lport, f"fglate.test:{tport}"), "exit")
    assert time.monotonic() - t0 < 5, "apply waited for DNS"
    en = nodes("ent", entry_doc(cport, f"{tn.EXT}:{lport}"), "entry")
    en.wait_metric("flowgate_tunnel_links_up", lambda v: v >= 1)
    addr = f"{tn.ENT_C}:{cport}"

    ex.wait_metric("flowgate_tunnel_names_unresolved", lambda v: v == 1)
    for _ in range(3):
        assert refused(net.cli, addr)
    ex.wait_metric("flowgate_tunnel_refused_total", lambda v: v == 3)
    # said once, clearly, not once per stream
    err = ex.stderr()
    line = 'targets[0] "fglate.test": cannot resolve'
    assert err.count(line) == 1, err[-2000:]
    assert "streams to it are refused until it resolves" in err
    assert "no target reachable" not in err

    net.set_hosts("ext", {"fglate.test": tn.TGT})
    t1 = time.monotonic()
    wait_for(lambda: probe(net.cli, addr) == "echo", REFRESH + 5, interval=0.2,
             what="the name to resolve")
    assert time.monotonic() - t1 < REFRESH + 3
    big = os.urandom(1 << 20)
    got = tn.transfer(net.cli, addr, big)
    assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
    ex.wait_metric("flowgate_tunnel_names_unresolved", lambda v: v == 0)
    err = ex.stderr()
    assert err.count(line) == 1, err[-2000:]
    assert f'targets[0] "fglate.test" is {tn.TGT}' in err


def test_entry_whose_peer_name_does_not_resolve_applies_then_dials_once_it_does(
        nodes, targets, port, net):
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    ex = nodes("ext", exit_doc(lport, f"{tn.TGT}:{tport}", "tls", True), "exit")
    net.set_hosts("ent", {})
    doc = entry_doc(cport, f"fgexit.test:{lport}", "tls", True)
    doc["tunnels"][0]["next"]["peers"][0]["fingerprint"] = ex.fingerprint()
    en = nodes("ent", doc, "entry")  # its client port listens
    en.wait_metric("flowgate_tunnel_names_unresolved", lambda v: v == 1)
    time.sleep(1.0)
    assert en.metric("flowgate_tunnel_links_up") == 0
    # no dial happened, so none failed: the name is the reason, said once
    assert en.metric("flowgate_tunnel_link_failures_total") == 0
    assert en.stderr().count('next.peers[0] "fgexit.test": cannot resolve') == 1

    net.set_hosts("ent", {"fgexit.test": tn.EXT})
    en.wait_metric("flowgate_tunnel_links_up", lambda v: v == 1, timeout=REFRESH + 5)
    addr = f"{tn.ENT_C}:{cport}"
    big = os.urandom(1 << 20)
    got = tn.transfer(net.cli, addr, big)
    assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
    en.wait_metric("flowgate_tunnel_names_unresolved", lambda v: v == 0)
    assert f'next.peers[0] "fgexit.test" is {tn.EXT}:{lport}' in en.stderr()


def test_entry_peer_name_moves_new_links_to_the_new_exit_old_stream_stays(nodes, targets, port,
                                                                         net):
    """Mux off: a link per stream, so each new stream dials the peer's current address."""
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    targets("whoami", f"{tn.TGT2}:{tport}")
    nodes("ext", {"tunnels": [{"name": "t", "id": "17", "role": "exit",
                               "targets": [f"{tn.TGT}:{tport}"],
                               "prev": tn.link("aead", False, listen=f"{tn.EXT}:{lport}")}]},
          "exit-a")
    nodes("ext", {"tunnels": [{"name": "t", "id": "17", "role": "exit",
                               "targets": [f"{tn.TGT2}:{tport}"],
                               "prev": tn.link("aead", False, listen=f"{tn.EXT2}:{lport}")}]},
          "exit-b")
    net.set_hosts("ent", {"fgexit.test": tn.EXT})
    en = nodes("ent", entry_doc(cport, f"fgexit.test:{lport}", "aead", False), "entry")
    addr = f"{tn.ENT_C}:{cport}"
    wait_for(lambda: probe(net.cli, addr) == "echo", 5, what="the peer name to resolve")
    old = net.cli.connect(addr, timeout=5.0)
    old.settimeout(10.0)
    try:
        assert echo_round(old)
        net.set_hosts("ent", {"fgexit.test": tn.EXT2})
        t0 = time.monotonic()
        wait_for(lambda: probe(net.cli, addr) == f"{tn.TGT2}:{tport}", REFRESH + 5,
                 interval=0.2, what="new links to reach the second exit")
        assert time.monotonic() - t0 < REFRESH + 3
        assert echo_round(old)  # its link still goes to the first exit
    finally:
        old.close()
    assert f'next.peers[0] "fgexit.test" is {tn.EXT2}:{lport} now' in en.stderr()
    assert en.metric("flowgate_tunnel_refused_total") == 0


def test_a_changed_tunnel_keeps_its_names_addresses_when_lookups_fail_after_restart(
        nodes, targets, port, net):
    """SIGHUP with a changed tunnel restarts it with new name slots; they start from the
    running tunnel's addresses, so a lookup that now fails refuses nothing."""
    tport, lport, cport = port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    net.set_hosts("ext", {"fgtarget.test": tn.TGT})
    net.set_hosts("ent", {"fgexit.test": tn.EXT})
    ex_doc = exit_doc(lport, f"fgtarget.test:{tport}", "aead", False)
    en_doc = entry_doc(cport, f"fgexit.test:{lport}", "aead", False)
    ex = nodes("ext", ex_doc, "exit")
    en = nodes("ent", en_doc, "entry")
    addr = f"{tn.ENT_C}:{cport}"
    wait_for(lambda: probe(net.cli, addr) == "echo", 5, what="both names to resolve")

    # both names vanish, then both tunnels change (a new connect_timeout): restarted
    net.set_hosts("ext", {})
    net.set_hosts("ent", {})
    for node, doc in ((ex, ex_doc), (en, en_doc)):
        n = node.stderr().count("reloaded")
        doc["tunnels"][0]["connect_timeout"] = "3s"
        node.write(doc)
        node.proc.signal(signal.SIGHUP)
        wait_for(lambda: node.stderr().count("reloaded") > n, 5, what=f"{node.name} reload")
    wait_for(lambda: "cannot resolve" in ex.stderr() and "cannot resolve" in en.stderr(), 5,
             what="the restarted tunnels' lookups to fail")
    # every stream, right after the restart and after the failed lookups, is carried
    for _ in range(5):
        data = os.urandom(256 << 10)
        got = tn.transfer(net.cli, addr, data)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert 'targets[0] "fgtarget.test": cannot resolve' in ex.stderr()
    assert "keeping its last address" in ex.stderr()
    assert "keeping its last address" in en.stderr()
    assert en.metric("flowgate_tunnel_refused_total") == 0
    assert ex.metric("flowgate_tunnel_refused_total") == 0


def test_a_dead_name_server_does_not_stall_other_tunnels(nodes, targets, port, net):
    """A name server that never answers (packets dropped) delays only its own name: a
    tunnel next to it on the same node keeps carrying bytes meanwhile."""
    tport, l1, l2, c1 = port(), port(), port(), port()
    targets("echo", f"{tn.TGT}:{tport}")
    resolv = f"/etc/netns/{net.name['ext']}/resolv.conf"
    with open(resolv) as f:
        saved = f.read()
    try:
        # 10.79.3.200 is on tgt's link but nobody has it: queries go unanswered
        with open(resolv, "r+") as f:
            f.seek(0)
            f.write("nameserver 10.79.3.200\noptions timeout:5 attempts:3\n")
            f.truncate()
        net.set_hosts("ext", {})
        doc = {"tunnels": [
            {"name": "t", "id": "17", "role": "exit", "targets": [f"{tn.TGT}:{tport}"],
             "prev": tn.link("tcp", True, listen=f"{tn.EXT}:{l1}")},
            {"name": "slow", "id": "18", "role": "exit",
             "targets": [f"fgnowhere.test:{tport}"],
             "prev": tn.link("tcp", True, listen=f"{tn.EXT}:{l2}")}]}
        t0 = time.monotonic()
        nodes("ext", doc, "exit")
        assert time.monotonic() - t0 < 5, "apply waited for the name server"
        nodes("ent", entry_doc(c1, f"{tn.EXT}:{l1}"), "entry")
        addr = f"{tn.ENT_C}:{c1}"
        wait_for(lambda: probe(net.cli, addr) == "echo", 5, what="the IP tunnel")
        # while the lookup of the other tunnel's name hangs, bytes keep flowing
        end = time.monotonic() + 3
        while time.monotonic() < end:
            t = time.monotonic()
            assert probe(net.cli, addr) == "echo"
            assert time.monotonic() - t < 1.0
    finally:
        with open(resolv, "r+") as f:
            f.seek(0)
            f.write(saved)
            f.truncate()
