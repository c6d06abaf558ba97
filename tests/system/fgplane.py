"""One flat test network for the control-plane suites: a bridge namespace and
one namespace per member (server, agents, client, targets), each with one
veth `e0` on the bridge. Names carry a prefix per suite and the pytest pid,
so suites and parallel runs never collide; leftovers of dead runs with the
same prefix are removed before creating.

    @pytest.fixture(scope="module")
    def plane():
        p = fgplane.start(fgplane.Plane("fgc-", {"srv": "10.78.0.1", ...}))
        yield p
        p.destroy()
"""

import os
import re
import subprocess

import pytest

from conftest import _del_ns as del_ns
from conftest import _pid_alive as alive
from conftest import sh
from fgnet import Netns, wait_for


class Plane:
    def __init__(self, prefix, ips):
        """ips: member name -> its IPv4 address in one /24."""
        pid = os.getpid()
        self.prefix = prefix
        self.ips = dict(ips)
        self.names = {k: f"{prefix}{pid}-{k}" for k in ("br", *self.ips)}
        self.ns = {k: Netns(v) for k, v in self.names.items()}

    def create(self):
        stale = re.compile(rf"^{re.escape(self.prefix)}(\d+)-")
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            name = line.split()[0] if line.split() else ""
            m = stale.match(name)
            if m and not alive(int(m.group(1))):
                del_ns(name)
        for n in self.names.values():
            sh("ip", "netns", "add", n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        br = self.names["br"]
        sh("ip", "-n", br, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", br, "link", "set", "br0", "up")
        for i, (k, ip) in enumerate(self.ips.items()):
            n = self.names[k]
            sh("ip", "-n", br, "link", "add", f"p{i}", "type", "veth", "peer", "name", "e0",
               "netns", n)
            sh("ip", "-n", br, "link", "set", f"p{i}", "master", "br0")
            sh("ip", "-n", br, "link", "set", f"p{i}", "up")
            sh("ip", "-n", n, "addr", "add", f"{ip}/24", "dev", "e0")
            sh("ip", "-n", n, "link", "set", "e0", "up")
        for k in self.ips:
            n = self.names[k]
            wait_for(lambda: "LOWER_UP" in sh("ip", "-n", n, "link", "show", "e0").stdout, 5,
                     what=f"{n}/e0 up")

    def destroy(self):
        for n in self.names.values():
            del_ns(n)


def start(p):
    """Creates p (skipping the test without root); destroys it if that fails."""
    if os.geteuid() != 0:
        pytest.skip("system tests need root (network namespaces)")
    try:
        p.create()
    except BaseException:
        p.destroy()
        raise
    return p
