#!/usr/bin/env python3
"""Benchmark `flowgate forward` against direct TCP and other relays.

Run through bench/run (which installs the tools first). Python 3 stdlib only.
Everything talks to 127.0.0.1; every process started here is started in its
own session (process group) and killed as a group when its measurement ends.
See bench/README.md for what is measured and how to read the results.
"""

import atexit
import datetime
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORES = os.cpu_count() or 1
NOFILE = 20000
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def env_int(name, default):
    v = os.environ.get(name, "").strip()
    if not v:
        return default
    m = re.fullmatch(r"(\d+)([KMG]?)(i?B?)?", v, re.I)
    if not m:
        sys.exit(f"bench: {name}={v!r} is not a number")
    mult = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}[m.group(2).upper()]
    return int(m.group(1)) * mult


CFG = {
    "seconds": env_int("BENCH_SECONDS", 5),
    "conns": env_int("BENCH_CONNS", 8000),
    "socat_conns": env_int("BENCH_SOCAT_CONNS", 0),    # 0: no cap
    "rinetd_conns": env_int("BENCH_RINETD_CONNS", 0),  # 0: no cap
    "cpu_bytes": env_int("BENCH_CPU_BYTES", 4 * 1024 ** 3),
    "wrk_threads": env_int("BENCH_WRK_THREADS", 2),
    "wrk_conns": env_int("BENCH_WRK_CONNS", 50),
    "repeat": max(1, env_int("BENCH_REPEAT", 2)),
    "quiet_wait": env_int("BENCH_QUIET_WAIT", 15),
    "flowgate": os.environ.get("FLOWGATE_BIN") or os.path.join(ROOT, "build", "flowgate"),
    "results_dir": os.environ.get("BENCH_RESULTS_DIR") or os.path.join(ROOT, "bench", "results"),
    "relays": [r for r in os.environ.get("BENCH_RELAYS", "").replace(",", " ").split() if r],
    "metrics": [m for m in os.environ.get("BENCH_METRICS", "").replace(",", " ").split() if m],
}

PIPE_SIZES = [65536, 1048576]


def size_label(n):
    return f"{n // 1048576}MiB" if n % 1048576 == 0 else f"{n // 1024}KiB"

# metric key -> (column title, unit, higher_is_better)
METRICS = {
    "tput1": ("1 stream", "Gbit/s", True),
    "tput8": ("8 streams", "Gbit/s", True),
    "cps": ("conn rate", "req/s", True),
    "mem": ("idle mem", "KiB/conn", False),
    "cpu": ("CPU", "s/GB", False),
}
# secondary, printed but not ratioed in the main table
EXTRA = {"kmem": ("kernel mem", "KiB/conn")}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# processes

class Group:
    """A process started in its own session; stop() kills the whole group."""

    live = []

    def __init__(self, name, argv, workdir, env=None, cwd=None):
        self.name = name
        self.argv = argv
        self.logpath = os.path.join(workdir, f"{name}.{len(Group.live)}.{time.time_ns()}.log")
        self.logf = open(self.logpath, "wb")
        e = dict(os.environ)
        if env:
            e.update(env)
        self.p = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT,
            start_new_session=True, env=e, cwd=cwd or workdir)
        self.pgid = self.p.pid
        Group.live.append(self)

    def alive(self):
        return self.p.poll() is None

    def log_tail(self, n=300):
        """The interesting end of the log on one line (alerts/errors if any)."""
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        bad = [l.strip() for l in lines if re.search(r"alert|emerg|error|fatal|fail|cannot", l, re.I)]
        return " / ".join(bad or lines[-2:])[-n:]

    def stop(self):
        if self in Group.live:
            Group.live.remove(self)
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                pass
            deadline = time.time() + wait
            while time.time() < deadline:
                if self.p.poll() is not None and not group_pids(self.pgid, include_zombies=False):
                    break
                time.sleep(0.05)
            else:
                continue
            break
        try:
            self.p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        # orphaned children (socat forks) are zombies until init reaps them
        deadline = time.time() + 5
        while group_pids(self.pgid) and time.time() < deadline:
            time.sleep(0.05)
        self.logf.close()
        left = group_pids(self.pgid, include_zombies=False)
        if left:
            log(f"warning: {self.name}: processes {left} survived SIGKILL")


def stop_all():
    for g in list(Group.live):
        g.stop()


def proc_stat(pid):
    """Fields of /proc/PID/stat after the comm, 0-based: [0]=state, [1]=ppid, [2]=pgrp."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return s[s.rfind(")") + 2:].split()


def group_pids(pgid, include_zombies=True):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_stat(d)
        if st and int(st[2]) == pgid and (include_zombies or st[0] != "Z"):
            out.append(int(d))
    return out


def group_cpu_seconds(pgid):
    """utime+stime (+ reaped children's cutime+cstime) over the group, seconds."""
    ticks = 0
    for pid in group_pids(pgid):
        st = proc_stat(pid)
        if st:
            # stat fields 14..17 (1-based) are utime stime cutime cstime;
            # here index = field - 3
            ticks += sum(int(x) for x in st[11:15])
    return ticks / CLK_TCK


def group_pss_kib(pgid):
    total, n = 0, 0
    for pid in group_pids(pgid, include_zombies=False):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        n += 1
                        break
        except OSError:
            pass
    return total, n


def kernel_kib():
    """Kernel memory of the whole machine: slab (sockets, files, pipes' buffer
    rings, ...) + kernel stacks + page tables. Unlike total used memory it
    leaves out other programs' user memory, so it is less disturbed by them."""
    m = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            m[k] = int(v.split()[0])
    return sum(m.get(k, 0) for k in ("Slab", "KernelStack", "PageTables", "SecPageTables"))


def nofile_limit(pid):
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_busy_ticks():
    """user+nice+system ticks of the whole machine (irq/softirq/steal left out)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2], sum(v)


def own_ticks():
    """CPU ticks of this harness, its reaped children and every live group it started."""
    st = proc_stat(os.getpid())
    t = sum(int(x) for x in st[11:15]) if st else 0
    for g in list(Group.live):
        for pid in group_pids(g.pgid):
            s2 = proc_stat(pid)
            if s2:
                t += sum(int(x) for x in s2[11:15])
    return t


class Background:
    """Share of the machine's CPU used by processes that are not ours, meanwhile."""

    def __enter__(self):
        self.t0 = time.time()
        self.m0, _ = machine_busy_ticks()
        self.o0 = own_ticks()
        return self

    def __exit__(self, *a):
        m1, _ = machine_busy_ticks()
        o1 = own_ticks()
        wall = max(time.time() - self.t0, 1e-3)
        foreign = max(0, (m1 - self.m0) - (o1 - self.o0))
        self.share = foreign / CLK_TCK / (wall * CORES)


def wait_quiet(threshold=0.15):
    """Wait (at most BENCH_QUIET_WAIT s) until other processes leave the CPUs mostly idle."""
    deadline = time.time() + CFG["quiet_wait"]
    while True:
        with Background() as bg:
            time.sleep(0.5)
        if bg.share < threshold or time.time() >= deadline:
            return bg.share


# --------------------------------------------------------------------------
# ports

_next_port = [21000 + (os.getpid() % 50) * 100]


def free_port():
    """A port below the ephemeral range, free for a plain bind (no TIME_WAIT)."""
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for _ in range(5000):
        port = _next_port[0]
        _next_port[0] += 1
        if _next_port[0] >= min(lo, 32000):
            _next_port[0] = 10000
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port")


def listening(port):
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def wait_listen(port, group=None, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if listening(port):
            return True
        if group is not None and not group.alive():
            return False
        time.sleep(0.02)
    return False


# --------------------------------------------------------------------------
# relays

class StartError(Exception):
    pass


def which(cmd):
    return shutil.which(cmd) or shutil.which(cmd, path="/usr/sbin:/sbin:/usr/bin:/bin")


def relay_flowgate(w, lport, tport, env=None):
    exe = CFG["flowgate"]
    if not os.access(exe, os.X_OK):
        raise StartError(f"{exe} not built")
    return Group("flowgate", [exe, "forward", "-l", f"127.0.0.1:{lport}",
                              "-r", f"127.0.0.1:{tport}"], w, env=env)


HAPROXY_CFG = """\
global
    nbthread {cores}
    maxconn {maxconn}
    maxpipes 400
{extra_global}
defaults
    mode tcp
    option splice-request
    option splice-response
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend fe
    bind 127.0.0.1:{lport}
    maxconn {maxconn}
    default_backend be

backend be
    server s1 127.0.0.1:{tport} maxconn {maxconn}
"""


def relay_haproxy(w, lport, tport, pipesize=None):
    exe = which("haproxy")
    if not exe:
        raise StartError("haproxy not installed")
    d = tempfile.mkdtemp(prefix="haproxy.", dir=w)
    cfg = os.path.join(d, "haproxy.cfg")
    extra = f"    tune.pipesize {pipesize}\n" if pipesize else ""
    with open(cfg, "w") as f:
        # 2 fds per connection + 2 per pipe + a few must fit in 20000 fds
        f.write(HAPROXY_CFG.format(cores=CORES, maxconn=9000, lport=lport, tport=tport,
                                   extra_global=extra))
    return Group("haproxy", [exe, "-db", "-f", cfg], w)


NGINX_STREAM_CFG = """\
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes {cores};
worker_rlimit_nofile {nofile};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections {nofile};
}}
stream {{
    server {{
        listen 127.0.0.1:{lport} reuseport backlog=4096;
        proxy_pass 127.0.0.1:{tport};
        proxy_connect_timeout 5s;
        proxy_timeout 1h;
{extra}    }}
}}
"""


def relay_nginx(w, lport, tport, bufsize=None):
    exe = which("nginx")
    if not exe:
        raise StartError("nginx not installed")
    if not os.path.exists("/usr/lib/nginx/modules/ngx_stream_module.so"):
        raise StartError("libnginx-mod-stream not installed")
    d = tempfile.mkdtemp(prefix="nginx-stream.", dir=w)
    cfg = os.path.join(d, "nginx.conf")
    extra = f"        proxy_buffer_size {bufsize};\n" if bufsize else ""
    with open(cfg, "w") as f:
        f.write(NGINX_STREAM_CFG.format(cores=CORES, nofile=NOFILE, d=d, lport=lport,
                                        tport=tport, extra=extra))
    return Group("nginx", [exe, "-p", d, "-c", cfg], w)


def relay_socat(w, lport, tport, bufsize=None):
    exe = which("socat")
    if not exe:
        raise StartError("socat not installed")
    opts = ["-b", str(bufsize)] if bufsize else []
    return Group("socat", [exe] + opts +
                 [f"TCP-LISTEN:{lport},bind=127.0.0.1,fork,reuseaddr,backlog=4096",
                  f"TCP:127.0.0.1:{tport}"], w)


def relay_rinetd(w, lport, tport):
    exe = which("rinetd")
    if not exe:
        raise StartError("rinetd not installed")
    d = tempfile.mkdtemp(prefix="rinetd.", dir=w)
    cfg = os.path.join(d, "rinetd.conf")
    with open(cfg, "w") as f:
        f.write(f"127.0.0.1 {lport} 127.0.0.1 {tport}\n")
    return Group("rinetd", [exe, "-f", "-c", cfg], w)


ALL = ["tput1", "tput8", "cps", "mem", "cpu"]
BULK = ["tput1", "tput8", "cpu"]
MIB = 1048576

# (row name, starter(w, listen_port, target_port) or None for direct, metrics)
RELAYS = [
    ("direct", None, ALL),
    ("flowgate", relay_flowgate, ALL),
    ("haproxy", relay_haproxy, ALL),
    ("nginx", relay_nginx, ALL),
    ("socat", relay_socat, ALL),
    ("rinetd", relay_rinetd, ALL),
    # the same peers with 1 MiB per-direction buffers/pipes, like flowgate's
    # pipes: buffer size only matters for bulk transfer (see bench/README.md)
    ("haproxy pipe=1MiB", lambda w, l, t: relay_haproxy(w, l, t, pipesize=MIB), BULK),
    ("nginx buf=1MiB", lambda w, l, t: relay_nginx(w, l, t, bufsize="1m"), BULK),
    ("socat -b 1MiB", lambda w, l, t: relay_socat(w, l, t, bufsize=MIB), BULK),
] + [
    (f"flowgate pipe={size_label(s)}",
     lambda w, l, t, s=s: relay_flowgate(w, l, t, env={"FLOWGATE_PIPE_SIZE": str(s)}),
     ["tput1", "cpu"])
    for s in PIPE_SIZES
]
PEERS = ["direct", "haproxy", "nginx", "socat", "rinetd",
         "haproxy pipe=1MiB", "nginx buf=1MiB", "socat -b 1MiB"]


class Relay:
    """Context manager: start relay `name` from lport to tport, stop it after."""

    def __init__(self, w, spec, tport):
        self.w, self.spec, self.tport = w, spec, tport
        self.g = None

    def __enter__(self):
        name, starter, _ = self.spec
        if starter is None:  # direct
            self.port = self.tport
            return self
        self.port = free_port()
        self.g = starter(self.w, self.port, self.tport)
        if not wait_listen(self.port, self.g):
            tail = self.g.log_tail()
            self.g.stop()
            raise StartError(f"{name} did not listen on {self.port}: {tail or 'no output'}")
        time.sleep(0.3)  # workers/threads finish starting
        lim = nofile_limit(self.g.pgid)
        if lim is not None and lim < NOFILE:
            log(f"warning: {name} runs with RLIMIT_NOFILE {lim}")
        if not self.g.alive():
            tail = self.g.log_tail()
            self.g.stop()
            raise StartError(f"{name} exited: {tail}")
        return self

    def __exit__(self, *a):
        if self.g is not None:
            self.g.stop()


# --------------------------------------------------------------------------
# measurements

def run_cmd(argv, timeout):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                       start_new_session=True)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def iperf3_server(w):
    port = free_port()
    g = Group("iperf3-s", ["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)], w)
    if not wait_listen(port, g):
        tail = g.log_tail()
        g.stop()
        raise StartError(f"iperf3 server did not start: {tail}")
    return g, port


def iperf3_client(port, args, timeout):
    rc, out, err = run_cmd(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J"] + args, timeout)
    try:
        j = json.loads(out)
    except ValueError:
        raise RuntimeError(f"iperf3 exit {rc}: {(err or out)[-300:]}")
    if j.get("error"):
        raise RuntimeError(f"iperf3: {j['error']}")
    return j


def m_tput(w, spec, streams):
    secs = CFG["seconds"]
    srv, sport = iperf3_server(w)
    try:
        with Relay(w, spec, sport) as r:
            j = iperf3_client(r.port, ["-t", str(secs), "-P", str(streams)], secs + 60)
    finally:
        srv.stop()
    s = j["end"]["sum_received"]
    return {"value": s["bits_per_second"] / 1e9, "bytes": s["bytes"],
            "retransmits": j["end"].get("sum_sent", {}).get("retransmits")}


def m_cpu(w, spec):
    if spec[0] == "direct":
        return {"na": "no relay process"}
    srv, sport = iperf3_server(w)
    try:
        with Relay(w, spec, sport) as r:
            c0 = group_cpu_seconds(r.g.pgid)
            t0 = time.time()
            j = iperf3_client(r.port, ["-n", str(CFG["cpu_bytes"])], 600)
            t1 = time.time()
            time.sleep(0.3)  # let forks exit / be reaped
            c1 = group_cpu_seconds(r.g.pgid)
    finally:
        srv.stop()
    moved = j["end"]["sum_received"]["bytes"]
    return {"value": (c1 - c0) / (moved / 1e9), "cpu_s": c1 - c0, "bytes": moved,
            "wall_s": t1 - t0}


HTTP_CFG = """\
worker_processes {cores};
worker_rlimit_nofile {nofile};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_timeout 0;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "ok\\n";
        }}
    }}
}}
"""

_http_backend = {}


def http_backend(w):
    """One nginx HTTP server for the whole run (the connection-rate target)."""
    if "port" in _http_backend:
        if _http_backend["g"].alive():
            return _http_backend["port"]
        raise StartError("HTTP backend nginx died")
    if "error" in _http_backend:
        raise StartError(_http_backend["error"])
    d = tempfile.mkdtemp(prefix="nginx-http.", dir=w)
    port = free_port()
    cfg = os.path.join(d, "nginx.conf")
    with open(cfg, "w") as f:
        f.write(HTTP_CFG.format(cores=CORES, nofile=NOFILE, d=d, port=port))
    g = Group("nginx-http", ["nginx", "-p", d, "-c", cfg], w)
    if not wait_listen(port, g):
        _http_backend["error"] = f"HTTP backend nginx did not start: {g.log_tail()}"
        g.stop()
        raise StartError(_http_backend["error"])
    time.sleep(0.3)
    _http_backend.update(g=g, port=port)
    return port


def m_cps(w, spec):
    bport = http_backend(w)
    secs = CFG["seconds"]
    with Relay(w, spec, bport) as r:
        argv = ["wrk", f"-t{CFG['wrk_threads']}", f"-c{CFG['wrk_conns']}", f"-d{secs}s",
                "-H", "Connection: close", f"http://127.0.0.1:{r.port}/"]
        rc, out, err = run_cmd(argv, secs + 60)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rc != 0 or not m:
        raise RuntimeError(f"wrk exit {rc}: {(err or out)[-300:]}")
    res = {"value": float(m.group(1))}
    m = re.search(r"(\d+) requests in", out)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    return res


def sink_main(port, status_path):
    """Accept and hold connections; write the count to status_path."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ)
    held = {}
    written = -1
    while True:
        for key, _ in sel.select(0.1):
            if key.fileobj is ls:
                for _ in range(256):
                    try:
                        c, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # EMFILE etc: stop accepting for now
                        break
                    c.setblocking(False)
                    held[c.fileno()] = c
                    sel.register(c, selectors.EVENT_READ)
            else:
                c = key.fileobj
                try:
                    data = c.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(c)
                    held.pop(c.fileno(), None)
                    c.close()
        if len(held) != written:
            written = len(held)
            tmp = status_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(written))
            os.replace(tmp, status_path)


def sink_count(path):
    try:
        with open(path) as f:
            return int(f.read() or 0)
    except (OSError, ValueError):
        return 0


def open_conns(port, n, timeout, confirmed, window=64):
    """Open n idle TCP connections to 127.0.0.1:port.

    At most `window` connections may be open at the client but not yet seen by
    the sink (confirmed() returns the sink's count): this keeps the relay's
    accept queue from overflowing (with SYN cookies an overflowing queue drops
    the handshake's last ACK, and an idle client would never notice that its
    connection does not exist on the other side).
    """
    sel = selectors.DefaultSelector()
    socks, failed, started, pending = [], 0, 0, 0
    deadline = time.time() + timeout
    seen = 0
    while len(socks) + failed < n and time.time() < deadline:
        if started - failed - seen >= window:
            seen = confirmed()
        while started < n and started - failed - seen < window:
            s = socket.socket()
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", port))
            started += 1
            if err in (0, errno_EINPROGRESS):
                sel.register(s, selectors.EVENT_WRITE)
                pending += 1
            else:
                failed += 1
                s.close()
        if pending:
            for key, _ in sel.select(0.05):
                s = key.fileobj
                sel.unregister(s)
                pending -= 1
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    failed += 1
                    s.close()
                else:
                    socks.append(s)
        else:
            time.sleep(0.005)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
        failed += 1
    sel.close()
    return socks, failed


errno_EINPROGRESS = 115


def m_mem(w, spec):
    name = spec[0]
    n = CFG["conns"]
    note = None
    if name == "socat" and 0 < CFG["socat_conns"] < n:
        n = CFG["socat_conns"]
        note = f"measured with {n} connections (BENCH_SOCAT_CONNS)"
    if name == "rinetd" and 0 < CFG["rinetd_conns"] < n:
        n = CFG["rinetd_conns"]
        note = f"measured with {n} connections (BENCH_RINETD_CONNS)"
    sport = free_port()
    status = os.path.join(w, f"sink.{sport}")
    sink = Group("sink", [sys.executable, os.path.abspath(__file__), "--sink", str(sport), status], w)
    socks = []
    try:
        if not wait_listen(sport, sink):
            raise StartError(f"sink did not start: {sink.log_tail()}")
        with Relay(w, spec, sport) as r:
            time.sleep(0.5)
            pss0, nproc0 = group_pss_kib(r.g.pgid) if r.g else (0, 0)
            kern0 = kernel_kib()
            t0 = time.time()
            socks, failed = open_conns(r.port, n, 120, lambda: sink_count(status))
            # the relay's accept + connect to the sink must have happened for all
            deadline = time.time() + 30
            while sink_count(status) < len(socks) and time.time() < deadline:
                time.sleep(0.1)
            held = sink_count(status)
            t_open = time.time() - t0
            time.sleep(1.0)
            pss1, nproc1 = group_pss_kib(r.g.pgid) if r.g else (0, 0)
            kern1 = kernel_kib()
            relay_alive = r.g is None or r.g.alive()
            for s in socks:
                s.close()
            socks = []
    finally:
        for s in socks:
            s.close()
        sink.stop()
    if held < n:
        raise RuntimeError(f"only {held} of {n} connections reached the sink "
                           f"({failed} client connects failed, relay alive={relay_alive})")
    res = {"conns": n, "kernel_kib_per_conn": (kern1 - kern0) / n, "open_s": round(t_open, 2)}
    if note:
        res["note"] = note
    if name == "direct":
        res["na"] = "no relay process"
    else:
        res.update(value=(pss1 - pss0) / n, pss_before_kib=pss0, pss_after_kib=pss1,
                   procs_before=nproc0, procs_after=nproc1)
    return res


MEASURE = {
    "tput1": lambda w, s: m_tput(w, s, 1),
    "tput8": lambda w, s: m_tput(w, s, 8),
    "cps": m_cps,
    "mem": m_mem,
    "cpu": m_cpu,
}


BUSY = 0.25  # foreign CPU share above which a measurement is taken again


def measure_once(w, spec, metric):
    """One measurement. If other processes used more than BUSY of the CPUs
    meanwhile, it is taken once more and the quieter of the two kept."""
    best = None
    for attempt in range(2):
        before = wait_quiet()
        try:
            with Background() as bg:
                res = MEASURE[metric](w, spec)
        except StartError as e:
            return {"failed": f"did not start: {e}", "start_error": True}
        except Exception as e:  # noqa: BLE001 - report and go on
            return {"failed": f"{type(e).__name__}: {e}"}
        if "na" in res:
            return res
        res["foreign_cpu"] = round(bg.share, 3)
        res["foreign_cpu_before"] = round(before, 3)
        if best is None or res["foreign_cpu"] < best["foreign_cpu"]:
            best = res
        if bg.share <= BUSY:
            break
        log(f"  other processes used {bg.share:.0%} of the CPUs meanwhile: again")
    return best


def aggregate(runs):
    """Median over the rounds; details of the run nearest the median."""
    ok = [r for r in runs if "value" in r]
    if not ok:
        return runs[-1]
    vals = [r["value"] for r in ok]
    med = statistics.median(vals)
    out = dict(min(ok, key=lambda r: abs(r["value"] - med)))
    out["value"] = med
    if len(runs) > 1:
        out["runs"] = vals
        out["min"], out["max"] = min(vals), max(vals)
        out["foreign_cpu"] = max(r.get("foreign_cpu", 0) for r in ok)
        failed = [r["failed"] for r in runs if "failed" in r]
        if failed:
            out["failed_runs"] = failed
    return out


# --------------------------------------------------------------------------
# reporting

def first_line(argv):
    try:
        rc, out, err = run_cmd(argv, 5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out + "\n" + err).strip()
    return text.splitlines()[0].strip() if text else None


def dpkg_version(pkg):
    try:
        rc, out, _ = run_cmd(["dpkg-query", "-W", "-f", "${Version}", pkg], 5)
        return out.strip() if rc == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def versions():
    v = {}
    fg = CFG["flowgate"]
    git = None
    try:
        rc, out, _ = run_cmd(["git", "-C", ROOT, "describe", "--always", "--dirty"], 5)
        git = out.strip() if rc == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        pass
    fgv = first_line([fg, "--version"]) if os.access(fg, os.X_OK) else None
    if fgv:
        built = datetime.datetime.fromtimestamp(os.path.getmtime(fg)).isoformat(timespec="seconds")
        fgv += f", binary built {built}"
    v["flowgate"] = f"{fgv or 'not built'} (git {git})" if git else (fgv or "not built")
    for name, argv, pkg in (
        ("haproxy", ["haproxy", "-v"], "haproxy"),
        ("nginx", ["nginx", "-v"], "nginx"),
        ("socat", ["socat", "-V"], "socat"),
        ("rinetd", ["rinetd", "-v"], "rinetd"),
        ("iperf3", ["iperf3", "-v"], "iperf3"),
        ("wrk", ["wrk", "-v"], "wrk"),
    ):
        line = None
        if which(argv[0]):
            line = first_line([which(argv[0])] + argv[1:])
            if name == "socat":  # "socat by Gerhard Rieger..." then "socat version 1.7.4.4 ..."
                try:
                    _, out, err = run_cmd(argv, 5)
                    m = re.search(r"socat version (\S+)", out + err)
                    line = f"socat {m.group(1)}" if m else line
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if line:
                # "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://..." ,
                # "wrk debian/4.1.0-3+b2 [epoll] Copyright ...": keep the version
                line = re.split(r" \d{4}/\d\d/\d\d | - https?://| Copyright", line)[0].strip()
                line = line.replace("nginx version: ", "")[:80]
        d = dpkg_version(pkg)
        v[name] = f"{line or '?'} (Debian {d})" if d else (line or "not installed")
    return v


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"kernel": platform.release(), "cpu": cpu, "cores": CORES,
            "mem_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2 ** 30, 1)}


def fmt(v, metric):
    if v is None:
        return "-"
    if metric in ("tput1", "tput8"):
        return f"{v:.2f}"
    if metric == "cps":
        return f"{v:,.0f}"
    if metric in ("mem", "kmem"):
        return f"{v:.2f}"
    if metric == "cpu":
        return f"{v:.3f}"
    return str(v)


def cell(res, metric):
    if res is None:
        return "-"
    if "failed" in res:
        return "FAILED"
    if "na" in res and "value" not in res:
        return "n/a"
    s = fmt(res.get("value"), metric)
    if metric == "mem" and res.get("conns") != CFG["conns"]:
        s += f" [{res['conns']}c]"
    return s


def ratio_cell(fg, peer, metric):
    if not fg or not peer:
        return "-"
    a, b = fg.get("value"), peer.get("value")
    if "failed" in fg or "failed" in peer or a is None or b is None:
        return "n/a"
    if b <= 0:
        return "n/a"
    return f"{a / b:.2f}"


def build_tables(results, order):
    """Returns (abs_rows, ratio_rows, header lists) of plain strings."""
    mets = list(METRICS)
    hdr = ["relay"] + [f"{METRICS[m][0]} {METRICS[m][1]}" for m in mets] + \
          [f"{EXTRA['kmem'][0]} {EXTRA['kmem'][1]}"]
    rows = []
    direct_sys = (results.get("direct", {}).get("mem") or {}).get("kernel_kib_per_conn")
    for name in order:
        r = results.get(name, {})
        row = [name] + [cell(r.get(m), m) for m in mets]
        mem = r.get("mem") or {}
        if name == "direct":
            row.append("(baseline)" if direct_sys is not None else "-")
        elif mem.get("kernel_kib_per_conn") is not None and direct_sys is not None:
            row.append(fmt(mem["kernel_kib_per_conn"] - direct_sys, "kmem"))
        else:
            row.append("-")
        rows.append(row)
    rhdr = ["ratio"] + [METRICS[m][0] for m in mets]
    rrows = []
    fg = results.get("flowgate", {})
    for name in PEERS:
        if name not in results:
            continue
        r = results[name]
        rrows.append([f"flowgate / {name}"] + [ratio_cell(fg.get(m), r.get(m), m) for m in mets])
    dirs = ["flowgate better if"] + [">1" if METRICS[m][2] else "<1" for m in mets]
    if rrows:
        rrows.append(dirs)
    return hdr, rows, rhdr, rrows


def text_table(hdr, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
    lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [hdr] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(hdr, rows):
    out = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def pipe_section(results):
    la, lb = (size_label(x) for x in PIPE_SIZES)
    a = results.get(f"flowgate pipe={la}")
    b = results.get(f"flowgate pipe={lb}")
    if not a or not b:
        return None
    lines = []
    for m in ("tput1", "tput8", "cpu"):
        ra, rb = a.get(m) or {}, b.get(m) or {}
        if not ra and not rb:
            continue
        va, vb = ra.get("value"), rb.get("value")
        if va is None or vb is None:
            lines.append(f"{METRICS[m][0]}: {la} {cell(ra, m)}, {lb} {cell(rb, m)}")
            continue
        better = "higher" if METRICS[m][2] else "lower"
        lines.append(f"{METRICS[m][0]} ({METRICS[m][1]}, {better} is better): "
                     f"{la} {fmt(va, m)}, {lb} {fmt(vb, m)}, {lb}/{la} = {vb / va:.2f}")
    return lines


def notes(results):
    out = []
    for name, r in results.items():
        fails = {}
        for m, res in r.items():
            if isinstance(res, dict) and "failed" in res:
                fails.setdefault(res["failed"], []).append(m)
        for msg, ms in fails.items():
            out.append(f"{name} {', '.join(ms)}: FAILED: {msg}")
        for m, res in r.items():
            if not isinstance(res, dict):
                continue
            if res.get("note"):
                out.append(f"{name} {m}: {res['note']}")
            if res.get("min") and res.get("max") and res["max"] > 1.3 * res["min"]:
                out.append(f"{name} {m}: rounds spread {fmt(res['min'], m)} .. {fmt(res['max'], m)}")
            for f in res.get("failed_runs", []):
                out.append(f"{name} {m}: one round FAILED: {f}")
            if res.get("foreign_cpu", 0) > 0.10:
                out.append(f"{name} {m}: other processes on the machine used "
                           f"{res['foreign_cpu']:.0%} of the CPUs during the measurement")
            if m == "cps" and (res.get("socket_errors") or res.get("non_2xx")):
                out.append(f"{name} cps: wrk saw {res.get('socket_errors')} socket errors, "
                           f"{res.get('non_2xx')} non-2xx of {res.get('requests')} requests")
    return out


def report(results, order, meta):
    hdr, rows, rhdr, rrows = build_tables(results, order)
    pipes = pipe_section(results)
    nts = notes(results)
    cfg = meta["config"]
    legend = [
        f"Each number is the median of {cfg['repeat']} rounds (all rows once per round); idle mem is measured once.",
        f"1 stream / 8 streams: iperf3 -t {cfg['seconds']} (-P 8), Gbit/s at the receiver. Higher is better.",
        f"conn rate: wrk -t{cfg['wrk_threads']} -c{cfg['wrk_conns']} -d{cfg['seconds']}s "
        "-H 'Connection: close' to nginx, a new TCP connection per request, req/s. Higher is better.",
        f"idle mem: relay PSS growth (all its processes) per idle connection, {cfg['conns']} connections "
        "unless marked [Nc]. Lower is better.",
        f"CPU: relay utime+stime per GB (1e9 bytes) moved by iperf3 -n {cfg['cpu_bytes']} (1 stream). Lower is better.",
        "kernel mem: growth of the machine's kernel memory (slab + kernel stacks + page tables) per idle "
        "connection during the idle-mem test, minus the same for direct (the client's and the sink's "
        "sockets): the relay's two sockets, pipes, processes. Indicative (whole machine); no ratio.",
    ]

    # stdout
    print()
    print(f"flowgate forward benchmark  {meta['date']}  kernel {meta['machine']['kernel']}  "
          f"{meta['machine']['cpu']} x{meta['machine']['cores']}")
    print()
    print(text_table(hdr, rows))
    print()
    if rrows:
        print("Ratios flowgate/peer (throughput, conn rate: >1 = flowgate better; "
              "idle mem, CPU: <1 = flowgate better)")
        print(text_table(rhdr, rrows))
        print()
    if pipes:
        print("flowgate pipe size (FLOWGATE_PIPE_SIZE):")
        for line in pipes:
            print("  " + line)
        print()
    for line in legend:
        print("  " + line)
    if nts:
        print()
        print("Notes:")
        for line in nts:
            print("  - " + line)

    # markdown
    md = [f"# flowgate forward benchmark — {meta['date']}", ""]
    md += ["| | |", "|---|---|",
           f"| date | {meta['timestamp']} |",
           f"| kernel (`uname -r`) | {meta['machine']['kernel']} |",
           f"| CPU | {meta['machine']['cpu']} |",
           f"| cores | {meta['machine']['cores']} |",
           f"| memory | {meta['machine']['mem_gib']} GiB |"]
    for k, v in meta["versions"].items():
        md.append(f"| {k} | {v} |")
    md.append(f"| settings | BENCH_SECONDS={cfg['seconds']} BENCH_CONNS={cfg['conns']} "
              f"BENCH_SOCAT_CONNS={cfg['socat_conns']} BENCH_CPU_BYTES={cfg['cpu_bytes']} "
              f"BENCH_REPEAT={cfg['repeat']} |")
    md.append(f"| run time | {meta['elapsed_s']:.0f} s |")
    md.append(f"| load average (1, 5, 15 min) | start {' '.join(meta['loadavg_start'])}, "
              f"end {' '.join(meta['loadavg_end'])} |")
    md += ["", "## Results", "", md_table(hdr, rows), ""]
    if rrows:
        md += ["## flowgate / peer", "",
               "Throughput and conn rate: > 1 means flowgate is better. "
               "Idle mem and CPU: < 1 means flowgate is better.", "",
               md_table(rhdr, rrows), ""]
    if pipes:
        md += ["## flowgate pipe size (`FLOWGATE_PIPE_SIZE`)", ""] + [f"- {x}" for x in pipes] + [""]
    md += ["## Columns", ""] + [f"- {x}" for x in legend] + [""]
    if nts:
        md += ["## Notes", ""] + [f"- {x}" for x in nts] + [""]
    md += ["Configurations of the relays: see `bench/README.md`. Raw numbers: the `.json` file beside this one.", ""]
    return "\n".join(md)


# --------------------------------------------------------------------------

def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--sink":
        sink_main(int(sys.argv[2]), sys.argv[3])
        return 0

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        log(f"warning: cannot set RLIMIT_NOFILE to {NOFILE} (have {soft}/{hard})")

    def on_signal(sig, frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(stop_all)

    for tool in ("iperf3", "wrk"):
        if not which(tool):
            sys.exit(f"bench: {tool} not found (run scripts/deps-bench.sh)")

    specs = [s for s in RELAYS if not CFG["relays"] or s[0] in CFG["relays"]
             or s[0].split()[0] in CFG["relays"]]
    metrics = [m for m in METRICS if not CFG["metrics"] or m in CFG["metrics"]]
    if not os.access(CFG["flowgate"], os.X_OK):
        log(f"warning: {CFG['flowgate']} not found: flowgate rows will show FAILED")

    started = time.time()
    stamp = datetime.datetime.now()
    load0 = open("/proc/loadavg").read().split()[:3]
    w = tempfile.mkdtemp(prefix="flowgate-bench.")
    runs = {s[0]: {m: [] for m in metrics if m in s[2]} for s in specs}
    try:
        # rounds: every row once per round, so that a slow spell of the
        # machine is spread over all rows instead of hitting one
        for rnd in range(CFG["repeat"]):
            for spec in specs:
                name = spec[0]
                for m in runs[name]:
                    got = runs[name][m]
                    if rnd > 0 and (m == "mem" or any("start_error" in r or "na" in r for r in got)):
                        continue  # memory is measured once; a row that can't start, once
                    log(f"[round {rnd + 1}/{CFG['repeat']}] {name}: {m} ...")
                    t = time.time()
                    res = measure_once(w, spec, m)
                    got.append(res)
                    shown = res.get("failed") or res.get("na") or fmt(res.get("value"), m)
                    log(f"[round {rnd + 1}/{CFG['repeat']}] {name}: {m} = {shown}  "
                        f"({time.time() - t:.1f} s)")
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        stop_all()
        shutil.rmtree(w, ignore_errors=True)
        return 130
    finally:
        stop_all()
    shutil.rmtree(w, ignore_errors=True)
    results = {name: {m: aggregate(r) for m, r in ms.items() if r} for name, ms in runs.items()}

    meta = {
        "date": stamp.strftime("%Y-%m-%d"),
        "timestamp": stamp.astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "config": {k: v for k, v in CFG.items() if k not in ("results_dir",)},
        "elapsed_s": time.time() - started,
        "loadavg_start": load0,
        "loadavg_end": open("/proc/loadavg").read().split()[:3],
    }
    order = [s[0] for s in specs if results.get(s[0])]
    md = report(results, order, meta)

    os.makedirs(CFG["results_dir"], exist_ok=True)
    base = os.path.join(CFG["results_dir"], f"{meta['date']}-forward")
    with open(base + ".md", "w") as f:
        f.write(md)
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "results": results,
                   "units": {m: METRICS[m][1] for m in METRICS},
                   "higher_is_better": {m: METRICS[m][2] for m in METRICS}}, f, indent=2)
        f.write("\n")
    print()
    print(f"wrote {base}.md and {base}.json  ({meta['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
