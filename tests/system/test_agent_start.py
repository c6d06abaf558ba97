"""How `flowgate agent` starts on a fresh node, before any server answers.

- It makes its state directory (the enroll command names one that does not
  exist yet), private to it.
- It looks its server's name up off its event loop. That loop also runs the
  node's tunnels, its metrics endpoint and the firewall's commit-confirm
  timer; a DNS server that does not answer must not stop them while
  getaddrinfo waits out its timeout.
"""
import os
import socket
import stat
import time

import fgnet
from conftest import SANITIZER_MARKERS, Proc

LOOKUP_S = 3  # RES_OPTIONS below: one try, 3 s


def test_agent_keeps_serving_while_the_server_name_lookup_hangs(topo, fg_bin, logdir, port,
                                                                  tmp_path):
    # a name server on the node's resolv.conf address that reads every query
    # and answers none: the lookup waits its whole timeout
    with fgnet.in_netns(topo.node.name):
        dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dns.bind(("127.0.0.1", 53))
    mport = port()
    maddr = f"127.0.0.1:{mport}"
    env = dict(os.environ, RES_OPTIONS=f"timeout:{LOOKUP_S} attempts:1")
    agent = Proc(topo.node,
                 [fg_bin, "agent", "--server", "ws://flowgate-server.test:8080", "--token",
                  "not-used", "--state", str(tmp_path / "state"), "--metrics", maddr,
                  "--report-interval", "1s"],
                 "agent", logdir, json_stdout=False, env=env)
    try:
        fgnet.wait_for(lambda: mport in {p for _, p in topo.node.listeners("tcp")}, 5,
                       what="agent metrics listening")
        t0 = time.monotonic()
        worst = 0.0
        while time.monotonic() - t0 < LOOKUP_S - 0.5:
            s = time.monotonic()
            m = fgnet.fetch_metrics(topo.node, maddr, timeout=LOOKUP_S + 2)
            worst = max(worst, time.monotonic() - s)
            assert m.get("flowgate_agent_connected") == 0
            time.sleep(0.1)
        assert worst < 0.5, f"/metrics took {worst:.2f}s while the server name was looked up"
        assert dns.recv(512), "the agent never asked the name server"

        # the lookup then fails with the name in the message, and is retried
        fgnet.wait_for(lambda: "cannot resolve flowgate-server.test" in agent.stderr_text(),
                       LOOKUP_S + 5, what="the lookup failure logged")

        # stopping while a lookup is in flight waits for it at most
        rc = agent.stop(LOOKUP_S + 3)
        err = agent.stderr_text()
        assert rc == 0, f"agent exit status {rc}:\n{err[-2000:]}"
        assert not [mk for mk in SANITIZER_MARKERS if mk in err], err[-4000:]
    finally:
        agent.close()
        dns.close()


def test_agent_makes_its_private_state_dir(topo, fg_bin, logdir, port, tmp_path):
    state = tmp_path / "var" / "lib" / "flowgate" / "agent"
    mport = port()
    agent = Proc(topo.node,
                 [fg_bin, "agent", "--server", "ws://127.0.0.1:9", "--token", "fgn_x",
                  "--state", str(state), "--metrics", f"127.0.0.1:{mport}"],
                 "agent", logdir, json_stdout=False)
    try:
        fgnet.wait_for(lambda: mport in {p for _, p in topo.node.listeners("tcp")}, 5,
                       what="agent metrics listening")
        assert state.is_dir()
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        # the node's tunnel certificate is made in it at first start
        assert any(state.iterdir()), "nothing written to the state directory"
        rc = agent.stop(5)
        assert rc == 0, agent.stderr_text()[-2000:]
    finally:
        agent.close()

    # a path that cannot be a directory: a clear error naming it, exit 2
    blocker = tmp_path / "file"
    blocker.write_text("x")
    agent = Proc(topo.node,
                 [fg_bin, "agent", "--server", "ws://127.0.0.1:9", "--token", "fgn_x",
                  "--state", str(blocker / "agent")], "agent-bad", logdir, json_stdout=False)
    try:
        rc = agent.proc.wait(10)
        err = agent.stderr_text()
        assert rc == 2, (rc, err)
        assert f"--state {blocker}/agent: Not a directory" in err, err
    finally:
        agent.close()
