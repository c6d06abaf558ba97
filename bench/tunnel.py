#!/usr/bin/env python3
"""Benchmark flowgate tunnels against the tools people use for each job.

Each row is a pair of processes on this machine over 127.0.0.1 (an entry and an
exit, or a client and a server):

  TLS hop          flowgate tls (one link per stream, and mux)   vs  stunnel client + server
  ws / wss hop     flowgate ws, wss (no mux, and mux)            vs  v2ray vmess over ws / ws+tls
  reverse tunnel   flowgate reverse tls (mux), aead (mux)        vs  ssh -R
  mux              flowgate tcp mux                              vs  flowgate tcp, one link per stream

Measured for each (bench.py's harness: iperf3, wrk against nginx, idle sink): throughput
with 1 and 8 streams, connection rate (HTTP request per connection), memory per idle
stream (PSS of both processes). Results: bench/results/<date>-tunnel.{md,json}.
Run through bench/run (BENCH_SUITES=tunnel), which installs the peers first.
"""

import base64
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench as B  # noqa: E402

B.CFG["conns"] = B.env_int("BENCH_TUNNEL_CONNS", 2000)
B.CFG["repeat"] = max(1, B.env_int("BENCH_REPEAT", 1))
# `--tunnel-workers` of every flowgate process (threads running tunnels; a
# reverse hop runs on one whatever this says). 2: one per core of the machine
# the results were taken on; 1 gives the one-thread engine.
B.CFG["tunnel_workers"] = max(1, B.env_int("BENCH_TUNNEL_WORKERS", 2))
PSK = {"id": 1, "key": base64.b64encode(os.urandom(32)).decode()}
UID = str(uuid.uuid4())


def certs(w):
    """Two self-signed certificates (entry, exit) and their fingerprints."""
    out = {}
    for name in ("ent", "ext"):
        crt, key = os.path.join(w, f"{name}.crt"), os.path.join(w, f"{name}.key")
        if not os.path.exists(crt):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                            "-days", "2", "-subj", f"/CN={name}"], check=True,
                           capture_output=True)
        fp = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-fingerprint", "-sha256"],
                            check=True, capture_output=True, text=True).stdout
        out[name] = (crt, key, fp.strip().split("=", 1)[1])
    return out


def pair(w, name, a, b):
    """Two commands in one process group (so PSS and stop cover both)."""
    sh = f"{a} & {b} & wait"
    return B.Group(name, ["/bin/sh", "-c", sh], w)


def fg_starter(transport, mux, reverse=False):
    def start(w, lport, tport):
        exe = B.CFG["flowgate"]
        if not os.access(exe, os.X_OK):
            raise B.StartError(f"{exe} not built")
        c = certs(w)
        kport = B.free_port()
        lk = {"transport": transport, "mux": mux, "psk": PSK}
        if reverse:
            peer = {"address": f"127.0.0.1:{kport}"}
            if transport in ("tls", "wss"):
                peer["fingerprint"] = c["ent"][2]
            ent = {"role": "entry", "listen": f"127.0.0.1:{lport}",
                   "next": dict(lk, listen=f"127.0.0.1:{kport}")}
            ext = {"role": "exit", "targets": [f"127.0.0.1:{tport}"],
                   "prev": dict(lk, peers=[peer], **({} if mux else {"pool": 16}))}
        else:
            peer = {"address": f"127.0.0.1:{kport}"}
            if transport in ("tls", "wss"):
                peer["fingerprint"] = c["ext"][2]
            ent = {"role": "entry", "listen": f"127.0.0.1:{lport}",
                   "next": dict(lk, peers=[peer])}
            ext = {"role": "exit", "targets": [f"127.0.0.1:{tport}"],
                   "prev": dict(lk, listen=f"127.0.0.1:{kport}")}
        files = []
        for role, t in (("ent", ent), ("ext", ext)):
            t.update(name="t", id="1", idle_timeout="1h")
            path = os.path.join(w, f"fg-{role}-{lport}.json")
            with open(path, "w") as f:
                json.dump({"tls": {"cert": c[role][0], "key": c[role][1]}, "tunnels": [t]}, f)
            files.append(path)
        tw = f" --tunnel-workers {B.CFG['tunnel_workers']}"
        g = pair(w, "flowgate", f"{exe} forward -c {files[1]} --log-level warn{tw}",
                 f"{exe} forward -c {files[0]} --log-level warn{tw}")
        if reverse:
            time.sleep(0.5)  # the exit registers its link
        return g
    return start


STUNNEL_C = """foreground = yes
pid =
[c]
client = yes
accept = 127.0.0.1:{lport}
connect = 127.0.0.1:{mport}
"""
STUNNEL_S = """foreground = yes
pid =
cert = {crt}
key = {key}
[s]
accept = 127.0.0.1:{mport}
connect = 127.0.0.1:{tport}
"""


def stunnel_starter(w, lport, tport):
    exe = B.which("stunnel4") or B.which("stunnel")
    if not exe:
        raise B.StartError("stunnel4 not installed")
    c = certs(w)
    mport = B.free_port()
    pc, ps = os.path.join(w, f"st-c-{lport}.conf"), os.path.join(w, f"st-s-{lport}.conf")
    with open(pc, "w") as f:
        f.write(STUNNEL_C.format(lport=lport, mport=mport))
    with open(ps, "w") as f:
        f.write(STUNNEL_S.format(mport=mport, tport=tport, crt=c["ext"][0], key=c["ext"][1]))
    return pair(w, "stunnel", f"{exe} {ps}", f"{exe} {pc}")


def v2ray_starter(tls):
    def start(w, lport, tport):
        exe = B.which("v2ray")
        if not exe:
            raise B.StartError("v2ray not installed")
        c = certs(w)
        mport = B.free_port()
        stream = {"network": "ws", "wsSettings": {"path": "/t"}}
        cstream = dict(stream)
        if tls:
            stream = dict(stream, security="tls", tlsSettings={"certificates": [
                {"certificateFile": c["ext"][0], "keyFile": c["ext"][1]}]})
            cstream = dict(cstream, security="tls",
                           tlsSettings={"allowInsecure": True, "serverName": "ext"})
        client = {"log": {"loglevel": "warning"},
                  "inbounds": [{"listen": "127.0.0.1", "port": lport,
                                "protocol": "dokodemo-door",
                                "settings": {"address": "127.0.0.1", "port": tport,
                                             "network": "tcp"}}],
                  "outbounds": [{"protocol": "vmess", "settings": {"vnext": [
                      {"address": "127.0.0.1", "port": mport,
                       "users": [{"id": UID, "alterId": 0, "security": "none"}]}]},
                      "streamSettings": cstream}]}
        server = {"log": {"loglevel": "warning"},
                  "inbounds": [{"listen": "127.0.0.1", "port": mport, "protocol": "vmess",
                                "settings": {"clients": [{"id": UID, "alterId": 0}]},
                                "streamSettings": stream}],
                  "outbounds": [{"protocol": "freedom"}]}
        paths = []
        for n, d in (("c", client), ("s", server)):
            p = os.path.join(w, f"v2-{n}-{lport}.json")
            with open(p, "w") as f:
                json.dump(d, f)
            paths.append(p)
        return pair(w, "v2ray", f"{exe} -config {paths[1]}", f"{exe} -config {paths[0]}")
    return start


SSHD_CFG = """Port {port}
ListenAddress 127.0.0.1
HostKey {w}/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile {w}/authorized_keys
PermitRootLogin yes
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
GatewayPorts no
MaxSessions 100
MaxStartups 1000
LogLevel ERROR
"""


def ssh_starter(w, lport, tport):
    sshd, ssh = B.which("sshd"), B.which("ssh")
    if not sshd or not ssh:
        raise B.StartError("openssh-server / ssh not installed")
    os.makedirs("/run/sshd", exist_ok=True)
    if not os.path.exists(f"{w}/ssh_host_ed25519_key"):
        for k in ("ssh_host_ed25519_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{w}/{k}"],
                           check=True)
        with open(f"{w}/client_key.pub") as f, open(f"{w}/authorized_keys", "w") as g:
            g.write(f.read())
    sport = B.free_port()
    cfg = os.path.join(w, f"sshd-{lport}.conf")
    with open(cfg, "w") as f:
        f.write(SSHD_CFG.format(port=sport, w=w))
    opts = (f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes "
            f"-o ExitOnForwardFailure=yes -i {w}/client_key -p {sport}")
    # sshd first; the client retries until sshd listens
    cmd_c = (f"sh -c 'for i in $(seq 50); do {ssh} -N {opts} -R 127.0.0.1:{lport}:127.0.0.1:{tport}"
             f" root@127.0.0.1 && break; sleep 0.1; done'")
    return pair(w, "ssh", f"{sshd} -D -e -f {cfg}", cmd_c)


SPECS = [
    ("flowgate tls", fg_starter("tls", False), "TLS hop, one link per stream"),
    ("flowgate tls mux", fg_starter("tls", True), "TLS hop, one mux link"),
    ("stunnel", stunnel_starter, "stunnel client + server"),
    ("flowgate ws", fg_starter("ws", False), ""),
    ("flowgate ws mux", fg_starter("ws", True), ""),
    ("v2ray ws", v2ray_starter(False), "vmess (security none) over ws"),
    ("flowgate wss", fg_starter("wss", False), ""),
    ("flowgate wss mux", fg_starter("wss", True), ""),
    ("v2ray wss", v2ray_starter(True), "vmess over ws + tls"),
    ("flowgate reverse tls mux", fg_starter("tls", True, reverse=True), "exit dials the entry"),
    ("flowgate reverse aead mux", fg_starter("aead", True, reverse=True), ""),
    ("ssh -R", ssh_starter, "OpenSSH remote forward"),
    ("flowgate tcp mux", fg_starter("tcp", True), ""),
    ("flowgate tcp", fg_starter("tcp", False), "one link per stream"),
]

COMPARE = [  # (flowgate row, peer row)
    ("flowgate tls", "stunnel"), ("flowgate tls mux", "stunnel"),
    ("flowgate ws", "v2ray ws"), ("flowgate ws mux", "v2ray ws"),
    ("flowgate wss", "v2ray wss"), ("flowgate wss mux", "v2ray wss"),
    ("flowgate reverse tls mux", "ssh -R"), ("flowgate reverse aead mux", "ssh -R"),
    ("flowgate tcp mux", "flowgate tcp"),
]
METRICS = ["tput1", "tput8", "cps", "mem"]


def main():
    only = [s for s in os.environ.get("BENCH_TUNNEL_ROWS", "").split(",") if s]
    metrics = [m for m in os.environ.get("BENCH_METRICS", "").replace(",", " ").split() if m] \
        or METRICS
    specs = [s for s in SPECS if not only or s[0] in only]
    w = tempfile.mkdtemp(prefix="fg-bench-tunnel.")
    B.atexit.register(B.stop_all)
    results = {}
    try:
        for rnd in range(B.CFG["repeat"]):
            for name, starter, _ in specs:
                for m in metrics:
                    B.log(f"round {rnd + 1}: {name}: {m}")
                    res = B.measure_once(w, (name, starter, None), m)
                    results.setdefault(name, {}).setdefault(m, []).append(res)
                    if "value" in res:
                        B.log(f"  {res['value']:.3f}")
                    else:
                        B.log(f"  {res.get('failed') or res.get('na')}")
    finally:
        # the HTTP backend lives for the whole run: make sure it goes too
        g = B._http_backend.get("g")
        if g is not None:
            g.stop()
        B.stop_all()
    agg = {n: {m: B.aggregate(r) for m, r in ms.items()} for n, ms in results.items()}
    report(agg, specs, metrics)


def val(agg, name, m):
    r = agg.get(name, {}).get(m, {})
    return r.get("value")


def report(agg, specs, metrics):
    units = {m: B.METRICS[m] for m in metrics}
    hdr = ["relay"] + [f"{units[m][0]} ({units[m][1]})" for m in metrics]
    rows = []
    for name, _, note in specs:
        row = [name]
        for m in metrics:
            v = val(agg, name, m)
            r = agg.get(name, {}).get(m, {})
            row.append(B.fmt(v, m) if v is not None else ("FAILED" if "failed" in r else "-"))
        rows.append(row)
    chdr = ["flowgate / peer"] + [units[m][0] for m in metrics]
    crow = []
    for a, b in COMPARE:
        if a not in agg or b not in agg:
            continue
        row = [f"{a} / {b}"]
        for m in metrics:
            x, y = val(agg, a, m), val(agg, b, m)
            if x is None or y is None or y == 0:
                row.append("-")
            else:
                row.append(f"{x / y:.2f}x")
        crow.append(row)
    print(B.text_table(hdr, rows))
    print()
    print(B.text_table(chdr, crow))
    day = datetime.date.today().isoformat()
    os.makedirs(B.CFG["results_dir"], exist_ok=True)
    base = os.path.join(B.CFG["results_dir"], f"{day}-tunnel")
    meta = {"date": day, "machine": B.machine(), "settings": {
        "seconds": B.CFG["seconds"], "repeat": B.CFG["repeat"], "idle_conns": B.CFG["conns"],
        "tunnel_workers": B.CFG["tunnel_workers"],
        "wrk": f"-t{B.CFG['wrk_threads']} -c{B.CFG['wrk_conns']}"},
        "versions": {"stunnel4": B.dpkg_version("stunnel4"), "v2ray": B.dpkg_version("v2ray"),
                     "openssh-server": B.dpkg_version("openssh-server")}}
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "results": agg}, f, indent=1, default=str)
    with open(base + ".md", "w") as f:
        f.write(f"# Tunnel benchmark {day}\n\n")
        f.write("Same machine, 127.0.0.1, each row a pair of processes (entry + exit, or client "
                "+ server). Throughput: iperf3 through the pair; conn rate: wrk, one HTTP "
                "request per connection, nginx behind; idle mem: PSS of both processes per "
                "idle connection (stream). Ratios > 1 mean flowgate is better for throughput "
                "and conn rate, worse for memory.\n\n")
        f.write(f"Machine: {json.dumps(meta['machine'])}\n\nVersions: "
                f"{json.dumps(meta['versions'])}\n\nSettings: {json.dumps(meta['settings'])}\n\n")
        f.write(B.md_table(hdr, rows) + "\n\n")
        f.write(B.md_table(chdr, crow) + "\n")
    B.log(f"wrote {base}.md and .json")


if __name__ == "__main__":
    main()
