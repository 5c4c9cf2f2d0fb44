"""
HTTP/2 toward shards (shards[].protocol), with an h2-library shard (h2_shard.py).

- protocol h2 on an http:// URL is prior-knowledge h2c; on https:// it is ALPN h2, and a shard
  that does not select h2 is a 502 with the reason in the log; protocol auto offers h2 and
  http/1.1 and speaks what the shard picks; http1 (the default) never offers h2.
- Each exchange is one stream with its own head: the request line and Host become
  :method/:path/:authority, the identity headers are frontgate's (inbound ones stripped, as
  for HTTP/1.1), connection-specific fields do not cross.
- Many exchanges share one connection; maxStreamsPerConnection and the shard's
  SETTINGS_MAX_CONCURRENT_STREAMS cap a connection, maxConnections the connections, and the
  requests beyond wait for a stream to end.
- Bodies of known and unknown length arrive whole; watches stream and outlive the idle
  timeouts; a stream the shard refuses is retried once; after the shard's GOAWAY new requests
  take a new connection; upgrades go over HTTP/1.1.
"""

import concurrent.futures
import hashlib
import http.client
import json
import re
import socket
import ssl
import subprocess
import time

import pytest

from conftest import FRONTGATE_BIN, WS_CLUSTER, WS_PATH, bearer, closed_port, key_line, new_key, request, std_config
from fake_apiserver import TestCA
from h2_shard import H2Shard

API = f"/clusters/{WS_PATH}/api/v1"


def config(shard_url, shard_extra="    protocol: h2\n", limits=""):
    text = std_config(shard_url).replace("workers: 2\n", "workers: 1\n")
    text = text.replace("    identity: requestHeader\n", "    identity: requestHeader\n" + shard_extra, 1)
    if limits:
        text = text.replace("limits:\n", "limits:\n" + limits, 1)
    return text


class Env:
    def __init__(self, fg, shard, key):
        self.fg, self.shard, self.key = fg, shard, key

    @property
    def port(self):
        return self.fg.port

    def get(self, path, headers=None, **kw):
        h = bearer(self.key)
        h.update(headers or {})
        return request(self.port, "GET", path, headers=h, **kw)


@pytest.fixture
def h2shard():
    s = H2Shard()
    yield s
    s.stop()


def start(frontgate_factory, shard, shard_extra="    protocol: h2\n", limits="", name="fg",
          files=None):
    key = new_key()
    f = {"keys.txt": key_line("alice", key, ("developers",)) + "\n"}
    f.update(files or {})
    fg = frontgate_factory(config(shard.url, shard_extra, limits), f, name=name)
    return Env(fg, shard, key)


@pytest.fixture
def env(h2shard, frontgate_factory):
    return start(frontgate_factory, h2shard)


def hdr(doc, name):
    return [v for k, v in doc["headers"] if k == name]


# ---------------------------------------------------------------------------
# the request head


def test_h2c_request_carries_the_admitted_identity_as_pseudo_headers_and_fields(env):
    r = env.get(f"{API}/pods?limit=1", {"X-Remote-User": "mallory", "x-remote-group": "system:masters",
                                        "Impersonate-User": "x", "X-Custom": "kept"})
    assert r.status == 200, r
    doc = r.json()
    assert doc["proto"] == "h2"
    assert doc["method"] == "GET"
    assert doc["path"] == f"/clusters/{WS_CLUSTER}/api/v1/pods?limit=1"
    assert hdr(doc, ":authority") == [f"127.0.0.1:{env.port}"]
    assert hdr(doc, ":scheme") == ["http"]
    assert hdr(doc, "x-remote-user") == ["alice"]
    assert hdr(doc, "x-remote-group") == ["developers", "system:authenticated"]
    assert hdr(doc, "x-custom") == ["kept"]
    assert hdr(doc, "authorization") == []  # requestHeader: frontgate checked it
    names = [k for k, _ in doc["headers"]]
    for banned in ("host", "connection", "keep-alive", "transfer-encoding", "upgrade", "te"):
        assert banned not in names
    assert all(k == k.lower() for k in names)
    assert r.value("x-shard") == "h2"
    assert env.fg.wait_log(r"access method=GET path=/clusters/\S+/pods status=200 ")


def test_unauthenticated_request_never_reaches_the_h2_shard(env):
    r = request(env.port, "GET", f"{API}/pods", headers={"Authorization": "Bearer nope"})
    assert r.status == 401
    assert env.shard.requests == []
    assert env.shard.conns == 0


def test_sequential_and_concurrent_requests_share_one_connection(env):
    for i in range(10):
        assert env.get(f"{API}/pods?i={i}").status == 200
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda i: env.get(f"{API}/pods?c={i}").status, range(60)))
    assert codes == [200] * 60
    assert env.shard.conns == 1
    assert {r["conn"] for r in env.shard.requests} == {1}


def test_request_bodies_of_known_and_unknown_length_arrive_whole(env):
    body = bytes(range(256)) * 4096  # 1 MiB: more than the shard's initial window
    r = request(env.port, "POST", f"{API}/namespaces/default/configmaps", body=body,
                headers=dict(bearer(env.key), **{"Content-Type": "application/octet-stream"}))
    assert r.status == 200, r
    doc = r.json()
    assert doc["body_len"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert hdr(doc, "content-length") == [str(len(body))]

    def chunks():
        for i in range(0, len(body), 100000):
            yield body[i:i + 100000]

    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=10)
    conn.request("POST", f"{API}/namespaces/default/configmaps", body=chunks(),
                 headers=bearer(env.key), encode_chunked=True)
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert resp.status == 200
    assert doc["body_len"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert hdr(doc, "content-length") == []  # unknown length: END_STREAM ends it


def test_large_response_is_relayed_whole_through_flow_control(env):
    n = 3 * 1024 * 1024
    r = env.get(f"/clusters/{WS_PATH}/big?n={n}")
    assert r.status == 200
    assert len(r.body) == n
    assert r.value("Content-Length") == str(n)


# ---------------------------------------------------------------------------
# watches, caps and waiting


def open_watch(port, key, i):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall((f"GET {API}/pods?watch=1&i={i} HTTP/1.1\r\nHost: localhost\r\n"
               f"Authorization: Bearer {key}\r\n\r\n").encode())
    return s


def read_until(s, needle, limit=1 << 16):
    buf = b""
    while needle not in buf and len(buf) < limit:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    return buf


def test_watch_streams_and_outlives_the_idle_timeouts(h2shard, frontgate_factory):
    env = start(frontgate_factory, h2shard,
                limits="  idleTimeout: 1s\n  upstreamIdleTimeout: 1s\n")
    s = open_watch(env.port, env.key, 0)
    try:
        assert b'"ADDED"' in read_until(s, b'"ADDED"')
        time.sleep(2.5)  # past both idle timeouts: a watch has no deadline
        h2shard.tick()
        assert b'"MODIFIED"' in read_until(s, b'"MODIFIED"')
    finally:
        s.close()
    assert h2shard.wait_for(lambda: h2shard.open_watches == 0)  # our reset reached the shard


def test_streams_are_capped_per_connection_and_connections_per_shard(frontgate_factory):
    shard = H2Shard(max_streams=5)
    socks = []
    try:
        env = start(frontgate_factory, shard,
                    shard_extra="    protocol: h2\n    maxConnections: 2\n")
        # the two that wait must not give up (connectTimeout) before the test lets them in
        env.fg.write("frontgate.yaml", open(env.fg.config_path).read().replace(
            "connectTimeout: 2s", "connectTimeout: 20s"))
        env.fg.hup()
        for i in range(12):
            socks.append(open_watch(env.port, env.key, i))
        # 2 connections x 5 streams (the shard's SETTINGS) are open; 2 watches wait
        assert shard.wait_for(lambda: shard.open_watches == 10), shard.open_watches
        time.sleep(0.3)
        assert shard.open_watches == 10
        assert shard.conns == 2
        assert shard.max_open_streams == 5
        # two watches end: the waiting ones get their streams
        socks.pop(0).close()
        socks.pop(0).close()
        assert shard.wait_for(lambda: len([r for r in shard.requests if "watch" in r["path"]]) == 12)
        assert shard.wait_for(lambda: shard.open_watches == 10)
        assert shard.conns == 2
        for s in socks:
            assert b'"ADDED"' in read_until(s, b'"ADDED"')
    finally:
        for s in socks:
            s.close()
        shard.stop()


def test_a_request_waits_for_a_stream_no_longer_than_connect_timeout(frontgate_factory):
    shard = H2Shard(max_streams=2)
    socks = []
    try:
        env = start(frontgate_factory, shard,
                    shard_extra="    protocol: h2\n    maxConnections: 1\n")
        env.fg.write("frontgate.yaml", open(env.fg.config_path).read().replace(
            "connectTimeout: 2s", "connectTimeout: 1s"))
        env.fg.hup()
        for i in range(2):
            socks.append(open_watch(env.port, env.key, i))
        assert shard.wait_for(lambda: shard.open_watches == 2)
        t0 = time.monotonic()
        r = env.get(f"{API}/pods")
        waited = time.monotonic() - t0
        assert r.status == 502
        assert 0.9 <= waited < 5, waited
        assert env.fg.wait_log(r"shard shard-1: no HTTP/2 stream free within connectTimeout")
        assert shard.conns == 1
        # a stream ends: the next request is served at once
        socks.pop().close()
        assert shard.wait_for(lambda: shard.open_watches == 1)
        assert env.get(f"{API}/pods").status == 200
    finally:
        for s in socks:
            s.close()
        shard.stop()


def test_without_max_connections_full_connections_are_followed_by_new_ones(frontgate_factory):
    shard = H2Shard(max_streams=3)
    socks = []
    try:
        env = start(frontgate_factory, shard)
        for i in range(8):
            socks.append(open_watch(env.port, env.key, i))
        assert shard.wait_for(lambda: shard.open_watches == 8)
        assert shard.conns == 3  # 3 + 3 + 2: full ones first
        assert shard.max_open_streams == 3
    finally:
        for s in socks:
            s.close()
        shard.stop()


def test_max_streams_per_connection_below_the_shards(frontgate_factory):
    shard = H2Shard(max_streams=100)
    socks = []
    try:
        env = start(frontgate_factory, shard,
                    shard_extra="    protocol: h2\n    maxStreamsPerConnection: 3\n")
        for i in range(7):
            socks.append(open_watch(env.port, env.key, i))
        assert shard.wait_for(lambda: shard.open_watches == 7)
        assert shard.conns == 3  # 3 + 3 + 1
        assert shard.max_open_streams == 3
    finally:
        for s in socks:
            s.close()
        shard.stop()


def test_a_burst_before_the_shards_settings_waits_for_them_instead_of_opening_connections(
        frontgate_factory):
    # 150 watches arrive while the shard's SETTINGS (1000 streams) are still on their way:
    # nghttp2's guess of 100 streams fills, and the other 50 wait for the SETTINGS rather than
    # open a second connection (the 1,000-watch benchmark had opened 9 for 1,000 watches)
    shard = H2Shard(max_streams=1000, settings_delay=1.0)
    socks = []
    try:
        env = start(frontgate_factory, shard)
        for i in range(150):
            socks.append(open_watch(env.port, env.key, i))
        assert shard.wait_for(lambda: shard.open_watches == 150, timeout=20), shard.open_watches
        assert shard.conns == 1
        assert shard.max_open_streams == 150
    finally:
        for s in socks:
            s.close()
        shard.stop()


@pytest.mark.concurrency
def test_many_workers_share_h2_connections_under_load_with_watches_coming_and_going(frontgate_factory):
    shard = H2Shard(max_streams=8)
    try:
        key = new_key()
        text = std_config(shard.url).replace(
            "    identity: requestHeader\n", "    identity: requestHeader\n    protocol: h2\n"
            "    maxConnections: 2\n", 1)
        fg = frontgate_factory(text, {"keys.txt": key_line("alice", key) + "\n"})
        workers = int(re.search(r"(?m)^workers: (\d+)$", open(fg.config_path).read()).group(1))

        def one(i):
            if i % 5 == 0:  # a watch, dropped after its first event
                s = open_watch(fg.port, key, i)
                try:
                    return 200 if b'"ADDED"' in read_until(s, b'"ADDED"') else 0
                finally:
                    s.close()
            return request(fg.port, "GET", f"{API}/pods?i={i}", headers=bearer(key)).status

        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            codes = list(pool.map(one, range(300)))
        assert codes == [200] * 300
        assert shard.conns <= 2 * workers
        assert shard.max_open_streams <= 8
        assert shard.wait_for(lambda: shard.open_watches == 0)
    finally:
        shard.stop()


# ---------------------------------------------------------------------------
# failures


def test_refused_stream_is_retried_once_on_a_new_stream(env):
    env.shard.refuse = 1
    r = env.get(f"{API}/pods")
    assert r.status == 200, r
    assert [x.get("refused", False) for x in env.shard.requests] == [True, False]


def test_refused_twice_is_a_502(env):
    env.shard.refuse = 2
    r = env.get(f"{API}/pods")
    assert r.status == 502
    assert r.json()["kind"] == "Status"
    assert env.fg.wait_log(r"shard shard-1: HTTP/2 stream closed before the response completed "
                           r"\(REFUSED_STREAM\)")


def test_after_the_shards_goaway_requests_take_a_new_connection(env):
    env.shard.goaway_after = 2
    for i in range(5):
        assert env.get(f"{API}/pods?i={i}").status == 200, i
    conns = [r["conn"] for r in env.shard.requests if not r.get("refused")]
    assert conns[:2] == [1, 1]
    assert len(set(conns)) >= 2


def test_shard_gone_mid_watch_ends_the_response_and_later_requests_are_502(h2shard, frontgate_factory):
    env = start(frontgate_factory, h2shard)
    s = open_watch(env.port, env.key, 0)
    try:
        assert b'"ADDED"' in read_until(s, b'"ADDED"')
        h2shard.stop()
        rest = read_until(s, b"\r\n0\r\n\r\n")  # the client connection closes unfinished
        assert b"0\r\n\r\n" not in rest
    finally:
        s.close()
    r = env.get(f"{API}/pods")
    assert r.status == 502
    assert env.fg.wait_log(r"shard shard-1: ")


def test_connect_refused_is_a_502(frontgate_factory):
    class Dead:
        url = f"http://127.0.0.1:{closed_port()}"
    env = start(frontgate_factory, Dead())
    r = env.get(f"{API}/pods")
    assert r.status == 502
    assert env.fg.wait_log(r"shard shard-1: .*refused")


def test_upgrade_goes_over_http1_to_an_h2_shard(env):
    s = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    try:
        s.sendall((f"GET {API}/namespaces/default/pods/p/exec?command=sh HTTP/1.1\r\n"
                   f"Host: localhost\r\nAuthorization: Bearer {env.key}\r\n"
                   "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        got = read_until(s, b"tunnel-ready")
        assert got.startswith(b"HTTP/1.1 101"), got
        s.sendall(b"ping")
        assert b"ping" in read_until(s, b"ping")
    finally:
        s.close()
    assert [r["proto"] for r in env.shard.requests] == ["http/1.1"]


# ---------------------------------------------------------------------------
# TLS and ALPN


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("h2up-pki")
    ca = TestCA("frontgate h2 upstream test CA")
    crt, key = ca.write_leaf(d, "shard", cn="127.0.0.1", dns=("localhost",))
    return {"ca": ca.write_ca(d), "crt": crt, "key": key}


def tls_shard(pki, alpn):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki["crt"], pki["key"])
    return H2Shard(tls_ctx=ctx, alpn=alpn)


def tls_extra(pki, proto):
    return f"    caFile: {pki['ca']}\n    protocol: {proto}\n"


@pytest.mark.parametrize("proto", ["h2", "auto"])
def test_tls_shard_selecting_h2_by_alpn(pki, frontgate_factory, proto):
    shard = tls_shard(pki, ("h2", "http/1.1"))
    try:
        env = start(frontgate_factory, shard, shard_extra=tls_extra(pki, proto))
        for _ in range(3):
            r = env.get(f"{API}/pods")
            assert r.status == 200, r
            assert r.json()["proto"] == "h2"
            assert hdr(r.json(), ":scheme") == ["https"]
        assert shard.conns == 1
    finally:
        shard.stop()


def test_auto_falls_back_to_http1_when_the_shard_picks_it(pki, frontgate_factory):
    shard = tls_shard(pki, ("http/1.1",))
    try:
        env = start(frontgate_factory, shard, shard_extra=tls_extra(pki, "auto"))
        for _ in range(3):
            r = env.get(f"{API}/pods")
            assert r.status == 200, r
            assert r.json()["proto"] == "http/1.1"
        # one connection spent learning, then HTTP/1.1 (this shard closes after each response)
        assert shard.conns == 4
    finally:
        shard.stop()


def test_h2_required_but_the_shard_picks_http1_is_a_502(pki, frontgate_factory):
    shard = tls_shard(pki, ("http/1.1",))
    try:
        env = start(frontgate_factory, shard, shard_extra=tls_extra(pki, "h2"))
        r = env.get(f"{API}/pods")
        assert r.status == 502
        assert env.fg.wait_log(r"did not select h2 by ALPN")
        assert shard.requests == []
    finally:
        shard.stop()


def test_http1_default_never_offers_h2(pki, frontgate_factory):
    shard = tls_shard(pki, ("h2", "http/1.1"))
    try:
        env = start(frontgate_factory, shard, shard_extra=f"    caFile: {pki['ca']}\n")
        r = env.get(f"{API}/pods")
        assert r.status == 200
        assert r.json()["proto"] == "http/1.1"
    finally:
        shard.stop()


# ---------------------------------------------------------------------------
# config


@pytest.mark.parametrize("extra, message", [
    ("    protocol: h3\n", 'shard protocol "h3" must be http1, auto or h2'),
    ("    maxConnections: 1001\n", '"maxConnections" must be between 0 and 1000'),
    ("    maxStreamsPerConnection: 20000\n", '"maxStreamsPerConnection" must be between 1 and 10000'),
])
def test_bad_protocol_settings_are_refused_with_their_place(tmp_path, extra, message):
    text = config("http://127.0.0.1:1", shard_extra=extra)
    (tmp_path / "keys.txt").write_text(key_line("alice", new_key()) + "\n")
    cfg = tmp_path / "frontgate.yaml"
    cfg.write_text(text)
    line = text.splitlines().index(extra.rstrip("\n")) + 1
    p = subprocess.run([FRONTGATE_BIN, "check", "-c", str(cfg)], capture_output=True, text=True)
    assert p.returncode != 0
    assert f"frontgate.yaml:{line}:" in p.stderr
    assert message in p.stderr


# ---------------------------------------------------------------------------
# a shard that misbehaves


def test_response_head_past_four_times_max_header_bytes_is_a_502_and_others_go_on(h2shard, frontgate_factory):
    env = start(frontgate_factory, h2shard, limits="  maxHeaderBytes: 8Ki\n")
    r = env.get(f"/clusters/{WS_PATH}/hostile/bomb")
    assert r.status == 502
    assert env.get(f"{API}/pods").status == 200
    assert h2shard.conns == 1  # only that stream was reset


def test_stream_reset_mid_body_cuts_the_client_response(env):
    s = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    try:
        s.sendall((f"GET /clusters/{WS_PATH}/hostile/reset HTTP/1.1\r\nHost: localhost\r\n"
                   f"Authorization: Bearer {env.key}\r\n\r\n").encode())
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"content-length: 100" in head.lower()
        assert body == b"y" * 50  # and the connection closed: the client knows it is cut
    finally:
        s.close()
    assert env.get(f"{API}/pods").status == 200


def test_garbage_from_the_shard_fails_its_streams_and_the_next_request_reconnects(env):
    r = env.get(f"/clusters/{WS_PATH}/hostile/garbage")
    assert r.status == 502
    assert env.fg.wait_log(r"shard shard-1: HTTP/2: the shard broke the protocol "
                           r"\(GOAWAY FRAME_SIZE_ERROR\)")
    assert env.get(f"{API}/pods").status == 200
    assert env.shard.conns == 2


def test_an_idle_h2_connection_closes_after_upstream_idle_timeout(h2shard, frontgate_factory):
    env = start(frontgate_factory, h2shard, limits="  upstreamIdleTimeout: 1s\n")
    assert env.get(f"{API}/pods").status == 200
    assert h2shard.open_conns == 1
    t0 = time.monotonic()
    assert h2shard.wait_for(lambda: h2shard.open_conns == 0, timeout=5)
    assert time.monotonic() - t0 >= 0.5
    assert env.get(f"{API}/pods").status == 200
    assert h2shard.conns == 2


def test_a_shard_that_never_sends_its_settings_is_a_502_after_connect_timeout(frontgate_factory):
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)  # accepts (the kernel does) and never speaks

    class Mute:
        url = f"http://127.0.0.1:{mute.getsockname()[1]}"
    try:
        env = start(frontgate_factory, Mute())
        t0 = time.monotonic()
        r = env.get(f"{API}/pods")
        assert r.status == 502
        assert 1.5 <= time.monotonic() - t0 < 6  # connectTimeout: 2s
        assert env.fg.wait_log(r"shard shard-1: connect timed out")
    finally:
        mute.close()


def test_reload_keeps_a_watch_on_its_connection_and_retires_it_after(h2shard, frontgate_factory):
    env = start(frontgate_factory, h2shard)
    s = open_watch(env.port, env.key, 0)
    try:
        assert b'"ADDED"' in read_until(s, b'"ADDED"')
        env.fg.hup()
        # new requests pin the new snapshot: a connection of its own; the watch goes on
        assert env.get(f"{API}/pods").status == 200
        assert h2shard.conns == 2
        h2shard.tick()
        assert b'"MODIFIED"' in read_until(s, b'"MODIFIED"')
    finally:
        s.close()
    # the old connection had only the watch: it closes once that ends
    assert h2shard.wait_for(lambda: h2shard.open_conns == 1, timeout=5)
    assert env.get(f"{API}/pods").status == 200
    assert h2shard.conns == 2
