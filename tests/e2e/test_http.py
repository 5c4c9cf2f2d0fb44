"""HTTP/1.1 behaviour: bodies, streaming, upgrades, keep-alive, pipelining, framing attacks."""
import hashlib
import http.client
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import WS_CLUSTER, WS_PATH, RawClient, bearer

BIG = 5 * 1024 * 1024


def big_body():
    return os.urandom(BIG)


def head(method, target, key, extra=""):
    h = f"{method} {target} HTTP/1.1\r\nHost: fg.test\r\n"
    if key:
        h += f"Authorization: Bearer {key}\r\n"
    return (h + extra + "\r\n").encode()


# ---------------------------------------------------------------------------
# request bodies


def test_5mib_body_with_content_length(env):
    body = big_body()
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=20)
    conn.request("POST", f"/clusters/{WS_PATH}/big-body", body=body,
                 headers={**bearer(env.alice), "Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    assert resp.status == 200, data
    doc = json.loads(data)
    assert doc == {"sha256": hashlib.sha256(body).hexdigest(), "length": BIG, "chunked": False}


def test_5mib_chunked_upload_with_curl(env, tmp_path):
    body = big_body()
    p = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-T", "-", "-H", f"Authorization: Bearer {env.alice}",
         "-w", "\n%{http_code}", f"{env.fg.url}/clusters/{WS_PATH}/big-body"],
        input=body, capture_output=True, timeout=30,
    )
    assert p.returncode == 0, p.stderr
    text, _, code = p.stdout.decode().rpartition("\n")
    assert code == "200", p.stdout
    doc = json.loads(text)
    assert doc["sha256"] == hashlib.sha256(body).hexdigest()
    assert doc["length"] == BIG
    rec = env.shard.wait_for(lambda r: r.complete)
    assert rec.method == "PUT"
    assert rec.chunked, "curl -T - uploads chunked; frontgate should stream it chunked"


def test_5mib_chunked_upload_raw_with_odd_chunk_sizes(env):
    body = big_body()
    c = RawClient(env.port, timeout=20)
    c.send(head("POST", f"/clusters/{WS_PATH}/big-body", env.alice, "Transfer-Encoding: chunked\r\n"))
    sizes = [1, 7, 4096, 65535, 65536, 300000, 1 << 20]
    pos, i = 0, 0
    while pos < len(body):
        n = min(sizes[i % len(sizes)], len(body) - pos)
        c.send(b"%x;ext=1\r\n" % n + body[pos:pos + n] + b"\r\n")
        pos += n
        i += 1
    c.send(b"0\r\nX-Trailer: t\r\n\r\n")
    r = c.read_response()
    c.close()
    assert r.status == 200, r
    assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert r.json()["length"] == BIG


def test_5mib_body_with_expect_100_continue(env):
    body = big_body()
    c = RawClient(env.port, timeout=20)
    c.send(head("POST", f"/clusters/{WS_PATH}/big-body", env.alice,
                f"Content-Length: {BIG}\r\nExpect: 100-continue\r\n"))
    interim = c.read_head()
    assert interim.status == 100, "frontgate must answer 100 Continue before the body is sent"
    c.send(body)
    r = c.read_response()
    c.close()
    assert r.status == 200, r
    assert r.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": BIG, "chunked": False}


def test_5mib_body_with_curl_expect_100_continue(env, tmp_path):
    body = big_body()
    f = tmp_path / "body.bin"
    f.write_bytes(body)
    p = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-H", f"Authorization: Bearer {env.alice}",
         "-H", "Expect: 100-continue", "--expect100-timeout", "10",
         "--data-binary", f"@{f}", "-w", "\n%{http_code}",
         f"{env.fg.url}/clusters/{WS_PATH}/big-body"],
        capture_output=True, timeout=30,
    )
    assert p.returncode == 0, p.stderr
    text, _, code = p.stdout.decode().rpartition("\n")
    assert code == "200", p.stdout
    assert json.loads(text)["sha256"] == hashlib.sha256(body).hexdigest()


def test_expect_100_continue_refused_request_gets_no_100(env):
    """A request answered locally (401) must not invite the body with 100 Continue."""
    c = RawClient(env.port)
    c.send(head("POST", f"/clusters/{WS_PATH}/big-body", None,
                f"Content-Length: {BIG}\r\nExpect: 100-continue\r\n"))
    r = c.read_response(allow_interim=True)
    c.close()
    assert r.status == 401, r
    assert env.shard.snapshot() == []


# ---------------------------------------------------------------------------
# streaming responses


def read_chunked_timed(c):
    """Reads a chunked body; returns [(t, line)] with the arrival time of each complete line."""
    out, pending = [], b""
    while True:
        line = c.rd.read_until(b"\r\n")
        assert line is not None, "connection closed inside a chunked body"
        size = int(line[:-2].split(b";")[0], 16)
        if size == 0:
            assert c.rd.read_until(b"\r\n") == b"\r\n"
            return out
        data = c.rd.read_exact(size + 2)
        t = time.monotonic()
        pending += data[:-2]
        while b"\n" in pending:
            ln, pending = pending.split(b"\n", 1)
            out.append((t, ln))


def test_watch_chunks_stream_as_they_are_sent(env):
    c = RawClient(env.port)
    t0 = time.monotonic()
    c.send(head("GET", f"/clusters/{WS_PATH}/api/v1/pods/watch?chunks=5&delay_ms=300", env.alice))
    r = c.read_head()
    assert r.status == 200, r
    assert (r.value("Transfer-Encoding") or "").lower() == "chunked", r.headers
    events = read_chunked_timed(c)
    c.close()
    assert [json.loads(ln)["n"] for _, ln in events] == [0, 1, 2, 3, 4]
    first, last = events[0][0], events[-1][0]
    assert first - t0 < 0.8, "the first event was held back"
    assert last - first >= 1.0, f"events arrived together ({last - first:.3f}s apart): buffered, not streamed"


def test_watch_streams_with_curl(env):
    """curl -N prints events as they come: the first line shows up long before the end."""
    p = subprocess.Popen(
        ["curl", "-sS", "-N", "--max-time", "10", "-H", f"Authorization: Bearer {env.alice}",
         f"{env.fg.url}/clusters/{WS_PATH}/api/v1/pods/watch?chunks=4&delay_ms=350"],
        stdout=subprocess.PIPE,
    )
    times = []
    for line in iter(p.stdout.readline, b""):
        times.append((time.monotonic(), json.loads(line)["n"]))
    assert p.wait(10) == 0
    assert [n for _, n in times] == [0, 1, 2, 3]
    assert times[-1][0] - times[0][0] >= 1.0


def test_close_delimited_response_streams_and_completes(env):
    c = RawClient(env.port)
    c.send(head("GET", f"/clusters/{WS_PATH}/logs/slow-close?parts=4&delay_ms=200", env.alice))
    r = c.read_head()
    assert r.status == 200, r
    if (r.value("Transfer-Encoding") or "").lower() == "chunked":
        events = read_chunked_timed(c)
    else:
        events = []
        data = c.rd.read_to_eof()
        events = [(time.monotonic(), ln) for ln in data.split(b"\n") if ln]
    c.close()
    assert [ln for _, ln in events] == [b"part-0", b"part-1", b"part-2", b"part-3"]
    assert events[-1][0] - events[0][0] >= 0.45, "close-delimited body was buffered"


# ---------------------------------------------------------------------------
# upgrades


def test_upgrade_tunnel_round_trips_bytes_both_ways(env):
    c = RawClient(env.port)
    c.send(head("GET", f"/clusters/{WS_PATH}/api/v1/namespaces/x/pods/p/exec/upgrade", env.alice,
                "Connection: Upgrade\r\nUpgrade: websocket\r\n"))
    r = c.read_head()
    assert r.status == 101, r
    assert "upgrade" in (r.value("Connection") or "").lower(), r.headers
    assert (r.value("Upgrade") or "").lower() == "websocket", r.headers
    rec = env.shard.wait_for(lambda x: x.path.endswith("/upgrade"))
    assert rec.target.startswith(f"/clusters/{WS_CLUSTER}/")
    assert rec.values("X-Remote-User") == ["alice"]
    assert rec.values("Authorization") == []
    # shard -> client first: the greeting the shard sent right after 101
    assert c.rd.read_exact(len(b"shard-hello\n")) == b"shard-hello\n"
    # client -> shard -> client
    for msg in (b"ping-1\n", b"\x00\x01\xffbinary\r\n\r\n", b"x" * 70000):
        c.send(msg)
        assert c.rd.read_exact(len(msg)) == msg
    big = os.urandom(1 << 20)
    sender = threading.Thread(target=c.send, args=(big,))
    sender.start()
    echoed = c.rd.read_exact(len(big))
    sender.join(10)
    assert echoed == big
    # the shard saw every byte, in order
    with env.shard._cond:
        got = bytes(env.shard.tunnel_received)
    assert got == b"ping-1\n" + b"\x00\x01\xffbinary\r\n\r\n" + b"x" * 70000 + big
    # half-close: the shard closes its side, frontgate closes ours
    c.sock.shutdown(socket.SHUT_WR)
    assert c.closed(5), "tunnel not closed after both sides finished"
    c.close()


def test_upgrade_refused_by_shard_is_an_ordinary_response(env):
    c = RawClient(env.port)
    c.send(head("GET", f"/clusters/{WS_PATH}/upgrade", env.alice, "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"))
    r = c.read_response()
    c.close()
    assert r.status == 400, r
    assert "expected" in r.json()["error"]


def test_upgrade_without_credentials_is_401(env):
    c = RawClient(env.port)
    c.send(head("GET", f"/clusters/{WS_PATH}/upgrade", None, "Connection: Upgrade\r\nUpgrade: websocket\r\n"))
    r = c.read_response()
    c.close()
    assert r.status == 401, r
    assert env.shard.snapshot() == []


# ---------------------------------------------------------------------------
# keep-alive and pipelining


def test_keep_alive_serves_many_requests_on_one_connection(env):
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=10)
    sock = None
    for i in range(6):
        method = "POST" if i % 2 else "GET"
        body = b"b%d" % i if method == "POST" else None
        conn.request(method, f"/clusters/{WS_PATH}/api/v1/items?i={i}", body=body, headers=bearer(env.alice))
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == 200, data
        assert json.loads(data)["target"] == f"/clusters/{WS_CLUSTER}/api/v1/items?i={i}"
        assert (resp.getheader("Connection") or "").lower() != "close"
        if sock is None:
            sock = conn.sock
        assert conn.sock is sock, f"request {i} needed a new connection"
    local = conn.sock.getsockname()
    conn.close()
    recs = env.shard.wait_count(6)
    assert sorted(r.query for r in recs) == [f"i={i}" for i in range(6)]
    assert local[0] == "127.0.0.1"


def test_keep_alive_after_local_responses(env):
    """401s and health checks answered by frontgate keep the connection usable."""
    c = RawClient(env.port)
    c.send(head("GET", "/healthz", None))
    assert c.read_response().status == 200
    c.send(head("GET", f"/clusters/{WS_PATH}/api", None))
    assert c.read_response().status == 401
    c.send(head("GET", f"/clusters/{WS_PATH}/api?after=401", env.alice))
    r = c.read_response()
    c.close()
    assert r.status == 200, r
    assert env.shard.wait_for(lambda x: x.query == "after=401").complete


def test_pipelined_requests_are_answered_in_order(env):
    c = RawClient(env.port)
    c.send(
        head("GET", f"/clusters/{WS_PATH}/api/slow?ms=300&n=1", env.alice)
        + head("POST", f"/clusters/{WS_PATH}/api?n=2", env.alice, "Content-Length: 5\r\n") + b"hello"
        + head("GET", f"/clusters/{WS_PATH}/api?n=3", env.alice)
    )
    r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
    c.close()
    assert [r1.status, r2.status, r3.status] == [200, 200, 200]
    assert r1.json()["target"].endswith("n=1")
    assert r2.json()["target"].endswith("n=2") and r2.json()["body_len"] == 5
    assert r3.json()["target"].endswith("n=3")
    assert len(env.shard.wait_count(3)) == 3


def test_pipelined_pair_in_one_send(env):
    c = RawClient(env.port)
    c.send(head("GET", f"/clusters/{WS_PATH}/api?n=1", env.alice) + head("GET", f"/clusters/{WS_PATH}/api?n=2", env.alice))
    r1, r2 = c.read_response(), c.read_response()
    c.close()
    assert r1.json()["target"].endswith("?n=1") and r2.json()["target"].endswith("?n=2")


# ---------------------------------------------------------------------------
# framing attacks


def assert_400_and_closed(c, env):
    r = c.read_response()
    assert r.status == 400, r
    assert r.json()["code"] == 400
    assert (r.value("Connection") or "").lower() == "close", r.headers
    assert c.closed(3), "connection left open after a framing error"
    c.close()
    time.sleep(0.1)
    assert [x for x in env.shard.snapshot() if x.complete] == [], env.shard.snapshot()
    assert env.shard.errors == []


@pytest.mark.parametrize(
    "framing",
    [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n",
    ],
    ids=["cl-then-te", "te-then-cl", "cl-te-list"],
)
def test_content_length_with_transfer_encoding_is_400(env, framing):
    c = RawClient(env.port)
    c.send(head("POST", f"/clusters/{WS_PATH}/api", env.alice, framing) + b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_400_and_closed(c, env)


@pytest.mark.parametrize(
    "framing",
    ["Content-Length: 5\r\nContent-Length: 6\r\n", "Content-Length: 5, 6\r\n"],
    ids=["two-headers", "list"],
)
def test_two_different_content_lengths_is_400(env, framing):
    c = RawClient(env.port)
    c.send(head("POST", f"/clusters/{WS_PATH}/api", env.alice, framing) + b"helloX")
    assert_400_and_closed(c, env)


@pytest.mark.parametrize(
    "te", ["Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding: gzip\r\n",
           "Transfer-Encoding: xchunked\r\n"],
    ids=["twice", "not-chunked", "xchunked"],
)
def test_bad_transfer_encoding_is_400(env, te):
    c = RawClient(env.port)
    c.send(head("POST", f"/clusters/{WS_PATH}/api", env.alice, te) + b"0\r\n\r\n")
    assert_400_and_closed(c, env)


MALFORMED_CHUNKS = {
    "non-hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "negative": b"-5\r\nhello\r\n0\r\n\r\n",
    "0x-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "overflow": b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "space-inside": b"5 5\r\nhello\r\n0\r\n\r\n",
    "after-good-chunk": b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n",
    "empty-size": b"\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("body", list(MALFORMED_CHUNKS.values()), ids=list(MALFORMED_CHUNKS.keys()))
def test_malformed_chunk_size_is_refused_and_not_forwarded(env, body):
    c = RawClient(env.port)
    c.send(head("POST", f"/clusters/{WS_PATH}/big-body", env.alice, "Transfer-Encoding: chunked\r\n") + body)
    try:
        r = c.read_response()
    except ConnectionError:
        r = None  # closed without an answer is acceptable too
    if r is not None:
        assert r.status == 400, r
        assert c.closed(3)
    c.close()
    time.sleep(0.2)
    assert env.shard.errors == [], env.shard.errors
    assert [x for x in env.shard.snapshot() if x.complete] == [], "a malformed body completed at the shard"


def test_chunk_data_without_crlf_is_refused(env):
    """'5\\r\\nhelloXX...' : the chunk is not followed by CRLF; a lenient parser smuggles."""
    c = RawClient(env.port)
    c.send(head("POST", f"/clusters/{WS_PATH}/big-body", env.alice, "Transfer-Encoding: chunked\r\n")
           + b"5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n")
    try:
        r = c.read_response()
    except ConnectionError:
        r = None
    if r is not None:
        assert r.status == 400, r
    c.close()
    time.sleep(0.2)
    assert env.shard.errors == []
    assert [x for x in env.shard.snapshot() if x.complete] == [], env.shard.snapshot()


@pytest.mark.parametrize("shape", ["many-headers", "one-huge-header"])
def test_200kib_of_headers_is_431_and_closes(env, shape):
    if shape == "many-headers":
        extra = "".join(f"X-Pad-{i}: {'a' * 1000}\r\n" for i in range(210))
    else:
        extra = f"X-Pad: {'a' * (200 * 1024)}\r\n"
    c = RawClient(env.port)
    data = head("GET", f"/clusters/{WS_PATH}/api", env.alice, extra)
    assert len(data) > 200 * 1024

    def send():
        try:
            c.send(data)
        except OSError:
            pass

    t = threading.Thread(target=send)
    t.start()
    r = c.read_response()
    t.join(5)
    assert r.status == 431, r
    assert (r.value("Connection") or "").lower() == "close"
    assert c.closed(3)
    c.close()
    assert env.shard.snapshot() == []


def test_http10_request_without_host_is_served(env):
    c = RawClient(env.port)
    c.send(f"GET /clusters/{WS_PATH}/api HTTP/1.0\r\nAuthorization: Bearer {env.alice}\r\n\r\n".encode())
    r = c.read_response()
    assert r.status == 200, r
    assert c.closed(3)
    c.close()


def test_http11_without_host_is_400(env):
    c = RawClient(env.port)
    c.send(f"GET /clusters/{WS_PATH}/api HTTP/1.1\r\nAuthorization: Bearer {env.alice}\r\n\r\n".encode())
    assert_400_and_closed(c, env)
