"""Target state over time: passive retry of a dead target, re-resolution of names.

Both behaviours are timers inside the engine (10 s passive retry, TTL-driven
re-resolution with a 5 s floor), so these tests take ~10 s each."""

import time

import pytest

import fgnet
from conftest import NODE_IP, TARGET_IPS

pytestmark = pytest.mark.slow


def test_dead_target_without_health_check_is_retried_after_10s(peers, flowgate, port, client):
    """Passive-only: a target marked down by a failed connect gets a retry after
    10 s and, once it answers again, takes connections again (failover prefers it)."""
    tp, lp = port(), port()
    t1 = peers("whoami", f"{TARGET_IPS[0]}:{tp}", name="t1")
    peers("whoami", f"{TARGET_IPS[1]}:{tp}", name="t2")
    a1, a2 = f"{TARGET_IPS[0]}:{tp}", f"{TARGET_IPS[1]}:{tp}"
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", a1, "-r", a2, "--balance", "failover"],
                  wait_tcp=[lp])
    assert fgnet.whoami(client, (NODE_IP, lp)) == a1
    t1.close()
    assert fgnet.whoami(client, (NODE_IP, lp)) == a2
    fg.wait_metric("flowgate_forward_target_up", 0, forward="cli", target=a1)
    down_at = time.monotonic()
    peers("whoami", f"{TARGET_IPS[0]}:{tp}", name="t1-back")
    # before the retry time the down target is skipped although it listens again
    while time.monotonic() - down_at < 8:
        assert fgnet.whoami(client, (NODE_IP, lp)) == a2
        time.sleep(0.5)
    back = fgnet.wait_for(lambda: fgnet.whoami(client, (NODE_IP, lp)) == a1, 6,
                          interval=0.25, what="the first target to be retried")
    assert back
    assert time.monotonic() - down_at >= 9.5
    fg.wait_metric("flowgate_forward_target_up", 1, forward="cli", target=a1)


def test_host_name_target_is_re_resolved_when_its_ttl_runs_out(topo, peers, flowgate, port,
                                                               client):
    """A name's address changes (hosts file); without a restart, new connections
    follow it within the 5 s TTL floor."""
    hosts = f"/etc/netns/{topo.node_name}/hosts"
    with open(hosts) as f:
        original = f.read()
    tp, lp = port(), port()
    peers("whoami", f"{TARGET_IPS[0]}:{tp}", name="old")
    peers("whoami", f"{TARGET_IPS[1]}:{tp}", name="new")

    def point_to(ip):
        # rewrite in place: the namespace's bind mount follows the same inode
        with open(hosts, "r+") as f:
            f.seek(0)
            f.write(original + f"{ip} fgmoving.test\n")
            f.truncate()

    try:
        point_to(TARGET_IPS[0])
        flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"fgmoving.test:{tp}"], wait_tcp=[lp])
        fgnet.wait_for(lambda: fgnet.whoami(client, (NODE_IP, lp)) == f"{TARGET_IPS[0]}:{tp}",
                       3, interval=0.1, what="the name to resolve")
        point_to(TARGET_IPS[1])
        t0 = time.monotonic()
        fgnet.wait_for(lambda: fgnet.whoami(client, (NODE_IP, lp)) == f"{TARGET_IPS[1]}:{tp}",
                       10, interval=0.25, what="connections to follow the new address")
        assert time.monotonic() - t0 < 8
    finally:
        with open(hosts, "w") as f:
            f.write(original)
