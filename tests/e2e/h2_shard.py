"""
An HTTP/2 shard for the end-to-end tests, with the h2 library as the server: prior-knowledge
h2c on plaintext, ALPN on TLS. A connection whose first bytes are not the HTTP/2 preface (or
whose ALPN chose http/1.1) is served as HTTP/1.1 instead, as kube-apiserver does, so the same
shard sees frontgate's upgrades.

Paths it answers:
  /watch...        200 with one event, then open until the test ends it or the client resets
  /big?n=N         N bytes
  /hostile/bomb    a response head of 40 KiB of fields
  /hostile/reset   a head, half its declared body, then RST_STREAM(INTERNAL_ERROR)
  /hostile/garbage bytes that are no HTTP/2 frame (the connection is then dropped)
  anything else    JSON: {"method", "path", "headers", "body_len", "body_sha256", "conn"}
Knobs: max_streams (SETTINGS_MAX_CONCURRENT_STREAMS), refuse (the next N streams get
RST_STREAM(REFUSED_STREAM)), goaway_after (after N requests on a connection, GOAWAY with
the last stream id it took; later streams are refused by the h2 library).
"""

import hashlib
import json
import select
import socket
import ssl
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Garbage(Exception):
    pass


class H2Shard:
    def __init__(self, tls_ctx=None, max_streams=100, alpn=("h2", "http/1.1"), settings_delay=0.0):
        self.tls_ctx = tls_ctx
        self.settings_delay = settings_delay  # seconds before the server's first SETTINGS
        if tls_ctx is not None:
            tls_ctx.set_alpn_protocols(list(alpn))
        self.max_streams = max_streams
        self.refuse = 0
        self.goaway_after = None
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.requests = []  # dicts: method, path, headers (list of pairs), body, conn, proto
        self.conns = 0  # connections accepted
        self.h2_conns = 0
        self.open_conns = 0
        self.open_watches = 0
        self.max_open_streams = 0  # most streams open at once on one connection
        self.errors = []
        self.stopping = False
        self.watch_ticks = []  # (conn id, stream id) ... watches send an event on tick()
        self._tick = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.threads = []
        self.clients = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.acceptor = t

    @property
    def url(self):
        return f"{'https' if self.tls_ctx else 'http'}://127.0.0.1:{self.port}"

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            clients = list(self.clients)
        for s in clients:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(3)

    def tick(self):
        """Every open watch sends one more event."""
        with self.cond:
            self._tick += 1
            self.cond.notify_all()

    def wait_for(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def _note(self):
        with self.cond:
            self.cond.notify_all()

    def _accept(self):
        n = 0
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            n += 1
            with self.lock:
                self.conns += 1
                self.open_conns += 1
                self.clients.append(s)
            t = threading.Thread(target=self._serve, args=(s, n), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, s, cid):
        try:
            s.settimeout(10)
            if self.tls_ctx is not None:
                s = self.tls_ctx.wrap_socket(s, server_side=True)
                proto = s.selected_alpn_protocol()
                first = b""
                if proto != "h2":
                    self._serve_h1(s, cid, b"")
                    return
            else:
                first = b""
                while len(first) < len(PREFACE):
                    d = s.recv(len(PREFACE) - len(first))
                    if not d:
                        return
                    first += d
                    if not PREFACE.startswith(first[: len(PREFACE)]):
                        break
                if first != PREFACE:
                    self._serve_h1(s, cid, first)
                    return
            self._serve_h2(s, cid, first)
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError) as e:
            if not self.stopping:
                import traceback
                self.errors.append(repr(e) + traceback.format_exc())
        finally:
            try:
                s.close()
            except OSError:
                pass
            with self.cond:
                self.open_conns -= 1
                self.cond.notify_all()

    # ---- HTTP/2 ------------------------------------------------------------------------

    def _serve_h2(self, s, cid, first):
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=cfg)
        # in the first SETTINGS frame, and in force from the start
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        conn.initiate_connection()
        if self.settings_delay:
            time.sleep(self.settings_delay)  # a shard slow to answer: the client's guess rules
        s.sendall(conn.data_to_send())
        with self.lock:
            self.h2_conns += 1
        streams = {}  # sid -> dict(headers, body, watch, tick)
        self._pending = {}  # sid -> body bytes waiting for window (one connection at a time)
        served = 0
        goaway_sent = False
        if first:
            for ev in conn.receive_data(first):
                pass
        s.setblocking(False)
        while not self.stopping:
            r, _, _ = select.select([s], [], [], 0.05)
            data = b""
            if r:
                try:
                    data = s.recv(65536)
                except (BlockingIOError, ssl.SSLWantReadError):
                    data = None
                if data == b"":
                    return
            events = conn.receive_data(data) if data else []
            try:
                for ev in events:
                    if isinstance(ev, h2.events.ConnectionTerminated):
                        s.sendall(conn.data_to_send())
                        return
                    served += self._event(conn, ev, streams, cid)
            except _Garbage:
                s.setblocking(True)
                s.sendall(conn.data_to_send() + b"\x00\x00\x05\x04\x00\x00\x00\x00\x00junk!")
                time.sleep(0.1)
                return
            if self.goaway_after is not None and served >= self.goaway_after and not goaway_sent:
                goaway_sent = True
                conn.close_connection(last_stream_id=max(
                    [sid for sid in streams] + [conn.highest_inbound_stream_id]))
            self._pump(conn)
            # watches: one more event per tick
            for sid, st in list(streams.items()):
                if st["watch"] and st["tick"] < self._tick:
                    st["tick"] = self._tick
                    try:
                        conn.send_data(sid, b'{"type":"MODIFIED","n":%d}\n' % self._tick)
                    except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                        streams.pop(sid, None)
            out = conn.data_to_send()
            if out:
                s.setblocking(True)
                s.sendall(out)
                s.setblocking(False)
            for sid in [k for k, v in streams.items() if v.get("done") and k not in self._pending]:
                streams.pop(sid, None)
            if goaway_sent and not streams:
                time.sleep(0.05)
                return

    def _event(self, conn, ev, streams, cid):
        """Handles one event; returns 1 when a request was answered."""
        if isinstance(ev, h2.events.RequestReceived):
            sid = ev.stream_id
            if self.refuse > 0:
                with self.lock:
                    self.refuse -= 1
                conn.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
                with self.cond:
                    self.requests.append({"refused": True, "headers": ev.headers,
                                          "conn": cid, "proto": "h2"})
                    self.cond.notify_all()
                return 0
            streams[sid] = {"headers": ev.headers, "body": b"", "watch": False,
                            "tick": self._tick}
            with self.lock:
                self.max_open_streams = max(self.max_open_streams, len(streams))
            if ev.stream_ended:
                self._respond(conn, sid, streams, cid)
                return 1
        elif isinstance(ev, h2.events.DataReceived):
            st = streams.get(ev.stream_id)
            if st is not None:
                st["body"] += ev.data
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            if ev.stream_id in streams and not streams[ev.stream_id].get("responded"):
                self._respond(conn, ev.stream_id, streams, cid)
                return 1
        elif isinstance(ev, h2.events.StreamReset):
            st = streams.pop(ev.stream_id, None)
            if st and st["watch"]:
                with self.cond:
                    self.open_watches -= 1
                    self.cond.notify_all()
        return 0

    def _respond(self, conn, sid, streams, cid):
        st = streams[sid]
        st["responded"] = True
        hdrs = dict()
        for k, v in st["headers"]:
            hdrs.setdefault(k, v)
        path = hdrs.get(":path", "")
        rec = {"method": hdrs.get(":method"), "path": path, "headers": st["headers"],
               "body": st["body"], "conn": cid, "proto": "h2", "sid": sid}
        with self.cond:
            self.requests.append(rec)
            self.cond.notify_all()
        if "/watch" in path or "watch=1" in path:
            st["watch"] = True
            with self.cond:
                self.open_watches += 1
                self.cond.notify_all()
            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json")])
            conn.send_data(sid, b'{"type":"ADDED","n":0}\n')
            return
        st["done"] = True
        if "/hostile/bomb" in path:
            conn.send_headers(sid, [(":status", "200")] +
                              [(f"x-bomb-{i}", "b" * 1000) for i in range(40)], end_stream=True)
            return
        if "/hostile/reset" in path:
            conn.send_headers(sid, [(":status", "200"), ("content-length", "100")])
            conn.send_data(sid, b"y" * 50)
            conn.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            return
        if "/hostile/garbage" in path:
            raise _Garbage()
        if "/big?" in path:
            n = int(path.split("n=")[1])
            body = b"x" * n
            conn.send_headers(sid, [(":status", "200"), ("content-length", str(n))])
            self._send_all(conn, sid, body)
            return
        doc = {"method": rec["method"], "path": path, "headers": st["headers"],
               "body_len": len(st["body"]), "body_sha256": hashlib.sha256(st["body"]).hexdigest(),
               "conn": cid, "proto": "h2"}
        body = json.dumps(doc).encode()
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json"),
                                ("content-length", str(len(body))), ("x-shard", "h2")])
        self._send_all(conn, sid, body)

    def _send_all(self, conn, sid, body):
        self._pending[sid] = memoryview(body)
        self._pump(conn)

    def _pump(self, conn):
        """Sends what the peer's windows allow; a body ends once it is all out."""
        for sid, view in list(self._pending.items()):
            try:
                while view:
                    n = min(len(view), conn.max_outbound_frame_size,
                            conn.local_flow_control_window(sid))
                    if n <= 0:
                        break
                    conn.send_data(sid, view[:n].tobytes())
                    view = view[n:]
                if view:
                    self._pending[sid] = view
                else:
                    conn.end_stream(sid)
                    del self._pending[sid]
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self._pending.pop(sid, None)

    # ---- HTTP/1.1 fallback -----------------------------------------------------------------

    def _serve_h1(self, s, cid, first):
        buf = first
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                return
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers.append((k.strip().lower(), v.strip()))
        rec = {"method": method, "path": target, "headers": headers, "body": b"", "conn": cid,
               "proto": "http/1.1"}
        with self.cond:
            self.requests.append(rec)
            self.cond.notify_all()
        up = [v for k, v in headers if k == "upgrade"]
        if up:
            s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "
                      + up[0].encode() + b"\r\n\r\n")
            s.sendall(b"tunnel-ready")
            while True:  # echo until the client closes
                d = s.recv(65536)
                if not d:
                    return
                s.sendall(d)
        doc = json.dumps({"method": method, "path": target, "headers": headers,
                          "proto": "http/1.1", "conn": cid}).encode()
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(doc) + doc)
