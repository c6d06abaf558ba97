"""`flowgate firewall` (the policy plane as a local tool) in the node namespace.

What is pinned: a policy blocks and allows exactly what it says (TCP and UDP,
into the node from the client and out of the node), the live table equals the
preview, a ruleset nft rejects leaves the running one in place and prints nft's
error with the offending line, a document error names its JSON path,
commit-confirm restores the previous table when nobody confirms, and another
tool's table is never touched.
"""

import json
import subprocess

import pytest

import fgnet
from conftest import CLIENT_IP, CLIENT_IPS, NODE_IP, SANITIZER_MARKERS
from probes import ProbeServers, tcp_probe, udp_probe

TABLE = "flowgate_local"


def nft(topo, *args, check=True):
    r = subprocess.run(["ip", "netns", "exec", topo.node_name, "nft", *args],
                       capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise AssertionError(f"nft {' '.join(args)}: {r.stderr}")
    return r


def fw(topo, fg_bin, *args, stdin=subprocess.DEVNULL, timeout=30):
    r = subprocess.run(["ip", "netns", "exec", topo.node_name, fg_bin, "firewall", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, stdin=stdin)
    for m in SANITIZER_MARKERS:
        assert m not in r.stderr, f"sanitizer report:\n{r.stderr[-4000:]}"
    return r


def live(topo):
    r = nft(topo, "-s", "list", "table", "inet", TABLE, check=False)
    return r.stdout if r.returncode == 0 else None


@pytest.fixture
def othertool(topo):
    script = ("table inet othertool {\n"
              "  chain input { type filter hook input priority 10; policy accept;\n"
              "    tcp dport 9 drop\n  }\n}\n")
    r = subprocess.run(["ip", "netns", "exec", topo.node_name, "nft", "-f", "-"], input=script,
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    before = nft(topo, "list", "table", "inet", "othertool").stdout
    yield lambda: nft(topo, "list", "table", "inet", "othertool").stdout == before
    nft(topo, "delete", "table", "inet", "othertool", check=False)


@pytest.fixture(autouse=True)
def clean_table(topo):
    yield
    nft(topo, "delete", "table", "inet", TABLE, check=False)


class Services(ProbeServers):
    """TCP and UDP listeners in the node and client namespaces (test-process sockets)."""

    def __init__(self, topo, port):
        super().__init__()
        self.topo = topo
        self.tcp_in = [port() for _ in range(3)]   # node listeners
        self.udp_in = [port() for _ in range(2)]
        self.tcp_out = [port() for _ in range(2)]  # client listeners (node dials out)
        for p in self.tcp_in:
            self.tcp(topo.node, ("0.0.0.0", p))
        for p in self.tcp_out:
            self.tcp(topo.client, (CLIENT_IP, p))
        for p in self.udp_in:
            self.udp(topo.node, ("0.0.0.0", p))


@pytest.fixture
def svc(topo, port):
    s = Services(topo, port)
    yield s
    s.close()


def policy_doc(svc):
    blocked = CLIENT_IPS[1]
    return {
        "sets": [{"name": "blocked", "type": "ipv4", "elements": [f"{blocked}/32"]}],
        "policies": [
            {"name": "later", "priority": 50, "rules": [
                {"chain": "input", "proto": "tcp", "dport": svc.tcp_in[2], "action": "reject",
                 "counter": True, "comment": "refuse"}]},
            {"name": "first", "priority": 10, "rules": [
                {"chain": "input", "saddr": "@blocked", "proto": "tcp",
                 "dport": f"{svc.tcp_in[0]}-{svc.tcp_in[1]}", "action": "drop", "counter": True},
                {"chain": "input", "proto": "udp", "dport": svc.udp_in[0], "action": "drop"},
                {"chain": "output", "daddr": CLIENT_IP, "proto": "tcp", "dport": svc.tcp_out[0],
                 "action": "reject"},
            ]},
        ]}


def expected(svc, applied):
    """(namespace, proto, dst, src) -> outcome."""
    t, u, o = svc.tcp_in, svc.udp_in, svc.tcp_out
    blocked = CLIENT_IPS[1]
    rows = [
        ("client", "tcp", (NODE_IP, t[0]), CLIENT_IP, "open"),
        ("client", "tcp", (NODE_IP, t[0]), blocked, "dropped" if applied else "open"),
        ("client", "tcp", (NODE_IP, t[1]), blocked, "dropped" if applied else "open"),
        ("client", "tcp", (NODE_IP, t[2]), CLIENT_IP, "refused" if applied else "open"),
        ("client", "udp", (NODE_IP, u[0]), CLIENT_IP, "dropped" if applied else "open"),
        ("client", "udp", (NODE_IP, u[1]), CLIENT_IP, "open"),
        ("node", "tcp", (CLIENT_IP, o[0]), None, "refused" if applied else "open"),
        ("node", "tcp", (CLIENT_IP, o[1]), None, "open"),
    ]
    return rows


def check_probes(topo, svc, applied):
    got = []
    for ns, proto, dst, src, want in expected(svc, applied):
        n = topo.client if ns == "client" else topo.node
        r = (tcp_probe if proto == "tcp" else udp_probe)(n, dst, src)
        got.append((ns, proto, dst, src, want, r))
    bad = [g for g in got if g[4] != g[5]]
    assert not bad, "probe mismatches (ns, proto, dst, src, expected, got):\n" + \
        "\n".join(map(str, bad))


def test_policy_blocks_and_allows_exactly_what_it_says(topo, fg_bin, svc, tmp_path, othertool):
    doc = tmp_path / "policies.json"
    doc.write_text(json.dumps(policy_doc(svc)))
    check_probes(topo, svc, applied=False)
    r = fw(topo, fg_bin, "apply", "-f", doc)
    assert r.returncode == 0, r.stderr
    check_probes(topo, svc, applied=True)
    # the drop counter saw the blocked client's SYNs (retransmits included)
    counters = json.loads(nft(topo, "-j", "list", "counters", "table", "inet", TABLE).stdout)
    byname = {c["counter"]["name"]: c["counter"]["packets"]
              for c in counters["nftables"] if "counter" in c}
    assert byname["pol_first_0"] >= 2 and byname["pol_later_0"] >= 1, byname
    assert othertool()
    r = fw(topo, fg_bin, "remove")
    assert r.returncode == 0, r.stderr
    assert live(topo) is None
    check_probes(topo, svc, applied=False)
    assert othertool()


def test_live_table_matches_the_preview(topo, fg_bin, svc, tmp_path):
    doc = tmp_path / "policies.json"
    doc.write_text(json.dumps(policy_doc(svc)))
    r = fw(topo, fg_bin, "preview", "-f", doc)
    assert r.returncode == 0, r.stderr
    script, _, diff = r.stdout.partition("\n# diff against the running table")
    assert script.startswith("# generated by flowgate")
    assert f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n" in script
    assert "+table inet flowgate_local {" in diff and '+\t\tip saddr @blocked' in diff
    assert live(topo) is None, "preview changed the kernel"
    assert fw(topo, fg_bin, "apply", "-f", doc).returncode == 0
    r = fw(topo, fg_bin, "preview", "-f", doc)
    assert r.returncode == 0 and "# no change against the running table" in r.stdout, r.stdout
    # the text `show` reads back is what nft lists
    r = fw(topo, fg_bin, "show")
    assert r.returncode == 0
    assert r.stdout == nft(topo, "list", "table", "inet", TABLE).stdout
    r = fw(topo, fg_bin, "show", "--json")
    items = json.loads(r.stdout)["nftables"]
    assert {i["table"]["name"] for i in items if "table" in i} == {TABLE}
    rules = [i["rule"] for i in items if "rule" in i]
    assert all(x["table"] == TABLE for x in rules) and len(rules) == 4, rules
    assert [c["counter"]["name"] for c in items if "counter" in c] == ["pol_first_0",
                                                                        "pol_later_0"]
    # a change shows as a diff of exactly that rule
    d2 = policy_doc(svc)
    d2["policies"][0]["rules"][0]["action"] = "drop"
    doc.write_text(json.dumps(d2))
    r = fw(topo, fg_bin, "preview", "-f", doc)
    minus = [l for l in r.stdout.splitlines() if l.startswith("-") and not l.startswith("---")]
    plus = [l for l in r.stdout.splitlines() if l.startswith("+") and not l.startswith("+++")]
    assert len(minus) == 1 and "reject" in minus[0], r.stdout
    assert len(plus) == 1 and "drop" in plus[0], r.stdout


def test_rejected_ruleset_leaves_the_old_one_and_prints_nfts_error(topo, fg_bin, svc, tmp_path,
                                                                   othertool):
    doc = tmp_path / "policies.json"
    doc.write_text(json.dumps(policy_doc(svc)))
    assert fw(topo, fg_bin, "apply", "-f", doc).returncode == 0
    before = live(topo)
    bad = policy_doc(svc)
    bad["policies"][1]["rules"].append({"chain": "input", "raw": "tcp dport 22 acept"})
    bad["policies"][1]["rules"][0]["action"] = "accept"
    doc.write_text(json.dumps(bad))
    r = fw(topo, fg_bin, "apply", "-f", doc)
    assert r.returncode == 2
    assert "nothing was changed" in r.stderr
    assert "Error: syntax error" in r.stderr and "tcp dport 22 acept" in r.stderr, r.stderr
    assert live(topo) == before
    check_probes(topo, svc, applied=True)
    assert othertool()


@pytest.mark.parametrize("patch,needle", [
    (lambda d: d["policies"][1]["rules"][0].update(dport="70000"),
     'policies[1].rules[0].dport: "70000" is not a port or range'),
    (lambda d: d["policies"][1]["rules"][0].update(comment='x" ; flush ruleset ; "'),
     "policies[1].rules[0].comment:"),
    (lambda d: d["policies"][1]["rules"].append({"chain": "input", "raw": "} } flush ruleset"}),
     "policies[1].rules[3].raw: the block closes a brace"),
    (lambda d: d["policies"][1]["rules"][0].update(iif='eth0"'),
     "policies[1].rules[0].iif:"),
])
def test_document_errors_name_the_path_and_change_nothing(topo, fg_bin, svc, tmp_path, othertool,
                                                          patch, needle):
    doc = tmp_path / "policies.json"
    doc.write_text(json.dumps(policy_doc(svc)))
    assert fw(topo, fg_bin, "apply", "-f", doc).returncode == 0
    before = live(topo)
    d = policy_doc(svc)
    patch(d)
    doc.write_text(json.dumps(d))
    r = fw(topo, fg_bin, "apply", "-f", doc)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert live(topo) == before
    assert othertool()


def test_unconfirmed_apply_restores_the_previous_table(topo, fg_bin, svc, tmp_path, othertool):
    doc = tmp_path / "policies.json"
    doc.write_text(json.dumps(policy_doc(svc)))
    assert fw(topo, fg_bin, "apply", "-f", doc).returncode == 0
    before = live(topo)
    # a policy that would lock the client out of everything
    lock = {"policies": [{"name": "lockout", "rules": [
        {"chain": "input", "saddr": "10.77.1.0/24", "action": "drop"}]}]}
    doc2 = tmp_path / "lockout.json"
    doc2.write_text(json.dumps(lock))
    p = subprocess.Popen(["ip", "netns", "exec", topo.node_name, fg_bin, "firewall", "apply",
                          "-f", str(doc2), "--confirm-timeout", "2s"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    fgnet.wait_for(lambda: "10.77.1.0/24" in nft(topo, "list", "table", "inet", TABLE).stdout or
                   p.poll() is not None, 5, what="lockout applied")
    assert tcp_probe(topo.client, (NODE_IP, svc.tcp_in[0])) == "dropped"
    out, err = p.communicate(timeout=10)
    assert p.returncode == 3, err
    assert "previous table inet flowgate_local restored" in err
    assert live(topo) == before
    check_probes(topo, svc, applied=True)
    # confirmed: kept
    p = subprocess.run(["ip", "netns", "exec", topo.node_name, fg_bin, "firewall", "apply", "-f",
                        str(doc2), "--confirm-timeout", "5s"], input="\n", capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert "confirmed" in p.stderr and "10.77.1.0/24" in nft(topo, "list", "table", "inet",
                                                        TABLE).stdout
    assert othertool()
