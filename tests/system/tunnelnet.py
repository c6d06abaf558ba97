"""Namespaces and helpers for the tunnel system tests (test_tunnel*.py).

Topology (names fgu-<pid>-<role>, removed at session end and at exit):

    cli 10.79.1.2 --- 10.79.1.1 ent 10.79.2.1 --- 10.79.2.2 ext 10.79.3.1 --- 10.79.3.2 tgt
                                  10.79.4.1                                    (peer.py)
                                     |
                                  10.79.4.2 rtr 10.79.5.1 --- 10.79.5.2 prv
                                  (masquerade out r0; no new                (NATed exit and
                                   connection in from r0)                    its private target)

  * cli: the test's client sockets; ent: the entry node; ext: exits and relays
    (several flowgate processes on different ports); tgt: target servers.
  * rtr forwards and masquerades prv's traffic towards ent and drops every new
    connection coming in from ent's side (also to itself): a node behind NAT with no
    inbound port. prv's private target listens on 10.79.5.2.
  * IP forwarding is off everywhere but rtr: the client reaches targets only through
    tunnels.
  * Every namespace has /etc/netns/<ns>/hosts (`ip netns exec` bind-mounts it over
    /etc/hosts; set_hosts() rewrites it in place) and a resolv.conf naming 127.0.0.1,
    where nothing answers: names not in the hosts file fail at once.
"""

import atexit
import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import hashlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fgnet  # noqa: E402
from fgnet import Netns, wait_for  # noqa: E402
from conftest import _del_ns, _pid_alive  # noqa: E402,F401

PREFIX = "fgu-"
NS_RE = re.compile(r"^fgu-(\d+)-(\w+)$")
ROLES = ("cli", "ent", "ext", "tgt", "rtr", "prv")

CLI = "10.79.1.2"
ENT_C = "10.79.1.1"
ENT_X = "10.79.2.1"
ENT_N = "10.79.4.1"
EXT = "10.79.2.2"
EXT2 = "10.79.2.3"  # a second exit address (a peer name re-pointed to another exit)
EXT_T = "10.79.3.1"
TGT = "10.79.3.2"
TGT2 = "10.79.3.3"  # a second target address (host-name tests re-point a name to it)
RTR_E = "10.79.4.2"
PRV = "10.79.5.2"

PSK = {"id": 7, "key": base64.b64encode(bytes(range(32))).decode()}
WRONG_PSK = {"id": 7, "key": base64.b64encode(bytes(range(1, 33))).decode()}

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")


def sh(*cmd, check=True, timeout=20, input=None):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def cleanup_stale():
    r = sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = NS_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            _del_ns(name)


class TunnelNet:
    def __init__(self):
        pid = os.getpid()
        self.name = {r: f"{PREFIX}{pid}-{r}" for r in ROLES}
        self.ns = {r: Netns(n) for r, n in self.name.items()}
        self._up = False

    def __getattr__(self, role):
        if role in ROLES:
            return self.ns[role]
        raise AttributeError(role)

    def create(self):
        n = self.name
        self._up = True
        for ns in n.values():
            sh("ip", "netns", "add", ns)
            os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
            with open(f"/etc/netns/{ns}/hosts", "w") as f:
                f.write("127.0.0.1 localhost\n")
            with open(f"/etc/netns/{ns}/resolv.conf", "w") as f:
                f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")

        def veth(a, da, b, db):
            sh("ip", "-n", n[a], "link", "add", da, "type", "veth", "peer", "name", db,
               "netns", n[b])

        veth("cli", "c0", "ent", "e0")
        veth("ent", "e1", "ext", "x0")
        veth("ext", "x1", "tgt", "t0")
        veth("ent", "e2", "rtr", "r0")
        veth("rtr", "r1", "prv", "p0")
        for ns, dev, ip in (("cli", "c0", CLI), ("ent", "e0", ENT_C), ("ent", "e1", ENT_X),
                            ("ent", "e2", ENT_N), ("ext", "x0", EXT), ("ext", "x1", EXT_T),
                            ("tgt", "t0", TGT), ("rtr", "r0", RTR_E), ("rtr", "r1", "10.79.5.1"),
                            ("prv", "p0", PRV)):
            sh("ip", "-n", n[ns], "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", n[ns], "link", "set", dev, "up")
        sh("ip", "-n", n["cli"], "addr", "add", "10.79.1.3/24", "dev", "c0")  # a second client
        sh("ip", "-n", n["tgt"], "addr", "add", f"{TGT2}/24", "dev", "t0")
        sh("ip", "-n", n["ext"], "addr", "add", f"{EXT2}/24", "dev", "x0")
        sh("ip", "-n", n["cli"], "route", "add", "default", "via", ENT_C)
        sh("ip", "-n", n["tgt"], "route", "add", "default", "via", EXT_T)
        sh("ip", "-n", n["prv"], "route", "add", "default", "via", "10.79.5.1")
        sh("ip", "netns", "exec", n["rtr"], "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        # a home router: outbound masqueraded, nothing new comes in
        sh("ip", "netns", "exec", n["rtr"], "nft", "-f", "-", input="""
table ip nat {
  chain post {
    type nat hook postrouting priority 100;
    oifname "r0" masquerade
  }
}
table ip filter {
  chain forward_in {
    type filter hook forward priority 0; policy accept;
    iifname "r0" ct state new drop
  }
  chain input_in {
    type filter hook input priority 0; policy accept;
    iifname "r0" ct state new drop
  }
}
""")
        for ns, dev in (("cli", "c0"), ("ent", "e0"), ("ent", "e1"), ("ent", "e2"),
                        ("ext", "x0"), ("ext", "x1"), ("tgt", "t0"), ("rtr", "r0"),
                        ("rtr", "r1"), ("prv", "p0")):
            wait_for(lambda: "LOWER_UP" in sh("ip", "-n", n[ns], "link", "show", dev).stdout,
                     5, what=f"{ns}/{dev} up")

    def set_hosts(self, role, names):
        """Makes role's hosts file localhost plus {name: ip}. Rewritten in place: the
        namespace's bind mount over /etc/hosts follows the inode, not the path."""
        with open(f"/etc/netns/{self.name[role]}/hosts", "r+") as f:
            f.seek(0)
            f.write("127.0.0.1 localhost\n" +
                    "".join(f"{ip} {name}\n" for name, ip in names.items()))
            f.truncate()

    def destroy(self):
        if not self._up:
            return
        for ns in self.name.values():
            _del_ns(ns)
        self._up = False


def link(transport, mux=True, psk=PSK, **kw):
    d = {"transport": transport, "mux": mux, "psk": psk}
    d.update(kw)
    return d


def fingerprint(cert):
    out = sh("openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256").stdout
    return out.strip().split("=", 1)[1]


class Node:
    """One `flowgate forward -c FILE` process in a namespace, with metrics."""

    def __init__(self, proc_cls, fg_bin, ns, doc, logdir, name, metrics_port, extra=()):
        self.ns = ns
        self.name = name
        self.path = os.path.join(logdir, f"{name}.json")
        self.cert = os.path.join(logdir, f"{name}.crt")
        self.key = os.path.join(logdir, f"{name}.key")
        self.metrics_addr = f"127.0.0.1:{metrics_port}"
        self.write(doc)
        argv = [fg_bin, "forward", "-c", self.path, "--metrics", self.metrics_addr, *extra]
        self.proc = proc_cls(ns, argv, name, logdir, json_stdout=False)

    def write(self, doc):
        doc = dict(doc)
        doc.setdefault("tls", {"cert": self.cert, "key": self.key})
        with open(self.path, "w") as f:
            json.dump(doc, f, indent=1)

    def wait_up(self, timeout=10.0):
        """Until the metrics port and every tunnel listen port of the file listen."""
        ports = {int(self.metrics_addr.rsplit(":", 1)[1])}
        with open(self.path) as f:
            doc = json.load(f)
        for t in doc.get("tunnels", []):
            if t.get("enabled", True) is False:
                continue
            for a in (t.get("listen"), t.get("prev", {}).get("listen"),
                      t.get("next", {}).get("listen")):
                if a:
                    hp = a.rsplit(":", 1)[1]
                    lo, _, hi = hp.partition("-")
                    ports.update(range(int(lo), int(hi or lo) + 1))

        def check():
            if not self.proc.alive():
                raise AssertionError(f"{self.name} exited ({self.proc.proc.returncode}):\n"
                                     f"{self.proc.stderr_text()[-3000:]}")
            return ports <= {p for _, p in self.ns.listeners("tcp")}
        wait_for(check, timeout, what=f"{self.name} metrics listening")
        return self

    def fingerprint(self):
        wait_for(lambda: os.path.exists(self.cert), 5, what=f"{self.name} certificate")
        return fingerprint(self.cert)

    def metrics(self):
        return fgnet.fetch_metrics(self.ns, self.metrics_addr)

    def metric(self, name, tunnel="t", **labels):
        return self.metrics().get(name, tunnel=tunnel, **labels)

    def wait_metric(self, name, cmp, timeout=10.0, tunnel="t", **labels):
        last = [None]

        def check():
            v = self.metric(name, tunnel=tunnel, **labels)
            last[0] = v
            return cmp(v or 0)
        try:
            wait_for(check, timeout, interval=0.05, what=f"{self.name} {name}")
        except fgnet.Timeout:
            raise AssertionError(f"{self.name}: {name}{labels}: last value {last[0]}\n"
                                 f"{self.proc.stderr_text()[-3000:]}") from None

    def stderr(self):
        return self.proc.stderr_text()


def transfer(ns, addr, payload, timeout=30.0):
    """Send payload on a new connection (to an echo target), read to EOF; returns
    what came back."""
    s = ns.connect(addr, timeout=timeout)
    s.settimeout(timeout)
    err = []

    def w():
        try:
            s.sendall(payload)
            s.shutdown(1)
        except OSError as e:
            err.append(e)
    t = threading.Thread(target=w, daemon=True)
    t.start()
    got = bytearray()
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got += b
    finally:
        t.join(timeout)
        s.close()
    if err:
        raise err[0]
    return bytes(got)


def many_transfers(ns, addr, n, size, timeout=60.0):
    """n concurrent echo transfers of `size` distinct random bytes; returns the number
    whose echo matched by SHA-256 and the list of failures."""
    ok = [0]
    bad = []
    lock = threading.Lock()

    def one(i):
        data = os.urandom(size)
        try:
            got = transfer(ns, addr, data, timeout)
            good = hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        except OSError as e:
            good, got = False, repr(e).encode()
        with lock:
            if good:
                ok[0] += 1
            else:
                bad.append((i, len(got)))
    ths = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout)
    return ok[0], bad


def echo_load_exact(net, en, ex, addr):
    """Through the tunnel entry en -> exit ex at addr (an echo target behind):
    one 8 MiB echo and 200 concurrent 32 KiB echoes, each hash-checked, then
    both nodes' byte counters equal the bytes delivered, each way, and every
    connection is counted and closed. Returns the byte total."""
    big = os.urandom(8 << 20)
    got = transfer(net.cli, addr, big)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(big).hexdigest(), \
        f"8 MiB echo differs: got {len(got)} bytes"
    ok, bad = many_transfers(net.cli, addr, 200, 32 << 10)
    assert ok == 200, f"{200 - ok} of 200 concurrent streams failed: {bad[:5]}"
    total = len(big) + 200 * (32 << 10)
    # up at the exit (to the target), down at the entry (to the client);
    # each side's own direction too
    ex.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == total, direction="up")
    en.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == total, direction="down")
    en.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == total, direction="up")
    ex.wait_metric("flowgate_tunnel_bytes_total", lambda v: v == total, direction="down")
    en.wait_metric("flowgate_tunnel_connections_total", lambda v: v == 201)
    ex.wait_metric("flowgate_tunnel_connections_total", lambda v: v == 201)
    en.wait_metric("flowgate_tunnel_connections_active", lambda v: v == 0)
    ex.wait_metric("flowgate_tunnel_connections_active", lambda v: v == 0)
    assert en.metric("flowgate_tunnel_refused_total") == 0
    return total


def connect_fails(ns, addr, timeout=2.0):
    try:
        s = ns.connect(addr, timeout=timeout)
    except OSError:
        return True
    s.close()
    return False


__all__ = ["TunnelNet", "Node", "link", "transfer", "many_transfers", "echo_load_exact", "PSK", "WRONG_PSK",
           "cleanup_stale", "atexit"]
