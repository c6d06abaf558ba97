"""Firewall policies end to end: `flowgate server` and three `flowgate agent`s in
network namespaces, policies written through the REST API.

Topology (own namespaces on one bridge; names carry the pytest pid):

    fgf-<pid>-srv  10.79.0.1    flowgate server
    fgf-<pid>-n1   10.79.0.11   agent (node n1, group edge)
    fgf-<pid>-n2   10.79.0.12   agent (node n2, group edge)
    fgf-<pid>-n3   10.79.0.13   agent (node n3, no group)
    fgf-<pid>-cl   10.79.0.2    test client sockets and listeners

What is pinned: a policy pushed to a group blocks and allows exactly what it
says on every member (TCP probes in and out, UDP in) and nothing on a node
outside the group; GET /nodes/X/firewall shows the running table equal to the
preview, with per-rule counters that moved with the probes; another tool's
table in the node is byte-identical before, during and after; a raw rule nft
rejects leaves the old table running and nft's words reach the node's errors
in the API; a policy that cuts the agent off from the server is rolled back by
commit-confirm and reported, while a good change is confirmed and stays; a
kernel forward and policies share the node's table and survive each other's
changes.
"""

import json
import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fgnet  # noqa: E402
from conftest import SANITIZER_MARKERS, Proc  # noqa: E402
from fgnet import wait_for  # noqa: E402
from fgserver import ServerProc  # noqa: E402
import fgplane  # noqa: E402
from probes import ProbeServers, tcp_probe, udp_probe  # noqa: E402

PREFIX = "fgf-"
SRV_IP = "10.79.0.1"
CL_IP = "10.79.0.2"
NODE_IPS = {"n1": "10.79.0.11", "n2": "10.79.0.12", "n3": "10.79.0.13"}
SRV_PORT = 8080
REPORT = "300ms"
IN_PORTS = (7101, 7102, 7103)  # listeners in each node
UDP_PORT = 7201
OUT_PORTS = (7301, 7302)  # listeners in the client namespace


@pytest.fixture(scope="module")
def plane():
    p = fgplane.start(fgplane.Plane(PREFIX, {"srv": SRV_IP, "cl": CL_IP, **NODE_IPS}))
    yield p
    p.destroy()


def nft(plane, node, *args, check=True):
    r = subprocess.run(["ip", "netns", "exec", plane.names[node], "nft", *args],
                       capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise AssertionError(f"nft {' '.join(args)}: {r.stderr}")
    return r


class Listeners(ProbeServers):
    """TCP banner servers and a UDP echo in every node, TCP banner servers in
    the client namespace (for probes out of the nodes)."""

    def __init__(self, plane):
        super().__init__()
        for node in NODE_IPS:
            ns = plane.ns[node]
            for p in IN_PORTS:
                self.tcp(ns, ("0.0.0.0", p))
            self.udp(ns, ("0.0.0.0", UDP_PORT))
        for p in OUT_PORTS:
            self.tcp(plane.ns["cl"], (CL_IP, p))


class Agent(Proc):
    def __init__(self, plane, fg_bin, node, token, state_dir, logdir, name):
        self.node, self.state_dir = node, state_dir
        argv = [fg_bin, "agent", "--server", f"ws://{SRV_IP}:{SRV_PORT}", "--token", token,
                "--state", state_dir, "--report-interval", REPORT, "--workers", "1"]
        super().__init__(plane.ns[node], argv, name, logdir, json_stdout=False)


class Fleet:
    def __init__(self, plane, fg_bin, tmp_path):
        self.plane, self.fg_bin, self.tmp = plane, fg_bin, tmp_path
        self.logdir = str(tmp_path)
        self.srv = ServerProc(fg_bin, str(tmp_path / "server-data"), SRV_PORT, self.logdir,
                              ns=plane.ns["srv"], host=SRV_IP)
        self.api = self.srv.login()
        self.agents = []
        self.api.ok("POST", "/groups", {"name": "edge"})
        for node in NODE_IPS:
            groups = ["edge"] if node != "n3" else []
            b = self.api.ok("POST", "/nodes", {"name": node, "groups": groups})
            d = tmp_path / f"agent-{node}"
            d.mkdir()
            self.agents.append(Agent(plane, fg_bin, node, b["token"], str(d), self.logdir,
                                     f"agent-{node}"))
        for node in NODE_IPS:
            self.wait_node(node, lambda n: n["online"], "online")

    def node(self, name):
        return self.api.ok("GET", f"/nodes/{name}")

    def wait_node(self, name, pred, what, timeout=15):
        last = [None]

        def ok():
            last[0] = self.node(name)
            return pred(last[0])
        try:
            wait_for(ok, timeout, interval=0.05, what=f"node {name} {what}")
        except fgnet.Timeout:
            raise AssertionError(f"node {name} not {what}: {last[0]}\n{self.logs()}") from None
        return last[0]

    def wait_applied(self, name, timeout=15):
        return self.wait_node(name, lambda n: n["online"] and n["desired_rev"] > 0
                              and n["applied_rev"] == n["desired_rev"], "applied", timeout)

    def firewall(self, name):
        return self.api.ok("GET", f"/nodes/{name}/firewall")

    def logs(self):
        out = [f"--- server:\n{self.srv.stderr()[-1500:]}"]
        for a in self.agents:
            out.append(f"--- {a.name}:\n{a.stderr_text()[-2500:]}")
        return "\n".join(out)

    def stop(self):
        problems = self.srv.stop()
        for a in self.agents:
            was_alive = a.alive()
            rc = a.stop(10.0)
            err = a.stderr_text()
            a.close()
            if any(m in err for m in SANITIZER_MARKERS):
                problems.append(f"{a.name}: sanitizer report:\n{err[-4000:]}")
            if was_alive and rc != 0:
                problems.append(f"{a.name}: exit status {rc} after SIGTERM:\n{err[-2000:]}")
        return problems


@pytest.fixture
def fleet(plane, fg_bin, tmp_path, request):
    f = Fleet(plane, fg_bin, tmp_path)
    yield f
    problems = f.stop()
    # an agent that exits removes exactly its table
    for node in NODE_IPS:
        r = nft(plane, node, "list", "table", "inet", "flowgate", check=False)
        if r.returncode == 0:
            problems.append(f"{node}: table inet flowgate left behind:\n{r.stdout}")
    if problems and not getattr(request.node, "_call_failed", False):
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def listeners(plane):
    lst = Listeners(plane)
    yield lst
    lst.close()


@pytest.fixture
def othertool(plane):
    """Another tool's table in n1: byte-identical whatever flowgate does."""
    script = ("table inet othertool {\n"
              "  counter seen { }\n"
              "  chain input { type filter hook input priority 10; policy accept;\n"
              "    tcp dport 9 drop\n  }\n}\n")
    r = subprocess.run(["ip", "netns", "exec", plane.names["n1"], "nft", "-f", "-"],
                       input=script, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    before = nft(plane, "n1", "list", "table", "inet", "othertool").stdout
    yield lambda: nft(plane, "n1", "list", "table", "inet", "othertool").stdout == before
    nft(plane, "n1", "delete", "table", "inet", "othertool", check=False)


def group_policy():
    a, b, c = IN_PORTS
    return {
        "name": "edge-base", "priority": 10, "targets": {"groups": ["edge"]},
        "sets": [{"name": "clients", "type": "ipv4", "elements": [f"{CL_IP}/32"]}],
        "rules": [
            {"chain": "input", "saddr": "@clients", "proto": "tcp", "dport": a,
             "action": "drop", "counter": True, "comment": "drop a"},
            {"chain": "input", "proto": "tcp", "dport": b, "action": "reject",
             "counter": True},
            {"chain": "input", "proto": "udp", "dport": UDP_PORT, "action": "drop"},
            {"chain": "output", "daddr": CL_IP, "proto": "tcp", "dport": OUT_PORTS[0],
             "action": "reject"},
        ]}


def probes(plane, node):
    ip = NODE_IPS[node]
    cl, nd = plane.ns["cl"], plane.ns[node]
    return {
        "in-a": tcp_probe(cl, (ip, IN_PORTS[0])),
        "in-b": tcp_probe(cl, (ip, IN_PORTS[1])),
        "in-c": tcp_probe(cl, (ip, IN_PORTS[2])),
        "udp": udp_probe(cl, (ip, UDP_PORT)),
        "out-0": tcp_probe(nd, (CL_IP, OUT_PORTS[0])),
        "out-1": tcp_probe(nd, (CL_IP, OUT_PORTS[1])),
    }


OPEN = {"in-a": "open", "in-b": "open", "in-c": "open", "udp": "open", "out-0": "open",
        "out-1": "open"}
BLOCKED = {"in-a": "dropped", "in-b": "refused", "in-c": "open", "udp": "dropped",
           "out-0": "refused", "out-1": "open"}


def test_group_policy_blocks_and_allows_exactly_on_every_member(plane, fleet, listeners,
                                                               othertool):
    for node in NODE_IPS:
        assert probes(plane, node) == OPEN, node
    p = fleet.api.ok("POST", "/policies", group_policy())
    assert p["targets"] == {"nodes": [], "groups": ["edge"]}
    for node in NODE_IPS:
        fleet.wait_applied(node)
    # the policy is in place on every member once applied (no sleep: the
    # agent answers the apply after the nft transaction)
    for node in ("n1", "n2"):
        assert probes(plane, node) == BLOCKED, node
    assert probes(plane, "n3") == OPEN
    assert othertool()

    # the running table is the preview, and the counters moved
    for node in ("n1", "n2"):
        fw = fleet.firewall(node)
        assert fw["live"], fw
        assert fw["in_sync"] is True, fw["diff"]
        assert fw["live"] == fw["preview_listing"]
        assert "table inet flowgate" in fw["preview"]
        assert [x["name"] for x in fw["policies"]] == ["edge-base"]
        ctr = {(c.get("policy"), c.get("rule")): c for c in fw["counters"]}
        assert ctr[("edge-base", 0)]["packets"] >= 1, fw["counters"]
        assert ctr[("edge-base", 0)]["comment"] == "drop a"
        assert ctr[("edge-base", 1)]["packets"] >= 1
        # the live table is exactly what nft lists in the node itself
        own = nft(plane, node, "-s", "list", "table", "inet", "flowgate").stdout
        assert own == fw["live"]
    fw3 = fleet.firewall("n3")
    assert fw3["policies"] == [] and fw3["live"] == "" and fw3["preview"] == ""

    # disabling the policy takes it away on every member; the other table stays
    fleet.api.ok("PATCH", "/policies/edge-base", {"enabled": False})
    for node in ("n1", "n2"):
        fleet.wait_applied(node)
        assert probes(plane, node) == OPEN, node
        # nothing left to run: the table is gone, and that is what the node shows
        assert nft(plane, node, "list", "table", "inet", "flowgate",
                   check=False).returncode != 0
        fw = fleet.firewall(node)
        assert fw["preview"] == "" and fw["live"] == "" and fw["in_sync"] is True, fw
    assert othertool()
    # n3 joins the group: the (re-enabled) policy follows the membership
    fleet.api.ok("PATCH", "/policies/edge-base", {"enabled": True})
    fleet.api.ok("PATCH", "/nodes/n3", {"groups": ["edge"]})
    fleet.wait_applied("n3")
    assert probes(plane, "n3") == BLOCKED
    assert othertool()

    # counters are reported too: with n2's agent gone, its view shows the
    # last reported rule counters (and its table left with it)
    fleet.wait_applied("n2")
    assert probes(plane, "n2") == BLOCKED
    time.sleep(1)  # a report or two (every 300 ms)
    agent = next(a for a in fleet.agents if a.node == "n2")
    assert agent.stop(10.0) == 0
    fleet.wait_node("n2", lambda n: not n["online"], "offline")
    fw = fleet.firewall("n2")
    assert fw["live"] is None and "offline" in fw["live_error"]
    ctr = {(c.get("policy"), c.get("rule")): c for c in fw["counters"]}
    assert ("edge-base", 0) in ctr and ctr[("edge-base", 0)]["packets"] >= 1, json.dumps(fw)
    assert fw["counters_reported_at"] > 0
    assert nft(plane, "n2", "list", "table", "inet", "flowgate", check=False).returncode != 0


def test_raw_rule_nft_rejects_keeps_old_table_and_reports_nft_error(plane, fleet, listeners,
                                                                   othertool):
    fleet.api.ok("POST", "/policies", group_policy())
    fleet.wait_applied("n1")
    before = fleet.firewall("n1")
    assert before["in_sync"] is True
    # nft's parser is the judge of raw text: the API takes it
    bad = {"name": "bad-raw", "priority": 20, "targets": {"nodes": ["n1"]},
           "rules": [{"chain": "input", "raw": "tcp dport 7103 frobnicate drop"}]}
    fleet.api.ok("POST", "/policies", bad)
    n = fleet.wait_node("n1", lambda n: any(e["kind"] == "policy" for e in n["errors"]),
                        "reporting the refused policy")
    errs = {e["name"]: e["error"] for e in n["errors"] if e["kind"] == "policy"}
    assert "bad-raw" in errs, n["errors"]
    assert "frobnicate" in errs["bad-raw"] or "syntax error" in errs["bad-raw"], errs
    assert "edge-base" in errs and "bad-raw" in errs["edge-base"]  # held back with it
    assert n["applied_rev"] == n["desired_rev"]
    # each policy says where it stands on each node it lands on
    st = {x["node"]: x for x in fleet.api.ok("GET", "/policies/bad-raw")["status"]}
    assert list(st) == ["n1"] and st["n1"]["ok"] is False and st["n1"]["error"] == errs["bad-raw"]
    fleet.wait_applied("n2")
    st = {x["node"]: x for x in fleet.api.ok("GET", "/policies/edge-base")["status"]}
    assert st["n1"]["ok"] is False and st["n2"]["ok"] is True and st["n2"]["applied"] is True
    # nothing changed: the old table runs and still blocks what it did
    after = fleet.firewall("n1")
    assert after["live"] == before["live"]
    assert after["in_sync"] is False and "frobnicate" in after["preview"]
    assert "frobnicate" in after["diff_error"] or "syntax" in after["diff_error"], after
    assert probes(plane, "n1") == BLOCKED
    assert othertool()
    # fixing it clears the error
    fleet.api.ok("PATCH", "/policies/bad-raw",
                 {"rules": [{"chain": "input", "raw": "tcp dport 7103 counter drop"}]})
    fleet.wait_node("n1", lambda n: n["errors"] == [] and n["applied_rev"] == n["desired_rev"],
                    "clean after the fix")
    assert all(x["ok"] for p in fleet.api.ok("GET", "/policies")["policies"]
               for x in p["status"])
    assert probes(plane, "n1")["in-c"] == "dropped"
    assert othertool()


def test_commit_confirm_rolls_back_a_policy_that_cuts_off_the_server(plane, fleet, listeners):
    # a good change is confirmed and stays past the grace period
    good = group_policy()
    good["confirm_timeout"] = 5
    good["targets"] = {"nodes": ["n2"]}
    fleet.api.ok("POST", "/policies", good)
    fleet.wait_applied("n2")
    wait_for(lambda: fleet.firewall("n2").get("confirm_pending") is False, 10,
             what="n2's change confirmed")
    # a policy that blocks the agent's way to the server
    cut = {"name": "cut-off", "priority": 5, "confirm_timeout": 5,
           "targets": {"nodes": ["n2"]},
           "rules": [{"chain": "output", "daddr": SRV_IP, "proto": "tcp", "dport": SRV_PORT,
                      "action": "drop", "counter": True}]}
    fleet.api.ok("POST", "/policies", cut)
    t0 = time.monotonic()
    # the agent applies it (the apply arrives before the cut), then cannot
    # reach the server: after 5 s it restores the previous table and says so
    n = fleet.wait_node("n2", lambda n: n["online"] and any(
        "rolled back" in e["error"] for e in n["errors"]), "reporting the rollback", timeout=60)
    assert time.monotonic() - t0 >= 4.5
    errs = {(e["kind"], e["name"]): e["error"] for e in n["errors"]}
    assert "commit-confirm" in errs[("policy", "cut-off")]
    assert ("firewall", "commit-confirm") in errs
    live = nft(plane, "n2", "-s", "list", "table", "inet", "flowgate").stdout
    assert "7101" in live and str(SRV_PORT) not in live, live
    assert probes(plane, "n2") == BLOCKED  # the confirmed policy still runs
    # the rolled-back change is not tried again on its own...
    time.sleep(2)
    assert str(SRV_PORT) not in nft(plane, "n2", "-s", "list", "table", "inet",
                                    "flowgate").stdout
    # ...but a new change is: removing the bad policy confirms cleanly
    fleet.api.ok("DELETE", "/policies/cut-off")
    fleet.wait_node("n2", lambda n: n["errors"] == [] and n["applied_rev"] == n["desired_rev"],
                    "clean after removing the bad policy")
    wait_for(lambda: fleet.firewall("n2").get("confirm_pending") is False, 10,
             what="n2's change confirmed")
    assert probes(plane, "n2") == BLOCKED


def test_api_validation_names_the_field(fleet):
    cases = [
        ({"name": "p", "rules": [{"chain": "input", "proto": "tcp", "dport": 70000,
                                  "action": "drop"}]}, "rules[0].dport"),
        ({"name": "p", "rules": [{"chain": "input", "action": "jump"}]}, "rules[0].action"),
        ({"name": "p", "rules": [], "targets": {"nodes": ["nope"]}}, "targets.nodes[0]"),
        ({"name": "p.q", "rules": []}, "name"),
        ({"name": "p", "rules": [], "confirm_timeout": 1}, "confirm_timeout"),
        ({"name": "p", "rules": [], "colour": "red"}, "colour"),
        ({"name": "p", "sets": [{"name": "s", "type": "ipv4", "elements": ["10.0.0.1/8"]}],
          "rules": []}, "sets[0].elements[0]"),
    ]
    for body, field in cases:
        st, b = fleet.api.post("/policies", body)
        assert st == 400, (body, b)
        assert b["error"]["field"] == field, (body, b)
    assert fleet.api.ok("GET", "/policies")["policies"] == []
    # sets are shared by every policy of a node: one name, one definition
    s1 = {"name": "admins", "type": "ipv4", "elements": ["192.0.2.0/24"]}
    fleet.api.ok("POST", "/policies", {"name": "a", "sets": [s1], "rules": []})
    st, b = fleet.api.post("/policies", {"name": "b", "rules": [], "sets": [
        {"name": "admins", "type": "ipv4", "elements": ["198.51.100.0/24"]}]})
    assert st == 409 and b["error"]["field"] == "sets[0].name", b
    fleet.api.ok("POST", "/policies", {"name": "b", "sets": [s1], "rules": []})
    # targets replace as a whole on PATCH; other fields stay
    fleet.api.ok("PATCH", "/policies/b", {"targets": {"nodes": ["n1"], "groups": ["edge"]}})
    b = fleet.api.ok("PATCH", "/policies/b", {"targets": {"nodes": ["n2"]}})
    assert b["targets"] == {"nodes": ["n2"], "groups": []} and b["sets"] == [s1]
    fleet.api.ok("PATCH", "/policies/b", {"targets": {}})
    # export carries policies; import takes them back
    exp = fleet.api.ok("GET", "/export")
    assert [p["name"] for p in exp["policies"]] == ["a", "b"]
    fleet.api.ok("DELETE", "/policies/a")
    r = fleet.api.ok("POST", "/import", {"policies": exp["policies"]})
    assert r["created"] == 1 and r["updated"] == 1
    audit = fleet.api.ok("GET", "/audit")["events"]
    assert any(e["kind"] == "policy" and e["action"] == "delete" for e in audit)


def test_policies_and_kernel_forwards_share_the_table(plane, fleet, listeners, othertool):
    """A kernel forward and policies on one node: one table, neither overwrites
    the other, whichever changes."""
    n1 = NODE_IPS["n1"]
    fleet.api.ok("POST", "/forwards", {"name": "kf", "node": "n1", "engine": "kernel",
                                       "listen": f"{n1}:7400",
                                       "targets": [f"{CL_IP}:{OUT_PORTS[1]}"]})
    fleet.wait_applied("n1")
    assert tcp_probe(plane.ns["cl"], (n1, 7400)) == "open"  # DNAT to the client's listener
    fleet.api.ok("POST", "/policies", group_policy())
    fleet.wait_applied("n1")
    assert probes(plane, "n1") == BLOCKED
    assert tcp_probe(plane.ns["cl"], (n1, 7400)) == "open"
    live = nft(plane, "n1", "-s", "list", "table", "inet", "flowgate").stdout
    assert "dnat" in live and "pol_edge-base_0" in live, live
    fw = fleet.firewall("n1")
    assert fw["in_sync"] is True, fw["diff"]
    names = {c["name"]: c for c in fw["counters"]}
    assert names["fwd_kf_conns"]["forward"] == "kf" and names["fwd_kf_conns"]["packets"] >= 1
    # a policy change keeps the forward; a forward change keeps the policy
    fleet.api.ok("PATCH", "/policies/edge-base", {"priority": 30})
    fleet.wait_applied("n1")
    assert tcp_probe(plane.ns["cl"], (n1, 7400)) == "open"
    fleet.api.ok("PATCH", "/forwards/kf", {"listen": f"{n1}:7401"})
    fleet.wait_applied("n1")
    assert tcp_probe(plane.ns["cl"], (n1, 7401)) == "open"
    assert probes(plane, "n1") == BLOCKED
    # the policy goes, the forward stays (and the other way round)
    fleet.api.ok("DELETE", "/policies/edge-base")
    fleet.wait_applied("n1")
    assert probes(plane, "n1") == OPEN
    assert tcp_probe(plane.ns["cl"], (n1, 7401)) == "open"
    fleet.api.ok("POST", "/policies", group_policy())
    fleet.api.ok("DELETE", "/forwards/kf")
    fleet.wait_applied("n1")
    assert probes(plane, "n1") == BLOCKED
    assert "dnat" not in nft(plane, "n1", "list", "table", "inet", "flowgate").stdout
    fleet.api.ok("DELETE", "/policies/edge-base")
    fleet.wait_applied("n1")
    assert nft(plane, "n1", "list", "table", "inet", "flowgate", check=False).returncode != 0
    assert othertool()
