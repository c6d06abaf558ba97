"""The control plane end to end: `flowgate server` and three `flowgate agent`s,
each in its own network namespace, driven through the REST API.

Topology (own namespaces, one L2 segment on a bridge; names carry the pytest
pid, stale ones of dead runs are removed first):

    fgc-<pid>-srv  10.78.0.1    flowgate server
    fgc-<pid>-n1   10.78.0.11   flowgate agent (node n1)
    fgc-<pid>-n2   10.78.0.12   flowgate agent (node n2)
    fgc-<pid>-n3   10.78.0.13   flowgate agent (node n3)
    fgc-<pid>-cl   10.78.0.2    test client sockets
    fgc-<pid>-tg   10.78.0.3    peer.py targets
    fgc-<pid>-br   bridge br0 joining them

What is pinned: a forward created through the API carries traffic (hashed)
within 2 s; a group forward lands on every member; editing one forward does
not touch another's connections; with the server killed forwarding goes on,
an agent restarted meanwhile comes back forwarding from its state file, and
once the server is back the traffic moved during the outage is counted
exactly once. Every process must exit 0 on SIGTERM with no sanitizer report.
"""

import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fgnet  # noqa: E402
from conftest import SANITIZER_MARKERS, Peer, Proc  # noqa: E402
from fgnet import wait_for  # noqa: E402
from fgserver import ServerProc  # noqa: E402
import fgplane  # noqa: E402

PREFIX = "fgc-"
SRV_IP = "10.78.0.1"
CL_IP = "10.78.0.2"
TG_IP = "10.78.0.3"
NODE_IPS = {"n1": "10.78.0.11", "n2": "10.78.0.12", "n3": "10.78.0.13"}
SRV_PORT = 8080
DEAD_PORT = 8081  # nothing listens there
METRICS_PORT = 9900  # each agent's /metrics, in its own namespace
REPORT = "300ms"


@pytest.fixture(scope="module")
def plane():
    p = fgplane.start(fgplane.Plane(PREFIX, {"srv": SRV_IP, "cl": CL_IP, "tg": TG_IP, **NODE_IPS}))
    yield p
    p.destroy()


class Agent(Proc):
    def __init__(self, plane, fg_bin, node, token, state_dir, logdir, name, extra=()):
        self.node, self.state_dir = node, state_dir
        self.metrics_addr = f"127.0.0.1:{METRICS_PORT}"
        argv = [fg_bin, "agent", "--server", f"ws://{SRV_IP}:{SRV_PORT}", "--token", token,
                "--state", state_dir, "--report-interval", REPORT, "--workers", "1",
                "--metrics", self.metrics_addr, *extra]
        if node == "n3":
            # n3 fails over: its first server never answers
            argv[2:2] = ["--server", f"ws://{SRV_IP}:{DEAD_PORT}"]
        super().__init__(plane.ns[node], argv, name, logdir, json_stdout=False)


class Fleet:
    """The server, the agents and the target peers of one test; everything
    is stopped and checked at teardown."""

    def __init__(self, plane, fg_bin, tmp_path, request):
        self.plane, self.fg_bin, self.tmp = plane, fg_bin, tmp_path
        self.logdir = str(tmp_path)
        self.data = str(tmp_path / "server-data")
        self.servers, self.agents, self.peers = [], [], []
        self.tokens, self.node_ids = {}, {}
        self.start_server()
        self.api = self.srv.login()
        for node in NODE_IPS:
            b = self.api.ok("POST", "/nodes", {"name": node})
            self.tokens[node], self.node_ids[node] = b["token"], b["id"]
        for node in NODE_IPS:
            self.start_agent(node)
        for node in NODE_IPS:
            self.wait_node(node, lambda n: n["online"], "online")

    def start_server(self):
        self.srv = ServerProc(self.fg_bin, self.data, SRV_PORT, self.logdir, ns=self.plane.ns["srv"],
                              host=SRV_IP, name=f"server{len(self.servers)}")
        self.servers.append(self.srv)
        if hasattr(self, "api"):
            self.api = self.srv.login()

    def start_agent(self, node, extra=()):
        d = self.tmp / f"agent-{node}"
        d.mkdir(exist_ok=True)
        a = Agent(self.plane, self.fg_bin, node, self.tokens[node], str(d), self.logdir,
                  f"agent-{node}-{len(self.agents)}", extra)
        self.agents.append(a)
        return a

    def peer(self, mode, port, **opts):
        p = Peer(None, mode, [f"{TG_IP}:{port}"], self.logdir, f"peer{len(self.peers)}-{mode}",
                 ns=self.plane.ns["tg"], **opts)
        self.peers.append(p)
        return p

    def node(self, name):
        return self.api.ok("GET", f"/nodes/{name}")

    def wait_node(self, name, pred, what, timeout=10):
        last = [None]

        def ok():
            last[0] = self.node(name)
            return pred(last[0])
        try:
            wait_for(ok, timeout, interval=0.05, what=f"node {name} {what}")
        except fgnet.Timeout:
            raise AssertionError(f"node {name} not {what}: {last[0]}\n{self.logs()}") from None

    def wait_applied(self, name, timeout=10):
        self.wait_node(name, lambda n: n["online"] and n["desired_rev"] > 0
                       and n["applied_rev"] == n["desired_rev"], "applied", timeout)

    def total(self, fid):
        return self.api.ok("GET", f"/forwards/{fid}/stats?from=0")["total"]

    def logs(self):
        out = []
        for p in self.agents + self.servers:
            text = p.stderr_text() if hasattr(p, "stderr_text") else p.stderr()
            out.append(f"--- {p.name if hasattr(p, 'name') else 'server'}:\n{text[-1500:]}")
        return "\n".join(out)

    def stop(self):
        # the server goes first, with every agent still attached: a server
        # stopping with live sessions must exit 0 cleanly too
        problems = []
        for s in self.servers:
            problems += s.stop()
        for a in self.agents:
            was_alive = a.alive()
            rc = a.stop(10.0)
            err = a.stderr_text()
            a.close()
            if any(m in err for m in SANITIZER_MARKERS):
                problems.append(f"{a.name}: sanitizer report:\n{err[-4000:]}")
            if was_alive and rc != 0:
                problems.append(f"{a.name}: exit status {rc} after SIGTERM:\n{err[-2000:]}")
        for p in self.peers:
            p.close()
        return problems


@pytest.fixture
def fleet(plane, fg_bin, tmp_path, request):
    f = Fleet(plane, fg_bin, tmp_path, request)
    yield f
    problems = f.stop()
    if problems and not getattr(request.node, "_call_failed", False):
        pytest.fail("\n".join(problems), pytrace=False)


def send_hashed(plane, dst, seed, nbytes, timeout=10.0):
    """Client -> dst: nbytes of stream seed, then half-close."""
    s = plane.ns["cl"].connect(dst, timeout=timeout)
    for chunk in fgnet.gen_blocks(seed, nbytes):
        s.sendall(chunk)
    s.shutdown(1)
    fgnet.wait_closed(s, timeout)
    s.close()


def check_sink(peer, seed, nbytes):
    ev = peer.wait_event(event="sink", timeout=15, what="sink report")
    assert ev["bytes"] == nbytes
    assert ev["sha256"] == fgnet.stream_sha256(seed, nbytes)


def connect_within(plane, dst, timeout):
    """Connects as soon as the forward listens; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return plane.ns["cl"].connect(dst, timeout=1)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_forward_created_via_api_carries_traffic_within_2s(fleet, plane):
    sink = fleet.peer("sink", 9101)
    t0 = time.monotonic()
    f = fleet.api.ok("POST", "/forwards", {"name": "web", "node": "n1",
                                           "listen": "0.0.0.0:7101",
                                           "targets": [f"{TG_IP}:9101"]})
    s = connect_within(plane, f"{NODE_IPS['n1']}:7101", 2.0)
    assert time.monotonic() - t0 < 2.0
    data = fgnet.stream_bytes(11, 300000)
    s.sendall(data)
    s.shutdown(1)
    fgnet.wait_closed(s, 10)
    s.close()
    check_sink(sink, 11, 300000)
    fleet.wait_applied("n1")
    # only n1 runs it
    for other in ("n2", "n3"):
        with pytest.raises(OSError):
            plane.ns["cl"].connect(f"{NODE_IPS[other]}:7101", timeout=1).close()
    # and the bytes are counted against the forward
    wait_for(lambda: fleet.total(f["id"])["bytes_up"] == 300000, 10, interval=0.1,
             what="300000 bytes counted")
    # the agent's own /metrics agrees
    a = [x for x in fleet.agents if x.node == "n1"][0]
    m = fgnet.fetch_metrics(plane.ns["n1"], a.metrics_addr)
    assert m.get("flowgate_agent_connected") == 1
    assert m.get("flowgate_agent_applied_rev") == fleet.node("n1")["applied_rev"]
    assert m.get("flowgate_forward_bytes_total", forward="web", direction="up") == 300000


def test_group_forward_lands_on_every_member(fleet, plane):
    fleet.api.ok("POST", "/groups", {"name": "edge", "nodes": ["n1", "n2", "n3"]})
    sink = fleet.peer("sink", 9102)
    f = fleet.api.ok("POST", "/forwards", {"name": "grp", "group": "edge",
                                           "listen": "0.0.0.0:7102",
                                           "targets": [f"{TG_IP}:9102"]})
    for i, node in enumerate(NODE_IPS):
        s = connect_within(plane, f"{NODE_IPS[node]}:7102", 5.0)
        s.sendall(fgnet.stream_bytes(20 + i, 100000))
        s.shutdown(1)
        fgnet.wait_closed(s, 10)
        s.close()
        check_sink(sink, 20 + i, 100000)
    for node in NODE_IPS:
        fleet.wait_applied(node)
    wait_for(lambda: fleet.total(f["id"])["bytes_up"] == 300000, 10, interval=0.1,
             what="300000 bytes counted over the three nodes")
    # a node leaving the group stops running it; the others keep it
    fleet.api.ok("PATCH", "/groups/edge", {"nodes": ["n1", "n2"]})
    wait_for(lambda: 7102 not in {p for _, p in plane.ns["n3"].listeners("tcp")}, 5,
             what="n3 stops listening on 7102")
    connect_within(plane, f"{NODE_IPS['n2']}:7102", 1.0).close()


def test_editing_one_forward_keeps_the_other_forwards_connections(fleet, plane):
    fleet.peer("echo", 9103)
    fleet.peer("echo", 9104)
    fleet.api.ok("POST", "/forwards", {"name": "a", "node": "n1", "listen": "0.0.0.0:7103",
                                       "targets": [f"{TG_IP}:9103"]})
    fleet.api.ok("POST", "/forwards", {"name": "b", "node": "n1", "listen": "0.0.0.0:7104",
                                       "targets": [f"{TG_IP}:9104"]})
    sa = connect_within(plane, f"{NODE_IPS['n1']}:7103", 5.0)
    assert fgnet.echo_roundtrip(sa, b"before")
    rev = fleet.node("n1")["applied_rev"]
    fleet.api.ok("PATCH", "/forwards/b", {"max_conns": 5})
    fleet.wait_node("n1", lambda n: n["applied_rev"] > rev and
                    n["applied_rev"] == n["desired_rev"], "applied the edit")
    # a's connection lives on, b works with its new settings
    assert fgnet.echo_roundtrip(sa, b"after the edit of b")
    sb = connect_within(plane, f"{NODE_IPS['n1']}:7104", 2.0)
    assert fgnet.echo_roundtrip(sb, b"b")
    sb.close()
    # an edit that changes nothing the node runs does not bump its revision
    rev = fleet.node("n1")["desired_rev"]
    fleet.api.ok("PATCH", "/forwards/b", {"max_conns": 5})
    time.sleep(0.5)
    assert fleet.node("n1")["desired_rev"] == rev
    assert fgnet.echo_roundtrip(sa, b"still")
    sa.close()


def test_server_outage_forwarding_goes_on_restart_from_state_and_counted_once(fleet, plane):
    sink = fleet.peer("sink", 9105)
    f = fleet.api.ok("POST", "/forwards", {"name": "out", "node": "n1",
                                           "listen": "0.0.0.0:7105",
                                           "targets": [f"{TG_IP}:9105"]})
    dst = f"{NODE_IPS['n1']}:7105"
    connect_within(plane, dst, 5.0).close()
    fleet.wait_applied("n1")
    sink.wait_event(event="sink", timeout=5)  # the probe connection above
    sizes = [200000, 300000, 400000]
    send_hashed(plane, dst, 31, sizes[0])
    check_sink(sink, 31, sizes[0])
    wait_for(lambda: fleet.total(f["id"])["bytes_up"] == sizes[0], 10, interval=0.1,
             what="first transfer counted")

    # the server dies: forwarding goes on
    fleet.srv.kill()
    send_hashed(plane, dst, 32, sizes[1])
    check_sink(sink, 32, sizes[1])

    # the agent restarts while the server is away: back from its state file
    old = [a for a in fleet.agents if a.node == "n1" and a.alive()][0]
    assert old.stop(10.0) == 0, old.stderr_text()[-2000:]
    assert os.path.exists(os.path.join(old.state_dir, "pending.json"))
    fleet.start_agent("n1")
    s = connect_within(plane, dst, 5.0)
    for chunk in fgnet.gen_blocks(33, sizes[2]):
        s.sendall(chunk)
    s.shutdown(1)
    fgnet.wait_closed(s, 10)
    s.close()
    check_sink(sink, 33, sizes[2])

    # the server returns: every byte is counted, once
    fleet.start_server()
    want = sum(sizes)
    try:
        wait_for(lambda: fleet.total(f["id"])["bytes_up"] >= want, 45, interval=0.2,
                 what="the outage's traffic counted")
    except fgnet.Timeout:
        raise AssertionError(f"total {fleet.total(f['id'])}, want {want}\n{fleet.logs()}") \
            from None
    time.sleep(1.5)  # several report intervals: nothing is added twice
    t = fleet.total(f["id"])
    assert t["bytes_up"] == want, t
    assert t["conns"] == 4, t  # the probe and three transfers
    n = fleet.node("n1")
    assert n["online"] and n["applied_rev"] == n["desired_rev"], n


def test_a_forward_that_cannot_bind_is_reported_and_the_rest_runs(fleet, plane):
    sink = fleet.peer("sink", 9106)
    # something else on n1 holds port 7106
    squatter = plane.ns["n1"].listen_tcp(f"{NODE_IPS['n1']}:7106")
    try:
        bad = fleet.api.ok("POST", "/forwards", {"name": "taken", "node": "n1",
                                                 "listen": f"{NODE_IPS['n1']}:7106",
                                                 "targets": [f"{TG_IP}:9106"]})
        fleet.api.ok("POST", "/forwards", {"name": "free", "node": "n1",
                                           "listen": "0.0.0.0:7107",
                                           "targets": [f"{TG_IP}:9106"]})
        fleet.wait_node("n1", lambda n: n["applied_rev"] == n["desired_rev"] and
                        any(e.get("name") == "taken" for e in (n["errors"] or [])),
                        "reporting the forward that cannot bind")
        err = [e for e in fleet.node("n1")["errors"] if e["name"] == "taken"][0]
        assert err["id"] == bad["id"] and "in use" in err["error"], err
        send_hashed(plane, f"{NODE_IPS['n1']}:7107", 41, 50000)
        check_sink(sink, 41, 50000)
    finally:
        squatter.close()
    # the port is free again: the agent retries on its own and the error clears
    fleet.wait_node("n1", lambda n: not n["errors"], "clear of errors", timeout=20)
    send_hashed(plane, f"{NODE_IPS['n1']}:7106", 42, 50000)
    check_sink(sink, 42, 50000)


def test_agent_token_from_state_dir_and_refused_token(fleet, plane, tmp_path):
    # n2's agent is replaced by one that takes the token from the environment...
    old = [a for a in fleet.agents if a.node == "n2"][0]
    assert old.stop(10.0) == 0
    fleet.wait_node("n2", lambda n: not n["online"], "offline")
    de = tmp_path / "n2-env"
    de.mkdir()
    argv = [fleet.fg_bin, "agent", "--server", f"ws://{SRV_IP}:{SRV_PORT}", "--state", str(de),
            "--workers", "1"]
    env = dict(os.environ, FLOWGATE_NODE_TOKEN=fleet.tokens["n2"])
    e = Proc(plane.ns["n2"], argv, "agent-n2-env", fleet.logdir, json_stdout=False, env=env)
    e.node, e.state_dir = "n2", str(de)
    fleet.agents.append(e)
    fleet.wait_node("n2", lambda n: n["online"], "online with $FLOWGATE_NODE_TOKEN")
    assert e.stop(10.0) == 0
    fleet.wait_node("n2", lambda n: not n["online"], "offline")
    # ... then by one that reads DIR/token
    d = tmp_path / "n2-tokenfile"
    d.mkdir()
    (d / "token").write_text(fleet.tokens["n2"] + "\n")
    argv = [fleet.fg_bin, "agent", "--server", f"ws://{SRV_IP}:{SRV_PORT}", "--state", str(d),
            "--report-interval", REPORT, "--workers", "1"]
    a = Proc(plane.ns["n2"], argv, "agent-n2-tokenfile", fleet.logdir, json_stdout=False)
    a.node, a.state_dir = "n2", str(d)
    fleet.agents.append(a)
    fleet.wait_node("n2", lambda n: n["online"], "online with the token from DIR/token")
    # n3 got past its dead first server to the live one
    assert "cannot connect to ws://%s:%d/agent" % (SRV_IP, DEAD_PORT) in \
        [x for x in fleet.agents if x.node == "n3"][0].stderr_text()
    assert fleet.tokens["n2"] not in a.stderr_text()

    # a wrong token: refused clearly, the agent keeps trying, SIGTERM still exits 0
    d2 = tmp_path / "n3-bad"
    d2.mkdir()
    argv = [fleet.fg_bin, "agent", "--server", f"ws://{SRV_IP}:{SRV_PORT}", "--state", str(d2),
            "--token", "fgn_wrong-token-wrong-token-wrong-token-wrong-tok", "--workers", "1"]
    b = Proc(plane.ns["n3"], argv, "agent-n3-badtoken", fleet.logdir, json_stdout=False)
    b.node, b.state_dir = "n3", str(d2)
    fleet.agents.append(b)
    wait_for(lambda: "node token refused (HTTP 401)" in b.stderr_text(), 5,
             what="the refusal logged")
    assert "fgn_wrong" not in b.stderr_text()
    assert b.alive()


@pytest.mark.parametrize("args,needle", [
    (["--server", "wss://10.78.0.1:8443", "--token", "t", "--pin", "zz"], "--pin"),
    (["--token", "t"], "--server: missing"),
    (["--server", "http://x", "--token", "t"], "must start with ws:// or wss://"),
    (["--server", "ws://127.0.0.1:1"], "no node token"),
    (["--server", "ws://127.0.0.1:1", "--token", "t", "--report-interval", "soon"],
     "--report-interval"),
])
def test_agent_bad_command_line_exits_2_with_a_clear_line(fg_bin, tmp_path, args, needle):
    env = dict(os.environ)
    env.pop("FLOWGATE_NODE_TOKEN", None)
    r = subprocess.run([fg_bin, "agent", "--state", str(tmp_path), *args], capture_output=True,
                       text=True, timeout=20, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr, r.stderr
    assert not any(m in r.stderr for m in SANITIZER_MARKERS), r.stderr
