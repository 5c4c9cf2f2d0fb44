#!/usr/bin/env python3
"""
Workload (j): many idle watches multiplexed on a few HTTP/2 client connections; how many shard
connections frontgate holds for them, and its memory per watch.

  watch.py --listen PORT --port FGPORT --path PATH --token KEY --pid PID
           [--conns 10] [--streams 100] [--hold 3]

Runs the backend itself on 127.0.0.1:PORT (the "watch" shard of frontgate's config): it answers
every request with a 200 and one watch event, then keeps the response open until the peer goes
away. It speaks HTTP/1.1 (a chunked response per connection) and, when a connection starts with
the HTTP/2 preface, h2c with prior knowledge (a stream per watch, up to 1000 concurrent streams
per connection), so the same backend serves frontgate whichever protocol its shards use.

The client (python3-h2 over TLS, ALPN h2) first opens one connection with 10 watches and closes
it (allocator caches and TLS state grown), reads frontgate's VmRSS, then opens CONNS connections
with STREAMS watches each, all at once, and waits until every watch has its event. One second
later it reads VmRSS again and counts frontgate's ESTABLISHED TCP connections to PORT (its
sockets in /proc/PID/fd matched against /proc/PID/net/tcp), holds the watches HOLD seconds
(frontgate's CPU over that time), closes everything and counts again. Prints one JSON line.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_STREAMS = 1000  # the backend's SETTINGS_MAX_CONCURRENT_STREAMS on h2c
EVENT = (b'{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1",'
         b'"metadata":{"name":"bench","resourceVersion":"1"},"data":{"k":"v"}}}\n')


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def established_to(pid, port):
    """frontgate's ESTABLISHED TCP connections whose remote port is PORT."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    n = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "01" and int(f[2].rsplit(":", 1)[1], 16) == port and f[9] in inodes:
                n += 1
    return n


class Backend:
    def __init__(self):
        self.open = 0          # connections open now
        self.accepted = 0
        self.h2_conns = 0
        self.requests = 0

    async def serve(self, reader, writer):
        self.open += 1
        self.accepted += 1
        try:
            first = await reader.readexactly(len(PREFACE))
            if first == PREFACE:
                self.h2_conns += 1
                await self.serve_h2(first, reader, writer)
            else:
                await self.serve_h1(first, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def serve_h1(self, buf, reader, writer):
        while b"\r\n\r\n" not in buf:
            d = await reader.read(65536)
            if not d:
                return
            buf += d
        self.requests += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(EVENT) + EVENT + b"\r\n")
        await writer.drain()
        while await reader.read(65536):  # stays open until the peer goes away
            pass

    async def serve_h2(self, data, reader, writer):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        # h2's default is 100 streams per connection: a cap of the backend's, not frontgate's
        conn.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: H2_STREAMS})
        conn.initiate_connection()
        while data:
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    self.requests += 1
                    conn.send_headers(ev.stream_id, [(b":status", b"200"), (b"content-type", b"application/json")])
                    conn.send_data(ev.stream_id, EVENT)
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            writer.write(conn.data_to_send())
            await writer.drain()
            data = await reader.read(65536)


class Client:
    """One TLS connection carrying n watches."""

    def __init__(self, port, path, token, n):
        self.port, self.path, self.token, self.n = port, path, token, n
        self.status = {}      # stream id -> status
        self.event = set()    # streams that got their first event
        self.ended = {}       # stream id -> why it ended early
        self.proto = None
        self.sids = []

    async def open(self, timeout):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=ctx)
        self.proto = self.writer.get_extra_info("ssl_object").selected_alpn_protocol()
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        for _ in range(self.n):
            sid = self.conn.get_next_available_stream_id()
            self.sids.append(sid)
            self.conn.send_headers(sid, [
                (b":method", b"GET"), (b":scheme", b"https"),
                (b":authority", b"127.0.0.1:%d" % self.port), (b":path", self.path.encode()),
                (b"authorization", b"Bearer " + self.token.encode())], end_stream=True)
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()
        self.all_in = asyncio.get_running_loop().create_future()
        self.pump = asyncio.create_task(self._read())
        try:
            await asyncio.wait_for(asyncio.shield(self.all_in), timeout)
        except asyncio.TimeoutError:
            pass

    def _settled(self):
        return len(self.event) + len(self.ended) >= self.n

    async def _read(self):
        try:
            while True:
                d = await self.reader.read(65536)
                if not d:
                    for sid in self.sids:
                        self.ended.setdefault(sid, "connection closed")
                    break
                for ev in self.conn.receive_data(d):
                    if isinstance(ev, h2.events.ResponseReceived):
                        self.status[ev.stream_id] = dict(ev.headers).get(b":status", b"?").decode()
                    elif isinstance(ev, h2.events.DataReceived):
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        if self.status.get(ev.stream_id) == "200":
                            self.event.add(ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        self.ended.setdefault(ev.stream_id, "ended " + self.status.get(ev.stream_id, "?"))
                    elif isinstance(ev, h2.events.StreamReset):
                        self.ended.setdefault(ev.stream_id, f"reset {ev.error_code}")
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        for sid in self.sids:
                            self.ended.setdefault(sid, f"goaway {ev.error_code}")
                self.writer.write(self.conn.data_to_send())
                if self._settled() and not self.all_in.done():
                    self.all_in.set_result(True)
        except (ConnectionError, ssl.SSLError):
            pass
        if not self.all_in.done():
            self.all_in.set_result(False)

    def open_watches(self):
        return len(self.event - set(self.ended))

    async def close(self):
        self.pump.cancel()
        try:
            self.conn.close_connection()
            self.writer.write(self.conn.data_to_send())
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (ConnectionError, ssl.SSLError, asyncio.TimeoutError, h2.exceptions.ProtocolError):
            pass


async def run(a):
    backend = Backend()
    server = await asyncio.start_server(backend.serve, "127.0.0.1", a.listen, backlog=4096)

    # warm-up: one connection with 10 watches, closed again
    warm = Client(a.port, a.path, a.token, 10)
    await warm.open(10)
    if warm.proto != "h2":
        sys.exit(f"watch.py: frontgate negotiated {warm.proto!r}, not h2")
    if len(warm.event) != 10:
        sys.exit(f"watch.py: warm-up got {len(warm.event)} of 10 watch events; statuses "
                 f"{sorted(set(warm.status.values()))}, ended {sorted(set(warm.ended.values()))}")
    await warm.close()
    await asyncio.sleep(1.0)
    rss0, shard0 = rss_kib(a.pid), established_to(a.pid, a.listen)

    t0 = time.monotonic()
    clients = [Client(a.port, a.path, a.token, a.streams) for _ in range(a.conns)]
    await asyncio.gather(*(c.open(30) for c in clients))
    open_s = time.monotonic() - t0
    await asyncio.sleep(1.0)
    rss1 = rss_kib(a.pid)
    shard1 = established_to(a.pid, a.listen)
    backend_open1 = backend.open
    c0 = cpu_s(a.pid)
    await asyncio.sleep(a.hold)
    cpu_idle = cpu_s(a.pid) - c0
    alive = sum(c.open_watches() for c in clients)
    ended = {}
    statuses = {}
    for c in clients:
        for why in c.ended.values():
            ended[why] = ended.get(why, 0) + 1
        for st in c.status.values():
            statuses[st] = statuses.get(st, 0) + 1
    ok = sum(len(c.event) for c in clients)
    await asyncio.gather(*(c.close() for c in clients))
    t1 = time.monotonic()
    shard2 = established_to(a.pid, a.listen)
    while shard2 and time.monotonic() - t1 < 5:
        await asyncio.sleep(0.2)
        shard2 = established_to(a.pid, a.listen)
    await asyncio.sleep(0.5)
    rss2 = rss_kib(a.pid)
    server.close()
    n = a.conns * a.streams
    print(json.dumps({
        "conns": a.conns, "streams_per_conn": a.streams, "watches": n, "ok": ok, "alive": alive,
        "statuses": statuses, "ended": ended, "protos": sorted({c.proto for c in clients}),
        "open_s": round(open_s, 2),
        "rss_before_kib": rss0, "rss_after_kib": rss1, "rss_after_close_kib": rss2,
        "per_watch_kib": round((rss1 - rss0) / n, 2),
        "shard_conns_before": shard0, "shard_conns": shard1, "shard_conns_after_close": shard2,
        "backend_conns": backend_open1, "backend_accepted": backend.accepted,
        "backend_h2_conns": backend.h2_conns, "backend_requests": backend.requests,
        "hold_s": a.hold, "cpu_idle_s": round(cpu_idle, 3),
    }))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--hold", type=float, default=3)
    a = ap.parse_args()
    asyncio.run(run(a))


if __name__ == "__main__":
    main()
