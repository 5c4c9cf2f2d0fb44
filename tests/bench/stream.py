#!/usr/bin/env python3
"""
Workload (g): a watch stream relayed to a slow reader; frontgate's RSS must stay bounded.

  stream.py --listen PORT --port FGPORT --path PATH --token KEY --pid PID
            [--rate 10000000] [--read-rate 1000000] [--seconds 15]

Runs the backend itself (on 127.0.0.1:PORT, the "stream" shard of frontgate's config): it answers
any request with a chunked response and writes watch-event-like JSON lines at RATE bytes/s
(paced every 10 ms; a full socket blocks it, which is how backpressure shows). The client asks
frontgate (FGPORT) for PATH with the bearer KEY and reads at READ_RATE bytes/s for SECONDS,
sampling VmRSS of PID every 250 ms. Prints one JSON line: RSS before, peak and growth, bytes the
backend wrote and the client read.
"""
import argparse
import json
import socket
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Backend:
    def __init__(self, port, rate):
        self.rate = rate
        self.sent = 0
        self.stop = threading.Event()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(16)
        self.ls.settimeout(0.5)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                c.close()
                return
            buf += d
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        event = (b'{"type":"MODIFIED","object":{"kind":"ConfigMap","apiVersion":"v1",'
                 b'"metadata":{"name":"bench","resourceVersion":"1"},"data":{"k":"'
                 + b"x" * 880 + b'"}}}\n')
        per_tick = max(len(event), int(self.rate / 100))  # every 10 ms
        body = event * (per_tick // len(event))
        chunk = b"%x\r\n" % len(body) + body + b"\r\n"
        t = time.monotonic()
        try:
            while not self.stop.is_set():
                c.sendall(chunk)
                self.sent += len(body)
                t += len(body) / self.rate
                pause = t - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    t = time.monotonic()  # fell behind (backpressure): no catching up in bursts
            c.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        c.close()

    def close(self):
        self.stop.set()
        self.ls.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--rate", type=float, default=10e6)
    ap.add_argument("--read-rate", type=float, default=1e6)
    ap.add_argument("--seconds", type=float, default=15)
    a = ap.parse_args()

    backend = Backend(a.listen, a.rate)
    time.sleep(0.2)
    rss0 = rss_kib(a.pid)
    s = socket.create_connection(("127.0.0.1", a.port))
    s.sendall((f"GET {a.path}?watch=true HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
               f"Authorization: Bearer {a.token}\r\n\r\n").encode())
    head = b""
    s.settimeout(5)
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        if not d:
            raise SystemExit("stream.py: frontgate closed the watch before its response head")
        head += d
    status = head.split(b" ", 2)[1].decode()
    got = len(head) - head.index(b"\r\n\r\n") - 4
    samples = []
    t0 = time.monotonic()
    tick = 0.05
    budget_per_tick = int(a.read_rate * tick)
    next_t = t0
    next_sample = t0
    s.settimeout(0.2)
    while time.monotonic() - t0 < a.seconds:
        budget = budget_per_tick
        while budget > 0:
            try:
                d = s.recv(min(budget, 65536))
            except socket.timeout:
                break
            if not d:
                budget = -1
                break
            got += len(d)
            budget -= len(d)
        if budget < 0:
            break
        now = time.monotonic()
        if now >= next_sample:
            samples.append((round(now - t0, 2), rss_kib(a.pid)))
            next_sample += 0.25
        next_t += tick
        pause = next_t - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    elapsed = time.monotonic() - t0
    s.close()
    backend.close()
    time.sleep(1.0)
    rss_end = rss_kib(a.pid)
    peak = max(r for _, r in samples) if samples else rss0
    print(json.dumps({
        "status": status, "seconds": round(elapsed, 1),
        "backend_sent_mb": round(backend.sent / 1e6, 1), "client_read_mb": round(got / 1e6, 1),
        "client_read_rate_mbps": round(got / 1e6 / elapsed, 2),
        "rss_before_kib": rss0, "rss_peak_kib": peak, "rss_after_close_kib": rss_end,
        "rss_growth_kib": peak - rss0, "samples": samples,
    }))


if __name__ == "__main__":
    main()
