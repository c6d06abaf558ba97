"""What a node cannot do at run time shows in the API: `flowgate server` and
three agents in their own namespaces (test_control_plane.py's topology under
the prefix fgs-), a control-plane tunnel whose target is a host name.

Names come from per-namespace hosts files: /etc/netns/<ns>/hosts is made
before the agents start (`ip netns exec` bind-mounts it over /etc/hosts) and
rewritten in place later; resolv.conf names 127.0.0.1, where nothing answers,
so a name missing from the hosts file fails at once.

What is pinned: while the exit cannot resolve its target, the path view says
`degraded` for the exit with the name and why in `detail`, `problems` names
it, the live view carries the warning, the node's apply `errors` do not (a
run-time condition is not an apply error), and a client's connection is
refused; once the name is in the hosts file the exit is `ok` again within a
lookup retry and a report, `problems` is empty, and bytes come through
unchanged (hash-checked). Likewise a relay whose mux link to the exit has
been down for 30 s is `degraded` naming the side and the address it dials,
and `ok` again once the link is up.
"""

import hashlib
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fgnet  # noqa: E402
import fgplane  # noqa: E402
import test_control_plane as cp  # noqa: E402
import test_tunnel_control as tc  # noqa: E402
from fgnet import wait_for  # noqa: E402

PREFIX = "fgs-"
NODE_IPS = cp.NODE_IPS
TG_IP = cp.TG_IP
NAME = "fgdb.test"


def set_hosts(plane, member, names):
    """member's hosts file: localhost plus {name: ip}. Rewritten in place when
    it exists: the namespace's bind mount follows the inode, not the path."""
    path = f"/etc/netns/{plane.names[member]}/hosts"
    text = "127.0.0.1 localhost\n" + "".join(f"{ip} {n}\n" for n, ip in names.items())
    with open(path, "r+" if os.path.exists(path) else "w") as f:
        f.seek(0)
        f.write(text)
        f.truncate()


@pytest.fixture(scope="module")
def plane():
    p = fgplane.start(fgplane.Plane(PREFIX, {"srv": cp.SRV_IP, "cl": cp.CL_IP, "tg": TG_IP,
                                             **NODE_IPS}))
    try:
        # before any agent starts: ip netns exec mounts these at exec time
        for node in NODE_IPS:
            os.makedirs(f"/etc/netns/{p.names[node]}", exist_ok=True)
            set_hosts(p, node, {})
            with open(f"/etc/netns/{p.names[node]}/resolv.conf", "w") as f:
                f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    except BaseException:
        p.destroy()
        raise
    yield p
    p.destroy()


@pytest.fixture
def fleet(plane, fg_bin, tmp_path, request):
    f = cp.Fleet(plane, fg_bin, tmp_path, request)
    yield f
    problems = f.stop()
    if problems and not getattr(request.node, "_call_failed", False):
        pytest.fail("\n".join(problems), pytrace=False)


def test_exit_whose_target_does_not_resolve_is_degraded_until_it_does(fleet, plane):
    fleet.peer("echo", 9270)
    set_hosts(plane, "n3", {})
    t = fleet.api.ok("POST", "/tunnels", tc.chain_body(
        name="dbn", entry={"node": "n1", "listen": "0.0.0.0:7270"}, target=f"{NAME}:9270",
        link_port=7370, transport="tls", mux=True))
    if tc._engine_missing(fleet, "dbn"):
        pytest.skip("the agents were built without the tunnel engine")
    last = [None]

    def path():
        last[0] = tc._path_nodes(fleet.api.ok("GET", f"/tunnels/{t['id']}"))
        return last[0]

    def exit_degraded():
        n = path()
        return (n["n3"]["state"] == "degraded" and n["n1"]["state"] == "ok"
                and n["n2"]["state"] == "ok")
    try:
        # the first lookup fails at once; the next report (300 ms) says so
        wait_for(exit_degraded, 10, interval=0.1, what="n3 degraded")
    except fgnet.Timeout:
        raise AssertionError(f"path: {last[0]}\n{fleet.logs()}") from None
    detail = last[0]["n3"]["detail"]
    assert f'targets[0] "{NAME}"' in detail and "cannot resolve" in detail, detail
    assert "streams to it are refused" in detail, detail
    assert last[0]["n3"]["role"] == "exit"
    # the exit runs the tunnel: its link from the relay is up all the same
    assert last[0]["n3"]["links_up"] is not None
    problems = fleet.api.ok("GET", f"/tunnels/{t['id']}")["problems"]
    assert problems == [f"n3: {detail}"], problems
    # the list says the same
    listed = {x["name"]: x for x in fleet.api.ok("GET", "/tunnels")["tunnels"]}
    assert listed["dbn"]["problems"] == problems
    # the live view carries it per (tunnel, node)...
    live = fleet.api.ok("GET", "/live")
    n3_live = live["tunnels"][str(t["id"])]["nodes"][str(fleet.node_ids["n3"])]
    assert NAME in n3_live["warn"], n3_live
    # ...but it is no apply error: nothing sticks in the node's errors
    assert NAME not in str(fleet.node("n3").get("errors")), fleet.node("n3")
    # and it is true: a client's connection is refused (closed or reset, no
    # bytes back)
    try:
        got = tc._echo(plane, f"{NODE_IPS['n1']}:7270", b"x" * 1000, timeout=10)
    except ConnectionResetError:
        got = b""
    assert got == b""

    set_hosts(plane, "n3", {NAME: TG_IP})

    def all_ok():
        n = path()
        return all(x["state"] == "ok" for x in n.values())
    try:
        # a failed name is looked up again within 5 s, then one report
        wait_for(all_ok, 15, interval=0.2, what="every node ok")
    except fgnet.Timeout:
        raise AssertionError(f"path: {last[0]}\n{fleet.logs()}") from None
    assert last[0]["n3"]["detail"] == ""
    assert fleet.api.ok("GET", f"/tunnels/{t['id']}")["problems"] == []
    live = fleet.api.ok("GET", "/live")
    assert live["tunnels"][str(t["id"])]["nodes"][str(fleet.node_ids["n3"])]["warn"] == ""

    payload = os.urandom(1_000_000)
    got = tc._echo(plane, f"{NODE_IPS['n1']}:7270", payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(), len(got)


def test_relay_whose_next_link_stays_down_is_degraded_until_it_comes_up(fleet, plane):
    """A dialing side that keeps a link up (mux) and has had none for 30 s
    says so: the relay n2 dials the exit at an address where nothing listens
    (n3's address set to the target host's), so its path node turns
    `degraded` naming the side and the address it dials, while the exit,
    which only listens, stays ok. Given the right address the link comes up,
    n2 is ok again and bytes come through unchanged."""
    fleet.peer("echo", 9271)
    fleet.api.ok("PATCH", "/nodes/n3", {"address": TG_IP})
    t = fleet.api.ok("POST", "/tunnels", tc.chain_body(
        name="nolink", entry={"node": "n1", "listen": "0.0.0.0:7271"},
        target=f"{TG_IP}:9271", link_port=7371, transport="tls", mux=True))
    if tc._engine_missing(fleet, "nolink"):
        pytest.skip("the agents were built without the tunnel engine")
    last = [None]
    t0 = time.monotonic()

    def relay_degraded():
        last[0] = tc._path_nodes(fleet.api.ok("GET", f"/tunnels/{t['id']}"))
        return last[0]["n2"]["state"] == "degraded"
    try:
        wait_for(relay_degraded, 60, interval=0.5, what="n2 degraded")
    except fgnet.Timeout:
        raise AssertionError(f"path: {last[0]}\n{fleet.logs()}") from None
    # not before the 30 s a re-dialing link may take to heal by itself
    assert time.monotonic() - t0 >= 29, time.monotonic() - t0
    n = last[0]
    assert n["n2"]["detail"].startswith("next: no link up for "), n["n2"]
    assert f"(dialing {TG_IP}:7371)" in n["n2"]["detail"], n["n2"]
    assert n["n1"]["state"] == "ok" and n["n3"]["state"] == "ok", n
    assert f"n2: {n['n2']['detail']}" in fleet.api.ok("GET", f"/tunnels/{t['id']}")["problems"]

    fleet.api.ok("PATCH", "/nodes/n3", {"address": NODE_IPS["n3"]})

    def all_ok():
        last[0] = tc._path_nodes(fleet.api.ok("GET", f"/tunnels/{t['id']}"))
        return all(x["state"] == "ok" and (x["links_up"] or 0) >= 1 for x in last[0].values())
    try:
        wait_for(all_ok, 20, interval=0.2, what="every node ok with a link up")
    except fgnet.Timeout:
        raise AssertionError(f"path: {last[0]}\n{fleet.logs()}") from None
    assert fleet.api.ok("GET", f"/tunnels/{t['id']}")["problems"] == []
    payload = os.urandom(500_000)
    got = tc._echo(plane, f"{NODE_IPS['n1']}:7271", payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(), len(got)
