"""
Hostile request heads and bodies (the Reliability issue's review findings): every one is
answered as RFC 9112 says, and nothing a client smuggles reaches the shard. The shard
trusts what frontgate stamps, so each test also checks the exact bytes the shard read.
"""
import socket
import threading

import pytest

from conftest import WS_CLUSTER, WS_PATH, RawClient, closed_port, new_key, key_line, std_config

API = f"/clusters/{WS_PATH}/api/v1/namespaces/x/pods"


def head(key, method="GET", target=API, version="HTTP/1.1", extra=""):
    h = f"{method} {target} {version}\r\nHost: fg.test\r\nAuthorization: Bearer {key}\r\n"
    return (h + extra + "\r\n").encode()


def send(env, data):
    """Sends raw bytes; returns the response and whether frontgate closed the connection."""
    c = RawClient(env.port)
    c.send(data)
    r = c.read_response()
    closed = c.closed(3)
    c.close()
    return r, closed


def assert_refused(env, data, status=400):
    """The request is answered `status`, the connection closes, and the shard saw nothing."""
    r, closed = send(env, data)
    assert r.status == status, r
    assert closed, "frontgate kept a connection open after a malformed request"
    assert env.shard.snapshot() == [], "a malformed request reached the shard"
    return r


def served(env, data):
    r, _ = send(env, data)
    assert r.status == 200, r
    return env.shard.wait_for(lambda x: x.complete)


# ---------------------------------------------------------------------------
# 2. field names: only tchar, the colon right after


@pytest.mark.parametrize("line", [
    "X-Remote-User : evil",      # space before the colon
    "X-Remote-User\t: evil",
    "X Remote-User: evil",       # space inside the name
    "X-Remote-User\x00: evil",
    "X-Remote(User): evil",
], ids=["sp-before-colon", "tab-before-colon", "sp-in-name", "nul-in-name", "paren-in-name"])
def test_invalid_field_name_is_400(env, line):
    assert_refused(env, head(env.alice, extra=line + "\r\n"))


def test_whitespace_line_after_the_request_line_is_400(env):
    data = f"GET {API} HTTP/1.1\r\n X-Remote-User: evil\r\nHost: fg.test\r\n" \
           f"Authorization: Bearer {env.alice}\r\n\r\n"
    assert_refused(env, data.encode())


def test_obs_fold_is_400(env):
    assert_refused(env, head(env.alice, extra="X-A: a\r\n X-Remote-User: evil\r\n"))


# ---------------------------------------------------------------------------
# 3. bare CR (and bare LF) anywhere in the head


@pytest.mark.parametrize("extra", [
    "X-A:\rX-Remote-User: evil\r\n",
    "X-A: b\rc\r\n",
    "X-A: b\r\r\n",
], ids=["cr-then-name", "cr-in-value", "cr-before-crlf"])
def test_bare_cr_in_the_head_is_400(env, extra):
    assert_refused(env, head(env.alice, extra=extra))


def test_bare_cr_in_the_request_line_is_400(env):
    assert_refused(env, f"GET {API}\r HTTP/1.1\r\nHost: fg.test\r\n\r\n".encode())


def test_bare_lf_is_400(env):
    assert_refused(env, f"GET {API} HTTP/1.1\nHost: fg.test\r\nAuthorization: Bearer {env.alice}\r\n\r\n".encode())


# ---------------------------------------------------------------------------
# 4. Host, and absolute-form request-targets


@pytest.mark.parametrize("host", ["user@fg.test", "fg.test evil", "a.test,b.test", "fg.test:99999",
                                  "[::1", "fg.test:80x"])
def test_invalid_host_is_400(env, host):
    data = f"GET {API} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {env.alice}\r\n\r\n"
    assert_refused(env, data.encode())


def test_absolute_form_is_routed_on_its_path_and_its_authority_replaces_host(env):
    target = f"http://catalog.example:8443{API}?limit=1"
    rec = served(env, head(env.alice, target=target))
    assert rec.target == f"/clusters/{WS_CLUSTER}/api/v1/namespaces/x/pods?limit=1", rec.target
    assert rec.values("Host") == ["catalog.example:8443"], rec.headers
    assert rec.values("X-Forwarded-Host") == ["catalog.example:8443"], rec.headers
    assert rec.values("X-Remote-User") == ["alice"]


@pytest.mark.parametrize("target", [f"http://user@fg.test{API}", f"ftp://fg.test{API}", "*"])
def test_bad_absolute_form_is_400(env, target):
    assert_refused(env, head(env.alice, target=target))


# ---------------------------------------------------------------------------
# 5. request-target bytes


@pytest.mark.parametrize("target", [API + "\tx", API + "\x0cx", API + "/caf\xe9", API + "?q=\x80",
                                    API + "\x7f", API + "#frag", API + "/%zz"],
                         ids=["htab", "ff", "latin1", "high-byte-query", "del", "fragment", "bad-pct"])
def test_target_with_control_or_non_ascii_bytes_is_400(env, target):
    assert_refused(env, head(env.alice, target=target).decode("latin-1").encode("latin-1"))


# ---------------------------------------------------------------------------
# 6. HTTP version and HTTP/1.0 with Transfer-Encoding


@pytest.mark.parametrize("version", ["HZZZ/1.1", "http/1.1", "HTTP/1.1 ", "HTTP/11"])
def test_http_name_must_be_exactly_http(env, version):
    assert_refused(env, head(env.alice, version=version))


def test_http_1_0_with_transfer_encoding_is_faulty_framing(env):
    data = (f"POST {API} HTTP/1.0\r\nAuthorization: Bearer {env.alice}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").encode()
    assert_refused(env, data)


# ---------------------------------------------------------------------------
# 7. Upgrade: only the protocols a route tunnels


def test_h2c_upgrade_is_not_forwarded(env):
    c = RawClient(env.port)
    c.send(head(env.alice, extra="Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                                 "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"))
    r = c.read_response()
    assert r.status == 200, r  # served as HTTP/1.1: no 101, no tunnel
    rec = env.shard.wait_for(lambda x: x.complete)
    for name in ("Upgrade", "HTTP2-Settings", "Connection"):
        assert rec.values(name) == [], rec.headers
    # the connection speaks HTTP/1.1 on: an HTTP/2 preface now is a malformed request
    c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    r = c.read_response()
    assert r.status in (400, 505), r
    c.close()
    assert len(env.shard.snapshot()) == 1


def test_unlisted_upgrade_protocol_is_not_forwarded(env):
    rec = served(env, head(env.alice, extra="Connection: Upgrade\r\nUpgrade: foo/1\r\n"))
    assert rec.values("Upgrade") == [] and rec.values("Connection") == [], rec.headers


def test_route_upgrades_list_is_honoured(shard, frontgate_factory):
    alice = new_key()
    cfg = std_config(shard.url).replace("    workspace: path\n", "    workspace: path\n    upgrades: []\n", 1)
    fg = frontgate_factory(cfg, {"keys.txt": key_line("alice", alice) + "\n"})
    c = RawClient(fg.port)
    c.send(head(alice, target=f"/clusters/{WS_PATH}/upgrade", extra="Connection: Upgrade\r\nUpgrade: websocket\r\n"))
    r = c.read_response()
    c.close()
    assert r.status == 400, r  # the shard answered without an upgrade: none was forwarded
    rec = shard.wait_for(lambda x: x.complete)
    assert rec.values("Upgrade") == [], rec.headers


def test_h2c_in_a_route_upgrades_list_is_a_config_error(frontgate_factory, tmp_path):
    import subprocess
    from conftest import FRONTGATE_BIN
    cfg = std_config("http://127.0.0.1:1", keys=False).replace(
        "    workspace: path\n", "    workspace: path\n    upgrades: [websocket, h2c]\n", 1)
    p = tmp_path / "c.yaml"
    p.write_text(cfg)
    out = subprocess.run([FRONTGATE_BIN, "check", "-c", str(p)], capture_output=True, text=True)
    assert out.returncode != 0
    assert "c.yaml:" in out.stderr and "h2c cannot be tunnelled" in out.stderr, out.stderr


# ---------------------------------------------------------------------------
# 8. retries: never a request that is not idempotent


class DroppingShard:
    """Answers the first request on a connection with keep-alive, then reads the next
    request whole and closes without answering. Counts the requests it read by method."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.url = f"http://127.0.0.1:{self.lsock.getsockname()[1]}"
        self.seen = []
        self.lock = threading.Lock()
        self.stop = False
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _read_request(self, s, buf):
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                return None, buf
            buf += d
        h, _, rest = buf.partition(b"\r\n\r\n")
        lines = h.split(b"\r\n")
        n = 0
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
        while len(rest) < n:
            d = s.recv(65536)
            if not d:
                return None, rest
            rest += d
        return lines[0].split(b" ")[0].decode(), rest[n:]

    def _loop(self):
        self.lsock.settimeout(0.2)
        while not self.stop:
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        buf = b""
        first = True
        try:
            while True:
                method, buf = self._read_request(s, buf)
                if method is None:
                    return
                with self.lock:
                    self.seen.append(method)
                if not first:
                    return  # read it, then drop the connection without a byte of answer
                first = False
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        finally:
            s.close()

    def close(self):
        self.stop = True
        self.lsock.close()
        self.t.join(2)


@pytest.fixture
def dropping():
    d = DroppingShard()
    yield d
    d.close()


def _through_reused_connection(frontgate_factory, dropping, method, body):
    alice = new_key()
    cfg = std_config(dropping.url).replace("workers: 2", "workers: 1")
    fg = frontgate_factory(cfg, {"keys.txt": key_line("alice", alice) + "\n"})
    c = RawClient(fg.port)
    c.send(head(alice))
    assert c.read_response().status == 200  # leaves a kept-alive shard connection in the pool
    extra = f"Content-Length: {len(body)}\r\n" if body is not None else ""
    c.send(head(alice, method=method, extra=extra) + (body or b""))
    r = c.read_response()
    c.close()
    return r


def test_post_read_then_dropped_is_not_sent_again(frontgate_factory, dropping):
    r = _through_reused_connection(frontgate_factory, dropping, "POST", b"")
    assert r.status == 502, r
    assert dropping.seen == ["GET", "POST"], dropping.seen


def test_post_with_body_read_then_dropped_is_not_sent_again(frontgate_factory, dropping):
    r = _through_reused_connection(frontgate_factory, dropping, "POST", b"create-once")
    assert r.status == 502, r
    assert dropping.seen == ["GET", "POST"], dropping.seen


def test_idempotent_request_on_a_dropped_reused_connection_is_retried_once(frontgate_factory, dropping):
    r = _through_reused_connection(frontgate_factory, dropping, "GET", None)
    assert r.status == 200, r  # the retry went to a fresh connection, which answers
    assert dropping.seen == ["GET", "GET", "GET"], dropping.seen


# ---------------------------------------------------------------------------
# 9. every Connection line counts


def test_headers_named_by_any_connection_line_are_dropped(env):
    extra = "".join(f"Connection: x-drop-{i}\r\nX-Drop-{i}: v\r\n" for i in range(12))
    rec = served(env, head(env.alice, extra=extra + "X-Kept: k\r\n"))
    names = {n.lower() for n in rec.names()}
    assert not any(n.startswith("x-drop-") for n in names), rec.headers
    assert rec.values("X-Kept") == ["k"]


def test_too_many_connection_options_are_400(env):
    opts = ",".join(f"o{i}" for i in range(65))
    assert_refused(env, head(env.alice, extra=f"Connection: {opts}\r\n"))


# ---------------------------------------------------------------------------
# 10. reserved names spelled with underscores


def test_underscore_spellings_of_reserved_headers_never_reach_the_shard(env):
    extra = ("X_Remote_User: system:admin\r\nX-Remote_Group: system:masters\r\n"
             "x_remote_extra_scopes: cluster:evil\r\nX_Forwarded_For: 10.0.0.1\r\n"
             "X_Forwarded_Host: evil.example\r\nX_Real_IP: 10.0.0.2\r\nContent_Length: 9\r\n"
             "Transfer_Encoding: chunked\r\nX_Forwarded_Prefix: /evil\r\nKeep_Alive: 5\r\n"
             "X-Custom_Name: kept\r\n")
    rec = served(env, head(env.alice, extra=extra))
    for name, _ in rec.headers:
        if "_" in name:
            assert name == "X-Custom_Name", rec.headers
    assert rec.values("X-Remote-User") == ["alice"]
    assert rec.values("X-Forwarded-For") == ["127.0.0.1"]
    assert rec.values("X-Custom_Name") == ["kept"]


# ---------------------------------------------------------------------------
# 11. chunk extensions and Transfer-Encoding whitespace


def chunked_post(key, chunks, te="chunked"):
    body = b"".join(chunks) + b"0\r\n\r\n"
    return head(key, method="POST", extra=f"Transfer-Encoding:{te}\r\n") + body


def test_chunk_extension_over_4k_is_400(env):
    r, closed = send(env, chunked_post(env.alice, [b"5;" + b"x" * 5000 + b"\r\nhello\r\n"]))
    assert r.status == 400, r
    assert closed


def test_chunk_extensions_within_the_bound_pass(env):
    rec = served(env, chunked_post(env.alice, [b"5;a=" + b"x" * 3000 + b"\r\nhello\r\n"] * 3))
    assert rec.body == b"hello" * 3


def test_bws_before_a_chunk_extension_is_accepted(env):
    rec = served(env, chunked_post(env.alice, [b"5 ;name=v\r\nhello\r\n", b"6\t;x\r\n world\r\n"]))
    assert rec.body == b"hello world"


@pytest.mark.parametrize("te", ["  chunked  ", "\tchunked", "Chunked "])
def test_ows_around_transfer_encoding_is_accepted(env, te):
    rec = served(env, chunked_post(env.alice, [b"2\r\nhi\r\n"], te=te))
    assert rec.body == b"hi"


def test_space_after_chunk_size_without_extension_is_400(env):
    r, closed = send(env, chunked_post(env.alice, [b"5 \r\nhello\r\n"]))
    assert r.status == 400, r
