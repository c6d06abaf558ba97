"""The REST API of `flowgate server` against the real binary and its SQLite
store: authentication, validation (clear 4xx naming the field, nothing
stored), collisions, roles, stats, export/import, the UI's static files.
The server runs in the root namespace on 127.0.0.1."""

import os
import socket
import sqlite3
import stat
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fgserver import ADMIN_PASSWORD, ServerProc  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture
def server(fg_bin, tmp_path, request):
    """Factory: server(password=..., extra=[...]) -> ServerProc; stopped and
    checked (exit 0, no sanitizer report) at teardown."""
    started = []

    def start(password=ADMIN_PASSWORD, extra=(), data=None, cafile=None):
        srv = ServerProc(fg_bin, str(data or tmp_path / "data"), free_port(), str(tmp_path),
                         password=password, extra=list(extra), name=f"server{len(started)}",
                         cafile=cafile)
        started.append(srv)
        return srv

    yield start
    problems = []
    for srv in started:
        problems += srv.stop()
    if problems and not getattr(request.node, "_call_failed", False):
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def admin(server):
    srv = server()
    return srv, srv.login()


def counts(api):
    return (len(api.ok("GET", "/nodes")["nodes"]), len(api.ok("GET", "/groups")["groups"]),
            len(api.ok("GET", "/forwards")["forwards"]))


def fwd(name, node="n1", listen="0.0.0.0:9000", **kw):
    body = {"name": name, "node": node, "listen": listen, "targets": ["10.0.0.1:80"]}
    body.update(kw)
    return body


# --- authentication --------------------------------------------------------

def test_login_gives_a_token_and_wrong_password_is_401(admin):
    srv, api = admin
    me = api.ok("GET", "/me")
    assert me["name"] == "admin" and me["role"] == "admin"
    st, b = srv.api().post("/login", {"username": "admin", "password": "wrong-password"})
    assert st == 401 and b["error"]["code"] == "bad_credentials"
    st, b = srv.api().post("/login", {"username": "nobody", "password": "wrong-password"})
    assert st == 401 and b["error"]["message"] == "wrong username or password"


def test_unauthenticated_and_bad_tokens_are_401(admin):
    srv, api = admin
    for tok in (None, "fgs_not-a-real-token", "garbage"):
        st, b = srv.api(tok).get("/nodes")
        assert st == 401, (tok, st, b)
        assert "error" in b and b["error"]["code"] == "unauthorized"
    st, b = srv.api().request("GET", "/metrics", absolute=True)
    assert st == 401
    st, text = api.request("GET", "/metrics", absolute=True)
    assert st == 200 and "flowgate_server_logins_total" in text


def test_failed_logins_are_rate_limited_per_address(admin):
    srv, api = admin
    statuses = []
    for _ in range(12):
        st, b = srv.api().post("/login", {"username": "admin", "password": "bad-password"})
        statuses.append(st)
    assert statuses[:10] == [401] * 10, statuses
    assert statuses[10:] == [429, 429], statuses
    anon = srv.api()
    st, b = anon.post("/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert st == 429 and "retry" in b["error"]["message"]
    assert 1 <= int(anon.last_headers["Retry-After"]) <= 7
    # a session already held keeps working
    assert api.ok("GET", "/me")["name"] == "admin"


def test_logout_revokes_the_session(admin):
    srv, api = admin
    api.ok("POST", "/logout")
    st, _ = api.get("/nodes")
    assert st == 401


def test_api_token_for_scripts(admin):
    srv, api = admin
    b = api.ok("POST", "/tokens", {"expires_in": 3600})
    assert b["token"].startswith("fga_")
    assert srv.api(b["token"]).ok("GET", "/me")["name"] == "admin"
    srv.api(b["token"]).ok("DELETE", "/tokens/current")
    assert srv.api(b["token"]).get("/me")[0] == 401


def test_generated_admin_password_is_printed_once_and_stored_0600(server, tmp_path):
    srv = server(password=None)
    pw_file = tmp_path / "data" / "initial-admin-password"
    assert stat.S_IMODE(os.stat(pw_file).st_mode) == 0o600
    pw = pw_file.read_text().strip()
    assert len(pw) >= 16 and pw in srv.stdout()
    srv.login(password=pw)
    assert srv.stop() == []
    srv2 = server(password=None)
    assert pw not in srv2.stdout()
    srv2.login(password=pw)


def test_secrets_are_stored_only_as_hashes(admin, tmp_path):
    srv, api = admin
    node = api.ok("POST", "/nodes", {"name": "n1"})
    tok = api.ok("POST", "/tokens", {})["token"]
    db = sqlite3.connect(str(tmp_path / "data" / "flowgate.db"))
    dump = "\n".join(db.iterdump())
    db.close()
    for secret in (node["token"], tok, api.token, ADMIN_PASSWORD):
        assert secret not in dump
    assert "$argon2id$" in dump


def test_roles_viewer_reads_operator_writes_admin_manages_users(admin):
    srv, api = admin
    api.ok("POST", "/users", {"username": "olga", "password": "operator-pw", "role": "operator"})
    api.ok("POST", "/users", {"username": "vic", "password": "viewer-pw1", "role": "viewer"})
    op = srv.login("olga", "operator-pw")
    viewer = srv.login("vic", "viewer-pw1")
    op.ok("POST", "/nodes", {"name": "n1"})
    assert viewer.ok("GET", "/nodes")["nodes"][0]["name"] == "n1"
    st, b = viewer.post("/nodes", {"name": "n2"})
    assert st == 403 and b["error"]["code"] == "forbidden"
    st, b = op.get("/users")
    assert st == 403
    st, b = op.get("/audit")
    assert st == 403
    assert counts(api) == (1, 0, 0)
    st, b = api.post("/users", {"username": "vic", "password": "another-pw", "role": "viewer"})
    assert st == 409
    st, b = api.post("/users", {"username": "x1", "password": "short", "role": "viewer"})
    assert st == 400 and b["error"]["field"] == "password"


def test_change_own_password(admin):
    srv, api = admin
    st, b = api.post("/me/password", {"old_password": "wrong-one", "new_password": "new-pass-123"})
    assert st == 400 and b["error"]["field"] == "old_password"
    api.ok("POST", "/me/password", {"old_password": ADMIN_PASSWORD, "new_password": "new-pass-123"})
    srv.login(password="new-pass-123")
    st, _ = srv.api().post("/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert st == 401


# --- validation: clear 4xx, nothing stored -----------------------------------

def test_malformed_json_and_wrong_shapes_are_400_and_store_nothing(admin):
    srv, api = admin
    for raw in (b'{"name":', b"[1,2]", b"\xff\xfe", b"", b'{"name":"a","name":"b"}'):
        st, b = api.request("POST", "/nodes", raw=raw)
        assert st == 400 and b["error"]["code"] == "bad_json", (raw, st, b)
    assert counts(api) == (0, 0, 0)


@pytest.mark.parametrize("body,field,words", [
    (fwd("web", listen="0.0.0.0:99999"), "listen", "out of range"),
    (fwd("web", listen="nonsense"), "listen", ""),
    (fwd("web", targets=["10.0.0.1:80", "x"]), "targets[1]", "bad port"),
    (fwd("web", targets=[]), "targets", "non-empty"),
    (fwd("web", proto="sctp"), "proto", "sctp"),
    (fwd("web", balance="random"), "balance", "random"),
    (fwd("web", rate_up="fast"), "rate_up", "fast"),
    (fwd("web", max_conns=-1), "max_conns", ""),
    (fwd("web", frobnicate=1), "frobnicate", "unknown field"),
    (fwd("web", node="ghost"), "node", "no node \"ghost\""),
    (fwd("123"), "name", "digits"),
    (fwd("bad name"), "name", "letters"),
    (fwd("web", enabled="yes"), "enabled", ""),
    ({"name": "web", "listen": "9000", "targets": ["1.2.3.4:5"]}, "node", "exactly one"),
])
def test_bad_forward_is_400_naming_the_field(admin, body, field, words):
    srv, api = admin
    api.ok("POST", "/nodes", {"name": "n1"})
    st, b = api.post("/forwards", body)
    assert st == 400, b
    assert b["error"]["field"] == field, b
    assert words in b["error"]["message"], b
    assert counts(api) == (1, 0, 0)


def test_unknown_node_and_group_are_404(admin):
    srv, api = admin
    for path in ("/nodes/ghost", "/nodes/999", "/groups/ghost", "/forwards/999",
                 "/nodes/ghost/stats"):
        st, b = api.get(path)
        assert st == 404 and "ghost" in b["error"]["message"] or "999" in b["error"]["message"]
    st, b = api.post("/nodes", {"name": "n1", "groups": ["ghost"]})
    assert st == 400 and b["error"]["field"] == "groups" and "ghost" in b["error"]["message"]
    assert counts(api) == (0, 0, 0)


def post_raw(port, token, head_extra, body, send_body=True):
    """POST /api/v1/nodes with a hand-made head; returns (status, text).
    The server may answer and close before the body is sent: that is the
    point of refusing an announced oversized body early."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall((f"POST /api/v1/nodes HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {token}\r\n{head_extra}\r\n").encode())
        if send_body:
            try:
                s.sendall(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and data.rstrip().endswith(b"}"):
                break
    finally:
        s.close()
    return int(data.split(b" ", 2)[1]), data.decode(errors="replace")


def test_oversized_body_is_413_and_stores_nothing(admin):
    srv, api = admin
    big = b'{"name":"n1","pad":"' + b"x" * (2 << 20) + b'"}'
    # announced: refused from the head alone, the body is never read
    st, text = post_raw(srv.port, api.token, f"Content-Length: {len(big)}\r\n", big,
                        send_body=False)
    assert st == 413 and '"too_large"' in text
    # chunked, so only counting can tell
    chunks = b"".join(b"%x\r\n" % len(big[i:i + 65536]) + big[i:i + 65536] + b"\r\n"
                      for i in range(0, len(big), 65536)) + b"0\r\n\r\n"
    st, text = post_raw(srv.port, api.token, "Transfer-Encoding: chunked\r\n", chunks)
    assert st == 413 and '"too_large"' in text
    assert counts(api) == (0, 0, 0)
    # the server is fine afterwards
    api.ok("POST", "/nodes", {"name": "n1"})


def test_port_collision_on_the_same_node_is_409(admin):
    srv, api = admin
    api.ok("POST", "/groups", {"name": "edge"})
    api.ok("POST", "/nodes", {"name": "n1", "groups": ["edge"]})
    api.ok("POST", "/nodes", {"name": "n2"})
    api.ok("POST", "/forwards", fwd("a", listen="0.0.0.0:9000-9010"))
    # overlapping range on the same node
    st, b = api.post("/forwards", fwd("b", listen="0.0.0.0:9005"))
    assert st == 409 and b["error"]["field"] == "listen" and '"a"' in b["error"]["message"]
    # through a group the node is in
    st, b = api.post("/forwards", {**fwd("c", listen="0.0.0.0:9010"), "node": None,
                                   "group": "edge"})
    assert st == 409, b
    # another protocol on the same port is fine, and so is another node
    api.ok("POST", "/forwards", fwd("d", listen="0.0.0.0:9000", proto="udp"))
    api.ok("POST", "/forwards", fwd("e", node="n2", listen="0.0.0.0:9000"))
    # a name is unique
    st, b = api.post("/forwards", fwd("e", node="n2", listen="0.0.0.0:9100"))
    assert st == 409 and b["error"]["field"] == "name"
    assert counts(api) == (2, 1, 3)


def test_forward_crud_patch_and_refs_by_name(admin):
    srv, api = admin
    api.ok("POST", "/nodes", {"name": "n1"})
    f = api.ok("POST", "/forwards", fwd("web", rate_up="1MB/s", proxy_protocol="v2"))
    assert f["node"] == "n1" and f["enabled"] is True and f["proxy_protocol"] == "v2"
    f2 = api.ok("PATCH", f"/forwards/{f['id']}", {"rate_up": None, "enabled": False,
                                                   "targets": ["10.0.0.2:80", "10.0.0.3:80"]})
    assert "rate_up" not in f2 and f2["enabled"] is False and len(f2["targets"]) == 2
    assert api.ok("GET", "/forwards/web")["id"] == f["id"]
    st, b = api.patch("/forwards/web", {"listen": "0.0.0.0:0"})
    assert st == 400 and b["error"]["field"] == "listen"
    assert api.ok("GET", "/forwards/web")["listen"] == "0.0.0.0:9000"
    # the node's desired revision moved with each change
    assert api.ok("GET", "/nodes/n1")["desired_rev"] >= 2
    api.ok("DELETE", "/forwards/web")
    assert counts(api) == (1, 0, 0)


def test_groups_members_and_delete(admin):
    srv, api = admin
    for n in ("n1", "n2", "n3"):
        api.ok("POST", "/nodes", {"name": n})
    g = api.ok("POST", "/groups", {"name": "edge", "nodes": ["n1", "n2"]})
    assert sorted(g["nodes"]) == ["n1", "n2"]
    g = api.ok("PATCH", "/groups/edge", {"nodes": ["n2", "n3"]})
    assert sorted(g["nodes"]) == ["n2", "n3"]
    assert api.ok("GET", "/nodes/n1")["groups"] == []
    assert api.ok("GET", "/nodes/n3")["groups"] == ["edge"]
    api.ok("POST", "/forwards", {**fwd("gw", node=None), "group": "edge"})
    assert [f["name"] for f in api.ok("GET", "/forwards?node=n3")["forwards"]] == ["gw"]
    assert api.ok("GET", "/forwards?node=n1")["forwards"] == []
    api.ok("DELETE", "/groups/edge")
    assert counts(api) == (3, 0, 0)


def test_node_create_returns_token_once_and_enroll_command(admin):
    srv, api = admin
    n = api.ok("POST", "/nodes", {"name": "n1"})
    assert n["token"].startswith("fgn_")
    assert f"--server ws://127.0.0.1:{srv.port}" in n["enroll_command"]
    assert n["token"] in n["enroll_command"]
    again = api.ok("GET", f"/nodes/{n['id']}")
    assert "token" not in again and again["online"] is False
    st, b = api.post("/nodes", {"name": "n1"})
    assert st == 409 and b["error"]["field"] == "name"


def test_stats_series_json_csv_and_bad_ranges(admin):
    srv, api = admin
    api.ok("POST", "/nodes", {"name": "n1"})
    f = api.ok("POST", "/forwards", fwd("web"))
    b = api.ok("GET", f"/forwards/{f['id']}/stats?from=0&to=3600&step=600")
    assert len(b["series"]) == 6 and b["total"] == {"bytes_up": 0, "bytes_down": 0, "conns": 0}
    st, text = api.get("/nodes/n1/stats?from=0&to=180&format=csv")
    assert st == 200 and text.splitlines()[0] == "t,bytes_up,bytes_down,conns"
    assert len(text.splitlines()) == 4
    for q, field in (("step=61", "step"), ("from=100&to=50", "from"), ("to=abc", "to"),
                     ("from=0&to=100000000&step=60", "step"), ("format=xml", "format")):
        st, b = api.get(f"/stats?{q}")
        assert st == 400 and b["error"]["field"] == field, (q, b)


def test_export_import_round_trip_and_failed_import_changes_nothing(admin):
    srv, api = admin
    api.ok("POST", "/groups", {"name": "edge"})
    api.ok("POST", "/nodes", {"name": "n1", "groups": ["edge"]})
    api.ok("POST", "/forwards", fwd("web"))
    api.ok("POST", "/forwards", {**fwd("gw", listen="7000", node=None), "group": "edge"})
    exp = api.ok("GET", "/export")
    before = counts(api)
    bad = {"groups": [{"name": "g2"}], "nodes": [{"name": "n9"}],
           "forwards": [fwd("ok1", node="n9", listen="1000"),
                        fwd("bad", node="n9", listen="70000")]}
    st, b = api.post("/import", bad)
    assert st == 400 and b["error"]["field"] == "listen"
    assert counts(api) == before
    # importing the export onto itself updates, creates nothing
    b = api.ok("POST", "/import", exp)
    assert b["created"] == 0 and b["updated"] == 2
    assert api.ok("GET", "/export")["forwards"] == exp["forwards"]


def test_audit_log_records_who_did_what(admin):
    srv, api = admin
    api.ok("POST", "/nodes", {"name": "n1"})
    api.ok("PATCH", "/nodes/n1", {"name": "n2"})
    ev = api.ok("GET", "/audit")["events"]
    assert [(e["who"], e["action"], e["kind"]) for e in ev[:2]] == \
        [("admin", "update", "node"), ("admin", "create", "node")]
    assert ev[0]["before"]["name"] == "n1" and ev[0]["after"]["name"] == "n2"


def test_web_ui_files_served_with_spa_fallback(server, tmp_path):
    web = tmp_path / "web"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>flowgate</title>")
    (web / "assets" / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("do not serve")
    srv = server(extra=["--web", str(web)])
    api = srv.api()
    st, text = api.request("GET", "/", absolute=True)
    assert st == 200 and "<title>flowgate" in text
    assert api.last_headers["Content-Type"].startswith("text/html")
    st, text = api.request("GET", "/assets/app.js", absolute=True)
    assert st == 200 and text == "console.log(1)"
    st, text = api.request("GET", "/nodes/n1", absolute=True)  # a client-side route
    assert st == 200 and "<title>flowgate" in text
    st, text = api.request("GET", "/../secret.txt", absolute=True)
    assert "do not serve" not in text
    st, b = api.request("GET", "/api/v2/nodes", absolute=True)
    assert st == 404


def test_agent_endpoint_refuses_bad_tokens(admin):
    srv, api = admin
    hdr = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    st, b = srv.api().request("GET", "/agent", absolute=True, headers=hdr)
    assert st == 401
    st, b = srv.api("fgn_wrong").request("GET", "/agent", absolute=True, headers=hdr)
    assert st == 401 and "unknown node token" in b["error"]["message"]


def ws_connect(port, path):
    import base64
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    status = int(head.split(b" ", 2)[1])
    return s, status, head.split(b"\r\n\r\n", 1)[1]


def ws_read_text(s, buf):
    import json as _json
    import struct as _struct
    while True:
        while len(buf) < 2:
            buf += s.recv(65536)
        n = buf[1] & 0x7F
        off = 2
        if n == 126:
            while len(buf) < 4:
                buf += s.recv(65536)
            n = _struct.unpack("!H", buf[2:4])[0]
            off = 4
        elif n == 127:
            while len(buf) < 10:
                buf += s.recv(65536)
            n = _struct.unpack("!Q", buf[2:10])[0]
            off = 10
        while len(buf) < off + n:
            buf += s.recv(65536)
        op, payload, buf = buf[0] & 0x0F, buf[off:off + n], buf[off + n:]
        if op == 1:
            return _json.loads(payload), buf


def test_live_channel_pushes_snapshots_to_an_authenticated_browser(admin):
    srv, api = admin
    s, status, _ = ws_connect(srv.port, "/api/v1/live/ws")
    s.close()
    assert status == 401
    s, status, rest = ws_connect(srv.port, f"/api/v1/live/ws?access_token={api.token}")
    assert status == 101
    snap, rest = ws_read_text(s, rest)
    assert snap == {"nodes": {}, "forwards": {}, "tunnels": {}}
    snap, rest = ws_read_text(s, rest)  # and again a second later
    assert "nodes" in snap
    s.close()


def test_https_api_and_wss_agents_with_pin_or_ca(server, fg_bin, tmp_path):
    import subprocess
    import time
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-keyout", str(key), "-out", str(cert), "-days",
                    "30", "-nodes", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True,
                   capture_output=True)
    fp = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint",
                         "-sha256"], check=True, capture_output=True, text=True)
    fp = fp.stdout.strip().split("=", 1)[1]
    srv = server(extra=["--tls-cert", str(cert), "--tls-key", str(key)], cafile=str(cert))
    api = srv.login()
    node = api.ok("POST", "/nodes", {"name": "n1"})
    assert node["enroll_command"].startswith(f"flowgate agent --server wss://localhost:{srv.port}")
    wrong = "AA:" * 31 + "AA"

    def agent(name, *extra):
        d = tmp_path / name
        d.mkdir()
        return subprocess.Popen([fg_bin, "agent", "--server", f"wss://localhost:{srv.port}",
                                 "--token", node["token"], "--state", str(d), *extra],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    for extra, online in ((["--pin", wrong], False), ([], False), (["--pin", fp], True),
                          (["--ca", str(cert)], True)):
        a = agent(f"a{len(extra)}{online}{extra[:1]}", *extra)
        try:
            deadline = time.monotonic() + 5
            seen = False
            while time.monotonic() < deadline and not seen:
                seen = api.ok("GET", "/nodes/n1")["online"]
                time.sleep(0.1)
            assert seen == online, (extra, seen)
        finally:
            a.terminate()
            err = a.communicate(timeout=10)[1]
        assert a.returncode == 0, err
        assert "Sanitizer" not in err and "runtime error" not in err, err
        if extra[:1] == ["--pin"] and not online:
            assert "certificate fingerprint mismatch" in err, err
        if not extra:
            assert "certificate verify failed: self-signed certificate" in err, err
        # wait for the server to see the session end before the next agent
        deadline = time.monotonic() + 5
        while api.ok("GET", "/nodes/n1")["online"] and time.monotonic() < deadline:
            time.sleep(0.1)
