"""Authentication, identity headers, workspace routing and the error bodies."""
import json
from collections import Counter

import pytest

from conftest import (
    ALICE_GROUPS,
    DEAD_PATH,
    WS_CLUSTER,
    WS_PATH,
    assert_unauthorized,
    bearer,
    new_key,
    raw_request,
    request,
    std_config,
)

QUERY = "limit=5&labelSelector=app%3Dweb&watch=false"




def assert_forwarded_identity(rec, port, user, groups):
    assert rec.values("X-Remote-User") == [user], rec.headers
    assert Counter(rec.values("X-Remote-Group")) == Counter(list(groups) + ["system:authenticated"]), rec.headers
    assert rec.values("Authorization") == [], "Authorization reached the shard after frontgate validated it"
    assert rec.values("X-Forwarded-For") == ["127.0.0.1"], rec.headers
    assert rec.values("X-Forwarded-Proto") == ["http"], rec.headers
    assert rec.values("X-Forwarded-Host") == [f"127.0.0.1:{port}"], rec.headers


@pytest.mark.parametrize("ws", [WS_PATH, WS_CLUSTER], ids=["workspace-path", "cluster-id"])
def test_valid_key_forwards_rewritten_path_and_identity(env, ws):
    r = request(env.port, "GET", f"/clusters/{ws}/api/v1/namespaces?{QUERY}", bearer(env.alice))
    assert r.status == 200, r
    rec = env.shard.wait_for(lambda x: x.complete)
    assert rec.method == "GET"
    assert rec.target == f"/clusters/{WS_CLUSTER}/api/v1/namespaces?{QUERY}"
    assert_forwarded_identity(rec, env.port, "alice", ALICE_GROUPS)
    # the shard's answer reaches the client unchanged
    assert r.json()["target"] == rec.target
    line = env.fg.wait_log(r"access method=GET path=/clusters/\S+ status=200 ")
    assert "user=alice" in line.string and "authn=ops-keys" in line.string


def test_key_without_groups_gets_only_system_authenticated(env):
    r = request(env.port, "GET", f"/clusters/{WS_PATH}/api", bearer(env.keys["bob"]))
    assert r.status == 200, r
    rec = env.shard.wait_for(lambda x: x.complete)
    assert rec.values("X-Remote-User") == ["bob"]
    assert rec.values("X-Remote-Group") == ["system:authenticated"]


def test_no_key_is_401(env):
    r = request(env.port, "GET", f"/clusters/{WS_PATH}/api/v1/namespaces")
    assert_unauthorized(r)
    assert env.shard.snapshot() == []


@pytest.mark.parametrize(
    "auth",
    ["Bearer {tok}", "bearer {tok}", "Basic {tok}", "Bearer  {tok} "],
    ids=["bearer", "lowercase-bearer", "basic", "extra-spaces"],
)
def test_wrong_key_is_401_and_never_echoed_or_logged(env, auth):
    tok = "fgk_WRONG" + new_key()[4:]
    r = request(env.port, "GET", f"/clusters/{WS_PATH}/api/v1/pods", {"Authorization": auth.format(tok=tok)})
    assert_unauthorized(r)
    raw = json.dumps(r.headers).encode() + r.body
    assert tok.encode() not in raw
    env.fg.wait_log(r"access method=GET path=/clusters/\S+ status=401")
    assert tok not in env.fg.log()
    assert tok[:20] not in env.fg.log()
    assert env.shard.snapshot() == []


def test_wrong_key_on_raw_socket_response_has_no_token(env):
    tok = "fgk_WRONG" + new_key()[4:]
    r, c = raw_request(
        env.port,
        f"GET /clusters/{WS_PATH}/api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n".encode(),
    )
    c.close()
    assert_unauthorized(r)
    assert tok.encode() not in r.body
    assert all(tok not in v for _, v in r.headers)


SPOOFED = [
    ("X-Remote-User", "system:admin"),
    ("x-remote-group", "system:masters"),
    ("X-REMOTE-EXTRA-foo", "bar"),
    ("X-Remote-Uid", "0"),
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Port", "1"),
    ("Forwarded", "for=6.6.6.6;host=evil.example;proto=https"),
]


def spoofed_request(port, auth=None):
    head = f"GET /clusters/{WS_PATH}/api/v1/secrets HTTP/1.1\r\nHost: fg.test\r\n"
    if auth:
        head += f"Authorization: {auth}\r\n"
    for k, v in SPOOFED:
        head += f"{k}: {v}\r\n"
    return raw_request(port, (head + "\r\n").encode())


def assert_no_spoofed(rec):
    names = [n.lower() for n in rec.names()]
    assert "forwarded" not in names, rec.headers
    assert "x-remote-uid" not in names, rec.headers
    assert not any(n.startswith("x-remote-extra-") for n in names), rec.headers
    assert "system:admin" not in rec.values("X-Remote-User")
    assert "system:masters" not in rec.values("X-Remote-Group")
    assert rec.values("X-Forwarded-For") == ["127.0.0.1"], rec.headers
    assert rec.values("X-Forwarded-Host") == ["fg.test"], rec.headers
    assert rec.values("X-Forwarded-Proto") == ["http"], rec.headers
    assert "1" not in rec.values("X-Forwarded-Port"), rec.headers
    for _, v in rec.headers:
        assert "6.6.6.6" not in v and "evil.example" not in v, rec.headers


def test_spoofed_identity_headers_never_reach_the_shard(env):
    r, c = spoofed_request(env.port, f"Bearer {env.alice}")
    c.close()
    assert r.status == 200, r
    rec = env.shard.wait_for(lambda x: x.complete)
    assert_no_spoofed(rec)
    assert rec.values("X-Remote-User") == ["alice"]
    assert Counter(rec.values("X-Remote-Group")) == Counter(list(ALICE_GROUPS) + ["system:authenticated"])


def test_spoofed_headers_without_credentials_get_401(env):
    r, c = spoofed_request(env.port)
    c.close()
    assert_unauthorized(r)
    assert env.shard.snapshot() == []


def test_passthrough_mode_strips_identity_and_keeps_authorization(shard, frontgate_factory):
    fg = frontgate_factory(std_config(shard.url, keys=False))
    auth = "Bearer some.opaque-token_for+the/shard=="
    r, c = spoofed_request(fg.port, auth)
    c.close()
    assert r.status == 200, r
    rec = shard.wait_for(lambda x: x.complete)
    assert rec.target == f"/clusters/{WS_CLUSTER}/api/v1/secrets"
    assert_no_spoofed(rec)
    assert rec.values("X-Remote-User") == [], rec.headers
    assert rec.values("X-Remote-Group") == [], rec.headers
    assert rec.values("Authorization") == [auth], rec.headers


def test_passthrough_mode_without_authorization(shard, frontgate_factory):
    fg = frontgate_factory(std_config(shard.url, keys=False))
    r, c = spoofed_request(fg.port)
    c.close()
    assert r.status == 200, r
    rec = shard.wait_for(lambda x: x.complete)
    assert_no_spoofed(rec)
    assert not any(n.lower().startswith("x-remote-") for n in rec.names()), rec.headers
    assert rec.values("Authorization") == []


def test_impersonation_headers_pass_to_the_shard(env):
    r = request(
        env.port, "GET", f"/clusters/{WS_PATH}/api",
        {**bearer(env.alice), "Impersonate-User": "carol", "Impersonate-Group": "qa"},
    )
    assert r.status == 200, r
    rec = env.shard.wait_for(lambda x: x.complete)
    assert rec.values("Impersonate-User") == ["carol"]
    assert rec.values("Impersonate-Group") == ["qa"]
    assert rec.values("X-Remote-User") == ["alice"]


@pytest.mark.parametrize("ws", ["root:nope", "nosuchcluster", "root:org:team:child"])
def test_unknown_workspace_is_403_for_an_authenticated_caller(env, ws):
    r = request(env.port, "GET", f"/clusters/{ws}/api/v1/namespaces", bearer(env.alice))
    assert r.status == 403, r
    doc = r.json()
    assert doc["kind"] == "Status" and doc["apiVersion"] == "v1"
    assert doc["status"] == "Failure"
    assert doc["reason"] == "Forbidden"
    assert doc["code"] == 403
    assert doc["message"].endswith("workspace access not permitted"), doc
    assert env.shard.snapshot() == []


@pytest.mark.parametrize("ws", ["root:nope", "nosuchcluster"])
@pytest.mark.parametrize("cred", ["none", "wrong"])
def test_unknown_workspace_is_401_for_an_unauthenticated_caller(env, ws, cred):
    headers = bearer("fgk_WRONG" + new_key()[4:]) if cred == "wrong" else {}
    r = request(env.port, "GET", f"/clusters/{ws}/api/v1/namespaces", headers)
    assert_unauthorized(r)
    assert env.shard.snapshot() == []


def test_dead_shard_is_502_without_internal_detail(env):
    r = request(env.port, "GET", f"/clusters/{DEAD_PATH}/api/v1/namespaces", bearer(env.alice))
    assert r.status == 502, r
    doc = r.json()
    assert doc["kind"] == "Status" and doc["status"] == "Failure" and doc["code"] == 502, doc
    assert doc["reason"] == "ServiceUnavailable", doc
    text = r.body.decode()
    for leak in ("127.0.0.1", "refused", "errno", "dead"):
        assert leak not in text, text
    # frontgate itself keeps serving
    r2 = request(env.port, "GET", f"/clusters/{WS_PATH}/api", bearer(env.alice))
    assert r2.status == 200


def test_dead_shard_unauthenticated_is_401(env):
    r = request(env.port, "GET", f"/clusters/{DEAD_PATH}/api")
    assert_unauthorized(r)


def test_non_workspace_route_forwards_path_unchanged(env):
    r = request(env.port, "GET", "/version?x=1", bearer(env.alice))
    assert r.status == 200, r
    rec = env.shard.wait_for(lambda x: x.complete)
    assert rec.target == "/version?x=1"
    assert rec.values("X-Remote-User") == ["alice"]


def test_health_endpoints_need_no_auth(env):
    for path in ("/healthz", "/readyz", "/livez"):
        r = request(env.port, "GET", path)
        assert r.status == 200, (path, r)
        assert r.body == b"ok\n", (path, r)
    assert env.shard.snapshot() == []



@pytest.mark.concurrency
def test_access_log_lines_stay_whole_and_complete_under_concurrency(env):
    """Access lines are batched per worker (one write per loop pass, whole lines of at most
    PIPE_BUF bytes): with 2 workers and 8 keep-alive clients, every request is logged exactly
    once and no line is cut or interleaved with another."""
    import http.client
    import re
    import threading
    import time

    nthreads, per = 8, 50
    errors = []

    def client(t):
        conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=10)
        try:
            for i in range(per):
                conn.request("GET", f"/clusters/{WS_PATH}/api/v1/batch-t{t}-r{i}",
                             headers=bearer(env.alice))
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    errors.append(resp.status)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    want = {f"batch-t{t}-r{i}" for t in range(nthreads) for i in range(per)}
    whole = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info access method=GET "
                       r"path=/clusters/\S+/api/v1/(batch-t\d+-r\d+) status=200 .* "
                       r"dur_ms=\d+\.\d{3} bytes=\d+ proto=http/1\.1 peer=127\.0\.0\.1$")
    deadline = time.monotonic() + 10
    while True:
        lines = [ln for ln in env.fg.lines() if "batch-t" in ln]
        if len(lines) >= len(want) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    seen = []
    for ln in lines:
        m = whole.match(ln)
        assert m, f"cut or interleaved access line: {ln!r}"
        seen.append(m.group(1))
    assert Counter(seen) == Counter(want), "every request is logged exactly once"
