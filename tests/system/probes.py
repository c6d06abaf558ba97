"""Firewall probes: banner servers and a UDP echo run by the test process,
and one-shot probes that say what a packet met on its way.

    srv = ProbeServers()
    srv.tcp(ns, ("0.0.0.0", 9000)); srv.udp(ns, ("0.0.0.0", 9001))
    tcp_probe(client_ns, ("10.0.0.1", 9000))  # 'open' | 'refused' | 'dropped'
    srv.close()
"""
import errno
import socket
import threading

import fgnet


class ProbeServers:
    """TCP servers that send "hi\\n" and close; UDP servers that echo."""

    def __init__(self):
        self.stop = threading.Event()
        self.socks = []

    def tcp(self, ns, addr):
        ls = ns.listen_tcp(addr)
        self.socks.append(ls)

        def run():
            ls.settimeout(0.2)
            while not self.stop.is_set():
                try:
                    c, _ = ls.accept()
                except (socket.timeout, OSError):
                    continue
                try:
                    c.sendall(b"hi\n")
                except OSError:
                    pass
                finally:
                    c.close()
        threading.Thread(target=run, daemon=True).start()

    def udp(self, ns, addr):
        s = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(addr)
        self.socks.append(s)

        def run():
            s.settimeout(0.2)
            while not self.stop.is_set():
                try:
                    d, a = s.recvfrom(2048)
                    s.sendto(d, a)
                except (socket.timeout, OSError):
                    continue
        threading.Thread(target=run, daemon=True).start()

    def close(self):
        self.stop.set()
        for s in self.socks:
            s.close()


def tcp_probe(ns, dst, src=None):
    """'open' (banner read), 'refused' (RST) or 'dropped' (no answer)."""
    try:
        s = ns.connect(dst, src=src, timeout=1.0)
    except socket.timeout:
        return "dropped"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        if e.errno in (errno.ETIMEDOUT, errno.EHOSTUNREACH):
            return "dropped"
        raise
    try:
        return "open" if fgnet.recv_line(s, 2) == "hi" else "garbled"
    except (socket.timeout, OSError):
        return "dropped"
    finally:
        s.close()


def udp_probe(ns, dst, src=None):
    """'open' (echoed), 'refused' (ICMP port unreachable) or 'dropped'."""
    u = ns.udp(src=src)
    u.settimeout(1.0)
    try:
        u.sendto(b"ping", dst)
        d, _ = u.recvfrom(100)
        return "open" if d == b"ping" else "garbled"
    except socket.timeout:
        return "dropped"
    except ConnectionRefusedError:
        return "refused"
    finally:
        u.close()
