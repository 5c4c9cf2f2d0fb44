"""
HTTP/2 toward clients (RFC 9113), with the h2 library as the client and raw frames for the
attacks it will not send.

- ALPN: a TLS listener offers h2 (listener `http2:` defaults to true on TLS) and falls back
  to http/1.1 when the listener says `http2: false`; a plaintext listener speaks h2c only
  with prior knowledge and only when `http2: true`.
- Each stream is an exchange: authentication, identity-header stripping, routing and the
  shard's response are those of HTTP/1.1; the shard is spoken to in HTTP/1.1.
- Streams multiplex; a watch streams incrementally and outlives idleTimeout; bodies of known
  and unknown length arrive whole (the latter chunked toward the shard).
- Limits: SETTINGS_MAX_CONCURRENT_STREAMS is limits.maxConcurrentStreams; a header list over
  maxHeaderBytes is a 431 on that stream only, over 4x that the connection goes; CONTINUATION
  floods and rapid resets (CVE-2023-44487) end in GOAWAY; CONNECT is 405.
- Shutdown sends GOAWAY(NO_ERROR) and lets streams in flight finish.
"""

import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import pytest

from conftest import WS_CLUSTER, WS_PATH, closed_port, key_line, new_key, std_config
from fake_apiserver import TestCA

API = f"/clusters/{WS_PATH}/api/v1"


class H2:
    """A synchronous HTTP/2 client on one connection: send requests, pump until done."""

    def __init__(self, port, tls_ctx=None, timeout=10.0, validate=True):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.alpn = None
        if tls_ctx is not None:
            raw = tls_ctx.wrap_socket(raw, server_hostname="localhost")
            self.alpn = raw.selected_alpn_protocol()
        self.sock = raw
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=validate,
                                        normalize_outbound_headers=validate,
                                        validate_inbound_headers=validate)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        self.flush()
        self.responses = {}  # stream id -> dict(status, headers, body, ended, reset, chunks)
        self.goaway = None
        self.rbuf = b""
        self.remote_settings = {}
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data):
        self.sock.sendall(data)

    def request(self, method, path, headers=(), body=None, end=True, authority="localhost"):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":authority", authority),
                (":path", path)] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=end and body is None)
        self.responses[sid] = {"status": None, "headers": [], "body": b"", "ended": False,
                               "reset": None, "chunks": []}
        self.flush()
        if body is not None:
            self.send_body(sid, body, end=end)
        return sid

    def send_body(self, sid, body, end=True):
        view = memoryview(body)
        while True:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window > 0 and view:
                n = min(window, len(view))
                self.conn.send_data(sid, view[:n].tobytes())
                view = view[n:]
                self.flush()
                continue
            if not view:
                break
            self.pump_once()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def pump_once(self):
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            raise EOFError("connection closed")
        # one frame at a time: the h2 library closes its state machine on GOAWAY, while
        # RFC 9113 6.8 lets the streams below its last stream id finish; after a GOAWAY
        # the frames are read here (DATA, RST_STREAM; headers came before)
        self.rbuf += data
        while len(self.rbuf) >= 9:
            n = int.from_bytes(self.rbuf[:3], "big")
            if len(self.rbuf) < 9 + n:
                break
            f, self.rbuf = self.rbuf[:9 + n], self.rbuf[9 + n:]
            if self.goaway is None:
                for ev in self.conn.receive_data(f):
                    self._event(ev)
            else:
                self._after_goaway(f)
        try:
            self.flush()
        except OSError:
            pass  # the server may already have closed its end

    def _after_goaway(self, f):
        ftype, flags = f[3], f[4]
        sid = int.from_bytes(f[5:9], "big") & 0x7FFFFFFF
        payload = f[9:]
        r = self.responses.get(sid)
        if ftype == 0 and r is not None:  # DATA
            if flags & 0x8:
                payload = payload[1:len(payload) - payload[0]]
            r["body"] += payload
            r["chunks"].append((time.monotonic(), payload))
            if flags & 0x1:
                r["ended"] = True
        elif ftype == 3 and r is not None:  # RST_STREAM
            r["reset"] = int.from_bytes(payload[:4], "big")

    def _event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            r = self.responses[ev.stream_id]
            r["headers"] = ev.headers
            r["status"] = int(dict(ev.headers)[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            r = self.responses[ev.stream_id]
            r["body"] += ev.data
            r["chunks"].append((time.monotonic(), ev.data))
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.responses[ev.stream_id]["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            if ev.stream_id in self.responses:
                self.responses[ev.stream_id]["reset"] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.remote_settings[k] = v.new_value

    def wait(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise TimeoutError("h2: condition not met")
            self.pump_once()

    def done(self, sid):
        r = self.responses[sid]
        return r["ended"] or r["reset"] is not None

    def get(self, sid, timeout=10.0):
        self.wait(lambda: self.done(sid), timeout)
        return self.responses[sid]

    def until_closed(self, timeout=10.0):
        """Pumps until the server closes; returns the GOAWAY event, if one came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.pump_once()
            except EOFError:
                return self.goaway
            except h2.exceptions.ProtocolError:
                return self.goaway
        raise TimeoutError("h2: connection still open")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def header(resp, name):
    return [v for k, v in resp["headers"] if k == name]


def shard_json(resp):
    assert resp["status"] == 200, resp
    return json.loads(resp["body"])


def rec_values(doc, name):
    return [v for k, v in doc["headers"] if k.lower() == name.lower()]


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    d = tmp_path_factory.mktemp("h2pki")
    ca = TestCA("frontgate h2 test CA")
    crt, key = ca.write_leaf(d, "fg", cn="localhost", dns=("localhost",))
    return {"ca": ca.write_ca(d), "crt": open(crt).read(), "key": open(key).read()}


def client_ctx(ca, alpn=("h2", "http/1.1")):
    ctx = ssl.create_default_context(cafile=ca["ca"])
    ctx.set_alpn_protocols(list(alpn))
    return ctx


class H2Env:
    def __init__(self, fg, shard, key, ca):
        self.fg, self.shard, self.key, self.ca = fg, shard, key, ca

    @property
    def port(self):
        return self.fg.listeners[0][2]

    def client(self, **kw):
        return H2(self.port, client_ctx(self.ca), **kw)

    def auth(self):
        return [("authorization", f"Bearer {self.key}")]


def tls_config(shard_url, listener="", limits=""):
    text = std_config(shard_url, dead_url=f"http://127.0.0.1:{closed_port()}")
    text = text.replace("  - address: 127.0.0.1:0\n",
                        "  - address: 127.0.0.1:0\n    tls: {certFile: tls.crt, keyFile: tls.key}\n"
                        + listener, 1)
    return text + limits


@pytest.fixture
def h2env(shard, frontgate_factory, ca):
    key = new_key()
    limits = "  idleTimeout: 1s\n  maxHeaderBytes: 8Ki\n  maxConcurrentStreams: 64\n"
    fg = frontgate_factory(tls_config(shard.url, limits=limits),
                           {"keys.txt": key_line("alice", key, ("developers",)) + "\n",
                            "tls.crt": ca["crt"], "tls.key": ca["key"]})
    return H2Env(fg, shard, key, ca)


# ---------------------------------------------------------------------------
# negotiation


def test_tls_listener_negotiates_h2_and_serves_an_authenticated_request(h2env):
    c = h2env.client()
    try:
        assert c.alpn == "h2"
        sid = c.request("GET", f"{API}/pods?limit=1", h2env.auth())
        doc = shard_json(c.get(sid))
        # the shard is spoken to in HTTP/1.1 with the admitted identity
        assert doc["target"] == f"/clusters/{WS_CLUSTER}/api/v1/pods?limit=1"
        assert rec_values(doc, "X-Remote-User") == ["alice"]
        assert rec_values(doc, "Host") == ["localhost"]
        assert h2env.fg.wait_log(r"access method=GET path=/clusters/\S+/pods status=200 .*proto=h2 ")
    finally:
        c.close()


def test_unauthenticated_h2_request_is_401_with_a_status_body(h2env):
    c = h2env.client()
    try:
        r = c.get(c.request("GET", f"{API}/pods", [("authorization", "Bearer not-a-key")]))
        assert r["status"] == 401
        assert header(r, "content-type") == ["application/json"]
        assert json.loads(r["body"])["reason"] == "Unauthorized"
        assert b"not-a-key" not in r["body"]
        assert h2env.shard.snapshot() == []
        # the connection stays usable
        assert c.get(c.request("GET", f"{API}/pods", h2env.auth()))["status"] == 200
    finally:
        c.close()


def test_alpn_offers_only_http1_when_the_listener_says_http2_false(shard, frontgate_factory, ca):
    key = new_key()
    fg = frontgate_factory(tls_config(shard.url, listener="    http2: false\n"),
                           {"keys.txt": key_line("alice", key) + "\n",
                            "tls.crt": ca["crt"], "tls.key": ca["key"]})
    s = client_ctx(ca).wrap_socket(socket.create_connection(("127.0.0.1", fg.listeners[0][2]), timeout=10),
                                   server_hostname="localhost")
    try:
        assert s.selected_alpn_protocol() == "http/1.1"
        s.sendall(f"GET {API}/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n"
                  "Connection: close\r\n\r\n".encode())
        assert s.recv(12) == b"HTTP/1.1 200"
    finally:
        s.close()


def test_plaintext_listener_speaks_h2c_only_with_http2_true(shard, frontgate_factory):
    key = new_key()
    files = {"keys.txt": key_line("alice", key) + "\n"}
    plain = frontgate_factory(std_config(shard.url), files, name="plain")
    # default: the preface is HTTP/2.0 as an HTTP/1 request line: 505, no SETTINGS frame
    s = socket.create_connection(("127.0.0.1", plain.port), timeout=10)
    try:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 505 "), data
    finally:
        s.close()
    text = std_config(shard.url).replace("  - address: 127.0.0.1:0\n",
                                         "  - address: 127.0.0.1:0\n    http2: true\n", 1)
    h2c = frontgate_factory(text, files, name="h2c")
    c = H2(h2c.port)
    try:
        doc = shard_json(c.get(c.request("GET", f"{API}/x", [("authorization", f"Bearer {key}")])))
        assert rec_values(doc, "X-Remote-User") == ["alice"]
        # HTTP/1.1 still works on the same listener
        s = socket.create_connection(("127.0.0.1", h2c.port), timeout=10)
        s.sendall(f"GET {API}/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                  "Connection: close\r\n\r\n".encode())
        assert s.recv(12) == b"HTTP/1.1 200"
        s.close()
    finally:
        c.close()


def test_settings_carry_the_configured_limits(h2env):
    c = h2env.client()
    try:
        c.wait(lambda: h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS in c.remote_settings)
        assert c.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 64
        assert c.remote_settings[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == 8192
    finally:
        c.close()


# ---------------------------------------------------------------------------
# what the shard reads


def test_identity_headers_in_every_spelling_never_reach_the_shard(h2env):
    c = h2env.client(validate=False)
    try:
        evil = [("x-remote-user", "system:admin"), ("x-remote-group", "system:masters"),
                ("x-remote-extra-scopes", "cluster:evil"), ("x_remote_user", "mallory"),
                ("x-remote_group", "system:masters"), ("x-forwarded-for", "10.0.0.1"),
                ("x-custom_name", "kept")]
        doc = shard_json(c.get(c.request("GET", f"{API}/x", h2env.auth() + evil)))
        names = [k.lower() for k, _ in doc["headers"]]
        assert rec_values(doc, "X-Remote-User") == ["alice"]
        assert rec_values(doc, "X-Remote-Group") == ["developers", "system:authenticated"]
        assert "x-remote-extra-scopes" not in names
        assert [n for n in names if "_" in n] == ["x-custom_name"]
        assert rec_values(doc, "X-Forwarded-For") == ["127.0.0.1"]
    finally:
        c.close()


def test_host_and_authority_that_disagree_are_400(h2env):
    c = h2env.client(validate=False)
    try:
        r = c.get(c.request("GET", f"{API}/x", h2env.auth() + [("host", "evil.example")]))
        assert r["status"] == 400
        assert h2env.shard.snapshot() == []
    finally:
        c.close()


def test_connect_is_405_and_an_unknown_method_501(h2env):
    c = h2env.client(validate=False)
    try:
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "localhost:443")],
                            end_stream=True)
        c.responses[sid] = {"status": None, "headers": [], "body": b"", "ended": False,
                            "reset": None, "chunks": []}
        c.flush()
        assert c.get(sid)["status"] == 405
        assert c.get(c.request("BREW", f"{API}/x", h2env.auth()))["status"] == 501
        assert h2env.shard.snapshot() == []
    finally:
        c.close()


# ---------------------------------------------------------------------------
# streams


def test_fifty_streams_multiplex_on_one_connection(h2env):
    c = h2env.client()
    try:
        sids = {c.request("GET", f"{API}/item-{i}", h2env.auth()): i for i in range(50)}
        c.wait(lambda: all(c.done(s) for s in sids))
        for sid, i in sids.items():
            doc = shard_json(c.responses[sid])
            assert doc["target"] == f"/clusters/{WS_CLUSTER}/api/v1/item-{i}"
    finally:
        c.close()


def test_a_stream_past_the_acknowledged_limit_is_a_connection_error(shard, frontgate_factory, ca):
    # RFC 9113 5.1.2 allows a stream error; nghttp2 makes it a connection error once the
    # client has acknowledged the limit, so a client ignoring it loses the connection
    key = new_key()
    fg = frontgate_factory(tls_config(shard.url, limits="  maxConcurrentStreams: 2\n"),
                           {"keys.txt": key_line("alice", key) + "\n",
                            "tls.crt": ca["crt"], "tls.key": ca["key"]})
    c = H2(fg.listeners[0][2], client_ctx(ca), validate=False)
    try:
        c.wait(lambda: h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS in c.remote_settings)
        assert c.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 2
        c.conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 100
        c.conn.remote_settings.acknowledge()
        auth = [("authorization", f"Bearer {key}")]
        for _ in range(2):
            c.request("GET", f"{API}/slow?ms=800", auth)
        c.request("GET", f"{API}/third", auth)
        goaway = c.until_closed()
        assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        assert not any(r.target.endswith("/third") for r in shard.snapshot())
    finally:
        c.close()


def test_a_watch_streams_incrementally_and_outlives_idle_timeout(h2env):
    c = h2env.client()
    try:
        t0 = time.monotonic()
        sid = c.request("GET", f"{API}/pods/watch?chunks=4&delay_ms=600", h2env.auth())
        r = c.get(sid, timeout=15)
        assert r["status"] == 200 and r["ended"]
        events = [json.loads(line) for line in r["body"].splitlines()]
        assert [e["n"] for e in events] == [0, 1, 2, 3]
        # 1.8 s of events with idleTimeout 1s, and the first one came long before the last
        assert time.monotonic() - t0 >= 1.8
        first = r["chunks"][0][0]
        assert r["chunks"][-1][0] - first >= 1.5
        # the connection idles out once nothing is open
        assert c.until_closed(timeout=5) is not None
    finally:
        c.close()


@pytest.mark.parametrize("with_length", [True, False])
def test_a_one_mebibyte_body_arrives_whole(h2env, with_length):
    body = os.urandom(1 << 20)
    c = h2env.client()
    try:
        hdrs = h2env.auth() + ([("content-length", str(len(body)))] if with_length else [])
        sid = c.request("PUT", f"{API}/big-body", hdrs, body=body)
        r = c.get(sid, timeout=30)
        assert r["status"] == 200, r
        doc = json.loads(r["body"])
        assert doc["sha256"] == hashlib.sha256(body).hexdigest()
        assert doc["length"] == len(body)
        assert doc["chunked"] is (not with_length)
    finally:
        c.close()


def test_a_stream_reset_by_the_client_leaves_the_others_alone(h2env):
    c = h2env.client()
    try:
        watch = c.request("GET", f"{API}/pods/watch?chunks=20&delay_ms=200", h2env.auth())
        c.wait(lambda: c.responses[watch]["body"] != b"")
        c.conn.reset_stream(watch, h2.errors.ErrorCodes.CANCEL)
        c.flush()
        r = c.get(c.request("GET", f"{API}/after-reset", h2env.auth()))
        assert shard_json(r)["target"].endswith("/after-reset")
        assert h2env.fg.wait_log(r"access method=GET path=/clusters/\S+/pods/watch status=200 ")
    finally:
        c.close()


# ---------------------------------------------------------------------------
# limits and attacks


def test_a_header_list_over_max_header_bytes_is_431_and_the_connection_lives(h2env):
    c = h2env.client()
    try:
        big = h2env.auth() + [("x-big", "a" * 10000)]
        r = c.get(c.request("GET", f"{API}/x", big))
        assert r["status"] == 431
        assert h2env.shard.snapshot() == []
        assert c.get(c.request("GET", f"{API}/x", h2env.auth()))["status"] == 200
    finally:
        c.close()


def test_a_header_list_far_over_the_limit_closes_the_connection(h2env):
    c = h2env.client()
    try:
        bomb = h2env.auth() + [(f"x-b{i}", "b" * 4000) for i in range(10)]  # 40 KB > 4 x 8 KiB
        c.request("GET", f"{API}/x", bomb)
        c.until_closed()
        assert h2env.shard.snapshot() == []
    finally:
        c.close()


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def test_a_continuation_flood_ends_in_goaway(h2env):
    c = h2env.client()
    try:
        c.wait(lambda: h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS in c.remote_settings)
        # HEADERS without END_HEADERS, then CONTINUATION frames that never end the block;
        # each carries one literal header (never indexed, new name)
        def literal(i):
            name, value = f"x-f{i}".encode(), b"v"
            return b"\x10" + bytes([len(name)]) + name + bytes([len(value)]) + value
        first = b"\x82\x87\x84" + b"\x41\x09localhost"  # GET https / :authority localhost
        c.send_raw(frame(1, 0x4 * 0, 1, first))
        for i in range(200):
            try:
                c.send_raw(frame(9, 0, 1, literal(i)))
            except OSError:
                break
        raw = b""
        c.sock.settimeout(5)
        t0 = time.monotonic()
        eof = False
        try:
            while True:
                chunk = c.sock.recv(65536)
                if not chunk:
                    eof = True  # close_notify: our side ended right after the GOAWAY
                    break
                raw += chunk
        except (OSError, ssl.SSLError):
            pass
        assert goaway_codes(raw), raw[:200]
        assert eof and time.monotonic() - t0 < 1.5  # not after the 2 s linger
        assert h2env.shard.snapshot() == []
    finally:
        c.close()


def goaway_codes(raw):
    """The error codes of the GOAWAY frames in a byte stream of frames."""
    codes, i = [], 0
    while i + 9 <= len(raw):
        length = int.from_bytes(raw[i:i + 3], "big")
        if raw[i + 3] == 7 and i + 9 + 8 <= len(raw):
            codes.append(int.from_bytes(raw[i + 13:i + 17], "big"))
        i += 9 + length
    return codes


def test_rapid_reset_ends_in_goaway_and_the_server_keeps_serving(h2env):
    c = h2env.client()
    try:
        for _ in range(400):
            try:
                sid = c.conn.get_next_available_stream_id()
                c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                                          (":authority", "localhost"), (":path", f"{API}/slow?ms=2000")]
                                    + h2env.auth())
                c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                c.flush()
            except (OSError, h2.exceptions.ProtocolError):
                break  # the server stopped reading, or its GOAWAY arrived
        goaway = c.until_closed(timeout=10)
        # nghttp2's reset-rate limit: a burst of 2 x maxConcurrentStreams (64) resets, then
        # GOAWAY(INTERNAL_ERROR) naming the last stream it processed
        assert goaway is not None
        assert goaway.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
        assert goaway.last_stream_id <= 2 * (2 * 64 + 8) + 1
    finally:
        c.close()
    fresh = h2env.client()
    try:
        assert fresh.get(fresh.request("GET", f"{API}/x", h2env.auth()))["status"] == 200
    finally:
        fresh.close()


def test_shutdown_sends_goaway_and_lets_a_stream_in_flight_finish(h2env):
    c = h2env.client()
    try:
        sid = c.request("GET", f"{API}/pods/watch?chunks=3&delay_ms=300", h2env.auth())
        c.wait(lambda: c.responses[sid]["body"] != b"")
        h2env.fg.proc.send_signal(signal.SIGTERM)
        c.wait(lambda: c.goaway is not None)
        assert c.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
        r = c.get(sid)
        assert r["ended"] and len(r["body"].splitlines()) == 3
        c.until_closed()
    finally:
        c.close()


def test_reload_changing_announced_settings_sends_goaway_and_the_stream_finishes(h2env):
    c = h2env.client()
    try:
        sid = c.request("GET", f"{API}/pods/watch?chunks=3&delay_ms=400", h2env.auth())
        c.wait(lambda: c.responses[sid]["body"] != b"")
        # a reload that leaves what SETTINGS announced alone keeps the connection as it is
        h2env.fg.hup()
        other = c.request("GET", f"{API}/x", h2env.auth())
        assert c.get(other)["status"] == 200
        assert c.goaway is None
        # maxConcurrentStreams changes: GOAWAY(NO_ERROR); the watch in flight still completes
        cfg = open(h2env.fg.config_path).read()
        with open(h2env.fg.config_path, "w") as f:
            f.write(cfg.replace("maxConcurrentStreams: 64", "maxConcurrentStreams: 32"))
        h2env.fg.hup()
        c.wait(lambda: c.goaway is not None)
        assert c.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
        r = c.get(sid)
        assert r["ended"] and len(r["body"].splitlines()) == 3
        c.until_closed()
    finally:
        c.close()
    fresh = h2env.client()
    try:
        fresh.wait(lambda: fresh.remote_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS) == 32)
        assert fresh.get(fresh.request("GET", f"{API}/x", h2env.auth()))["status"] == 200
    finally:
        fresh.close()


def test_open_client_streams_are_a_gauge(h2env):
    from test_metrics import scrape, val
    from test_kcp_index import eventually
    c = h2env.client()
    try:
        # a watch the fake shard keeps streaming: its stream stays open
        sid = c.request("GET", f"{API}/watch?watch=true&chunks=40&delay_ms=200", h2env.auth())
        c.wait(lambda: c.responses[sid]["status"] is not None)
        eventually(lambda: val(scrape(h2env.fg)[1], "frontgate_http2_streams") == 1, "one open")
        done = c.request("GET", f"{API}/pods", h2env.auth())
        c.wait(lambda: c.done(done))
        assert val(scrape(h2env.fg)[1], "frontgate_open_streams", kind="watch") == 1
    finally:
        c.close()
    eventually(lambda: val(scrape(h2env.fg)[1], "frontgate_http2_streams") == 0, "all closed")
