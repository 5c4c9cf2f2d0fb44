"""
TLS on both sides, and the connection limits.

- A TLS listener serves the configured certificate; SIGHUP with a new one
  serves the new one to new connections (the old connection keeps working).
- https:// shards: the shard's certificate is verified against caFile and the
  URL host (SNI is sent), a wrong CA is a 502, and clientCertFile/clientKeyFile
  give frontgate a client certificate for shards that require one (mTLS, as
  kcp shards require from the front proxy).
- limits.headerTimeout closes a connection whose request head does not
  arrive in time; limits.idleTimeout closes an idle keep-alive connection;
  limits.maxConnections refuses connections beyond it.
"""

import json
import os
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import WS_CLUSTER, WS_PATH, key_line, new_key
from fake_apiserver import TestCA


class TLSShard:
    """An HTTPS shard that records the SNI and the client certificate it saw."""

    def __init__(self, ca, directory, require_client_ca=None):
        self.seen = []
        crt, key = ca.write_leaf(directory, "shard", cn="shard.test", dns=("shard.test", "localhost"))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        snis = []
        ctx.sni_callback = lambda sock, name, c: snis.append(name)
        if require_client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=require_client_ca)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                peer = self.connection.getpeercert()
                cn = None
                for rdn in (peer or {}).get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            cn = v
                outer.seen.append({"path": self.path, "sni": snis[-1] if snis else None,
                                   "client_cn": cn, "user": self.headers.get("X-Remote-User")})
                body = json.dumps({"ok": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def https_config(shard_url, ca_file, extra_shard="", limits=""):
    return f"""\
workers: 1
listeners:
  - address: 127.0.0.1:0
shards:
  - name: s
    url: {shard_url}
    caFile: {ca_file}
{extra_shard}
routes:
  - prefix: /clusters/
    workspace: path
workspaces:
  - cluster: {WS_CLUSTER}
    path: {WS_PATH}
    shard: s
authenticators:
  - name: keys
    staticKeys: {{file: keys.txt}}
authentication:
  global: [keys]
limits:
  shutdownGracePeriod: 2s
{limits}"""


def get(port, key, path=f"/clusters/{WS_PATH}/api"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
              "Connection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return int(data.split(b" ", 2)[1]), data


@pytest.fixture
def pki(tmp_path):
    return TestCA("frontgate tls test CA"), tmp_path


def test_https_shard_verified_with_ca_file_and_sni(pki, frontgate_factory):
    ca, d = pki
    shard = TLSShard(ca, d)
    try:
        key = new_key()
        fg = frontgate_factory(https_config(f"https://localhost:{shard.port}", ca.write_ca(d)),
                               {"keys.txt": key_line("alice", key) + "\n"})
        status, _ = get(fg.port, key)
        assert status == 200
        assert shard.seen[-1]["sni"] == "localhost"
        assert shard.seen[-1]["path"] == f"/clusters/{WS_CLUSTER}/api"
        assert shard.seen[-1]["user"] == "alice"
    finally:
        shard.stop()


def test_https_shard_with_an_untrusted_certificate_is_502(pki, frontgate_factory):
    ca, d = pki
    shard = TLSShard(ca, d)
    other = TestCA("some other CA")
    try:
        key = new_key()
        fg = frontgate_factory(
            https_config(f"https://localhost:{shard.port}", other.write_ca(d, "other.crt")),
            {"keys.txt": key_line("alice", key) + "\n"})
        status, body = get(fg.port, key)
        assert status == 502
        assert b'"reason":"ServiceUnavailable"' in body
        assert shard.seen == []
        fg.wait_log("certificate verify failed")  # the warning can follow the 502
    finally:
        shard.stop()


def test_https_shard_name_must_match_the_certificate(pki, frontgate_factory):
    ca, d = pki
    shard = TLSShard(ca, d)
    try:
        key = new_key()
        # the shard's certificate names shard.test and localhost, not this serverName
        fg = frontgate_factory(
            https_config(f"https://localhost:{shard.port}", ca.write_ca(d),
                         extra_shard="    serverName: elsewhere.test"),
            {"keys.txt": key_line("alice", key) + "\n"})
        assert get(fg.port, key)[0] == 502
        fg2 = frontgate_factory(
            https_config(f"https://127.0.0.1:{shard.port}", ca.write_ca(d),
                         extra_shard="    serverName: shard.test"),
            {"keys.txt": key_line("alice", key) + "\n"}, name="fg2")
        assert get(fg2.port, key)[0] == 200
        assert shard.seen[-1]["sni"] == "shard.test"
    finally:
        shard.stop()


def test_mtls_client_certificate_to_the_shard(pki, frontgate_factory):
    ca, d = pki
    client_ca = TestCA("requestheader CA")
    client_ca_file = client_ca.write_ca(d, "client-ca.crt")
    crt, ckey = client_ca.write_leaf(d, "front-proxy", cn="kcp-front-proxy", server=False, client=True)
    shard = TLSShard(ca, d, require_client_ca=client_ca_file)
    try:
        key = new_key()
        without = frontgate_factory(https_config(f"https://localhost:{shard.port}", ca.write_ca(d)),
                                    {"keys.txt": key_line("alice", key) + "\n"})
        assert get(without.port, key)[0] == 502, "a shard requiring mTLS refused us"
        fg = frontgate_factory(
            https_config(f"https://localhost:{shard.port}", ca.write_ca(d),
                         extra_shard=f"    clientCertFile: {crt}\n    clientKeyFile: {ckey}"),
            {"keys.txt": key_line("alice", key) + "\n"}, name="mtls")
        assert get(fg.port, key)[0] == 200
        assert shard.seen[-1]["client_cn"] == "kcp-front-proxy"
    finally:
        shard.stop()


def listener_cert_serial(port, ca_file):
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert()["serialNumber"]


@pytest.mark.concurrency
def test_tls_listener_certificate_rotates_on_sighup(pki, frontgate_factory, shard):
    ca, d = pki
    crt, key = ca.write_leaf(d, "tls1", cn="frontgate")
    api_key = new_key()
    cfg = f"""\
workers: 1
listeners:
  - address: 127.0.0.1:0
    tls: {{certFile: tls.crt, keyFile: tls.key}}
shards: [{{name: s, url: "{shard.url}"}}]
routes: [{{prefix: /, shard: s}}]
authenticators: [{{name: keys, staticKeys: {{file: keys.txt}}}}]
authentication: {{global: [keys]}}
"""
    files = {"keys.txt": key_line("alice", api_key) + "\n", "tls.crt": open(crt).read(),
             "tls.key": open(key).read()}
    fg = frontgate_factory(cfg, files)
    port = next(p for scheme, _, p in fg.listeners if scheme == "https")
    ca_file = ca.write_ca(d)
    first = listener_cert_serial(port, ca_file)
    # an established TLS connection keeps working across the rotation
    ctx = ssl.create_default_context(cafile=ca_file)
    kept = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                           server_hostname="localhost")
    crt2, key2 = ca.write_leaf(d, "tls2", cn="frontgate")
    fg.write("tls.crt", open(crt2).read())
    fg.write("tls.key", open(key2).read())
    fg.hup()
    second = listener_cert_serial(port, ca_file)
    assert first != second, "new connections must get the new certificate"
    kept.sendall(f"GET /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api_key}\r\n"
                 "Connection: close\r\n\r\n".encode())
    assert kept.recv(100).startswith(b"HTTP/1.1 200")
    kept.close()
    # a broken certificate on reload keeps the old one
    fg.write("tls.key", "not a key\n")
    fg.hup(expect_ok=False)
    assert listener_cert_serial(port, ca_file) == second
    assert "tls.key" in fg.log()


def limits_config(shard_url, limits):
    return f"""\
workers: 1
listeners:
  - address: 127.0.0.1:0
shards: [{{name: s, url: "{shard_url}"}}]
routes: [{{prefix: /, shard: s}}]
limits:
{limits}
"""


def closed_within(sock, seconds):
    """True when the peer closes sock within seconds (EOF or reset)."""
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_header_timeout_closes_a_slow_head(frontgate_factory, shard):
    fg = frontgate_factory(limits_config(shard.url, "  headerTimeout: 300ms\n  idleTimeout: 60s"))
    s = socket.create_connection(("127.0.0.1", fg.port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    start = time.monotonic()
    assert closed_within(s, 5)
    assert 0.2 < time.monotonic() - start < 3
    s.close()
    assert shard.snapshot() == []


def test_idle_timeout_closes_an_idle_keep_alive_connection(frontgate_factory, shard):
    fg = frontgate_factory(limits_config(shard.url, "  headerTimeout: 10s\n  idleTimeout: 300ms"))
    s = socket.create_connection(("127.0.0.1", fg.port))
    s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    start = time.monotonic()
    assert closed_within(s, 5)
    assert 0.2 < time.monotonic() - start < 3
    s.close()


def test_a_long_response_is_not_cut_by_the_timeouts(frontgate_factory, shard):
    """A watch outlives headerTimeout and idleTimeout: they are for heads and idle time."""
    fg = frontgate_factory(limits_config(shard.url, "  headerTimeout: 200ms\n  idleTimeout: 200ms"))
    s = socket.create_connection(("127.0.0.1", fg.port))
    s.sendall(b"GET /w/watch?chunks=4&delay_ms=300 HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = s.recv(65536)
        assert chunk, "the watch was cut"
        data += chunk
    assert data.count(b"\r\n{") + data.count(b"\n{") >= 1
    s.close()


@pytest.mark.concurrency
def test_max_connections_refuses_the_next_one(frontgate_factory, shard):
    fg = frontgate_factory(limits_config(shard.url, "  maxConnections: 3"))
    held = [socket.create_connection(("127.0.0.1", fg.port)) for _ in range(3)]
    for s in held:  # make sure all three are accepted and counted
        s.sendall(b"GET /h HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    extra = socket.create_connection(("127.0.0.1", fg.port))
    assert closed_within(extra, 5), "a fourth connection must be closed at once"
    extra.close()
    held.pop().close()
    # a slot is free again once a connection goes away
    deadline = time.monotonic() + 5
    while True:
        s = socket.create_connection(("127.0.0.1", fg.port))
        s.sendall(b"GET /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(2)
        try:
            got = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            got = b""
        s.close()
        if got.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert got.startswith(b"HTTP/1.1 200")
    for s in held:
        s.close()
