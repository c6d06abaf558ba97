#!/usr/bin/env python3
"""Benchmark the kernel plane: kernel forward vs userspace forward vs direct
(throughput, connection rate), and firewall policy apply time for 10, 1,000
and 10,000 rules.

Run through bench/run (BENCH_SUITES=kernel); needs root (network namespaces,
nftables). Python 3 stdlib only; reuses bench.py's process groups.

Topology (three namespaces, routed, the node in the middle):

    fgb-<pid>-cl 10.77.1.2 --- 10.77.1.1 fgb-<pid>-node 10.77.2.1 --- 10.77.2.2 fgb-<pid>-tg

  direct : client -> 10.77.2.2 (routed by the node's kernel, no flowgate)
  proxy  : client -> 10.77.1.1:PORT, `flowgate forward --engine proxy` in the node
  kernel : client -> 10.77.1.1:PORT, `flowgate forward --engine kernel` (nftables DNAT)

A kernel forward acts on packets that arrive at the node (prerouting), so unlike
bench.py this cannot run over 127.0.0.1.
"""

import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import CFG, Group, log, stop_all  # noqa: E402

PID = os.getpid()
NS = {k: f"fgb-{PID}-{k}" for k in ("cl", "node", "tg")}
CL_IP, NODE_IN, NODE_OUT, TG_IP = "10.77.1.2", "10.77.1.1", "10.77.2.1", "10.77.2.2"
FWD_PORT = 5201
TG_IPERF, TG_HTTP = 5301, 8081
RULE_COUNTS = [int(x) for x in os.environ.get("BENCH_RULES", "10,1000,10000").split(",") if x]


def sh(*argv, check=True, input=None):
    r = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=120)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r


def nsx(ns, *argv):
    return ["ip", "netns", "exec", NS[ns], *argv]


def topo_up():
    for n in NS.values():
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
    sh("ip", "link", "add", "fgbc0", "netns", NS["cl"], "type", "veth", "peer", "name", "fgbn0",
       "netns", NS["node"])
    sh("ip", "link", "add", "fgbn1", "netns", NS["node"], "type", "veth", "peer", "name",
       "fgbt0", "netns", NS["tg"])
    for ns, dev, ip in (("cl", "fgbc0", CL_IP), ("node", "fgbn0", NODE_IN),
                        ("node", "fgbn1", NODE_OUT), ("tg", "fgbt0", TG_IP)):
        sh("ip", "-n", NS[ns], "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", NS[ns], "link", "set", dev, "up")
    sh("ip", "-n", NS["cl"], "route", "add", "default", "via", NODE_IN)
    sh("ip", "-n", NS["tg"], "route", "add", "default", "via", NODE_OUT)
    sh(*nsx("node", "sysctl", "-qw", "net.ipv4.ip_forward=1"))


def topo_down():
    for n in NS.values():
        subprocess.run(["ip", "netns", "del", n], capture_output=True)


def wait_port(ns, ip, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(nsx(ns, "bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}"),
                           capture_output=True)
        if r.returncode == 0:
            return True
        time.sleep(0.1)
    return False


def start_targets(w):
    iperf = Group("iperf3-s", nsx("tg", "iperf3", "-s", "-B", TG_IP, "-p", str(TG_IPERF)), w)
    d = tempfile.mkdtemp(prefix="nginx-http.", dir=w)
    cfg = os.path.join(d, "nginx.conf")
    with open(cfg, "w") as f:
        f.write(bench.HTTP_CFG.format(cores=bench.CORES, nofile=bench.NOFILE, d=d, port=TG_HTTP)
                .replace(f"listen 127.0.0.1:{TG_HTTP}", f"listen {TG_IP}:{TG_HTTP}"))
    http = Group("nginx-http", nsx("tg", "nginx", "-p", d, "-c", cfg), w)
    if not wait_port("cl", TG_IP, TG_IPERF) or not wait_port("cl", TG_IP, TG_HTTP):
        raise RuntimeError(f"targets did not start: {iperf.log_tail()} {http.log_tail()}")
    return [iperf, http]


def start_relay(w, engine, tport):
    """flowgate forward in the node toward the target; returns (group, ip, port)."""
    if engine == "direct":
        return None, TG_IP, tport
    g = Group(f"flowgate-{engine}",
              nsx("node", CFG["flowgate"], "forward", "--engine", engine, "-l",
                  f"{NODE_IN}:{FWD_PORT}", "-r", f"{TG_IP}:{tport}"), w)
    if engine == "kernel":
        deadline = time.monotonic() + 10
        while "dnat" not in sh(*nsx("node", "nft", "list", "table", "inet", "flowgate_forward"),
                               check=False).stdout:
            if time.monotonic() > deadline or not g.alive():
                raise RuntimeError(f"kernel forward did not start: {g.log_tail()}")
            time.sleep(0.05)
    elif not wait_port("cl", NODE_IN, FWD_PORT):
        raise RuntimeError(f"proxy forward did not start: {g.log_tail()}")
    return g, NODE_IN, FWD_PORT


def m_tput(w, engine, streams):
    g, ip, port = start_relay(w, engine, TG_IPERF)
    try:
        r = sh(*nsx("cl", "iperf3", "-c", ip, "-p", str(port), "-J", "-t", str(CFG["seconds"]),
                    "-P", str(streams)), check=False)
        j = json.loads(r.stdout)
        if j.get("error"):
            raise RuntimeError(j["error"])
        return j["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        if g:
            g.stop()


def m_cps(w, engine):
    g, ip, port = start_relay(w, engine, TG_HTTP)
    try:
        r = sh(*nsx("cl", "wrk", f"-t{CFG['wrk_threads']}", f"-c{CFG['wrk_conns']}",
                    f"-d{CFG['seconds']}s", "-H", "Connection: close", f"http://{ip}:{port}/"),
               check=False)
        m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
        if not m:
            raise RuntimeError(f"wrk: {r.stdout[-300:]} {r.stderr[-300:]}")
        return float(m.group(1))
    finally:
        if g:
            g.stop()


def policy_doc(n):
    """n rules over policies of at most 4096 rules (the per-policy limit):
    tcp/udp dport drops, source CIDR accepts, some with counters."""
    pols, left, k = [], n, 0
    while left > 0:
        m = min(left, 4000)
        rules = []
        for i in range(m):
            j = k + i
            if j % 3 == 0:
                rules.append({"chain": "input", "proto": "tcp", "dport": 1024 + j % 60000,
                              "action": "drop", "counter": j % 10 == 0})
            elif j % 3 == 1:
                rules.append({"chain": "input", "proto": "udp", "dport": 1024 + j % 60000,
                              "action": "drop"})
            else:
                rules.append({"chain": "input",
                              "saddr": f"10.{(j >> 16) & 255}.{(j >> 8) & 255}.{j & 255}",
                              "action": "accept"})
        pols.append({"name": f"p{len(pols)}", "priority": len(pols), "rules": rules})
        left -= m
        k += m
    return {"policies": pols}


def m_apply(w, n):
    """Wall time of `flowgate firewall apply` (parse, compile, dry run,
    snapshot, one transaction) of n rules into an empty table, then of the
    same n rules again (replacing the table)."""
    path = os.path.join(w, f"policy-{n}.json")
    with open(path, "w") as f:
        json.dump(policy_doc(n), f)
    table = "flowgate_bench"
    out = {}
    for what in ("first", "replace"):
        t0 = time.monotonic()
        r = sh(*nsx("node", CFG["flowgate"], "firewall", "apply", "-f", path, "--table", table),
               check=False)
        out[what] = time.monotonic() - t0
        if r.returncode:
            raise RuntimeError(f"apply {n} rules: {r.stderr[-300:]}")
    t0 = time.monotonic()
    sh(*nsx("node", CFG["flowgate"], "firewall", "check", "-f", path, "--table", table))
    out["check"] = time.monotonic() - t0
    listed = sh(*nsx("node", "nft", "-a", "list", "table", "inet", table)).stdout
    out["rules_in_table"] = len(re.findall(r"# handle \d+\n", listed)) - listed.count("chain ")
    sh(*nsx("node", CFG["flowgate"], "firewall", "remove", "--table", table))
    return out


def main():
    if os.geteuid() != 0:
        sys.exit("bench kernel: needs root (network namespaces, nftables)")
    if not os.access(CFG["flowgate"], os.X_OK):
        sys.exit(f"bench kernel: {CFG['flowgate']} not built (make build)")
    w = tempfile.mkdtemp(prefix="fg-bench-kernel.")
    started = time.time()
    res = {"forward": {}, "apply": {}}
    try:
        topo_up()
        targets = start_targets(w)
        for rnd in range(CFG["repeat"]):
            for engine in ("direct", "proxy", "kernel"):
                r = res["forward"].setdefault(engine, {"tput1": [], "tput8": [], "cps": []})
                for key, fn in (("tput1", lambda: m_tput(w, engine, 1)),
                                ("tput8", lambda: m_tput(w, engine, 8)),
                                ("cps", lambda: m_cps(w, engine))):
                    try:
                        v = fn()
                        r[key].append(v)
                        log(f"round {rnd + 1}: {engine} {key} = {v:.2f}")
                    except Exception as e:  # noqa: BLE001 - reported, the run goes on
                        log(f"round {rnd + 1}: {engine} {key} FAILED: {e}")
        for t in targets:
            t.stop()
        for n in RULE_COUNTS:
            runs = []
            for rnd in range(CFG["repeat"]):
                try:
                    runs.append(m_apply(w, n))
                    log(f"round {rnd + 1}: apply {n} rules: {runs[-1]}")
                except Exception as e:  # noqa: BLE001
                    log(f"apply {n} rules FAILED: {e}")
            res["apply"][str(n)] = runs
    finally:
        stop_all()
        topo_down()
    write(res, started)


NOTES = """
## Notes

- The kernel forward moves bytes without a userspace copy, so its single-stream throughput sits
  close to plain routing; with 8 streams on 2 cores the proxy (splice) catches up because the
  client, the target and the node share the same two CPUs.
- Its connection rate is below the proxy's here: every new connection goes through conntrack,
  DNAT and masquerade (the first packet of each flow takes the slow path, and the conntrack
  entries of `Connection: close` requests pile up in TIME_WAIT), while the proxy reuses its
  listening sockets. Routing without NAT (direct) shows the kernel's own ceiling.
- Apply time covers the whole `flowgate firewall apply` process (start, JSON parse, compile, nft
  dry run, snapshot of the running table, one transaction). It grows roughly linearly with the
  rule count; 10,000 rules stay well under a second. The agent does the same work per apply
  (no process start) and skips everything when the compiled text did not change.
- Numbers from a shared 2-core machine with other work running (see the load average): compare
  rows of one run, not runs.
"""


def med(v):
    return statistics.median(v) if v else None


def write(res, started):
    day = datetime.date.today().isoformat()
    os.makedirs(CFG["results_dir"], exist_ok=True)
    base = os.path.join(CFG["results_dir"], f"{day}-kernel")
    m = bench.machine()
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": m, "flowgate": bench.versions().get("flowgate"),
            "settings": {"seconds": CFG["seconds"], "repeat": CFG["repeat"],
                         "wrk_threads": CFG["wrk_threads"], "wrk_conns": CFG["wrk_conns"]},
            "run_time_s": round(time.time() - started), "load_end": os.getloadavg()}
    with open(base + ".json", "w") as f:
        json.dump({"info": info, "results": res}, f, indent=1)
    lines = [f"# flowgate kernel plane benchmark — {day}", "", "| | |", "|---|---|"]
    for k, v in (("date", info["date"]), ("kernel (`uname -r`)", m.get("kernel")),
                 ("CPU", m.get("cpu")), ("cores", m.get("cores")),
                 ("flowgate", info["flowgate"]),
                 ("settings", f"BENCH_SECONDS={CFG['seconds']} BENCH_REPEAT={CFG['repeat']} "
                              f"wrk -t{CFG['wrk_threads']} -c{CFG['wrk_conns']}"),
                 ("run time", f"{info['run_time_s']} s"),
                 ("load average at the end", " ".join(f"{x:.2f}" for x in info["load_end"]))):
        lines.append(f"| {k} | {v} |")
    lines += ["", "## Kernel forward vs userspace forward vs direct", "",
              "Client and target in their own namespaces, the node routing between them "
              "(veth). Median of the rounds.", "",
              "| path | 1 stream Gbit/s | 8 streams Gbit/s | conn rate req/s |",
              "|---|---:|---:|---:|"]
    for engine, label in (("direct", "direct (routed by the node)"),
                          ("proxy", "flowgate forward --engine proxy"),
                          ("kernel", "flowgate forward --engine kernel")):
        r = res["forward"].get(engine, {})
        cells = []
        for key, fmt in (("tput1", "{:.2f}"), ("tput8", "{:.2f}"), ("cps", "{:,.0f}")):
            v = med(r.get(key, []))
            cells.append(fmt.format(v) if v is not None else "FAILED")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Firewall policy apply time", "",
              "`flowgate firewall apply -f FILE` into an empty table (parse, compile, nft dry "
              "run, snapshot, one transaction; includes process start), the same again "
              "replacing the table, and `firewall check` (dry run only). Median seconds.", "",
              "| rules | apply (new table) s | apply (replace) s | check s |",
              "|---:|---:|---:|---:|"]
    for n in RULE_COUNTS:
        runs = res["apply"].get(str(n), [])
        if not runs:
            lines.append(f"| {n:,} | FAILED | FAILED | FAILED |")
            continue
        lines.append(f"| {n:,} | {med([r['first'] for r in runs]):.3f} | "
                     f"{med([r['replace'] for r in runs]):.3f} | "
                     f"{med([r['check'] for r in runs]):.3f} |")
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines) + "\n" + NOTES)
    print("\n".join(lines))
    log(f"wrote {base}.md and {base}.json")


if __name__ == "__main__":
    main()
