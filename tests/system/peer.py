#!/usr/bin/env python3
"""Test servers for the flowgate system tests; run inside a namespace with
`ip netns exec NS python3 peer.py MODE --listen HOST:PORT [--listen ...]`.

Every event is one JSON line on stdout (flushed). The first is
{"event": "ready", "listen": [...]} once every socket is bound and listening.

Modes (TCP unless noted):
  echo        echo everything back; on EOF shut down the write side
  whoami      on accept send "ME <ip>:<port>\\n" (the local/listen address), then echo
  sink        read to EOF, report {"event":"sink","bytes":N,"sha256":H}, close
  source      send --bytes N (-1: forever) of stream --seed S, close; report sha
  duplex      sink and source at the same time on one connection
  halfclose   read to EOF (report sink), then send --bytes N of --seed S, close
  earlyclose  send --bytes N of --seed S, shutdown(SHUT_WR), read to EOF, report sink
  meter       read and discard; {"event":"progress","conn":C,"t":..,"bytes":..} every 50 ms
  proxy       parse a PROXY v1/v2 header, reply with the parsed header as one JSON
              line, report it, then echo the rest
  udpecho     (UDP) send each datagram back to its sender
  udpwhoami   (UDP) send each datagram back prefixed with "ME <ip>:<port> "

Close events: {"event":"close","conn":C,"how":"eof"|"reset"|"error"}.
"""

import argparse
import hashlib
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fgnet  # noqa: E402

_out_lock = threading.Lock()


def emit(**ev):
    line = json.dumps(ev)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def hostport(s):
    h, _, p = s.rpartition(":")
    return h.strip("[]"), int(p)


def fmt(addr):
    if ":" in addr[0]:
        return f"[{addr[0]}]:{addr[1]}"
    return f"{addr[0]}:{addr[1]}"


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


_conn_ids = iter(range(1, 1 << 62))
_conn_lock = threading.Lock()


def next_id():
    with _conn_lock:
        return next(_conn_ids)


# ---------------------------------------------------------------------------
# event-loop modes: echo, whoami (handle thousands of connections)


def run_evloop(listeners, mode):
    sel = selectors.DefaultSelector()
    for ls in listeners:
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ, ("listen", None))
    conns = {}  # sock -> state dict

    def close(s, how):
        st = conns.pop(s)
        try:
            sel.unregister(s)
        except Exception:
            pass
        s.close()
        emit(event="close", conn=st["id"], how=how, bytes=st["bytes"])

    def update(s):
        st = conns[s]
        ev = 0
        if not st["eof"] and len(st["out"]) < (1 << 20):
            ev |= selectors.EVENT_READ
        if st["out"]:
            ev |= selectors.EVENT_WRITE
        if ev == 0:
            if st["eof"]:
                # all echoed after EOF: half-close our side, wait for nothing more
                if not st["shut"]:
                    try:
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    st["shut"] = True
                close(s, "eof")
                return
        sel.modify(s, ev, ("conn", None))

    while True:
        for key, events in sel.select():
            kind, _ = key.data
            s = key.fileobj
            if kind == "listen":
                for _ in range(64):
                    try:
                        c, peer = s.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    c.setblocking(False)
                    cid = next_id()
                    local = c.getsockname()
                    st = {"id": cid, "out": bytearray(), "eof": False, "shut": False, "bytes": 0}
                    conns[c] = st
                    emit(event="accept", conn=cid, peer=fmt(peer), local=fmt(local))
                    if mode == "whoami":
                        st["out"] += f"ME {fmt(local)}\n".encode()
                    sel.register(c, selectors.EVENT_READ, ("conn", None))
                    update(c)
                continue
            st = conns.get(s)
            if st is None:
                continue
            try:
                if events & selectors.EVENT_READ:
                    d = s.recv(262144)
                    if not d:
                        st["eof"] = True
                    else:
                        st["bytes"] += len(d)
                        st["out"] += d
                if st["out"] and (events & selectors.EVENT_WRITE or events & selectors.EVENT_READ):
                    try:
                        n = s.send(st["out"])
                        del st["out"][:n]
                    except BlockingIOError:
                        pass
            except (ConnectionResetError, BrokenPipeError):
                close(s, "reset")
                continue
            except OSError:
                close(s, "error")
                continue
            update(s)


# ---------------------------------------------------------------------------
# thread-per-connection modes


def read_to_eof(c, cid):
    h = hashlib.sha256()
    n = 0
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    how = "eof"
    while True:
        try:
            k = c.recv_into(buf)
        except (ConnectionResetError, BrokenPipeError):
            how = "reset"
            break
        if k == 0:
            break
        h.update(mv[:k])
        n += k
    emit(event="sink", conn=cid, bytes=n, sha256=h.hexdigest(), how=how)
    return how


def send_stream(c, cid, seed, nbytes):
    h = hashlib.sha256()
    n = 0
    how = "done"
    try:
        for chunk in fgnet.gen_blocks(seed, nbytes):
            c.sendall(chunk)
            h.update(chunk)
            n += len(chunk)
    except (ConnectionResetError, BrokenPipeError):
        how = "reset"
    except OSError as e:
        how = f"error:{e}"
    emit(event="source", conn=cid, bytes=n, sha256=h.hexdigest(), how=how)
    return how


def handle(mode, c, peer, args):
    cid = next_id()
    emit(event="accept", conn=cid, peer=fmt(peer), local=fmt(c.getsockname()))
    try:
        if mode == "sink":
            read_to_eof(c, cid)
        elif mode == "source":
            if send_stream(c, cid, args.seed, args.bytes) == "done":
                c.shutdown(socket.SHUT_WR)
                # wait for the client to close so our close sends no RST
                try:
                    while c.recv(65536):
                        pass
                except OSError:
                    pass
        elif mode == "duplex":
            t = threading.Thread(target=read_to_eof, args=(c, cid), daemon=True)
            t.start()
            if send_stream(c, cid, args.seed, args.bytes) == "done":
                c.shutdown(socket.SHUT_WR)
            t.join()
        elif mode == "halfclose":
            if read_to_eof(c, cid) == "eof":
                send_stream(c, cid, args.seed, args.bytes)
                c.shutdown(socket.SHUT_WR)
        elif mode == "earlyclose":
            if send_stream(c, cid, args.seed, args.bytes) == "done":
                c.shutdown(socket.SHUT_WR)
                read_to_eof(c, cid)
        elif mode == "meter":
            meter(c, cid)
        elif mode == "proxy":
            proxy(c, cid)
        emit(event="close", conn=cid, how="done")
    except Exception as e:  # noqa: BLE001
        emit(event="close", conn=cid, how="error", error=repr(e))
    finally:
        c.close()


def meter(c, cid):
    n = 0
    t0 = None
    last = 0.0
    buf = bytearray(1 << 20)
    while True:
        try:
            k = c.recv_into(buf)
        except (ConnectionResetError, BrokenPipeError):
            break
        now = time.monotonic()
        if k == 0:
            break
        if t0 is None:
            t0 = now
            emit(event="progress", conn=cid, t=0.0, bytes=k, first=True)
        n += k
        if now - last >= 0.05:
            last = now
            emit(event="progress", conn=cid, t=now - t0, bytes=n)
    emit(event="progress", conn=cid, t=(time.monotonic() - t0) if t0 else 0.0, bytes=n, final=True)


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy(c, cid):
    buf = bytearray()

    def need(n):
        while len(buf) < n:
            d = c.recv(65536)
            if not d:
                raise EOFError(f"EOF in PROXY header after {bytes(buf)!r}")
            buf.extend(d)

    need(6)
    info = {}
    if buf.startswith(b"PROXY "):
        while b"\r\n" not in buf:
            if len(buf) > 107:
                raise ValueError(f"v1 header too long: {bytes(buf[:120])!r}")
            need(len(buf) + 1)
        end = buf.index(b"\r\n")
        line = bytes(buf[:end]).decode("ascii")
        del buf[: end + 2]
        parts = line.split(" ")
        info = {"version": 1, "raw": line, "proto": parts[1]}
        if parts[1] in ("TCP4", "TCP6") and len(parts) == 6:
            info.update(src=parts[2], dst=parts[3], sport=int(parts[4]), dport=int(parts[5]))
    else:
        need(16)
        if bytes(buf[:12]) != V2_SIG:
            raise ValueError(f"no PROXY header: {bytes(buf[:16])!r}")
        ver_cmd, fam, ln = buf[12], buf[13], struct.unpack("!H", buf[14:16])[0]
        need(16 + ln)
        body = bytes(buf[16:16 + ln])
        info = {"version": 2, "ver_cmd": ver_cmd, "fam": fam, "len": ln,
                "raw": bytes(buf[:16 + ln]).hex()}
        if fam == 0x11 and ln >= 12:
            s, d, sp, dp = struct.unpack("!4s4sHH", body[:12])
            info.update(src=socket.inet_ntoa(s), dst=socket.inet_ntoa(d), sport=sp, dport=dp)
        elif fam == 0x21 and ln >= 36:
            s, d, sp, dp = struct.unpack("!16s16sHH", body[:36])
            info.update(src=socket.inet_ntop(socket.AF_INET6, s),
                        dst=socket.inet_ntop(socket.AF_INET6, d), sport=sp, dport=dp)
        del buf[:16 + ln]
    emit(event="proxy", conn=cid, **info)
    c.sendall((json.dumps(info) + "\n").encode())
    if buf:
        c.sendall(buf)
    while True:
        try:
            d = c.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return
        if not d:
            c.shutdown(socket.SHUT_WR)
            return
        c.sendall(d)


def run_threaded(listeners, mode, args):
    def acceptor(ls):
        while True:
            c, peer = ls.accept()
            threading.Thread(target=handle, args=(mode, c, peer, args), daemon=True).start()

    ts = [threading.Thread(target=acceptor, args=(ls,), daemon=True) for ls in listeners]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def run_udpecho(socks, whoami=False):
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    count = 0
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            while True:
                try:
                    d, a = s.recvfrom(65536)
                except BlockingIOError:
                    break
                count += 1
                if whoami:
                    d = f"ME {fmt(s.getsockname())} ".encode() + d
                try:
                    s.sendto(d, a)
                except OSError:
                    pass
                if count % 100 == 1:
                    emit(event="udp", count=count, peer=fmt(a))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["echo", "whoami", "sink", "source", "duplex", "halfclose",
                                     "earlyclose", "meter", "proxy", "udpecho", "udpwhoami"])
    ap.add_argument("--listen", action="append", required=True)
    ap.add_argument("--bytes", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backlog", type=int, default=4096)
    args = ap.parse_args()

    socks = []
    for l in args.listen:
        fam = family(hostport(l)[0])
        if args.mode in ("udpecho", "udpwhoami"):
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(hostport(l))
        else:
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(hostport(l))
            s.listen(args.backlog)
        socks.append(s)
    emit(event="ready", listen=[fmt(s.getsockname()) for s in socks], pid=os.getpid())
    if args.mode in ("udpecho", "udpwhoami"):
        run_udpecho(socks, args.mode == "udpwhoami")
    elif args.mode in ("echo", "whoami"):
        run_evloop(socks, args.mode)
    else:
        run_threaded(socks, args.mode, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
