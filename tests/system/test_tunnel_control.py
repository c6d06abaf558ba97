"""Tunnels through the control plane: `flowgate server` and three agents in
their own namespaces (the topology of test_control_plane.py, under the
prefix fgq-), driven through /api/v1/tunnels.

What is pinned: a tunnel created by the API lands on its entry, hop and exit
with the right roles, each side's peers at the other's address and with the
other agent's real certificate fingerprint, one PSK shared by both ends of
every link; invalid tunnels are 400 naming the field and change nothing;
collisions with forwards are 409; the PSK never appears in an API answer
(tunnel, list, export, audit, live) nor in the SQLite files in plaintext;
a node's new address reaches the nodes that dial it; export/import carries
tunnels. Once the agents run the tunnel engine, bytes sent into the entry
come out at the target unchanged (hash-checked) and are counted. A node with
a firewall policy and a tunnel gets both in one document and runs both (the
policy's counter sees the tunnel's client; disabling it leaves the tunnel).
"""

import base64
import hashlib
import json
import os
import queue
import signal
import socket
import ssl
import stat
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fgnet  # noqa: E402
import fgplane  # noqa: E402
import test_control_plane as cp  # noqa: E402
import tunnelnet  # noqa: E402
from fgnet import wait_for  # noqa: E402

PREFIX = "fgq-"
NODE_IPS = cp.NODE_IPS
TG_IP = cp.TG_IP


@pytest.fixture(scope="module")
def plane():
    # test_control_plane's network under its own names, so both modules
    # can run in one session
    p = fgplane.start(fgplane.Plane(PREFIX, {"srv": cp.SRV_IP, "cl": cp.CL_IP, "tg": TG_IP,
                                             **NODE_IPS}))
    yield p
    p.destroy()


@pytest.fixture
def fleet(plane, fg_bin, tmp_path, request):
    f = cp.Fleet(plane, fg_bin, tmp_path, request)
    yield f
    problems = f.stop()
    if problems and not getattr(request.node, "_call_failed", False):
        pytest.fail("\n".join(problems), pytrace=False)


def state_of(fleet, node):
    """The agent's last applied document (state.json)."""
    with open(fleet.tmp / f"agent-{node}" / "state.json") as f:
        return json.load(f)["state"]


def tunnels_of(fleet, node):
    return {t["name"]: t for t in state_of(fleet, node).get("tunnels", [])}


def cert_fingerprint(fleet, node):
    """SHA-256 of the agent's own certificate, as `openssl x509 -fingerprint`."""
    with open(fleet.tmp / f"agent-{node}" / "node.crt") as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, 64, 2))


def wait_tunnel_on(fleet, node, name, pred=lambda t: True, timeout=10):
    last = [None]

    def ok():
        fleet.wait_applied(node)
        last[0] = tunnels_of(fleet, node).get(name)
        return last[0] is not None and pred(last[0])
    try:
        wait_for(ok, timeout, interval=0.1, what=f"tunnel {name} on {node}")
    except fgnet.Timeout:
        raise AssertionError(f"tunnel {name} not as wanted on {node}: {last[0]}\n"
                             f"{fleet.logs()}") from None
    return last[0]


def chain_body(name="db", **extra):
    body = {"name": name, "entry": {"node": "n1", "listen": "0.0.0.0:7201"},
            "hops": ["n2"], "exit": "n3", "target": f"{TG_IP}:9201", "link_port": 7301}
    body.update(extra)
    return body


def test_api_tunnel_lands_on_entry_hop_and_exit_with_roles_pins_and_one_psk(fleet):
    # every agent told the server its certificate; the session address is recorded
    for node, ip in NODE_IPS.items():
        n = fleet.node(node)
        assert n["fingerprint"] == cert_fingerprint(fleet, node)
        assert n["session_address"] == ip
        assert n["address"] is None
    t = fleet.api.ok("POST", "/tunnels", chain_body(transport="tls", rate_down="50mbit",
                                                      max_conns=10))
    assert t["entry"] == {"node": "n1", "listen": "0.0.0.0:7201"}
    assert [p["role"] for p in t["path"]] == ["entry", "relay", "exit"]
    assert [p["nodes"][0]["name"] for p in t["path"]] == ["n1", "n2", "n3"]
    assert "psk" not in json.dumps(t)

    entry = wait_tunnel_on(fleet, "n1", "db")
    relay = wait_tunnel_on(fleet, "n2", "db")
    exit_ = wait_tunnel_on(fleet, "n3", "db")
    assert (entry["role"], relay["role"], exit_["role"]) == ("entry", "relay", "exit")
    assert entry["id"] == relay["id"] == exit_["id"] == str(t["id"])
    # entry: clients on 7201, limits; dials the hop at its address with its pin
    assert entry["listen"] == "0.0.0.0:7201"
    assert entry["rate_down"] == "50mbit" and entry["max_conns"] == 10
    assert entry["next"]["transport"] == "tls"
    assert entry["next"]["peers"] == [{"address": f"{NODE_IPS['n2']}:7301", "node": "n2",
                                       "fingerprint": cert_fingerprint(fleet, "n2")}]
    # hop: accepts the entry, dials the exit with the exit's pin
    assert relay["prev"]["listen"] == "0.0.0.0:7301"
    assert relay["next"]["peers"] == [{"address": f"{NODE_IPS['n3']}:7301", "node": "n3",
                                       "fingerprint": cert_fingerprint(fleet, "n3")}]
    # exit: accepts the hop, dials only the target
    assert exit_["prev"]["listen"] == "0.0.0.0:7301"
    assert exit_["targets"] == [f"{TG_IP}:9201"]
    assert "next" not in exit_ and "prev" not in entry
    # one PSK on both ends of both links, 32 random bytes, id = the tunnel's id
    keys = {entry["next"]["psk"]["key"], relay["prev"]["psk"]["key"],
            relay["next"]["psk"]["key"], exit_["prev"]["psk"]["key"]}
    assert len(keys) == 1
    assert len(base64.b64decode(keys.pop())) == 32
    assert entry["next"]["psk"]["id"] == t["id"]
    # a node outside the tunnel gets nothing of it
    fleet.api.ok("DELETE", "/tunnels/db")
    for node in NODE_IPS:
        wait_for(lambda: "db" not in tunnels_of(fleet, node), 10, interval=0.1,
                 what=f"tunnel gone from {node}")


def test_reverse_tunnel_exit_dials_back_to_the_entry(fleet):
    t = fleet.api.ok("POST", "/tunnels", {
        "name": "nat", "entry": {"node": "n1", "listen": "7202"}, "exit": "n3",
        "target": f"{TG_IP}:9202", "direction": "exit_to_entry", "transport": "aead",
        "mux": False})
    assert t["link_port"] >= 20000  # allocated
    entry = wait_tunnel_on(fleet, "n1", "nat")
    exit_ = wait_tunnel_on(fleet, "n3", "nat")
    assert entry["next"]["listen"] == f"0.0.0.0:{t['link_port']}"
    assert exit_["prev"]["peers"] == [{"address": f"{NODE_IPS['n1']}:{t['link_port']}",
                                       "node": "n1"}]  # aead: nothing to pin
    assert "nat" not in tunnels_of(fleet, "n2")


BAD = [
    ({"entry": {"node": "n1", "listen": "7210"}, "exit": "n3", "target": "x:1"}, "name"),
    (chain_body(bogus=1), "bogus"),
    (chain_body(entry={"node": "nope", "listen": "7210"}), "entry.node"),
    (chain_body(entry={"node": "n1"}), "entry.listen"),
    (chain_body(entry={"node": "n1", "listen": "0.0.0.0:70000"}), "entry.listen"),
    (chain_body(hops=["n2", "ghost"]), "hops[1]"),
    (chain_body(hops=["n3"]), "hops[0]"),
    (chain_body(exit="n1"), "exit"),
    (chain_body(exits=["n3"]), "exits"),
    (chain_body(target="no-port"), "target"),
    (chain_body(transport="quic"), "transport"),
    (chain_body(direction="sideways"), "direction"),
    (chain_body(links=[{}]), "links"),
    (chain_body(links=[{}, {"transport": "ws", "ws_path": "x"}]), "links[1].ws_path"),
    (chain_body(ws_host="cdn.example"), "ws_host"),
    (chain_body(rate_up="fast"), "rate_up"),
    (chain_body(max_conns=-1), "max_conns"),
    (chain_body(link_port=0), "link_port"),
    (chain_body(enabled="yes"), "enabled"),
]


@pytest.mark.parametrize("body,field", BAD, ids=[f for _, f in BAD])
def test_invalid_tunnel_is_400_naming_the_field_and_changes_nothing(fleet, body, field):
    revs = {n: fleet.node(n)["desired_rev"] for n in NODE_IPS}
    st, b = fleet.api.post("/tunnels", body)
    assert st == 400, b
    assert b["error"]["field"] == field, b
    assert field.split("[")[0].split(".")[0] in b["error"]["message"], b
    assert fleet.api.ok("GET", "/tunnels")["tunnels"] == []
    assert {n: fleet.node(n)["desired_rev"] for n in NODE_IPS} == revs


def test_ports_and_names_collide_with_forwards_and_tunnels(fleet):
    fleet.api.ok("POST", "/forwards", {"name": "web", "node": "n1", "listen": "7220",
                                       "targets": [f"{TG_IP}:9220"]})
    # the entry port is a forward's
    st, b = fleet.api.post("/tunnels", chain_body(entry={"node": "n1", "listen": "7220"}))
    assert (st, b["error"]["code"], b["error"]["field"]) == (409, "conflict", "entry.listen")
    assert "forward \"web\"" in b["error"]["message"]
    # a name a forward has
    st, b = fleet.api.post("/tunnels", chain_body(name="web"))
    assert (st, b["error"]["field"]) == (409, "name")
    fleet.api.ok("POST", "/tunnels", chain_body(name="t1"))
    # a second tunnel on the same link port of the hop
    st, b = fleet.api.post("/tunnels", chain_body(name="t2", entry={"node": "n1",
                                                                     "listen": "7221"}))
    assert (st, b["error"]["field"]) == (409, "link_port")
    assert "tunnel \"t1\"" in b["error"]["message"] and "n2" in b["error"]["message"]
    # a forward onto the tunnel's ports, by name or port
    st, b = fleet.api.post("/forwards", {"name": "f2", "node": "n2", "listen": "7301",
                                         "targets": [f"{TG_IP}:1"]})
    assert (st, b["error"]["field"]) == (409, "listen")
    st, b = fleet.api.post("/forwards", {"name": "t1", "node": "n2", "listen": "7399",
                                         "targets": [f"{TG_IP}:1"]})
    assert (st, b["error"]["field"]) == (409, "name")
    # PATCH moves it; the old port is free again
    fleet.api.ok("PATCH", "/tunnels/t1", {"link_port": 7302})
    fleet.api.ok("POST", "/forwards", {"name": "f2", "node": "n2", "listen": "7301",
                                       "targets": [f"{TG_IP}:1"]})
    relay = wait_tunnel_on(fleet, "n2", "t1", lambda t: t["prev"]["listen"].endswith(":7302"))
    assert relay["prev"]["listen"] == "0.0.0.0:7302"


def _needles(key_b64):
    raw = base64.b64decode(key_b64)
    return [key_b64, raw.hex(), raw.hex().upper(), base64.urlsafe_b64encode(raw).decode(),
            base64.b64encode(raw).decode().rstrip("=")]


def test_psk_never_in_api_answers_nor_in_the_store_file(fleet):
    created = fleet.api.ok("POST", "/tunnels", chain_body())
    key = wait_tunnel_on(fleet, "n1", "db")["next"]["psk"]["key"]
    patched = fleet.api.ok("PATCH", "/tunnels/db", {"mux": False})
    answers = [created, patched,
               fleet.api.ok("GET", "/tunnels"), fleet.api.ok("GET", "/tunnels/db"),
               fleet.api.ok("GET", f"/tunnels/{created['id']}"),
               fleet.api.ok("GET", "/tunnels?node=n2"),
               fleet.api.ok("GET", "/export"), fleet.api.ok("GET", "/audit"),
               fleet.api.ok("GET", "/live"), fleet.api.ok("GET", "/nodes")]
    text = json.dumps(answers)
    for n in _needles(key):
        assert n not in text
    assert "psk" not in text
    # the PATCH kept the key (a new one would cut running links)
    wait_tunnel_on(fleet, "n1", "db", lambda t: t["next"]["mux"] is False)
    assert tunnels_of(fleet, "n1")["db"]["next"]["psk"]["key"] == key
    # at rest: neither the database nor its WAL holds it, in any spelling
    data = fleet.data
    blob = b""
    for fn in os.listdir(data):
        if fn.startswith("flowgate.db"):
            with open(os.path.join(data, fn), "rb") as f:
                blob += f.read()
    assert blob, "no database files"
    assert base64.b64decode(key) not in blob
    for n in _needles(key):
        assert n.encode() not in blob
    # the key that seals it is private
    st_ = os.stat(os.path.join(data, "secret.key"))
    assert stat.S_IMODE(st_.st_mode) == 0o600 and st_.st_size == 32


def test_node_address_reaches_the_nodes_that_dial_it(fleet):
    fleet.api.ok("POST", "/tunnels", chain_body())
    wait_tunnel_on(fleet, "n1", "db")
    rev = fleet.node("n1")["desired_rev"]
    n2 = fleet.api.ok("PATCH", "/nodes/n2", {"address": "relay.example"})
    assert n2["address"] == "relay.example"
    entry = wait_tunnel_on(fleet, "n1", "db", lambda t: t["next"]["peers"][0]["address"]
                           == "relay.example:7301")
    assert fleet.node("n1")["desired_rev"] > rev
    assert entry["next"]["peers"][0]["fingerprint"] == cert_fingerprint(fleet, "n2")
    for bad in ("has space", "10.0.0.1:80", "", 5):
        st, b = fleet.api.patch("/nodes/n2", {"address": bad})
        assert (st, b["error"]["field"]) == (400, "address"), (bad, b)
    # null: back to the address its session comes from
    fleet.api.ok("PATCH", "/nodes/n2", {"address": None})
    wait_tunnel_on(fleet, "n1", "db", lambda t: t["next"]["peers"][0]["address"]
                   == f"{NODE_IPS['n2']}:7301")
    # the exit's own document did not change: it dials nobody
    assert fleet.node("n3")["applied_rev"] == fleet.node("n3")["desired_rev"]


def test_a_new_certificate_reaches_the_nodes_that_pin_it(fleet):
    fleet.api.ok("POST", "/tunnels", chain_body())
    old = wait_tunnel_on(fleet, "n1", "db")["next"]["peers"][0]["fingerprint"]
    assert old == cert_fingerprint(fleet, "n2")
    wait_tunnel_on(fleet, "n3", "db")
    rev3 = fleet.node("n3")["desired_rev"]
    # the hop's agent restarts without its certificate: it makes a new one
    a = [x for x in fleet.agents if x.node == "n2"][-1]
    assert a.stop(10) == 0
    for f in ("node.crt", "node.key"):
        os.remove(fleet.tmp / "agent-n2" / f)
    fleet.start_agent("n2")
    wait_for(lambda: fleet.node("n2")["fingerprint"] not in (None, old), 10, interval=0.1,
             what="n2's new fingerprint")
    new = fleet.node("n2")["fingerprint"]
    assert new == cert_fingerprint(fleet, "n2")
    # the entry, which dials and pins n2, follows without any API call
    wait_tunnel_on(fleet, "n1", "db", lambda t: t["next"]["peers"][0]["fingerprint"] == new)
    # the exit only listens for n2: its document did not change
    assert fleet.node("n3")["desired_rev"] == rev3


def test_export_import_carries_tunnels_and_deleting_a_hop_removes_its_tunnels(fleet):
    fleet.api.ok("POST", "/tunnels", chain_body(transport="wss", ws_path="/t"))
    doc = fleet.api.ok("GET", "/export")
    assert [t["name"] for t in doc["tunnels"]] == ["db"]
    exported = doc["tunnels"][0]
    assert exported["hops"] == ["n2"] and exported["exit"] == "n3"
    assert "id" not in exported and "path" not in exported
    fleet.api.ok("DELETE", "/tunnels/db")
    r = fleet.api.ok("POST", "/import", {"tunnels": doc["tunnels"]})
    assert r["created"] == 1
    t = fleet.api.ok("GET", "/tunnels/db")
    assert t["ws_path"] == "/t" and t["link_port"] == 7301
    relay = wait_tunnel_on(fleet, "n2", "db")
    assert relay["next"]["ws"] == {"path": "/t"}
    # a bad tunnel in an import: 400, nothing imported
    bad = dict(exported, name="other", target="nope")
    st, b = fleet.api.post("/import", {"forwards": [{"name": "x", "node": "n1",
                                                      "listen": "7230",
                                                      "targets": [f"{TG_IP}:1"]}],
                                       "tunnels": [bad]})
    assert (st, b["error"]["field"]) == (400, "target")
    assert fleet.api.get("/forwards/x")[0] == 404
    # deleting the hop's node takes the tunnel; the entry stops running it
    fleet.api.ok("DELETE", "/nodes/n2")
    assert fleet.api.get("/tunnels/db")[0] == 404
    wait_for(lambda: "db" not in tunnels_of(fleet, "n1"), 10, interval=0.1,
             what="tunnel gone from the entry")


def _engine_missing(fleet, name):
    t = fleet.api.ok("GET", f"/tunnels/{name}")
    return any("without the tunnel engine" in n["detail"]
               for p in t["path"] for n in p["nodes"])


def test_bytes_through_an_api_tunnel_arrive_unchanged_and_are_counted(fleet, plane):
    sink = fleet.peer("sink", 9240)
    t = fleet.api.ok("POST", "/tunnels", chain_body(
        name="bulk", entry={"node": "n1", "listen": "0.0.0.0:7240"},
        target=f"{TG_IP}:9240", transport="tls"))
    for node in NODE_IPS:
        wait_tunnel_on(fleet, node, "bulk")
    # the agents' apply answers reach the store within a flush (1 s)
    try:
        wait_for(lambda: _engine_missing(fleet, "bulk"), 3, interval=0.2, what="status")
    except fgnet.Timeout:
        pass
    if _engine_missing(fleet, "bulk"):
        pytest.skip("the agents were built without the tunnel engine (branch tunnel-engine)")
    nbytes = 2_000_000
    s = cp.connect_within(plane, f"{NODE_IPS['n1']}:7240", 10)
    for chunk in fgnet.gen_blocks(41, nbytes):
        s.sendall(chunk)
    s.shutdown(1)
    fgnet.wait_closed(s, 20)
    s.close()
    cp.check_sink(sink, 41, nbytes)
    def total(node=None):
        q = f"&node={node}" if node else ""
        return fleet.api.ok("GET", f"/tunnels/{t['id']}/stats?from=0{q}")["total"]
    # the exit wrote exactly the client's bytes to the target
    wait_for(lambda: total("n3")["bytes_up"] == nbytes, 15, interval=0.2,
             what=f"{nbytes} bytes counted at the exit")
    # the tunnel's own series is its entry's (each node counts what it passed
    # on; summing them would count every byte once per node). The stream's
    # 4-byte open header is the tunnel's, not the client's: not counted.
    wait_for(lambda: total()["bytes_up"] == nbytes, 15, interval=0.2,
             what=f"{nbytes} bytes counted at the entry")
    assert total("n2")["bytes_up"] == nbytes
    assert total("n1") == total()
    assert total()["conns"] == 1
    tr = fleet.api.ok("GET", "/tunnels/bulk")
    assert all(n["state"] == "ok" for p in tr["path"] for n in p["nodes"]), tr


def test_a_firewall_policy_and_a_tunnel_run_together_on_the_entry(fleet, plane):
    """One node's document holds forwards, firewall and tunnels: the agent
    applies its policy (nft, commit-confirm) and its tunnel (the engine)
    side by side, each reported ok, and traffic through the tunnel passes
    the policy's counting rule on the entry."""
    sink = fleet.peer("sink", 9250)
    t = fleet.api.ok("POST", "/tunnels", chain_body(
        name="fwt", entry={"node": "n1", "listen": "0.0.0.0:7250"},
        target=f"{TG_IP}:9250", link_port=7350, transport="tls"))
    fleet.api.ok("POST", "/policies", {
        "name": "entry-count", "targets": {"nodes": ["n1"]},
        "rules": [{"chain": "input", "proto": "tcp", "dport": 7250, "action": "accept",
                   "counter": True, "comment": "tunnel entry"},
                  {"chain": "input", "proto": "tcp", "dport": 7251, "action": "drop"}]})
    for node in NODE_IPS:
        wait_tunnel_on(fleet, node, "fwt")
    # the entry got both sections in one document; the other nodes no firewall
    wait_for(lambda: "firewall" in state_of(fleet, "n1"), 10, interval=0.1,
             what="firewall section on n1")
    st = state_of(fleet, "n1")
    assert [p["name"] for p in st["firewall"]["policies"]] == ["entry-count"]
    assert [x["name"] for x in st["tunnels"]] == ["fwt"]
    assert "firewall" not in state_of(fleet, "n3")
    # no error of any kind on the entry (policy, firewall, tunnel)
    fleet.wait_node("n1", lambda n: not n["errors"], "clear of errors")
    try:
        wait_for(lambda: _engine_missing(fleet, "fwt"), 3, interval=0.2, what="status")
    except fgnet.Timeout:
        pass
    if _engine_missing(fleet, "fwt"):
        pytest.skip("the agents were built without the tunnel engine (branch tunnel-engine)")
    nbytes = 300_000
    s = cp.connect_within(plane, f"{NODE_IPS['n1']}:7250", 10)
    for chunk in fgnet.gen_blocks(43, nbytes):
        s.sendall(chunk)
    s.shutdown(1)
    fgnet.wait_closed(s, 20)
    s.close()
    cp.check_sink(sink, 43, nbytes)
    # the policy's rule saw the client's packets into the tunnel's entry
    fw = fleet.api.ok("GET", "/nodes/n1/firewall")
    assert fw["in_sync"] is True, fw.get("diff")
    ctr = {(c.get("policy"), c.get("rule")): c for c in fw["counters"]}
    assert ctr[("entry-count", 0)]["packets"] >= 1, fw["counters"]
    wait_for(lambda: fleet.api.ok("GET", f"/tunnels/{t['id']}/stats?from=0")["total"]
             ["bytes_up"] >= nbytes, 15, interval=0.2, what="tunnel bytes counted")
    # disabling the policy takes the firewall off the entry; the tunnel stays
    fleet.api.ok("PATCH", "/policies/entry-count", {"enabled": False})
    wait_for(lambda: "firewall" not in state_of(fleet, "n1"), 10, interval=0.1,
             what="firewall section gone from n1")
    assert [x["name"] for x in state_of(fleet, "n1")["tunnels"]] == ["fwt"]
    tr = fleet.api.ok("GET", "/tunnels/fwt")
    assert all(n["state"] == "ok" for p in tr["path"] for n in p["nodes"]), tr


class DelayProxy:
    """A TCP relay in namespace ns from listen to dst that holds every chunk
    for delay seconds in each direction: a hop with a known extra round trip
    (2 x delay) for a kernel without netem. Threads; close() ends it."""

    def __init__(self, ns, listen, dst, delay):
        self.ns, self.dst, self.delay = ns, dst, delay
        self.lsock = ns.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host, port = listen.rsplit(":", 1)
        self.lsock.bind((host, int(port)))
        self.lsock.listen(16)
        self.socks = [self.lsock]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                a, _ = self.lsock.accept()
            except OSError:
                return
            try:
                b = self.ns.connect(self.dst, timeout=5)
            except OSError:
                a.close()  # nothing listens there yet: the dialer retries
                continue
            b.settimeout(None)
            for x in (a, b):
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks += [a, b]
            for src, dst in ((a, b), (b, a)):
                q = queue.Queue()
                threading.Thread(target=self._read, args=(src, q), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, q), daemon=True).start()

    def _read(self, src, q):
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                data = b""
            q.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def _write(self, dst, q):
        while True:
            due, data = q.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def close(self):
        self.closed = True
        for x in self.socks:
            try:
                x.close()
            except OSError:
                pass


def _path_nodes(t):
    return {n["name"]: dict(n, role=p["role"]) for p in t["path"] for n in p["nodes"]}


def test_path_view_shows_pending_then_each_hop_running_with_its_measured_rtt(fleet, plane):
    """The path view says what each node really does: a node whose agent has
    not applied the revision holding the tunnel is pending (not running);
    once applied, every node is ok with the round trip its agent measured on
    its links. The hop n2 -> n3 goes through a relay that holds every chunk
    10 ms each way, so that hop's RTT is >= 20 ms as both of its ends see
    it. And counters equal the client's bytes, both ways, at every node."""
    fleet.peer("echo", 9260)
    # n2 dials n3 at its address: make that the delaying relay (in the tg
    # namespace, on the link's port), which forwards to n3 itself
    proxy = DelayProxy(plane.ns["tg"], f"{TG_IP}:7360", f"{NODE_IPS['n3']}:7360", 0.010)
    try:
        fleet.api.ok("PATCH", "/nodes/n3", {"address": TG_IP})
        n3_agent = [a for a in fleet.agents if a.node == "n3"][-1]
        os.kill(n3_agent.pid, signal.SIGSTOP)
        try:
            t = fleet.api.ok("POST", "/tunnels", chain_body(
                name="rtt", entry={"node": "n1", "listen": "0.0.0.0:7260"},
                target=f"{TG_IP}:9260", link_port=7360, transport="tls", mux=True))
            # n3 got the revision but cannot answer: pending, never "ok"
            last = [None]

            def n3_pending_others_ok():
                last[0] = _path_nodes(fleet.api.ok("GET", f"/tunnels/{t['id']}"))
                return (last[0]["n3"]["state"] == "pending"
                        and last[0]["n1"]["state"] == "ok" and last[0]["n2"]["state"] == "ok")
            try:
                wait_for(n3_pending_others_ok, 10, interval=0.1, what="n3 pending")
            except fgnet.Timeout:
                raise AssertionError(f"path: {last[0]}\n{fleet.logs()}") from None
            assert "applying revision" in last[0]["n3"]["detail"], last[0]["n3"]
            assert not any("n3" in p for p in fleet.api.ok(
                "GET", f"/tunnels/{t['id']}")["problems"])
        finally:
            os.kill(n3_agent.pid, signal.SIGCONT)
        if _engine_missing(fleet, "rtt"):
            pytest.skip("the agents were built without the tunnel engine")

        def measured():
            last[0] = _path_nodes(fleet.api.ok("GET", f"/tunnels/{t['id']}"))
            n = last[0]
            return (all(x["state"] == "ok" and (x["links_up"] or 0) >= 1 for x in n.values())
                    and n["n1"]["rtt_next_ms"] is not None and n["n2"]["rtt_next_ms"]
                    is not None and n["n2"]["rtt_prev_ms"] is not None
                    and n["n3"]["rtt_prev_ms"] is not None
                    and n["n2"]["rtt_next_ms"] >= 20 and n["n3"]["rtt_prev_ms"] >= 20)
        try:
            wait_for(measured, 20, interval=0.2, what="every hop running with its RTT")
        except fgnet.Timeout:
            raise AssertionError(f"path: {last[0]}\n{fleet.logs()}") from None
        n = last[0]
        assert [n[x]["role"] for x in ("n1", "n2", "n3")] == ["entry", "relay", "exit"]
        # rtt_ms: the hop towards the exit (at the exit: the one it accepts)
        assert n["n1"]["rtt_ms"] == n["n1"]["rtt_next_ms"]
        assert n["n2"]["rtt_ms"] == n["n2"]["rtt_next_ms"]
        assert n["n3"]["rtt_ms"] == n["n3"]["rtt_prev_ms"]
        assert n["n1"]["rtt_prev_ms"] is None and n["n3"]["rtt_next_ms"] is None
        # the direct hop is fast, the delayed one >= 20 ms, both plausible
        assert 0 < n["n1"]["rtt_next_ms"] < 200, n["n1"]
        assert 0 < n["n2"]["rtt_prev_ms"] < 200, n["n2"]
        assert 20 <= n["n2"]["rtt_next_ms"] < 200, n["n2"]
        assert 20 <= n["n3"]["rtt_prev_ms"] < 200, n["n3"]
        assert n["n2"]["links_up"] >= 2
        assert fleet.api.ok("GET", f"/tunnels/{t['id']}")["problems"] == []

        # bytes both ways through the tunnel, hash-checked; every node counts
        # exactly the client's bytes each way (no 4-byte open header)
        payload = os.urandom(1_500_000)
        got = _echo(plane, f"{NODE_IPS['n1']}:7260", payload)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(), len(got)

        def total(node):
            return fleet.api.ok("GET", f"/tunnels/{t['id']}/stats?from=0&node={node}")["total"]
        want = {"bytes_up": len(payload), "bytes_down": len(payload)}
        for node in ("n1", "n2", "n3"):
            try:
                wait_for(lambda: {k: total(node)[k] for k in want} == want, 15, interval=0.2,
                         what=f"exact counters at {node}")
            except fgnet.Timeout:
                raise AssertionError(f"{node}: {total(node)} != {want}") from None
    finally:
        proxy.close()


def _echo(plane, addr, payload, timeout=30.0):
    """Sends payload to an echo target through addr (half-closing after it)
    and reads everything back."""
    return tunnelnet.transfer(plane.ns["cl"], addr, payload, timeout)


def _echo_roundtrip(s, data):
    """Sends data on s and reads the same number of bytes back (echo peer)."""
    s.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        b = s.recv(min(65536, len(data) - len(got)))
        assert b, f"connection closed after {len(got)} of {len(data)} echoed bytes"
        got += b
    return bytes(got)


def _db_blob(fleet):
    blob = b""
    for fn in os.listdir(fleet.data):
        if fn.startswith("flowgate.db"):
            with open(os.path.join(fleet.data, fn), "rb") as f:
                blob += f.read()
    assert blob, "no database files"
    return blob


def test_key_rotation_keeps_running_links_and_new_links_use_the_new_key(fleet, plane):
    """POST /tunnels/{id}/rotate-key: every node gets the new key to dial with
    and the old one still accepted; a connection opened before the rotation
    keeps passing hash-checked bytes on its link, connections opened after it
    (each its own link: mux off, so each is a new handshake) work with the new
    key; no key is in an answer, the audit log or the database in plaintext."""
    fleet.peer("echo", 9250)
    t = fleet.api.ok("POST", "/tunnels", chain_body(
        name="rot", entry={"node": "n1", "listen": "0.0.0.0:7250"},
        target=f"{TG_IP}:9250", transport="aead", mux=False, link_port=7350))
    assert t["key"]["id"] == t["id"] and t["key"]["previous_id"] is None
    old = wait_tunnel_on(fleet, "n1", "rot")["next"]["psk"]
    for node in ("n2", "n3"):
        wait_tunnel_on(fleet, node, "rot")
    try:
        wait_for(lambda: _engine_missing(fleet, "rot"), 3, interval=0.2, what="status")
    except fgnet.Timeout:
        pass
    if _engine_missing(fleet, "rot"):
        pytest.skip("the agents were built without the tunnel engine")

    # a long-lived connection, authenticated with the old key
    long_ = cp.connect_within(plane, f"{NODE_IPS['n1']}:7250", 10)
    long_.settimeout(20)
    data = fgnet.stream_bytes(51, 3 * 1024 * 1024)
    third = len(data) // 3
    h = hashlib.sha256(_echo_roundtrip(long_, data[:third]))

    r = fleet.api.ok("POST", f"/tunnels/{t['id']}/rotate-key")
    new_id = (old["id"] + 1) & 0xffffffff
    assert r["key"]["id"] == new_id and r["key"]["previous_id"] == old["id"]
    assert r["key"]["previous_until"] - r["key"]["rotated"] == 600
    # every node dials with the new key and still accepts the old one
    def rotated(tn):
        link = tn.get("next") or tn.get("prev")
        keys = link.get("keys") or []
        return sorted((k["id"], bool(k.get("dial"))) for k in keys) == \
            sorted([(new_id, True), (old["id"], False)])
    states = {n: wait_tunnel_on(fleet, n, "rot", rotated) for n in ("n1", "n2", "n3")}
    new_key = [k for k in states["n1"]["next"]["keys"] if k.get("dial")][0]["key"]
    assert new_key != old["key"]
    relay = states["n2"]
    assert relay["prev"]["keys"] == relay["next"]["keys"] == states["n3"]["prev"]["keys"]

    # the old connection kept its link: more bytes, same connection
    h.update(_echo_roundtrip(long_, data[third:2 * third]))
    # new connections make new links, authenticated with the new key
    for i in range(3):
        s = cp.connect_within(plane, f"{NODE_IPS['n1']}:7250", 10)
        s.settimeout(20)
        blob = fgnet.stream_bytes(60 + i, 256 * 1024)
        assert _echo_roundtrip(s, blob) == blob
        s.close()
    h.update(_echo_roundtrip(long_, data[2 * third:]))
    long_.close()
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
    # the API, the audit log and the store never hold either key
    ev = fleet.api.ok("GET", "/audit")["events"]
    rot = [e for e in ev if e["action"] == "rotate-key"]
    assert rot and rot[0]["kind"] == "tunnel" and rot[0]["object_id"] == t["id"]
    text = json.dumps([r, fleet.api.ok("GET", "/tunnels"), ev, fleet.api.ok("GET", "/export")])
    blob = _db_blob(fleet)
    for k in (old["key"], new_key):
        assert base64.b64decode(k) not in blob
        for n in _needles(k):
            assert n not in text
            assert n.encode() not in blob

    # a viewer may not rotate (403, nothing changes); an unknown tunnel is 404,
    # another method 405
    fleet.api.ok("POST", "/users", {"username": "vic", "password": "viewer-pw1",
                                    "role": "viewer"})
    viewer = fleet.srv.login("vic", "viewer-pw1")
    st_, b = viewer.post(f"/tunnels/{t['id']}/rotate-key")
    assert st_ == 403 and b["error"]["code"] == "forbidden", b
    assert fleet.api.ok("GET", "/tunnels/rot")["key"] == r["key"]
    st_, b = fleet.api.request("POST", "/tunnels/nope/rotate-key")
    assert st_ == 404, b
    st_, b = fleet.api.request("GET", f"/tunnels/{t['id']}/rotate-key")
    assert st_ == 405, b


def test_agents_with_two_tunnel_threads_carry_and_count_exactly(fleet, plane):
    """Every agent restarted with --tunnel-workers 2: a tls chain without mux
    (a link per stream, spread over both threads of each node) carries 40
    concurrent hash-checked echo streams, and each node counts exactly the
    clients' bytes both ways."""
    for node in NODE_IPS:
        for a in [a for a in fleet.agents if a.node == node and a.alive()]:
            assert a.stop(10) == 0, a.stderr_text()[-2000:]
        fleet.start_agent(node, extra=["--tunnel-workers", "2"])
    for node in NODE_IPS:
        fleet.wait_node(node, lambda n: n["online"], "online")
    for a in [a for a in fleet.agents if a.alive()]:
        names = set()
        for tid in os.listdir(f"/proc/{a.pid}/task"):
            with open(f"/proc/{a.pid}/task/{tid}/comm") as f:
                names.add(f.read().strip())
        assert "fg-tunnel-1" in names, (a.node, names)
    fleet.peer("echo", 9280)
    t = fleet.api.ok("POST", "/tunnels", chain_body(
        name="mt", entry={"node": "n1", "listen": "0.0.0.0:7280"}, target=f"{TG_IP}:9280",
        transport="tls", mux=False, link_port=7380))
    for node in NODE_IPS:
        wait_tunnel_on(fleet, node, "mt")
    n, size = 40, 50_000
    ok, bad = tunnelnet.many_transfers(plane.ns["cl"], f"{NODE_IPS['n1']}:7280", n, size)
    assert ok == n and not bad, bad

    def total(node):
        return fleet.api.ok("GET", f"/tunnels/{t['id']}/stats?from=0&node={node}")["total"]
    for node in NODE_IPS:
        try:
            wait_for(lambda: (total(node)["bytes_up"], total(node)["bytes_down"]) ==
                     (n * size, n * size), 15, interval=0.2, what=f"exact counters at {node}")
        except fgnet.Timeout:
            raise AssertionError(f"{node}: {total(node)} != {n * size} each way") from None
    assert total("n1")["conns"] == n
