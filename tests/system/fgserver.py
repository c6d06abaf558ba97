"""`flowgate server` for system tests: a process (in the root namespace on
127.0.0.1, or inside a test namespace) and a small REST client.

    srv = ServerProc(fg_bin, data_dir, port, logdir, password="...")
    api = srv.login()                  # Api with the admin's session token
    status, body = api.post("/nodes", {"name": "n1"})
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import time

import fgnet

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")
ADMIN_PASSWORD = "admin-secret-1"


class Api:
    """REST client for /api/v1; every call returns (status, parsed JSON or text)."""

    def __init__(self, host, port, token=None, ns=None, cafile=None):
        self.host, self.port, self.token, self.ns = host, port, token, ns
        self.cafile = cafile

    def _conn(self):
        if self.cafile:
            import ssl
            ctx = ssl.create_default_context(cafile=self.cafile)
            return http.client.HTTPSConnection(self.host, self.port, timeout=15, context=ctx)
        if self.ns is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=15)
        # a connection whose socket lives in the namespace
        c = http.client.HTTPConnection(self.host, self.port, timeout=15)
        c.sock = self.ns.connect(f"{self.host}:{self.port}", timeout=15)
        c.sock.settimeout(15)
        return c

    def request(self, method, path, body=None, token=..., raw=None, headers=None,
                absolute=False):
        """path is under /api/v1 unless absolute=True ("/metrics", "/")."""
        tok = self.token if token is ... else token
        h = dict(headers or {})
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        url = path if absolute else "/api/v1" + path
        c = self._conn()
        try:
            c.request(method, url, body=data, headers=h)
            r = c.getresponse()
            payload = r.read()
            self.last_headers = dict(r.getheaders())
        finally:
            c.close()
        ctype = self.last_headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            return r.status, json.loads(payload)
        return r.status, payload.decode(errors="replace")

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def ok(self, method, path, body=None, status=(200, 201)):
        """Call and assert success; returns the body."""
        st, b = self.request(method, path, body)
        assert st in (status if isinstance(status, tuple) else (status,)), \
            f"{method} {path} {body!r}: {st} {b!r}"
        return b


class ServerProc:
    """flowgate server; stop() asserts exit 0 and no sanitizer report."""

    def __init__(self, fg_bin, data_dir, port, logdir, ns=None, password=ADMIN_PASSWORD,
                 extra=(), name="server", host="127.0.0.1", cafile=None):
        self.host, self.port, self.ns, self.data_dir = host, port, ns, data_dir
        self.cafile = cafile
        self.password = password
        self.stderr_path = os.path.join(logdir, f"{name}.stderr")
        self.stdout_path = os.path.join(logdir, f"{name}.stdout")
        env = dict(os.environ)
        env.pop("FLOWGATE_ADMIN_PASSWORD", None)
        if password:
            env["FLOWGATE_ADMIN_PASSWORD"] = password
        argv = [fg_bin, "server", "--listen", f"{host}:{port}", "--data", data_dir, *extra]
        if ns is not None:
            argv = ["ip", "netns", "exec", ns.name, *argv]
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, env=env, start_new_session=True)
        self.wait_ready()

    def api(self, token=None):
        return Api("localhost" if self.cafile else self.host, self.port, token, self.ns,
                   self.cafile)

    def wait_ready(self, timeout=15):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: "
                                     f"{self.stderr()[-2000:]}")
            try:
                if self.ns is None:
                    s = socket.create_connection((self.host, self.port), timeout=1)
                else:
                    s = self.ns.connect(f"{self.host}:{self.port}", timeout=1)
                s.close()
                return True
            except OSError:
                return False
        fgnet.wait_for(up, timeout, interval=0.05, what="server listening")

    def login(self, username="admin", password=None):
        st, b = self.api().post("/login", {"username": username,
                                           "password": password or self.password})
        assert st == 200, f"login: {st} {b}"
        return self.api(b["token"])

    def stderr(self):
        if not self._err.closed:
            self._err.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stdout(self):
        if not self._out.closed:
            self._out.flush()
        with open(self.stdout_path, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self, timeout=10):
        """SIGTERM; returns a list of problems (empty when it exited 0 cleanly)."""
        if self._out.closed:
            return []
        problems = []
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
                if rc != 0:
                    problems.append(f"server exit status {rc}")
            except subprocess.TimeoutExpired:
                self.kill()
                problems.append(f"server did not stop within {timeout}s")
        err = self.stderr()
        if any(m in err for m in SANITIZER_MARKERS):
            problems.append(f"sanitizer report:\n{err[-4000:]}")
        self._out.close()
        self._err.close()
        return problems


def wait_until(pred, timeout=10.0, interval=0.1, what="condition"):
    return fgnet.wait_for(pred, timeout, interval=interval, what=what)


def now():
    return int(time.time())
