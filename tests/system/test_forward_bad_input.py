"""Bad input on the command line and in the -c file: exit status 2, exactly one line on
stderr naming the field (CLI option / JSON path) and the value, nothing left listening."""

import json
import subprocess

import pytest

from conftest import NODE_IP, TARGET_IPS, run_flowgate_once

T = f"{TARGET_IPS[0]}:9000"


def node_tcp_ports(topo):
    return [p for _, p in topo.node.listeners("tcp")] + [p for _, p in topo.node.listeners("udp")]


def check_rejected(topo, fg_bin, args, fields, values, ports, allowed_listeners=()):
    try:
        r = run_flowgate_once(topo, fg_bin, args, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"flowgate {' '.join(args)} did not exit within 5s (bad input accepted?)")
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    ctx = f"\nargs: {args}\nexit: {r.returncode}\nstderr: {r.stderr!r}\nstdout: {r.stdout!r}"
    assert r.returncode == 2, "exit status must be 2 on bad input" + ctx
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}" + ctx
    line = lines[0]
    for f in fields:
        if isinstance(f, tuple):
            assert any(x in line for x in f), f"stderr line does not name the field ({f})" + ctx
        else:
            assert f in line, f"stderr line does not name the field ({f!r})" + ctx
    if values:
        assert any(v in line for v in values), \
            f"stderr line does not show the value (one of {values})" + ctx
    listening = node_tcp_ports(topo)
    for p in ports:
        n = listening.count(p) - allowed_listeners.count(p)
        assert n <= 0, f"port {p} still has a listener after the rejected start" + ctx
    return line


LISTEN_F = ("--listen", "-l", "listen")
TARGET_F = ("--target", "-r", "target")

# id, extra args (None = no -l/-r added), required field tokens, any-of value tokens
CLI_CASES = [
    ("unknown-option", ["--frobnicate", "3"], [("frobnicate",)], None),
    ("listen-not-an-address", ["-l", "not an address", "-r", T], [LISTEN_F], ["not an address"]),
    ("listen-bad-ipv4", ["-l", "10.77.1.300:{lp}", "-r", T], [LISTEN_F], ["10.77.1.300"]),
    ("listen-port-0", ["-l", f"{NODE_IP}:0", "-r", T], [LISTEN_F], [f"{NODE_IP}:0"]),
    ("listen-port-70000", ["-l", f"{NODE_IP}:70000", "-r", T], [LISTEN_F], [f"{NODE_IP}:70000"]),
    ("listen-range-port-70000", ["-l", f"{NODE_IP}:65530-70000", "-r", T], [LISTEN_F],
     ["65530-70000"]),
    ("target-no-port", ["-l", f"{NODE_IP}:{{lp}}", "-r", TARGET_IPS[0]], [TARGET_F],
     [TARGET_IPS[0]]),
    ("target-port-0", ["-l", f"{NODE_IP}:{{lp}}", "-r", f"{TARGET_IPS[0]}:0"], [TARGET_F],
     [f"{TARGET_IPS[0]}:0"]),
    ("target-port-70000", ["-l", f"{NODE_IP}:{{lp}}", "-r", f"{TARGET_IPS[0]}:70000"],
     [TARGET_F], [f"{TARGET_IPS[0]}:70000"]),
    ("missing-target", ["-l", f"{NODE_IP}:{{lp}}"], [TARGET_F], None),
    ("range-size-mismatch", ["-l", f"{NODE_IP}:{{lp}}-{{lp9}}", "-r", f"{TARGET_IPS[0]}:30000-30004"],
     [LISTEN_F + TARGET_F], ["30000-30004", "{lp}-{lp9}"]),
    ("rate-down-unparseable", ["--rate-down", "12 parsecs"], [("rate-down", "rate_down")],
     ["12 parsecs"]),
    ("rate-up-unparseable", ["--rate-up", "fast"], [("rate-up", "rate_up")], ["fast"]),
    ("rate-up-per-conn-unparseable", ["--rate-up-per-conn", "10 mbit/s"],
     [("rate-up-per-conn", "rate_up_per_conn")], ["10 mbit/s"]),
    ("burst-unparseable", ["--burst", "lots"], [("burst",)], ["lots"]),
    ("bad-balance", ["--balance", "random"], [("balance",)], ["random"]),
    ("bad-proto", ["--proto", "sctp"], [("proto",)], ["sctp"]),
    ("bad-max-conns", ["--max-conns", "ten"], [("max-conns", "max_conns")], ["ten"]),
    ("bad-idle-timeout", ["--idle-timeout", "5 fortnights"], [("idle-timeout", "idle_timeout")],
     ["5 fortnights"]),
    ("bad-connect-timeout", ["--connect-timeout", "soon"],
     [("connect-timeout", "connect_timeout")], ["soon"]),
    ("bad-proxy-protocol", ["--proxy-protocol", "v3"], [("proxy-protocol", "proxy_protocol")],
     ["v3"]),
    ("bad-name", ["--name", "we b"], [("name",)], ["we b"]),
    ("bad-workers", ["--workers", "many"], [("workers",)], ["many"]),
    ("bad-log-level", ["--log-level", "chatty"], [("log-level",)], ["chatty"]),
    ("bad-metrics-addr", ["--metrics", "nowhere"], [("metrics",)], ["nowhere"]),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_cli_input_exits_2_with_one_line(topo, fg_bin, port, case):
    _, extra, fields, values = case
    lp = port(10)[0]
    fill = lambda s: s.replace("{lp}", str(lp)).replace("{lp9}", str(lp + 9))  # noqa: E731
    args = [fill(a) for a in extra]
    if not any(a in ("-l", "--listen") for a in args) and case[0] != "missing-target":
        args = ["-l", f"{NODE_IP}:{lp}", "-r", T] + args
    check_rejected(topo, fg_bin, args, fields, [fill(v) for v in values] if values else None,
                   ports=list(range(lp, lp + 10)))


def base_forward(name, lp):
    return {"name": name, "listen": f"{NODE_IP}:{lp}", "targets": [T]}


def _set(path_value):
    def mut(fw):
        for k, v in path_value.items():
            if v is _DEL:
                fw[0].pop(k, None)
            else:
                fw[0][k] = v
        return fw
    return mut


_DEL = object()

# id, mutation of [forward0, forward1] (both valid on ports lp, lp+1), required field tokens,
# any-of value tokens
FILE_CASES = [
    ("unknown-field", _set({"colour": "red"}), ["forwards[0]", "colour"], None),
    ("listen-not-an-address", _set({"listen": "not an address"}), ["forwards[0].listen"],
     ["not an address"]),
    ("listen-port-0", _set({"listen": f"{NODE_IP}:0"}), ["forwards[0].listen"], [f"{NODE_IP}:0"]),
    ("listen-port-70000", _set({"listen": f"{NODE_IP}:70000"}), ["forwards[0].listen"],
     [f"{NODE_IP}:70000"]),
    ("target-port-0", _set({"targets": [f"{TARGET_IPS[0]}:0"]}), ["forwards[0].targets[0]"],
     [f"{TARGET_IPS[0]}:0"]),
    ("target-port-70000", _set({"targets": [T, f"{TARGET_IPS[0]}:70000"]}),
     ["forwards[0].targets[1]"], [f"{TARGET_IPS[0]}:70000"]),
    ("target-not-a-string", _set({"targets": [9000]}), ["forwards[0].targets[0]"], ["9000"]),
    ("targets-empty", _set({"targets": []}), ["forwards[0].targets"], None),
    ("targets-65", _set({"targets": [f"{TARGET_IPS[0]}:{9000 + i}" for i in range(65)]}),
     ["forwards[0].targets"], None),
    ("rate-up-unparseable-in-second", lambda fw: (fw[1].update(rate_up="12 parsecs"), fw)[1],
     ["forwards[1].rate_up"], ["12 parsecs"]),
    ("rate-down-negative", _set({"rate_down": -5}), ["forwards[0].rate_down"], ["-5"]),
    ("max-conns-wrong-type", _set({"max_conns": "ten"}), ["forwards[0].max_conns"], ["ten"]),
    ("max-conns-negative", _set({"max_conns": -1}), ["forwards[0].max_conns"], ["-1"]),
    ("bad-proto", _set({"proto": "sctp"}), ["forwards[0].proto"], ["sctp"]),
    ("bad-balance", _set({"balance": "random"}), ["forwards[0].balance"], ["random"]),
    ("bad-proxy-protocol", _set({"proxy_protocol": "v3"}), ["forwards[0].proxy_protocol"],
     ["v3"]),
    ("bad-duration", _set({"idle_timeout": "5 fortnights"}), ["forwards[0].idle_timeout"],
     ["5 fortnights"]),
    ("health-check-rise-0",
     _set({"health_check": {"interval": "1s", "timeout": "1s", "rise": 0, "fall": 1}}),
     ["forwards[0].health_check.rise"], ["0"]),
    ("health-check-unknown-field",
     _set({"health_check": {"interval": "1s", "every": "1s"}}),
     ["forwards[0].health_check", "every"], None),
    ("bad-name-chars", _set({"name": "we b"}), ["forwards[0].name"], ["we b"]),
    ("name-too-long", _set({"name": "n" * 65}), ["forwards[0].name"], ["n" * 65]),
    ("missing-listen", _set({"listen": _DEL}), ["forwards[0]", "listen"], None),
    ("enabled-wrong-type", _set({"enabled": "yes"}), ["forwards[0].enabled"], ["yes"]),
    ("duplicate-name", lambda fw: (fw[1].update(name=fw[0]["name"]), fw)[1],
     ["forwards[1].name"], None),
    ("duplicate-listen-port", lambda fw: (fw[1].update(listen=fw[0]["listen"]), fw)[1],
     ["forwards[1].listen"], None),
    ("range-size-mismatch", None, ["forwards[0]"], ["30000-30004"]),
]


@pytest.mark.parametrize("case", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_file_input_exits_2_with_one_line(tmp_path, topo, fg_bin, port, case):
    _, mutate, fields, values = case
    lp = port(10)[0]
    fw = [base_forward("first", lp), base_forward("second", lp + 1)]
    if case[0] == "range-size-mismatch":
        fw[0]["listen"] = f"{NODE_IP}:{lp + 2}-{lp + 9}"
        fw[0]["targets"] = [f"{TARGET_IPS[0]}:30000-30004"]
    else:
        fw = mutate(fw)
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"forwards": fw}))
    check_rejected(topo, fg_bin, ["-c", str(cfg)], fields, values,
                   ports=list(range(lp, lp + 10)))


@pytest.mark.parametrize("content,what", [
    ("{not json", "syntax"),
    ('{"forwards": {}}', "forwards-not-array"),
    ('{"forwards": [], "version": 3}', "unknown-top-level-key"),
    ("[]", "top-level-array"),
])
def test_bad_file_structure_exits_2_with_one_line(tmp_path, topo, fg_bin, content, what):
    cfg = tmp_path / "bad.json"
    cfg.write_text(content)
    fields = {"unknown-top-level-key": ["version"], "forwards-not-array": ["forwards"]}
    check_rejected(topo, fg_bin, ["-c", str(cfg)], fields.get(what, []), None, ports=[])


def test_missing_config_file_exits_2_naming_the_file(tmp_path, topo, fg_bin):
    missing = str(tmp_path / "does-not-exist.json")
    check_rejected(topo, fg_bin, ["-c", missing], [missing], None, ports=[])


def test_cli_listen_port_in_use_exits_2_naming_the_address(topo, fg_bin, port):
    lp = port()
    blocker = topo.node.listen_tcp((NODE_IP, lp))
    try:
        check_rejected(topo, fg_bin, ["-l", f"{NODE_IP}:{lp}", "-r", T], [],
                       [f"{NODE_IP}:{lp}"], ports=[lp], allowed_listeners=[lp])
    finally:
        blocker.close()


def test_file_listen_port_in_use_exits_2_and_starts_nothing(tmp_path, topo, fg_bin, port):
    """forwards[0] is fine, forwards[1]'s port is taken: nothing may be left listening,
    the line names the forward and the address."""
    p0, p1, p2 = port(), port(), port()
    blocker = topo.node.listen_tcp((NODE_IP, p1))
    fw = [base_forward("good", p0), base_forward("taken", p1), base_forward("later", p2)]
    cfg = tmp_path / "inuse.json"
    cfg.write_text(json.dumps({"forwards": fw}))
    try:
        check_rejected(topo, fg_bin, ["-c", str(cfg)], ["taken"], [f"{NODE_IP}:{p1}"],
                       ports=[p0, p1, p2], allowed_listeners=[p1])
    finally:
        blocker.close()


def test_udp_listen_port_in_use_exits_2(topo, fg_bin, port):
    import socket
    lp = port()
    blocker = topo.node.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind((NODE_IP, lp))
    try:
        r = run_flowgate_once(topo, fg_bin, ["--proto", "udp", "-l", f"{NODE_IP}:{lp}", "-r", T],
                              timeout=5)
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert len([l for l in r.stderr.splitlines() if l.strip()]) == 1, r.stderr
        assert f"{NODE_IP}:{lp}" in r.stderr
    finally:
        blocker.close()
