#!/usr/bin/env python3
"""Control-plane load: one `flowgate server`, N simulated agents.

For each N in BENCH_AGENTS (default "1000 5000"):
  * N nodes are created in one import (group "fleet"), then N agent sessions
    dial /agent (WebSocket + JSON-RPC, the real protocol: hello, apply ack,
    periodic reports, pong);
  * server RSS and CPU are sampled with every session idle, and again while
    every agent reports every BENCH_REPORT_S seconds;
  * one API change (a forward on the group) is timed from the API call until
    every agent has received and acknowledged the new revision.

The agents are asyncio coroutines in this process (stdlib only). Results are
written to bench/results/<date>-control.{md,json}.
"""

import asyncio
import base64
import http.client
import json
import os
import platform
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.environ.get("FLOWGATE_BIN") or os.path.join(ROOT, "build", "flowgate")
SIZES = [int(x) for x in os.environ.get("BENCH_AGENTS", "1000 5000").replace(",", " ").split()]
REPORT_S = float(os.environ.get("BENCH_REPORT_S", "5"))
SAMPLE_S = float(os.environ.get("BENCH_SAMPLE_S", "10"))
RESULTS = os.environ.get("BENCH_RESULTS_DIR") or os.path.join(ROOT, "bench", "results")
PASSWORD = "bench-admin-pw"
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[control] {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def api(port, method, path, body=None, token=None, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = f"Bearer {token}"
    c.request(method, "/api/v1" + path, body=json.dumps(body) if body is not None else None,
              headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data)


# --- a minimal WebSocket client (RFC 6455), enough for the agent protocol ---

def ws_frame(payload, opcode=1):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    m = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    masked = (int.from_bytes(payload, "big") ^ m).to_bytes(n, "big") if n else b""
    return head + mask + masked


class Agent:
    def __init__(self, port, token, idx, stats):
        self.port, self.token, self.idx, self.stats = port, token, idx, stats
        self.rev = 0
        self.boot = f"bench{idx:06d}{random.getrandbits(32):08x}"
        self.next_id = 1
        self.applied = asyncio.Event()
        self.want_rev = None
        self.reporting = False
        self.bytes = 0

    async def send(self, obj, opcode=1):
        self.w.write(ws_frame(json.dumps(obj, separators=(",", ":")).encode(), opcode))
        await self.w.drain()

    async def connect(self):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.w.write((f"GET /agent HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Authorization: Bearer {self.token}\r\n\r\n").encode())
        head = await self.r.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"agent {self.idx}: upgrade refused: {head[:100]!r}")
        await self.send({"jsonrpc": "2.0", "id": self.take_id(), "method": "hello",
                         "params": {"version": "bench", "hostname": f"load{self.idx}",
                                    "boot_id": self.boot, "applied_rev": 0,
                                    "capabilities": []}})

    def take_id(self):
        i = self.next_id
        self.next_id += 1
        return i

    async def frames(self):
        while True:
            b0, b1 = await self.r.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.r.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.r.readexactly(8))[0]
            payload = await self.r.readexactly(n) if n else b""
            op = b0 & 0x0F
            if op == 9:
                self.w.write(ws_frame(payload, 10))
                continue
            if op == 8:
                return
            if op == 1:
                yield json.loads(payload)

    async def run(self):
        async for msg in self.frames():
            if msg.get("method") == "apply":
                rev = msg["params"]["rev"]
                self.rev = rev
                await self.send({"jsonrpc": "2.0", "id": msg["id"],
                                 "result": {"rev": rev, "status": [
                                     {"kind": "forward", "id": int(f.get("id", 0) or 0),
                                      "name": f.get("name", ""), "ok": True}
                                     for f in msg["params"]["state"].get("forwards", [])]}})
                self.stats["applies"] += 1
                if self.want_rev is not None and rev >= self.want_rev and \
                        not self.applied.is_set():
                    self.stats["acked_at"].append(time.monotonic())
                    self.applied.set()
            elif "result" in msg and "node" in (msg.get("result") or {}):
                self.stats["hello"] += 1
                if self.stats["hello"] == self.stats["n"]:
                    self.stats["all_hello"].set()

    async def report_loop(self, fwd_id):
        await asyncio.sleep(random.uniform(0, REPORT_S))
        while self.reporting:
            self.bytes += 1000
            await self.send({"jsonrpc": "2.0", "id": self.take_id(), "method": "report",
                             "params": {"boot_id": self.boot, "ts": int(time.time()),
                                        "applied_rev": self.rev,
                                        "counters": [{"kind": "forward", "id": fwd_id,
                                                      "bytes_up": self.bytes,
                                                      "bytes_down": self.bytes * 2,
                                                      "conns": self.bytes // 1000,
                                                      "active": 1}]}})
            self.stats["reports"] += 1
            await asyncio.sleep(REPORT_S)


async def sample(pid, seconds):
    c0, t0 = proc_cpu_s(pid), time.monotonic()
    await asyncio.sleep(seconds)
    c1, t1 = proc_cpu_s(pid), time.monotonic()
    return (c1 - c0) / (t1 - t0), proc_rss_kib(pid)


async def one_size(n):
    port = free_port()
    data = tempfile.mkdtemp(prefix="fgbench-control-")
    env = dict(os.environ, FLOWGATE_ADMIN_PASSWORD=PASSWORD)
    # stderr to a file: an unread pipe fills up and blocks the server
    errf = open(os.path.join(data, "server.stderr"), "w+")
    srv = subprocess.Popen([BIN, "server", "--listen", f"127.0.0.1:{port}", "--data", data],
                           stdout=subprocess.DEVNULL, stderr=errf, env=env,
                           start_new_session=True)
    res = {"agents": n}
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        tok = api(port, "POST", "/login", {"username": "admin", "password": PASSWORD})["token"]
        rss0 = proc_rss_kib(srv.pid)
        t = time.monotonic()
        imp = api(port, "POST", "/import",
                  {"groups": [{"name": "fleet"}],
                   "nodes": [{"name": f"load{i}", "groups": ["fleet"]} for i in range(n)]},
                  token=tok)
        res["import_s"] = round(time.monotonic() - t, 2)
        tokens = imp["node_tokens"]
        stats = {"n": n, "hello": 0, "applies": 0, "reports": 0, "acked_at": [],
                 "all_hello": asyncio.Event()}
        agents = [Agent(port, tokens[f"load{i}"], i, stats) for i in range(n)]
        t = time.monotonic()
        sem = asyncio.Semaphore(256)

        async def dial(a):
            async with sem:
                await a.connect()
        await asyncio.gather(*(dial(a) for a in agents))
        tasks = [asyncio.ensure_future(a.run()) for a in agents]
        await asyncio.wait_for(stats["all_hello"].wait(), 120)
        res["connect_all_s"] = round(time.monotonic() - t, 2)
        log(f"{n} agents connected in {res['connect_all_s']} s")
        await asyncio.sleep(2)
        cpu, rss = await sample(srv.pid, SAMPLE_S)
        res["idle_cpu_pct"] = round(cpu * 100, 1)
        res["rss_mib"] = round(rss / 1024, 1)
        res["rss_per_session_kib"] = round((rss - rss0) / n, 1)

        # one change for the whole fleet: every agent must ack the new rev
        for a in agents:
            a.want_rev = a.rev + 1
        t0 = time.monotonic()
        f = api(port, "POST", "/forwards",
                {"name": "bench", "group": "fleet", "listen": "0.0.0.0:40000",
                 "targets": ["127.0.0.1:9"]}, token=tok)
        api_ms = (time.monotonic() - t0) * 1000
        await asyncio.wait_for(asyncio.gather(*(a.applied.wait() for a in agents)), 120)
        lat = sorted((x - t0) * 1000 for x in stats["acked_at"])
        res["change_api_ms"] = round(api_ms, 1)
        res["change_all_acked_ms"] = round(lat[-1], 1)
        res["change_p50_ms"] = round(lat[len(lat) // 2], 1)
        log(f"change acked by all {n} agents in {res['change_all_acked_ms']} ms")

        # reports: every agent every REPORT_S
        for a in agents:
            a.reporting = True
        rtasks = [asyncio.ensure_future(a.report_loop(f["id"])) for a in agents]
        await asyncio.sleep(REPORT_S + 1)
        r0 = stats["reports"]
        cpu, rss = await sample(srv.pid, SAMPLE_S)
        res["reports_per_s"] = round((stats["reports"] - r0) / SAMPLE_S, 1)
        res["report_cpu_pct"] = round(cpu * 100, 1)
        res["report_rss_mib"] = round(rss / 1024, 1)
        for a in agents:
            a.reporting = False
        for x in rtasks + tasks:
            x.cancel()
        for a in agents:
            a.w.close()
        await asyncio.sleep(0.5)
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(30)
        except subprocess.TimeoutExpired:
            srv.kill()
        errf.seek(0)
        err = errf.read()
        errf.close()
        if srv.returncode not in (0, None):
            log(f"server exit {srv.returncode}: {err[-1500:]}")
        subprocess.run(["rm", "-rf", data])
    return res


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    results = []
    for n in SIZES:
        log(f"--- {n} agents")
        results.append(asyncio.run(one_size(n)))
    date = time.strftime("%Y-%m-%d")
    meta = {"date": date, "machine": f"{platform.node()} {platform.machine()} "
            f"{os.cpu_count()} cpus", "report_interval_s": REPORT_S, "sample_s": SAMPLE_S}
    hdr = ["agents", "connect all (s)", "server RSS (MiB)", "RSS/session (KiB)",
           "idle CPU %", "reports/s", "CPU % reporting", "change → all acked (ms)",
           "p50 (ms)"]
    rows = [[r["agents"], r["connect_all_s"], r["rss_mib"], r["rss_per_session_kib"],
             r["idle_cpu_pct"], r["reports_per_s"], r["report_cpu_pct"],
             r["change_all_acked_ms"], r["change_p50_ms"]] for r in results]
    md = [f"# flowgate control plane under load ({date})", "",
          f"One `flowgate server` (SQLite store) on {meta['machine']}; simulated agents "
          f"speak the real protocol from one Python asyncio process on the same machine "
          f"(so they compete with the server for the CPUs). Reports every {REPORT_S:g} s "
          f"per agent; CPU and RSS sampled over {SAMPLE_S:g} s.", "",
          "| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    md += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    md.append("")
    text = "\n".join(md)
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{date}-control.md"), "w") as f:
        f.write(text)
    with open(os.path.join(RESULTS, f"{date}-control.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
