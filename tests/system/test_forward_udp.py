"""UDP forwarding: round trips, reply source address (IP_PKTINFO), sessions,
idle expiry, limits, --proto both."""

import os
import random
import select
import time

import pytest

import fgnet
from conftest import CLIENT_IPS, NODE_IP, NODE_IP_LO, NODE_IP_T, TARGET_IPS


def udp_roundtrips(sock, dst, payloads, window=8, timeout=3.0):
    """Send payloads to dst in windows; return list of (payload, reply, from_addr)."""
    out = []
    for i in range(0, len(payloads), window):
        batch = payloads[i:i + window]
        for p in batch:
            sock.sendto(p, dst)
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < len(batch):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([sock], [], [], left)
            if r:
                d, a = sock.recvfrom(70000)
                got.append((d, a))
        assert len(got) == len(batch), \
            f"{dst}: {len(batch) - len(got)} of {len(batch)} datagrams got no reply in {timeout}s"
        by = {}
        for d, a in got:
            by.setdefault(d, []).append(a)
        for p in batch:
            assert p in by and by[p], f"no reply with payload {p[:40]!r}... (len {len(p)})"
            out.append((p, p, by[p].pop()))
    return out


def test_udp_round_trips_reply_from_the_address_the_client_sent_to(peers, flowgate, port, client):
    """Listening on 0.0.0.0; several client sockets send to each of the node's addresses
    (10.77.1.1 on the client link, 10.77.2.1 on the target link, 10.77.9.1 on lo); every reply
    must come back from exactly that address and port."""
    up, lp = port(), port()
    peers("udpecho", f"{TARGET_IPS[0]}:{up}")
    fg = flowgate(["--proto", "udp", "-l", f"0.0.0.0:{lp}", "-r", f"{TARGET_IPS[0]}:{up}"],
                  wait_udp=[lp])
    rnd = random.Random(4)
    total = 0
    socks = []
    try:
        for dst_ip in (NODE_IP, NODE_IP_T, NODE_IP_LO):
            for k in range(4):
                s = client.udp(src=CLIENT_IPS[k])
                socks.append(s)
                payloads = [f"{dst_ip}/{k}/{i}/".encode() + os.urandom(rnd.randrange(1, 1400))
                            for i in range(60)]
                res = udp_roundtrips(s, (dst_ip, lp), payloads)
                for p, _, src in res:
                    assert src == (dst_ip, lp), \
                        f"reply to a datagram sent to {dst_ip}:{lp} came from {src[0]}:{src[1]}"
                total += sum(len(p) for p in payloads)
    finally:
        for s in socks:
            s.close()
    fg.wait_metric("flowgate_forward_bytes_total", total, forward="cli", direction="up")
    fg.wait_metric("flowgate_forward_bytes_total", total, forward="cli", direction="down")


@pytest.mark.parametrize("size", [1, 1472, 8192, 65000])
def test_udp_datagram_size_is_preserved(peers, flowgate, port, client, size):
    up, lp = port(), port()
    peers("udpecho", f"{TARGET_IPS[0]}:{up}")
    flowgate(["--proto", "udp", "-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{up}"],
             wait_udp=[lp])
    s = client.udp()
    try:
        p = os.urandom(size)
        res = udp_roundtrips(s, (NODE_IP, lp), [p])
        assert res[0][2] == (NODE_IP, lp)
    finally:
        s.close()


def test_udp_sessions_counted_and_expire_after_udp_idle_timeout(peers, flowgate, port, client):
    up, lp = port(), port()
    peers("udpecho", f"{TARGET_IPS[0]}:{up}")
    fg = flowgate(["--proto", "udp", "-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{up}",
                   "--udp-idle-timeout", "1s"], wait_udp=[lp])
    socks = [client.udp(src=CLIENT_IPS[i]) for i in range(3)]
    try:
        for s in socks:
            udp_roundtrips(s, (NODE_IP, lp), [b"a", b"b"])
        m = fg.wait_metric("flowgate_forward_connections_active", 3, forward="cli")
        assert m.get("flowgate_forward_connections_total", forward="cli") == 3
        t0 = time.monotonic()
        fg.wait_metric("flowgate_forward_connections_active", 0, timeout=6, forward="cli")
        took = time.monotonic() - t0
        assert took >= 0.6, f"sessions expired after {took:.2f}s with --udp-idle-timeout 1s"
        # a new datagram from an old address opens a new session and still works
        udp_roundtrips(socks[0], (NODE_IP, lp), [b"again"])
        fg.wait_metric("flowgate_forward_connections_total", 4, forward="cli")
    finally:
        for s in socks:
            s.close()


def test_udp_session_kept_alive_by_traffic(peers, flowgate, port, client):
    up, lp = port(), port()
    peers("udpecho", f"{TARGET_IPS[0]}:{up}")
    fg = flowgate(["--proto", "udp", "-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{up}",
                   "--udp-idle-timeout", "1s"], wait_udp=[lp])
    s = client.udp()
    try:
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            udp_roundtrips(s, (NODE_IP, lp), [b"keepalive"])
            time.sleep(0.25)
        m = fg.metrics()
        assert m.get("flowgate_forward_connections_total", forward="cli") == 1
        assert m.get("flowgate_forward_connections_active", forward="cli") == 1
    finally:
        s.close()


def test_udp_max_conns_drops_datagrams_of_new_sessions_and_counts_them(peers, flowgate, port,
                                                                       client):
    up, lp = port(), port()
    peers("udpecho", f"{TARGET_IPS[0]}:{up}")
    fg = flowgate(["--proto", "udp", "-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{up}",
                   "--max-conns", "2"], wait_udp=[lp])
    socks = [client.udp(src=CLIENT_IPS[i]) for i in range(3)]
    try:
        udp_roundtrips(socks[0], (NODE_IP, lp), [b"one"])
        udp_roundtrips(socks[1], (NODE_IP, lp), [b"two"])
        socks[2].sendto(b"three", (NODE_IP, lp))
        r, _, _ = select.select([socks[2]], [], [], 1.0)
        assert not r, "a datagram beyond --max-conns 2 sessions was forwarded"
        fg.wait_metric("flowgate_forward_refused_total", 1, forward="cli", reason="max_conns",
                       cmp=lambda v: v is not None and v >= 1)
        udp_roundtrips(socks[0], (NODE_IP, lp), [b"one-again"])
    finally:
        for s in socks:
            s.close()


def test_proto_both_forwards_tcp_and_udp_on_the_same_port(peers, flowgate, port, client):
    tp, lp = port(), port()
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    peers("udpecho", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["--proto", "both", "-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"],
             wait_tcp=[lp], wait_udp=[lp])
    s = client.connect((NODE_IP, lp))
    assert fgnet.echo_roundtrip(s, b"tcp!\n")
    s.close()
    u = client.udp()
    try:
        udp_roundtrips(u, (NODE_IP, lp), [b"udp!"])
    finally:
        u.close()


def test_proto_tcp_default_does_not_listen_udp(peers, flowgate, port, topo):
    tp, lp = port(), port()
    peers("echo", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    assert lp not in {p for _, p in topo.node.listeners("udp")}


def test_udp_session_sticks_to_one_target_and_sessions_spread(peers, flowgate, port, client):
    up, lp = port(), port()
    for ip in TARGET_IPS:
        peers("udpwhoami", f"{ip}:{up}")
    flowgate(["--proto", "udp", "-l", f"{NODE_IP}:{lp}"] +
             sum((["-r", f"{ip}:{up}"] for ip in TARGET_IPS), []), wait_udp=[lp])
    used = set()
    socks = [client.udp(src=CLIENT_IPS[i % 5]) for i in range(9)]
    try:
        for k, s in enumerate(socks):
            seen = set()
            s.settimeout(3)
            for i in range(6):
                s.sendto(b"q%d" % i, (NODE_IP, lp))
                d, a = s.recvfrom(2048)
                me, _, rest = d[3:].partition(b" ")
                assert rest == b"q%d" % i and a == (NODE_IP, lp)
                seen.add(me.decode())
            assert len(seen) == 1, f"UDP session {k} was spread over targets {seen}"
            used |= seen
    finally:
        for s in socks:
            s.close()
    assert len(used) >= 2, f"9 UDP sessions all went to {used} under round-robin"


def test_udp_port_range_maps_port_by_port(peers, flowgate, client):
    base_l, base_t = 20100, 30100
    for i in range(5):
        peers("udpwhoami", f"{TARGET_IPS[0]}:{base_t + i}")
    flowgate(["--proto", "udp", "-l", f"0.0.0.0:{base_l}-{base_l + 4}",
              "-r", f"{TARGET_IPS[0]}:{base_t}-{base_t + 4}"],
             wait_udp=range(base_l, base_l + 5))
    s = client.udp()
    try:
        s.settimeout(3)
        for i in range(5):
            s.sendto(b"x", (NODE_IP, base_l + i))
            d, a = s.recvfrom(2048)
            assert a == (NODE_IP, base_l + i)
            assert d == f"ME {TARGET_IPS[0]}:{base_t + i} x".encode(), d
    finally:
        s.close()
