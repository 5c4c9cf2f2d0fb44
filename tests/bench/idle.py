#!/usr/bin/env python3
"""
Workload (d): frontgate's memory per idle keep-alive client connection.

  idle.py --port P --path PATH --token KEY --pid PID [--n 10000] [--batch 250]

Warms up with one batch of connections (each sends one authenticated request, reads the answer,
closes), so the shard pool and allocator caches are already grown; reads VmRSS of PID; then
opens N connections in batches of BATCH, each sending one request and reading its 200, and keeps
them all open; reads VmRSS again (and the process's open descriptors) and prints one JSON line:
  {"n":..., "ok":..., "rss_before_kib":..., "rss_after_kib":..., "per_conn_bytes":..., ...}
"""
import argparse
import json
import os
import resource
import selectors
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def response_done(buf):
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = buf[:head_end].decode("latin-1").lower()
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip() == "content-length":
            return len(buf) - head_end - 4 >= int(value)
        if name.strip() == "transfer-encoding" and "chunked" in value:
            return buf.endswith(b"0\r\n\r\n")
    return True


def batch(port, request, count, timeout=20.0):
    """Opens count connections, one request each; returns (open sockets, statuses)."""
    sel = selectors.DefaultSelector()
    socks, bufs, statuses = [], {}, []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
        bufs[s] = b""
        sel.register(s, selectors.EVENT_WRITE)
    pending = set(socks)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=1.0):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                try:
                    s.send(request)
                except OSError:
                    statuses.append("send-error")
                    sel.unregister(s)
                    pending.discard(s)
                    continue
                sel.modify(s, selectors.EVENT_READ)
            elif ev & selectors.EVENT_READ:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    statuses.append("closed")
                    sel.unregister(s)
                    pending.discard(s)
                    continue
                bufs[s] += data
                if response_done(bufs[s]):
                    statuses.append(bufs[s].split(b" ", 2)[1].decode())
                    sel.unregister(s)
                    pending.discard(s)
    for s in pending:
        statuses.append("timeout")
        sel.unregister(s)
    sel.close()
    return socks, statuses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=250)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < a.n + 100:
            sys.exit(f"idle.py: RLIMIT_NOFILE hard limit {hard} < {a.n + 100}")

    request = (f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
               f"Authorization: Bearer {a.token}\r\n\r\n").encode()

    warm, st = batch(a.port, request, a.batch)
    for s in warm:
        s.close()
    time.sleep(1.0)
    rss0, fds0 = rss_kib(a.pid), nfds(a.pid)

    t0 = time.monotonic()
    kept, statuses = [], []
    while len(kept) < a.n:
        socks, st = batch(a.port, request, min(a.batch, a.n - len(kept)))
        kept += socks
        statuses += st
    open_s = time.monotonic() - t0
    time.sleep(1.0)
    rss1, fds1 = rss_kib(a.pid), nfds(a.pid)
    ok = statuses.count("200")
    # Are they all still open? A closed one reads EOF at once.
    alive = 0
    for s in kept:
        try:
            alive += s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    for s in kept:
        s.close()
    time.sleep(1.0)
    rss2 = rss_kib(a.pid)
    others = {}
    for s in statuses:
        if s != "200":
            others[s] = others.get(s, 0) + 1
    print(json.dumps({
        "n": a.n, "ok": ok, "alive": alive, "failed": others, "open_s": round(open_s, 2),
        "rss_before_kib": rss0, "rss_after_kib": rss1, "rss_after_close_kib": rss2,
        "fds_before": fds0, "fds_after": fds1,
        "per_conn_bytes": round((rss1 - rss0) * 1024 / a.n, 1),
    }))


if __name__ == "__main__":
    main()
