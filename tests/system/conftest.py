"""System tests for `flowgate forward`, run against the real binary in real
network namespaces (needs root and iproute2).

Topology (built once per pytest session; names carry the pytest pid so
parallel runs do not collide; namespaces of dead pytest runs are removed at
start, ours at session end, even on failure):

    fgt-<pid>-client           fgt-<pid>-node               fgt-<pid>-targets
    +------------------+       +---------------------+       +------------------+
    | c0 10.77.1.2/24  |-veth--| n0 10.77.1.1/24     |       |                  |
    |    10.77.1.3..20 |       |                     |       | t0 10.77.2.2/24  |
    | default via      |       | n1 10.77.2.1/24     |-veth--|    10.77.2.3/24  |
    |   10.77.1.1      |       | lo 127.0.0.1,       |       |    10.77.2.4/24  |
    |                  |       |    10.77.9.1/32     |       | default via      |
    | (test process    |       | 10.77.3.0/24 via    |       |   10.77.2.1      |
    |  sockets)        |       |   10.77.2.2 (black- |       | (peer.py servers)|
    +------------------+       |   hole: dropped in  |       +------------------+
                               |   targets ns)       |
                               | (flowgate runs here)|
                               +---------------------+

  * IPv6: client fd77:1::2/64 - node fd77:1::1/64; node fd77:2::1/64 - targets
    fd77:2::2/64 (nodad, default routes via the node).
  * /etc/netns/<node>/hosts (bind-mounted by `ip netns exec` over /etc/hosts for
    flowgate) names the targets fgtarget1..3(.test); its resolv.conf points at
    127.0.0.1 where nothing answers, so unknown names fail fast.
  * IP forwarding is off everywhere, so the client can reach the targets only
    through flowgate. 10.77.3.0/24 is routed from the node into the targets
    namespace, which silently drops it: a connect there times out.
  * flowgate runs in the node namespace (`ip netns exec`), with its metrics on
    127.0.0.1:<port> there.
  * Test servers (peer.py) run in the targets namespace as separate processes.
  * Client sockets are created by the test process itself: fgnet.in_netns()
    switches only the calling thread into a namespace (setns) while a socket
    is created; the socket stays in that namespace.

The binary is $FLOWGATE_BIN, default <repo>/build/flowgate. Run:
    cd /work/main && /usr/bin/python3 -m pytest -q tests/system
    FLOWGATE_BIN=build-asan/flowgate /usr/bin/python3 -m pytest -q tests/system
    ... -m "not slow"      # skip the long-running transfer / rate tests
"""

import atexit
import json
import os
import queue
import re
import resource
import signal
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fgnet  # noqa: E402
from fgnet import Netns, wait_for  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PEER = os.path.join(HERE, "peer.py")
NS_PREFIX = "fgt-"
NS_RE = re.compile(r"^fgt-(\d+)-(client|node|targets)$")

CLIENT_IP = "10.77.1.2"
CLIENT_IPS = [f"10.77.1.{i}" for i in range(2, 21)]
NODE_IP = "10.77.1.1"
NODE_IP_T = "10.77.2.1"
NODE_IP_LO = "10.77.9.1"
TARGET_IPS = ["10.77.2.2", "10.77.2.3", "10.77.2.4"]
BLACKHOLE_IP = "10.77.3.9"
CLIENT_IP6 = "fd77:1::2"
NODE_IP6 = "fd77:1::1"
NODE_IP6_T = "fd77:2::1"
TARGET_IP6 = "fd77:2::2"

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "ThreadSanitizer", "runtime error:")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (bulk transfer, rate limits, 1000 conns)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 20000) if hard != resource.RLIM_INFINITY else 20000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# ---------------------------------------------------------------------------
# namespaces


def sh(*cmd, check=True, timeout=20):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_ns_pids(ns):
    r = sh("ip", "netns", "pids", ns, check=False)
    for p in r.stdout.split():
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _del_ns(ns):
    _kill_ns_pids(ns)
    sh("ip", "netns", "del", ns, check=False)
    d = f"/etc/netns/{ns}"
    if os.path.isdir(d):
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


def _cleanup_stale():
    r = sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = NS_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            _del_ns(name)


class Topology:
    def __init__(self):
        pid = os.getpid()
        self.client_name = f"{NS_PREFIX}{pid}-client"
        self.node_name = f"{NS_PREFIX}{pid}-node"
        self.targets_name = f"{NS_PREFIX}{pid}-targets"
        self.names = [self.client_name, self.node_name, self.targets_name]
        self.client = Netns(self.client_name)
        self.node = Netns(self.node_name)
        self.targets = Netns(self.targets_name)
        self._up = False

    def create(self):
        c, n, t = self.names
        self._up = True
        for ns in self.names:
            sh("ip", "netns", "add", ns)
        # `ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts: target
        # host names for the resolver tests
        os.makedirs(f"/etc/netns/{n}", exist_ok=True)
        with open(f"/etc/netns/{n}/hosts", "w") as f:
            f.write("127.0.0.1 localhost\n")
            for i, ip in enumerate(TARGET_IPS, 1):
                f.write(f"{ip} fgtarget{i}.test fgtarget{i}\n")
        # no DNS server in the namespaces: lookups of unknown names fail at once
        with open(f"/etc/netns/{n}/resolv.conf", "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        for ns in self.names:
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
        # veth pairs created directly inside the namespaces (no root-ns names)
        sh("ip", "-n", n, "link", "add", "n0", "type", "veth", "peer", "name", "c0", "netns", c)
        sh("ip", "-n", n, "link", "add", "n1", "type", "veth", "peer", "name", "t0", "netns", t)
        for ip in CLIENT_IPS:
            sh("ip", "-n", c, "addr", "add", f"{ip}/24", "dev", "c0")
        sh("ip", "-n", n, "addr", "add", f"{NODE_IP}/24", "dev", "n0")
        sh("ip", "-n", n, "addr", "add", f"{NODE_IP_T}/24", "dev", "n1")
        sh("ip", "-n", n, "addr", "add", f"{NODE_IP_LO}/32", "dev", "lo")
        for ip in TARGET_IPS:
            sh("ip", "-n", t, "addr", "add", f"{ip}/24", "dev", "t0")
        for ns, ip, dev in ((c, CLIENT_IP6, "c0"), (n, NODE_IP6, "n0"), (n, NODE_IP6_T, "n1"),
                            (t, TARGET_IP6, "t0")):
            sh("ip", "-n", ns, "-6", "addr", "add", f"{ip}/64", "dev", dev, "nodad")
        for ns, dev in ((c, "c0"), (n, "n0"), (n, "n1"), (t, "t0")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", c, "route", "add", "default", "via", NODE_IP)
        sh("ip", "-n", t, "route", "add", "default", "via", NODE_IP_T)
        sh("ip", "-n", c, "-6", "route", "add", "default", "via", NODE_IP6)
        sh("ip", "-n", t, "-6", "route", "add", "default", "via", NODE_IP6_T)
        sh("ip", "-n", n, "route", "add", "10.77.3.0/24", "via", TARGET_IPS[0])
        # wait for the links (no DAD on v4; just carrier)
        for ns, dev in ((c, "c0"), (n, "n0"), (n, "n1"), (t, "t0")):
            wait_for(lambda: "LOWER_UP" in sh("ip", "-n", ns, "link", "show", dev).stdout,
                     5, what=f"{ns}/{dev} up")

    def destroy(self):
        if not self._up:
            return
        for ns in self.names:
            _del_ns(ns)
        self._up = False


@pytest.fixture(scope="session")
def topo():
    if os.geteuid() != 0:
        pytest.skip("system tests need root (network namespaces)")
    _cleanup_stale()
    t = Topology()
    atexit.register(t.destroy)
    try:
        t.create()
    except BaseException:
        t.destroy()
        raise
    yield t
    t.destroy()


@pytest.fixture(scope="session")
def fg_bin():
    path = os.environ.get("FLOWGATE_BIN") or os.path.join(HERE, "..", "..", "build", "flowgate")
    path = os.path.abspath(path if os.path.isabs(path) else os.path.join(os.getcwd(), path))
    if not os.access(path, os.X_OK):
        pytest.fail(f"flowgate binary not found or not executable: {path} (set FLOWGATE_BIN)",
                    pytrace=False)
    return path


class PortAlloc:
    """Ports inside our private namespaces; below the ephemeral range."""

    def __init__(self, start=11000, end=19999):
        self.next = start
        self.end = end

    def __call__(self, n=1):
        if self.next + n > self.end:
            self.next = 11000
        p = self.next
        self.next += n
        return p if n == 1 else list(range(p, p + n))


@pytest.fixture(scope="session")
def port():
    return PortAlloc()


# ---------------------------------------------------------------------------
# processes


class Proc:
    """A process in a namespace; stdout JSON events queued by a reader thread."""

    def __init__(self, ns, argv, name, logdir, json_stdout=True, env=None):
        self.ns = ns
        self.argv = argv
        self.name = name
        self.stderr_path = os.path.join(logdir, f"{name}.stderr")
        self._stderr = open(self.stderr_path, "wb")
        self.events = queue.Queue()
        self.backlog = []  # events already taken out of the queue but not consumed
        self.stdout_lines = []
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr,
            env=env, start_new_session=True)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, args=(json_stdout,), daemon=True)
        self._reader.start()

    def _read(self, json_stdout):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.stdout_lines.append(line)
            if json_stdout:
                try:
                    self.events.put(json.loads(line))
                except ValueError:
                    pass
        self.events.put({"event": "_exit"})

    def stderr_text(self):
        self._stderr.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def wait_event(self, pred=None, timeout=10.0, what="event", **match):
        """Return the first queued event matching pred/match (others are kept)."""
        def ok(ev):
            if any(ev.get(k) != v for k, v in match.items()):
                return False
            return pred(ev) if pred else True

        for i, ev in enumerate(self.backlog):
            if ok(ev):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise fgnet.Timeout(
                    f"{self.name}: no {what} {match or ''} within {timeout:.1f}s; "
                    f"stderr: {self.stderr_text()[-2000:]}")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev.get("event") == "_exit":
                self.events.put(ev)
                raise AssertionError(
                    f"{self.name} exited ({self.proc.poll()}) while waiting for {what}; "
                    f"stderr: {self.stderr_text()[-2000:]}")
            if ok(ev):
                return ev
            self.backlog.append(ev)

    def drain(self):
        """Move everything queued so far into the backlog and return the backlog."""
        while True:
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                break
            if ev.get("event") == "_exit":
                self.events.put(ev)
                break
            self.backlog.append(ev)
        return self.backlog

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self):
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout=5.0):
        """SIGTERM, wait; SIGKILL if it does not stop. Returns exit status or None if killed."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    def close(self):
        self.kill()
        self._stderr.close()


class Peer(Proc):
    def __init__(self, topo, mode, listen, logdir, name, ns=None, **opts):
        argv = [sys.executable, "-u", PEER, mode]
        for l in listen:
            argv += ["--listen", l]
        for k, v in opts.items():
            argv += [f"--{k}", str(v)]
        super().__init__(ns or topo.targets, argv, name, logdir)
        ev = self.wait_event(timeout=10, what="ready", event="ready")
        self.listen = ev["listen"]


class Flowgate(Proc):
    def __init__(self, topo, fg_bin, args, logdir, name, metrics_port, env=None):
        self.topo = topo
        self.metrics_addr = f"127.0.0.1:{metrics_port}" if metrics_port else None
        argv = [fg_bin, "forward", *args]
        if metrics_port:
            argv += ["--metrics", self.metrics_addr]
        super().__init__(topo.node, argv, name, logdir, json_stdout=False, env=env)
        self.sighups = 0

    def wait_listening(self, tcp=(), udp=(), timeout=10.0, gone=False):
        """Wait until every port is (gone=True: no longer) listening in the node ns."""
        def check():
            if not gone and not self.alive():
                raise AssertionError(
                    f"flowgate exited with {self.proc.returncode} before listening:\n"
                    f"{self.stderr_text()[-3000:]}")
            lt = {p for _, p in self.topo.node.listeners("tcp")}
            lu = {p for _, p in self.topo.node.listeners("udp")} if udp else set()
            if gone:
                return not (set(tcp) & lt) and not (set(udp) & lu)
            return set(tcp) <= lt and set(udp) <= lu
        try:
            wait_for(check, timeout, what=f"ports tcp={list(tcp)} udp={list(udp)} "
                                          f"{'closed' if gone else 'listening'}")
        except fgnet.Timeout as e:
            raise AssertionError(f"{e}\nflowgate stderr:\n{self.stderr_text()[-3000:]}") from None

    def metrics(self):
        return fgnet.fetch_metrics(self.topo.node, self.metrics_addr)

    def wait_metric(self, name, value, timeout=5.0, cmp=None, **labels):
        """Poll /metrics until name{labels} == value (or cmp(v) is true); return Metrics."""
        last = [None]

        def check():
            m = self.metrics()
            last[0] = m
            v = m.get(name, **labels)
            return m if (cmp(v) if cmp else v == value) else None
        try:
            return wait_for(check, timeout, interval=0.05, what=f"{name}{labels} == {value}")
        except fgnet.Timeout:
            v = last[0].get(name, **labels) if last[0] else None
            raise AssertionError(
                f"metric {name}{labels}: expected {'condition' if cmp else value}, last value {v}\n"
                f"{last[0]!r}") from None

    def sighup(self):
        self.sighups += 1
        self.signal(signal.SIGHUP)


@pytest.fixture
def logdir(tmp_path):
    return str(tmp_path)


@pytest.fixture
def peers(topo, logdir):
    """Factory: peers(mode, [listen...], ns=None, **opts) -> Peer (killed at teardown)."""
    started = []
    counter = [0]

    def start(mode, listen, name=None, **opts):
        counter[0] += 1
        if isinstance(listen, str):
            listen = [listen]
        p = Peer(topo, mode, listen, logdir, name or f"peer{counter[0]}-{mode}", **opts)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


@pytest.fixture
def flowgate(topo, fg_bin, logdir, port, request):
    """Factory: flowgate(args, wait_tcp=[ports], wait_udp=[ports]) -> Flowgate.

    Adds --metrics 127.0.0.1:<port> (in the node ns) unless metrics=False.
    At teardown each instance gets SIGTERM and must exit 0 within 5 s with no
    sanitizer report on stderr.
    """
    started = []

    def start(args, wait_tcp=(), wait_udp=(), metrics=True, name=None, check_exit=True):
        mp = port() if metrics else None
        fg = Flowgate(topo, fg_bin, [str(a) for a in args], logdir,
                      name or f"flowgate{len(started) + 1}", mp)
        fg.check_exit = check_exit
        started.append(fg)
        waits = list(wait_tcp) + ([mp] if mp else [])
        if waits or wait_udp:
            fg.wait_listening(tcp=waits, udp=wait_udp)
        return fg

    yield start
    problems = []
    for fg in started:
        was_alive = fg.alive()
        rc = fg.stop(5.0)
        err = fg.stderr_text()
        fg.close()
        san = [m for m in SANITIZER_MARKERS if m in err]
        if san:
            problems.append(f"{fg.name}: sanitizer report on stderr ({san}):\n{err[-4000:]}")
        if fg.check_exit and was_alive and rc != 0:
            problems.append(f"{fg.name}: exit status after SIGTERM was {rc} "
                            f"({'killed after 5s' if rc is None else 'expected 0'}); "
                            f"stderr tail:\n{err[-2000:]}")
    if problems:
        sys.stderr.write("\n".join(problems) + "\n")
        if not getattr(request.node, "_call_failed", False):
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item._call_failed = rep.failed


@pytest.fixture
def client(topo):
    return topo.client


def run_flowgate_once(topo, fg_bin, args, timeout=10.0):
    """Run flowgate in the node ns expecting it to exit; returns CompletedProcess."""
    return subprocess.run(["ip", "netns", "exec", topo.node_name, fg_bin, "forward", *args],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
