"""IPv6: [V6]:PORT listen and targets, PROXY headers for IPv6 clients."""

import json

import pytest

import fgnet
from conftest import CLIENT_IP6, NODE_IP6, TARGET_IP6, TARGET_IPS


def test_ipv6_listen_forwards_to_ipv4_target(peers, flowgate, port, client):
    tp, lp = port(), port()
    peers("whoami", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"[{NODE_IP6}]:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}"], wait_tcp=[lp])
    assert fgnet.whoami(client, (NODE_IP6, lp)) == f"{TARGET_IPS[0]}:{tp}"


def test_ipv4_listen_forwards_to_ipv6_target(peers, flowgate, port, client):
    from conftest import NODE_IP
    tp, lp = port(), port()
    peers("whoami", f"[{TARGET_IP6}]:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"[{TARGET_IP6}]:{tp}"], wait_tcp=[lp])
    assert fgnet.whoami(client, (NODE_IP, lp)) == f"[{TARGET_IP6}]:{tp}"


def test_ipv6_udp_round_trip(peers, flowgate, port, client):
    up, lp = port(), port()
    peers("udpecho", f"[{TARGET_IP6}]:{up}")
    flowgate(["--proto", "udp", "-l", f"[{NODE_IP6}]:{lp}", "-r", f"[{TARGET_IP6}]:{up}"],
             wait_udp=[lp])
    s = client.udp(v6=True)
    try:
        s.settimeout(3)
        for i in range(20):
            s.sendto(b"v6-%d" % i, (NODE_IP6, lp))
            d, a = s.recvfrom(2048)
            assert d == b"v6-%d" % i
            assert a[0] == NODE_IP6 and a[1] == lp
    finally:
        s.close()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_protocol_for_ipv6_client(peers, flowgate, port, client, version):
    tp, lp = port(), port()
    peers("proxy", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"[{NODE_IP6}]:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}",
              "--proxy-protocol", version], wait_tcp=[lp])
    s = client.connect((NODE_IP6, lp), src=CLIENT_IP6)
    sport = s.getsockname()[1]
    info = json.loads(fgnet.recv_line(s, timeout=5))
    if version == "v1":
        assert info["raw"] == f"PROXY TCP6 {CLIENT_IP6} {NODE_IP6} {sport} {lp}", info["raw"]
    else:
        assert info["ver_cmd"] == 0x21 and info["fam"] == 0x21 and info["len"] >= 36, info
        assert (info["src"], info["sport"], info["dst"], info["dport"]) == \
            (CLIENT_IP6, sport, NODE_IP6, lp), info
    assert fgnet.echo_roundtrip(s, b"after\n")
    s.close()
