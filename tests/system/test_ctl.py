"""`flowgate ctl` against a real `flowgate server` on 127.0.0.1 (root
namespace, a free port, its own data directory and $XDG_CONFIG_HOME).

What an operator scripting a fleet relies on: login saves a private session,
CRUD through flags, --json output equal to what was created, a validation
error that names the field and exits 2 with nothing changed, export ->
delete everything -> import gives the same export back, logout makes the
next call fail with a clear message, https with --ca / --insecure, and a
saved token never sent to another server.

Every flowgate process (the server and each ctl run) must finish without a
sanitizer report; the server must exit 0 on SIGTERM.
"""

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest

from conftest import SANITIZER_MARKERS

PASSWORD = "correct-horse-battery"


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def have_ipv6_loopback():
    try:
        free_port("::1")
        return True
    except OSError:
        return False


class Server:
    def __init__(self, fg_bin, tmp, tls=None, host="127.0.0.1"):
        self.port = free_port(host)
        self.host = host
        self.data = os.path.join(tmp, f"server-{self.port}")
        os.makedirs(self.data)
        hp = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{hp}"
        argv = [fg_bin, "server", "--listen", hp, "--data", self.data]
        if tls:
            argv += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        env = dict(os.environ, FLOWGATE_ADMIN_PASSWORD=PASSWORD)
        self.stderr_path = os.path.join(tmp, f"server-{self.port}.stderr")
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, env=env, start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log()}")
            try:
                socket.create_connection((host, self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"server not listening after 15 s: {self.log()}")
                time.sleep(0.05)

    def log(self):
        self.stderr.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                return None
        return self.proc.returncode


@pytest.fixture
def servers(fg_bin, tmp_path):
    started = []

    def start(tls=None, host="127.0.0.1"):
        s = Server(fg_bin, str(tmp_path), tls, host)
        started.append(s)
        return s

    yield start
    problems = []
    for s in started:
        rc = s.stop()
        err = s.log()
        s.stderr.close()
        san = [m for m in SANITIZER_MARKERS if m in err]
        if san:
            problems.append(f"server {s.url}: sanitizer report {san}:\n{err[-4000:]}")
        if rc != 0:
            problems.append(f"server {s.url}: exit status {rc} after SIGTERM:\n{err[-2000:]}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


class Ctl:
    """Runs `flowgate ctl` with a private config home and no inherited
    FLOWGATE_* variables."""

    def __init__(self, fg_bin, home):
        self.fg_bin = fg_bin
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWGATE_")}
        self.env["XDG_CONFIG_HOME"] = home
        self.env["HOME"] = home

    @property
    def config_path(self):
        return os.path.join(self.home, "flowgate", "ctl.json")

    def run(self, *args, input=None, expect=0, env=None):
        e = dict(self.env, **(env or {}))
        r = subprocess.run([self.fg_bin, "ctl", *args], input=input, capture_output=True,
                           text=True, env=e, timeout=60)
        san = [m for m in SANITIZER_MARKERS if m in r.stderr]
        assert not san, f"ctl {args}: sanitizer report:\n{r.stderr}"
        if expect is not None:
            assert r.returncode == expect, (
                f"ctl {' '.join(args)}: exit {r.returncode}, expected {expect}\n"
                f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def json(self, *args):
        return json.loads(self.run("--json", *args).stdout)

    def login(self, server, *extra, password=PASSWORD, expect=0):
        return self.run("login", "--server", server, "--password-stdin", *extra,
                        input=password + "\n", expect=expect)


@pytest.fixture
def ctl(fg_bin, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return Ctl(fg_bin, str(home))


def without_time(export):
    e = dict(export)
    e.pop("exported", None)
    return e


def test_ctl_login_crud_json_export_import_logout(servers, ctl, tmp_path):
    srv = servers()

    # a wrong password: exit 1, clear message, nothing saved
    r = ctl.login(srv.url, password="wrong-password", expect=1)
    assert "wrong username or password" in r.stderr
    assert not os.path.exists(ctl.config_path)

    r = ctl.login(srv.url)
    assert f"logged in to {srv.url} as admin" in r.stdout
    assert "fgs_" not in r.stdout + r.stderr, "login must not print the session token"
    st = os.stat(ctl.config_path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(ctl.config_path)).st_mode) == 0o700
    saved = json.load(open(ctl.config_path))
    assert saved["server"] == srv.url and saved["token"].startswith("fgs_")

    assert ctl.run("whoami").stdout.startswith("admin (role admin)")

    # groups, nodes, forwards through flags
    ctl.run("groups", "create", "edge")
    ctl.run("groups", "create", "core")
    r = ctl.run("nodes", "create", "fra1", "--group", "edge")
    assert f"flowgate agent --server ws://127.0.0.1:{srv.port} --token fgn_" in r.stdout
    assert "node token: fgn_" in r.stdout
    ctl.run("nodes", "create", "ams1")
    ctl.run("groups", "set-nodes", "core", "ams1", "fra1")
    ctl.run("forwards", "create", "--name", "web", "--group", "edge", "--listen",
            "0.0.0.0:8080", "--target", "10.0.0.2:80", "--target", "10.0.0.3:80",
            "--balance", "least-conn", "--rate-down", "50mbit", "--max-conns", "1000")
    ctl.run("forwards", "create", "--name", "dns", "--node", "ams1", "--listen", ":53",
            "--target", "9.9.9.9:53", "--proto", "udp", "--disabled")
    fwd_file = tmp_path / "db.json"
    fwd_file.write_text(json.dumps({"name": "db", "node": "fra1", "listen": ":5432",
                                    "targets": ["10.0.0.9:5432"], "proxy_protocol": "v2"}))
    ctl.run("forwards", "create", "-f", str(fwd_file), "--listen", ":6432")
    ctl.run("forwards", "update", "web", "--rate-up", "10mbit", "--unset", "max_conns")

    # --json lists hold exactly what was created
    nodes = {n["name"]: n for n in ctl.json("nodes", "list")["nodes"]}
    assert set(nodes) == {"fra1", "ams1"}
    assert sorted(nodes["fra1"]["groups"]) == ["core", "edge"]
    assert nodes["ams1"]["groups"] == ["core"]
    assert nodes["fra1"]["online"] is False
    assert all("token" not in n for n in nodes.values())
    groups = {g["name"]: sorted(g["nodes"]) for g in ctl.json("groups", "list")["groups"]}
    assert groups == {"edge": ["fra1"], "core": ["ams1", "fra1"]}
    fwds = {f["name"]: f for f in ctl.json("forwards", "list")["forwards"]}
    assert set(fwds) == {"web", "dns", "db"}
    web = fwds["web"]
    assert (web["group"], web["listen"], web["targets"], web["balance"], web["rate_down"],
            web["rate_up"], web["enabled"]) == (
        "edge", "0.0.0.0:8080", ["10.0.0.2:80", "10.0.0.3:80"], "least-conn", "50mbit",
        "10mbit", True)
    assert "max_conns" not in web
    assert (fwds["dns"]["node"], fwds["dns"]["proto"], fwds["dns"]["enabled"]) == (
        "ams1", "udp", False)
    assert (fwds["db"]["node"], fwds["db"]["listen"], fwds["db"]["proxy_protocol"]) == (
        "fra1", ":6432", "v2")
    assert ctl.json("forwards", "get", str(web["id"]))["name"] == "web"
    on_ams = {f["name"] for f in ctl.json("forwards", "list", "--node", "ams1")["forwards"]}
    assert on_ams == {"dns"}

    # human tables name every object
    out = ctl.run("forwards", "list").stdout
    assert "NAME" in out and all(n in out for n in ("web", "dns", "db"))
    assert "disabled" in out

    # a validation error: exit 2, the field named (and the flag), nothing created
    before = ctl.json("forwards", "list")
    r = ctl.run("forwards", "create", "--name", "bad", "--node", "fra1", "--listen",
                "0.0.0.0:99999", "--target", "10.0.0.2:80", expect=2)
    assert "listen" in r.stderr and "--listen" in r.stderr and "99999" in r.stderr
    assert r.stdout == ""
    assert ctl.json("forwards", "list") == before
    # an unknown object: exit 2 with the API's message
    r = ctl.run("nodes", "get", "nope", expect=2)
    assert 'no node "nope"' in r.stderr
    # bad usage: exit 2 before any request
    assert "unknown command" in ctl.run("nodes", "frob", expect=2).stderr

    # stats as CSV: the server's header and one row per step
    r = ctl.run("forwards", "stats", "web", "--from", "10m", "--step", "60", "--csv")
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "t,bytes_up,bytes_down,conns" and 10 <= len(lines) - 1 <= 11

    # export -> delete everything -> import -> the same export
    exp1 = tmp_path / "export1.json"
    ctl.run("export", "-o", str(exp1))
    first = json.loads(exp1.read_text())
    assert len(first["forwards"]) == 3 and len(first["nodes"]) == 2
    ctl.run("forwards", "delete", "web", "dns", "db")
    ctl.run("nodes", "delete", "fra1", "ams1")
    ctl.run("groups", "delete", "edge", "core")
    empty = json.loads(ctl.run("export").stdout)
    assert (empty["groups"], empty["nodes"], empty["forwards"]) == ([], [], [])
    r = ctl.run("import", str(exp1))
    assert "7 created, 0 updated" in r.stdout
    assert "fra1" in r.stdout and "ams1" in r.stdout and r.stdout.count("fgn_") == 2
    second = json.loads(ctl.run("export").stdout)
    assert without_time(second) == without_time(first)
    # importing again changes nothing but counts the forwards as updated
    r = ctl.run("--json", "import", "-", input=exp1.read_text())
    res = json.loads(r.stdout)
    assert (res["created"], res["updated"], res["node_tokens"]) == (0, 3, {})
    assert without_time(json.loads(ctl.run("export").stdout)) == without_time(first)
    # a broken file is refused locally with its line, exit 2
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "groups": [\n')
    r = ctl.run("import", str(bad), expect=2)
    assert str(bad) in r.stderr and "line" in r.stderr

    # an API token for scripts, via $FLOWGATE_TOKEN, printed alone on stdout
    r = ctl.run("token", "create", "--expires-in", "1d")
    api_token = r.stdout.strip()
    assert api_token.startswith("fga_") and "\n" not in api_token

    # logout: revoked on the server and forgotten locally
    old = json.load(open(ctl.config_path))["token"]
    ctl.run("logout")
    assert "token" not in json.load(open(ctl.config_path))
    r = ctl.run("nodes", "list", expect=1)
    assert "not logged in" in r.stderr and "flowgate ctl login" in r.stderr
    r = ctl.run("--token", old, "nodes", "list", expect=1)
    assert "unauthorized" in r.stderr and "revoked" in r.stderr
    # the API token still works from the environment
    names = {n["name"] for n in json.loads(
        ctl.run("--json", "nodes", "list", env={"FLOWGATE_TOKEN": api_token}).stdout)["nodes"]}
    assert names == {"fra1", "ams1"}


def test_ctl_saved_token_stays_with_its_server(servers, ctl):
    a = servers()
    b = servers()
    ctl.login(a.url)
    # another server (flag or environment): the saved token is not sent there
    r = ctl.run("--server", b.url, "nodes", "list", expect=1)
    assert f"not logged in to {b.url}" in r.stderr
    r = ctl.run("nodes", "list", expect=1, env={"FLOWGATE_SERVER": b.url})
    assert f"not logged in to {b.url}" in r.stderr
    # the saved server is the default
    assert "no nodes" in ctl.run("nodes", "list").stdout
    # a damaged config file is ignored with a warning: an explicit token still works
    token = json.load(open(ctl.config_path))["token"]
    with open(ctl.config_path, "w") as f:
        f.write('{"server": ')
    r = ctl.run("--server", a.url, "nodes", "list", env={"FLOWGATE_TOKEN": token})
    assert "warning: ignoring" in r.stderr and "log in again" in r.stderr
    ctl.login(a.url)  # and login rewrites it
    assert json.load(open(ctl.config_path))["server"] == a.url


@pytest.mark.skipif(not have_ipv6_loopback(), reason="no ::1")
def test_ctl_ipv6_server(servers, ctl):
    srv = servers(host="::1")
    assert srv.url.startswith("http://[::1]:")
    ctl.login(srv.url)
    ctl.run("groups", "create", "v6")
    assert [g["name"] for g in ctl.json("groups", "list")["groups"]] == ["v6"]


def test_ctl_network_errors_exit_1(ctl):
    port = free_port()  # nothing listens there now
    r = ctl.run("--server", f"http://127.0.0.1:{port}", "--token", "fgs_x", "nodes", "list",
                expect=1)
    assert f"cannot connect to 127.0.0.1:{port}" in r.stderr
    r = ctl.run("--server", "ftp://127.0.0.1", "nodes", "list", expect=2)
    assert "http://, https://" in r.stderr


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command")
def test_ctl_https_checks_the_certificate(servers, ctl, tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    srv = servers(tls=(cert, key))
    # a self-signed certificate is refused by default, with the way out
    r = ctl.login(srv.url, expect=1)
    assert "not trusted" in r.stderr and "--ca" in r.stderr
    assert not os.path.exists(ctl.config_path)
    # --ca FILE: verified (by IP and by name), remembered for that server
    ctl.login(srv.url, "--ca", cert)
    assert ctl.run("whoami").stdout.startswith("admin")
    ctl.login(f"https://localhost:{srv.port}", "--ca", cert)
    assert ctl.run("groups", "list").returncode == 0
    # --insecure works but says so loudly, every time
    ctl.login(srv.url, "--insecure")
    r = ctl.run("groups", "list")
    assert "WARNING" in r.stderr and "OFF" in r.stderr


IPTABLES_SAVE = """# Generated by iptables-save
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -s 192.0.2.0/24 -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 23 -j DROP
-A INPUT -p tcp -m multiport --dports 80,443 -j LOG
COMMIT
"""


def test_ctl_policies_crud_preview_and_iptables_import(servers, ctl, tmp_path):
    srv = servers()
    ctl.login(srv.url)
    ctl.run("nodes", "create", "fra1")
    pol = tmp_path / "p.json"
    pol.write_text(json.dumps({
        "name": "base", "priority": 10, "targets": {"nodes": ["fra1"]},
        "rules": [{"chain": "input", "proto": "tcp", "dport": 22, "action": "accept",
                   "counter": True, "comment": "ssh"},
                  {"chain": "input", "proto": "tcp", "dport": "1-1023", "action": "drop"}]}))
    r = ctl.run("policies", "create", "-f", str(pol))
    assert "created policy base" in r.stdout and "node fra1" in r.stdout
    lst = ctl.json("policies", "list")["policies"]
    assert [(p["name"], p["priority"], len(p["rules"])) for p in lst] == [("base", 10, 2)]
    assert "base" in ctl.run("policies", "list").stdout

    # a bad rule: exit 2, the field named, nothing changed
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{"chain": "input", "proto": "tcp",
                                          "dport": "99999", "action": "drop"}]}))
    r = ctl.run("policies", "update", "base", "-f", str(bad), expect=2)
    assert "rules[0].dport" in r.stderr
    assert ctl.json("policies", "get", "base")["rules"] == lst[0]["rules"]

    # the preview is the exact nft text; the node is offline so no diff
    r = ctl.run("policies", "preview", "fra1")
    assert "table inet flowgate" in r.stdout and "tcp dport 22" in r.stdout
    assert 'comment "ssh"' in r.stdout and "counter pol_base_0" in r.stdout
    r = ctl.run("policies", "preview", "fra1", "--diff")
    assert "offline" in r.stdout
    ctl.run("policies", "disable", "base")
    assert ctl.json("policies", "get", "base")["enabled"] is False
    assert "policy base" not in ctl.run("policies", "preview", "fra1").stdout

    # iptables-save: converted (by iptables-restore-translate when installed)
    save = tmp_path / "rules.v4"
    save.write_text(IPTABLES_SAVE)
    r = ctl.run("policies", "import-iptables", str(save), "--name", "legacy")
    got = json.loads(r.stdout)
    assert got["name"] == "legacy" and got["enabled"] is False
    text = json.dumps(got["rules"])
    assert "22" in text and "192.0.2.0/24" in text and "23" in text
    assert all(rule["chain"] == "input" for rule in got["rules"])
    # the chain's default DROP is the last rule
    assert got["rules"][-1]["action"] == "drop" and "default" in got["rules"][-1]["comment"]
    if shutil.which("iptables-restore-translate"):
        assert "iptables-restore-translate" in r.stderr
    else:
        assert "not installed" in r.stderr and "skipped" in r.stderr  # the LOG rule
    r = ctl.run("policies", "import-iptables", str(save), "--name", "legacy", "--create")
    assert "created policy legacy" in r.stdout
    assert ctl.json("policies", "get", "legacy")["enabled"] is False
    ctl.run("policies", "delete", "legacy", "base")
    assert ctl.json("policies", "list")["policies"] == []


def test_ctl_tunnels_crud_bad_field_rotate_export_import(servers, ctl, tmp_path):
    """`ctl tunnels`: create by flags and from a file, list/show (human and
    --json), a bad field exits 2 naming the field and the option with nothing
    created, update/--unset, enable/disable, rotate-key (key ids only, never a
    key), export -> delete -> import (the import makes a fresh key), delete."""
    srv = servers()
    ctl.login(srv.url)
    for n in ("n1", "n2", "n3"):
        ctl.run("nodes", "create", n)
    r = ctl.run("tunnels", "create", "--name", "db", "--node", "n1", "--listen",
                "0.0.0.0:5432", "--hop", "n2", "--exit", "n3", "--target", "10.0.0.5:5432",
                "--transport", "aead", "--no-mux", "--rate-down", "50mbit", "--max-conns", "500")
    assert "created tunnel db" in r.stdout and "n1 -> n2 -> n3" in r.stdout
    tfile = tmp_path / "t2.json"
    tfile.write_text(json.dumps({"name": "web", "entry": {"node": "n1", "listen": "0.0.0.0:80"},
                                 "exits": ["n2", "n3"], "balance": "round-robin",
                                 "target": "10.0.0.6:80", "link_port": 21000}))
    ctl.run("tunnels", "create", "-f", str(tfile), "--listen", "0.0.0.0:8080")

    ts = {t["name"]: t for t in ctl.json("tunnels", "list")["tunnels"]}
    assert set(ts) == {"db", "web"}
    db = ts["db"]
    assert (db["entry"], db["hops"], db["exit"], db["target"], db["transport"], db["mux"],
            db["rate_down"], db["max_conns"]) == (
        {"node": "n1", "listen": "0.0.0.0:5432"}, ["n2"], "n3", "10.0.0.5:5432", "aead", False,
        "50mbit", 500)
    web = ts["web"]
    assert (web["entry"]["listen"], web["exits"], web["balance"], web["link_port"]) == (
        "0.0.0.0:8080", ["n2", "n3"], "round-robin", 21000)
    assert ctl.json("tunnels", "show", "db") == db
    assert ctl.json("tunnels", "get", str(db["id"]))["name"] == "db"
    out = ctl.run("tunnels", "list").stdout
    assert "NAME" in out and "db" in out and "web" in out and "n1 -> n2 -> n3" in out
    assert "waiting" in out  # no agent ever connected: no addresses to dial
    out = ctl.run("tunnels", "show", "db").stdout
    assert "10.0.0.5:5432" in out and "aead" in out
    on_n2 = {t["name"] for t in ctl.json("tunnels", "list", "--node", "n2")["tunnels"]}
    assert on_n2 == {"db", "web"}

    # a bad field: exit 2, the API's field and the option named, nothing created
    before = ctl.json("tunnels", "list")
    r = ctl.run("tunnels", "create", "--name", "bad", "--node", "n1", "--listen",
                "0.0.0.0:99999", "--exit", "n3", "--target", "10.0.0.5:1", expect=2)
    assert 'field "entry.listen"' in r.stderr and "option --listen" in r.stderr, r.stderr
    assert "99999" in r.stderr and r.stdout == ""
    r = ctl.run("tunnels", "create", "--name", "bad", "--node", "n1", "--listen", "7000",
                "--exit", "n3", "--target", "10.0.0.5:1", "--transport", "quic", expect=2)
    assert 'field "transport"' in r.stderr and "option --transport" in r.stderr, r.stderr
    r = ctl.run("tunnels", "create", "--name", "bad", "--node", "n1", "--listen", "7000",
                "--exit", "nope", "--target", "10.0.0.5:1", expect=2)
    assert 'field "exit"' in r.stderr and "option --exit" in r.stderr, r.stderr
    assert ctl.json("tunnels", "list") == before
    # bad usage, before any request
    r = ctl.run("tunnels", "create", "--name", "x", "--node", "n1", expect=2)
    assert "--listen ADDR is required" in r.stderr
    assert "unknown command" in ctl.run("tunnels", "frob", expect=2).stderr
    r = ctl.run("tunnels", expect=2)
    assert "list, get, create, update, enable, disable, delete, rotate-key or stats" in r.stderr

    # update: flags replace, --unset removes; the entry merges (--listen keeps the node)
    ctl.run("tunnels", "update", "db", "--rate-up", "10mbit", "--unset", "rate_down",
            "--listen", "0.0.0.0:5433")
    db2 = ctl.json("tunnels", "show", "db")
    assert (db2["rate_up"], "rate_down" in db2, db2["entry"]) == (
        "10mbit", False, {"node": "n1", "listen": "0.0.0.0:5433"})
    assert "disabled" in ctl.run("tunnels", "disable", "web").stdout
    assert ctl.json("tunnels", "show", "web")["enabled"] is False
    ctl.run("tunnels", "enable", "web")

    # rotate-key: a new key id, the previous one accepted for 10 minutes
    k0 = db2["key"]
    assert k0["id"] == db["id"] and k0["previous_id"] is None
    r = ctl.run("tunnels", "rotate-key", "db")
    assert f"new key id {k0['id'] + 1}" in r.stdout and f"(id {k0['id']})" in r.stdout
    k1 = ctl.json("tunnels", "show", "db")["key"]
    assert (k1["id"], k1["previous_id"]) == (k0["id"] + 1, k0["id"])
    assert k1["previous_until"] - k1["rotated"] == 600
    assert ctl.run("tunnels", "rotate-key", "nope", expect=2).returncode == 2

    # export holds the tunnels without keys; delete all; import makes them again
    exp = tmp_path / "exp.json"
    r = ctl.run("export", "-o", str(exp))
    assert "2 tunnels" in r.stderr
    first = json.loads(exp.read_text())
    assert {t["name"] for t in first["tunnels"]} == {"db", "web"}
    assert all("key" not in t and "psk" not in t for t in first["tunnels"])
    r = ctl.run("tunnels", "delete", "db", "web")
    assert "deleted tunnel db" in r.stdout and "deleted tunnel web" in r.stdout
    assert "no tunnels" in ctl.run("tunnels", "list").stdout
    r = ctl.run("import", str(exp))
    assert "2 created, 0 updated" in r.stdout, r.stdout
    again = {t["name"]: t for t in ctl.json("tunnels", "list")["tunnels"]}
    # a fresh key: the first key of the new tunnel, no rotation pending
    assert again["db"]["key"]["id"] == again["db"]["id"]
    assert again["db"]["key"]["previous_id"] is None
    assert again["db"]["rate_up"] == "10mbit"
    assert without_time(json.loads(ctl.run("export").stdout)) == without_time(first)
