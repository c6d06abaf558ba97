"""Rate limits (token buckets): measured rate within +-10% of the configured one.

The bucket starts full (burst bytes), so rates are measured between t=1s and the end
of the run, and the total moved in [0, T] must stay below burst + rate*T (+10%).
"""

import selectors
import socket
import threading
import time

import pytest

import fgnet
from conftest import NODE_IP, TARGET_IPS

pytestmark = pytest.mark.slow

DURATION = 4.5     # seconds of transfer per measurement
SKIP = 1.0         # burst/transient discounted
TOL = 0.10


def rate_of(samples, t_from=SKIP):
    """samples: [(t, cumulative_bytes)] -> bytes/s between t_from and the last sample."""
    first = next((s for s in samples if s[0] >= t_from), None)
    last = samples[-1]
    assert first is not None and last[0] - first[0] >= 1.5, f"too few samples: {samples[-3:]}"
    return (last[1] - first[1]) / (last[0] - first[0])


def download(socks, duration):
    """Read from all socks until `duration` after start; [(t, total)] per sock and overall."""
    sel = selectors.DefaultSelector()
    per = {s: [(0.0, 0)] for s in socks}
    tot = {s: 0 for s in socks}
    overall = [(0.0, 0)]
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    t0 = time.monotonic()
    n_all = 0
    buf = bytearray(1 << 20)
    while True:
        now = time.monotonic() - t0
        if now >= duration:
            break
        for key, _ in sel.select(timeout=min(0.05, duration - now)):
            s = key.fileobj
            try:
                n = s.recv_into(buf)
            except BlockingIOError:
                continue
            assert n, "forward closed the connection during the rate measurement"
            t = time.monotonic() - t0
            tot[s] += n
            n_all += n
            per[s].append((t, tot[s]))
            overall.append((t, n_all))
    return per, overall


def check_rate(measured, rate, what):
    assert abs(measured - rate) <= TOL * rate, \
        f"{what}: measured {measured:,.0f} B/s, configured {rate:,.0f} B/s " \
        f"({(measured / rate - 1) * 100:+.1f}%)"


def default_burst(rate):
    return max(rate / 10, 16 * 1024)


def check_upper_bound(samples, rate, burst, what):
    for t, b in samples:
        bound = (burst + rate * t) * (1 + TOL) + 64 * 1024
        assert b <= bound, f"{what}: {b:,} bytes after {t:.2f}s exceeds burst+rate*t={bound:,.0f}"


@pytest.mark.parametrize("spec,rate", [
    ("1MiB", 1 << 20),
    ("4mbit", 500_000),
    ("20MiB", 20 << 20),
])
def test_rate_down_holds_configured_rate(peers, flowgate, port, client, spec, rate):
    tp, lp = port(), port()
    peers("source", f"{TARGET_IPS[0]}:{tp}", bytes=-1, seed=3)
    fg = flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}", "--rate-down", spec],
                  wait_tcp=[lp])
    s = client.connect((NODE_IP, lp))
    try:
        per, overall = download([s], DURATION)
    finally:
        fgnet.abort(s)
    check_rate(rate_of(overall), rate, f"--rate-down {spec}")
    check_upper_bound(overall, rate, default_burst(rate), f"--rate-down {spec}")
    # the counter agrees (at least what the client read)
    m = fg.metrics()
    assert m.get("flowgate_forward_bytes_total", forward="cli", direction="down") >= overall[-1][1]


def test_rate_down_bucket_starts_full_with_burst(peers, flowgate, port, client):
    tp, lp = port(), port()
    rate, burst = 512 * 1024, 2 << 20
    peers("source", f"{TARGET_IPS[0]}:{tp}", bytes=-1, seed=3)
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}", "--rate-down", "512KiB",
              "--burst", "2MiB"], wait_tcp=[lp])
    s = client.connect((NODE_IP, lp))
    try:
        per, overall = download([s], 3.5)
    finally:
        fgnet.abort(s)
    at = lambda t: max(b for tt, b in overall if tt <= t)  # noqa: E731
    assert at(0.5) >= 0.9 * burst, f"only {at(0.5):,} bytes in the first 0.5s with a 2MiB burst"
    check_rate(rate_of(overall), rate, "--rate-down 512KiB --burst 2MiB (steady state)")
    check_upper_bound(overall, rate, burst, "--burst 2MiB")


def upload_measured(client, lp, meter, duration, n_conns=1):
    """Send as fast as possible on n_conns connections; return the sink's progress samples."""
    socks = [client.connect((NODE_IP, lp)) for _ in range(n_conns)]
    stop = threading.Event()
    chunk = b"\x5a" * 65536

    def pump(s):
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                s.send(chunk)
            except socket.timeout:
                continue
            except OSError:
                return

    ths = [threading.Thread(target=pump, args=(s,), daemon=True) for s in socks]
    for t in ths:
        t.start()
    samples = {}
    try:
        deadline = time.monotonic() + duration + 10
        while True:
            ev = meter.wait_event(event="progress", timeout=max(0.1, deadline - time.monotonic()))
            samples.setdefault(ev["conn"], []).append((ev["t"], ev["bytes"]))
            if len(samples) == n_conns and all(v[-1][0] >= duration for v in samples.values()):
                break
    finally:
        stop.set()
        for t in ths:
            t.join(5)
        for s in socks:
            fgnet.abort(s)
    return samples


def test_rate_up_holds_configured_rate(peers, flowgate, port, client):
    tp, lp = port(), port()
    rate = 2 << 20
    meter = peers("meter", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}", "--rate-up", "2MiB"],
             wait_tcp=[lp])
    samples = upload_measured(client, lp, meter, DURATION)
    (conn_samples,) = samples.values()
    check_rate(rate_of(conn_samples), rate, "--rate-up 2MiB")
    check_upper_bound(conn_samples, rate, default_burst(rate), "--rate-up 2MiB")


def test_rate_down_is_aggregate_over_4_parallel_connections(peers, flowgate, port, client):
    tp, lp = port(), port()
    rate = 2 << 20
    peers("source", f"{TARGET_IPS[0]}:{tp}", bytes=-1, seed=4)
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}", "--rate-down", "2MiB"],
             wait_tcp=[lp])
    socks = [client.connect((NODE_IP, lp)) for _ in range(4)]
    try:
        per, overall = download(socks, DURATION)
    finally:
        for s in socks:
            fgnet.abort(s)
    check_rate(rate_of(overall), rate, "--rate-down 2MiB total over 4 connections")
    for s, smp in per.items():
        assert smp[-1][1] > 0, "a connection got nothing under the aggregate limit"


def test_rate_down_per_conn_limits_each_connection(peers, flowgate, port, client):
    tp, lp = port(), port()
    rate = 512 * 1024
    peers("source", f"{TARGET_IPS[0]}:{tp}", bytes=-1, seed=4)
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}",
              "--rate-down-per-conn", "512KiB"], wait_tcp=[lp])
    socks = [client.connect((NODE_IP, lp)) for _ in range(2)]
    try:
        per, overall = download(socks, DURATION)
    finally:
        for s in socks:
            fgnet.abort(s)
    for i, smp in enumerate(per.values()):
        check_rate(rate_of(smp), rate, f"--rate-down-per-conn 512KiB, connection {i}")
    check_rate(rate_of(overall), 2 * rate, "--rate-down-per-conn 512KiB, 2 connections total")


def test_rate_up_per_conn_limits_each_connection(peers, flowgate, port, client):
    tp, lp = port(), port()
    rate = 1_000_000  # 8mbit
    meter = peers("meter", f"{TARGET_IPS[0]}:{tp}")
    flowgate(["-l", f"{NODE_IP}:{lp}", "-r", f"{TARGET_IPS[0]}:{tp}",
              "--rate-up-per-conn", "8mbit"], wait_tcp=[lp])
    samples = upload_measured(client, lp, meter, DURATION, n_conns=2)
    assert len(samples) == 2
    for cid, smp in samples.items():
        check_rate(rate_of(smp), rate, f"--rate-up-per-conn 8mbit, conn {cid}")
