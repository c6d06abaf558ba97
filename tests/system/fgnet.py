"""Helpers for the flowgate system tests (stdlib only).

Used both by the pytest process (conftest.py, test_*.py) and by peer.py, the
test-server program that runs inside the targets namespace.

Contents:
  * deterministic pseudo-random data streams (gen_blocks, stream_sha256)
  * network-namespace entry for the current thread (in_netns) and sockets
    created inside a namespace (Netns)
  * /proc/net listener inspection (listeners)
  * socket utilities with bounded waits (recv_exact, recv_line, wait_closed, ...)
  * a tiny HTTP GET + Prometheus text parser (fetch_metrics, Metrics)
"""

import contextlib
import ctypes
import errno
import hashlib
import os
import random
import re
import select
import socket
import struct
import time

# ---------------------------------------------------------------------------
# deterministic data

BLOCK = 1 << 20
_base_cache = {}


def _base(seed):
    b = _base_cache.get(seed)
    if b is None:
        b = random.Random(seed).randbytes(BLOCK)
        _base_cache[seed] = b
    return b


def gen_blocks(seed, nbytes, block=BLOCK):
    """Yield the deterministic stream for `seed`, `nbytes` long (nbytes < 0: forever).

    Block i of the stream is the 1 MiB seed block rotated by an i-dependent
    offset with i (8 bytes LE) written at its start, so a duplicated,
    dropped or reordered block changes the sha256. Chunks are at most `block`
    bytes (block must divide 1 MiB for the stream to be independent of it).
    """
    base = memoryview(_base(seed))
    i = 0
    remaining = nbytes
    buf = bytearray(BLOCK)
    while remaining != 0:
        off = (i * 104729 + seed * 7919) % BLOCK
        buf[: BLOCK - off] = base[off:]
        buf[BLOCK - off:] = base[:off]
        buf[:8] = struct.pack("<Q", i)
        i += 1
        out = bytes(buf)
        for pos in range(0, BLOCK, block):
            chunk = out[pos: pos + block]
            if remaining >= 0:
                if remaining == 0:
                    return
                if len(chunk) > remaining:
                    chunk = chunk[:remaining]
                remaining -= len(chunk)
            yield chunk


def stream_sha256(seed, nbytes):
    h = hashlib.sha256()
    for c in gen_blocks(seed, nbytes):
        h.update(c)
    return h.hexdigest()


def stream_bytes(seed, nbytes):
    return b"".join(gen_blocks(seed, nbytes))


# ---------------------------------------------------------------------------
# network namespaces

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def in_netns(name):
    """Move the *calling thread* into network namespace `name` for the block.

    Sockets created inside the block stay in that namespace for their whole
    life, so they may be used from anywhere after the block ends.
    """
    if name is None:
        yield
        return
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({name}): {os.strerror(e)}")
        try:
            yield
        finally:
            if _libc.setns(orig, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns(back): {os.strerror(e)}")
    finally:
        os.close(fd)
        os.close(orig)


def _split_hostport(addr):
    if isinstance(addr, tuple):
        return addr
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


class Netns:
    """Create sockets inside a named network namespace."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Netns({self.name})"

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        with in_netns(self.name):
            return socket.socket(family, type)

    def connect(self, dst, src=None, timeout=5.0):
        """TCP connect from this namespace (optionally from source ip `src`)."""
        dst = _split_hostport(dst)
        s = self.socket(socket.AF_INET6 if ":" in dst[0] else socket.AF_INET)
        try:
            if src:
                s.bind((src, 0))
            s.settimeout(timeout)
            s.connect(dst)
        except BaseException:
            s.close()
            raise
        return s

    def connect_refusable(self, dst, src=None, timeout=5.0):
        """connect() for a connection the forward may refuse: a refusal can already
        arrive (as a reset) while connect() is still returning. Returns the socket, or
        None if the connection was reset during connect."""
        try:
            return self.connect(dst, src=src, timeout=timeout)
        except (ConnectionResetError, ConnectionAbortedError):
            return None

    def udp(self, src=None, v6=False):
        v6 = v6 or (src is not None and ":" in src)
        s = self.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src or ("::" if v6 else "0.0.0.0"), 0))
        return s

    def listen_tcp(self, addr, reuseport=False, backlog=128):
        addr = _split_hostport(addr)
        s = self.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(addr)
        s.listen(backlog)
        return s

    def listeners(self, proto="tcp"):
        with in_netns(self.name):
            return listeners(proto)

    def read_file(self, path):
        with in_netns(self.name):
            with open(path) as f:
                return f.read()


def _parse_proc_net(text, v6):
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 4:
            continue
        laddr, lport = f[1].split(":")
        port = int(lport, 16)
        st = int(f[3], 16)
        if v6:
            ip = "v6:" + laddr
        else:
            ip = socket.inet_ntoa(struct.pack("<I", int(laddr, 16)))
        out.append((ip, port, st))
    return out


def listeners(proto="tcp"):
    """(ip, port) of listening TCP sockets / bound UDP sockets in this thread's netns."""
    res = []
    for v6, fn in ((False, proto), (True, proto + "6")):
        try:
            with open(f"/proc/thread-self/net/{fn}") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        for ip, port, st in _parse_proc_net(text, v6):
            if proto == "tcp" and st != 0x0A:  # LISTEN
                continue
            if proto == "udp" and st != 0x07:  # unconnected (bound) UDP
                continue
            res.append((ip, port))
    return res


# ---------------------------------------------------------------------------
# bounded waits


class Timeout(AssertionError):
    pass


def wait_for(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until truthy; return its value or raise Timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report last error
            last_exc = e
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout:.1f}s waiting for {what}"
            if last_exc:
                msg += f" (last error: {last_exc!r})"
            raise Timeout(msg)
        time.sleep(interval)


def recv_exact(s, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"recv_exact: got {len(buf)} of {n} bytes in {timeout}s")
        s.settimeout(left)
        try:
            d = s.recv(n - len(buf))
        except socket.timeout:
            continue
        if not d:
            raise EOFError(f"recv_exact: EOF after {len(buf)} of {n} bytes")
        buf += d
    return bytes(buf)


def recv_line(s, timeout=10.0, limit=65536):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"recv_line: no full line in {timeout}s (got {bytes(buf)!r})")
        s.settimeout(left)
        try:
            d = s.recv(1)
        except socket.timeout:
            continue
        if not d:
            raise EOFError(f"recv_line: EOF after {bytes(buf)!r}")
        buf += d
        if len(buf) > limit:
            raise ValueError("line too long")
    return bytes(buf[:-1]).decode()


def recv_all(s, timeout=30.0):
    """Read until EOF; returns bytes."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"recv_all: no EOF within {timeout}s")
        s.settimeout(left)
        try:
            d = s.recv(1 << 20)
        except socket.timeout:
            continue
        if not d:
            return b"".join(chunks)
        chunks.append(d)


def wait_closed(s, timeout=5.0):
    """Wait until the peer closes `s`. Returns ("eof"|"reset", data_received).

    Raises Timeout if the connection is still open after `timeout`.
    """
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"connection still open after {timeout:.1f}s (received {len(data)} bytes)")
        r, _, _ = select.select([s], [], [], left)
        if not r:
            continue
        try:
            d = s.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            return "reset", bytes(data)
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT):
                return "reset", bytes(data)
            raise
        if not d:
            return "eof", bytes(data)
        data += d


def is_open(s, wait=0.0):
    """True if no EOF/reset is pending on s within `wait` seconds (data is left unread)."""
    r, _, _ = select.select([s], [], [], wait)
    if not r:
        return True
    try:
        d = s.recv(1, socket.MSG_PEEK)
    except OSError:
        return False
    return bool(d)


def echo_roundtrip(s, payload, timeout=5.0):
    s.sendall(payload)
    got = recv_exact(s, len(payload), timeout)
    return got == payload


def abort(s):
    """Close with RST (SO_LINGER 0)."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


# ---------------------------------------------------------------------------
# metrics

_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


class Metrics:
    def __init__(self, text):
        self.text = text
        self.samples = []  # (name, labels dict, float)
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = _METRIC_RE.match(line)
            if not m:
                continue
            name, labels, value = m.groups()
            ld = {}
            if labels:
                for k, v in _LABEL_RE.findall(labels):
                    ld[k] = v.replace('\\"', '"').replace("\\\\", "\\")
            try:
                fv = float(value)
            except ValueError:
                continue
            self.samples.append((name, ld, fv))

    def find(self, name, **labels):
        return [
            (ld, v) for n, ld, v in self.samples
            if n == name and all(ld.get(k) == str(val) for k, val in labels.items())
        ]

    def get(self, name, default=None, **labels):
        """Value of the single sample matching name+labels (sum if several); default if none."""
        rows = self.find(name, **labels)
        if not rows:
            return default
        return sum(v for _, v in rows)

    def __repr__(self):
        return "Metrics(\n" + "\n".join(
            l for l in self.text.splitlines() if l.startswith("flowgate_")) + "\n)"


def http_get(sock, host, path, timeout=5.0):
    sock.settimeout(timeout)
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    sock.sendall(req.encode())
    deadline = time.monotonic() + timeout
    buf = bytearray()
    header_end = -1
    clen = None
    chunked = False
    while True:
        if header_end < 0:
            header_end = buf.find(b"\r\n\r\n")
            if header_end >= 0:
                head = bytes(buf[:header_end]).decode("latin-1")
                status = head.split("\r\n")[0]
                for hl in head.split("\r\n")[1:]:
                    k, _, v = hl.partition(":")
                    if k.strip().lower() == "content-length":
                        clen = int(v.strip())
                    if k.strip().lower() == "transfer-encoding" and "chunked" in v.lower():
                        chunked = True
        if header_end >= 0 and clen is not None and len(buf) - header_end - 4 >= clen:
            break
        if time.monotonic() > deadline:
            raise Timeout(f"http_get {path}: incomplete response {bytes(buf[:200])!r}")
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            continue
        if not d:
            break
        buf += d
    if header_end < 0:
        raise ValueError(f"http_get {path}: no HTTP header in {bytes(buf[:200])!r}")
    body = bytes(buf[header_end + 4:])
    if clen is not None:
        body = body[:clen]
    elif chunked:
        out = bytearray()
        p = 0
        while True:
            e = body.find(b"\r\n", p)
            n = int(body[p:e].split(b";")[0], 16)
            if n == 0:
                break
            out += body[e + 2: e + 2 + n]
            p = e + 2 + n + 2
        body = bytes(out)
    if not status.split()[1].startswith("2"):
        raise ValueError(f"http_get {path}: {status}")
    return body.decode()


def fetch_metrics(ns, addr, timeout=5.0):
    s = ns.connect(addr, timeout=timeout)
    try:
        return Metrics(http_get(s, addr, "/metrics", timeout))
    finally:
        s.close()


# ---------------------------------------------------------------------------
# client-side conveniences used by the tests


def whoami(ns, dst, src=None, timeout=5.0, keep=False):
    """Connect to a forward whose targets are `peer.py whoami`; return the target "ip:port"
    (and the open socket if keep=True)."""
    s = ns.connect(dst, src=src, timeout=timeout)
    try:
        line = recv_line(s, timeout)
    except BaseException:
        s.close()
        raise
    if not line.startswith("ME "):
        s.close()
        raise AssertionError(f"unexpected whoami reply {line!r}")
    if keep:
        return s, line[3:]
    s.close()
    return line[3:]


def assert_refused(s, timeout=2.0):
    """The forward must close `s` at once without passing any data.

    Sends a probe (an echo target would answer it) and expects EOF or reset
    within `timeout` with no bytes received.
    """
    if s is None:  # reset while connecting
        return "reset"
    try:
        s.sendall(b"probe\n")
    except OSError:
        return "reset"
    how, data = wait_closed(s, timeout)
    assert data == b"", f"refused connection received data {data!r}"
    return how
