"""
Token services (issue 5) end to end:

1. the token endpoint of an Iceberg route (`tokenEndpoint:`), with the exact
   wire forms DuckDB and PyIceberg send (../shared/reference/iceberg-rest-auth.md),
   against lake_env's catalog environment;
2. `frontgate broker`, the loopback token broker, with the duckgres broker's
   semantics (PostHog/duckgres#580);
3. `frontgate token` against a real OAuth2 server (oauth2-mock-server over
   TLS, driven by idp/idp.mjs, see test_oidc.py): --issuer discovery,
   --token-url, --out FILE (--once, and kept fresh in the background, with
   retries while the IdP answers 500), --exec-credential, and kubectl using
   it as its exec credential plugin to reach the echo shard through frontgate.

kubectl comes from FG_KUBECTL (default .tools/bin/kubectl of the checkout); node
and oauth2-mock-server as in test_oidc.py. Tests that need a missing tool
are skipped with the reason.
"""
import conftest
import base64
import datetime
import http.client
import json
import os
import queue
import re
import signal
import socket
import stat
import statistics
import subprocess
import threading
import time
from collections import Counter
from urllib.parse import urlencode

import pytest

from conftest import FRONTGATE_BIN, Broker, closed_port, key_line, request
from lake_env import (  # noqa: F401 (fixtures)
    ALICE_GROUPS, ANALYTICS, AUTHENTICATED, catalog_factory, lake, lake_factory)
from test_oidc import authenticator_yaml, echo_shard, idp_factory, pki  # noqa: F401 (fixtures)

KUBECTL = conftest.KUBECTL
TOKEN_PATH = "/catalog/v1/oauth/tokens"
FORM = "application/x-www-form-urlencoded"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def jwt_claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def assert_no_cache(r):
    assert r.value("Cache-Control") == "no-store", r.headers
    assert r.value("Pragma") == "no-cache", r.headers
    assert (r.value("Content-Type") or "").startswith("application/json"), r.headers


# ---------------------------------------------------------------------------
# 1. the token endpoint of an Iceberg route


def post_token(port, body, basic=None, method="POST", path=TOKEN_PATH, content_type=FORM):
    headers = {"Content-Type": content_type} if content_type else {}
    if basic:
        headers["Authorization"] = "Basic " + b64(f"{basic[0]}:{basic[1]}")
    return request(port, method, path, headers, body.encode() if isinstance(body, str) else body)


def assert_token_answer(r, key, expires_in=3600):
    assert r.status == 200, r
    assert_no_cache(r)
    doc = r.json()
    assert doc == {"access_token": key, "token_type": "bearer", "expires_in": expires_in}, doc
    assert type(doc["expires_in"]) is int


def assert_oauth_error(r, status, error):
    assert r.status == status, r
    assert_no_cache(r)
    doc = r.json()
    assert doc["error"] == error and isinstance(doc.get("error_description"), str), doc
    assert set(doc) <= {"error", "error_description", "error_uri"}, doc


def assert_secrets_hidden(lake, *secrets):
    log = lake.fg.log()
    for s in secrets:
        assert s not in log, "a client secret is in frontgate's log"
        for form in (b64(f"alice:{s}"), b64(f"bob:{s}"), b64(f"nobody:{s}")):
            assert form not in log


def test_duckdb_form_gets_a_token_that_works_on_the_catalog(lake):
    # DuckDB: Basic base64(client_id:client_secret), grant_type + scope (its default PRINCIPAL_ROLE:ALL)
    r = post_token(lake.port, "grant_type=client_credentials&scope=PRINCIPAL_ROLE%3AALL",
                   basic=("alice", lake.alice))
    assert_token_answer(r, lake.alice)
    token = r.json()["access_token"]
    # ... then ATTACH: GET {uri}/v1/config?warehouse=..., then the warehouse's prefix
    r = lake.get("/catalog/v1/config?warehouse=analytics", token)
    assert r.status == 200 and r.json()["defaults"]["prefix"] == ANALYTICS, r
    r = lake.get(f"/catalog/v1/{ANALYTICS}/namespaces", token)
    assert r.status == 200, r
    rec = lake.catalog.last()
    assert rec.values("X-Remote-User") == ["alice"]
    assert sorted(rec.values("X-Remote-Group")) == sorted([*ALICE_GROUPS, AUTHENTICATED])
    line = lake.fg.wait_log(rf"info access method=POST path={TOKEN_PATH} status=200 .*").group(0)
    assert " user=alice " in line, line
    assert_secrets_hidden(lake, lake.alice)
    rc = lake.fg.term()
    assert not re.search(r"Sanitizer|runtime error:", lake.fg.log()), lake.fg.log()[-4000:]
    assert rc == 0


def test_pyiceberg_legacy_form_gets_a_token_that_works_on_the_catalog(lake):
    # PyIceberg's legacy `credential` (and Java's): client_id/client_secret in the body, scope=catalog
    body = urlencode({"grant_type": "client_credentials", "client_id": "bob", "client_secret": lake.bob,
                      "scope": "catalog"})
    r = post_token(lake.port, body)
    assert_token_answer(r, lake.bob)
    r = lake.get(f"/catalog/v1/{ANALYTICS}/namespaces", r.json()["access_token"])
    assert r.status == 200, r
    assert lake.catalog.last().values("X-Remote-User") == ["bob"]
    # PyIceberg's auth.oauth2 manager: Basic and grant_type + scope (the DuckDB shape, scope catalog)
    assert_token_answer(post_token(lake.port, "grant_type=client_credentials&scope=catalog",
                                   basic=("bob", lake.bob)), lake.bob)
    # no scope at all, and a charset parameter on the content type
    assert_token_answer(post_token(lake.port, "grant_type=client_credentials", basic=("bob", lake.bob),
                                   content_type=FORM + "; charset=UTF-8"), lake.bob)
    assert_secrets_hidden(lake, lake.bob)


def test_token_endpoint_path_and_expires_in(lake_factory):
    lake = lake_factory(token_endpoint={"authenticator": "ops-keys", "path": "/oauth2/token",
                                        "expiresIn": "2h"})
    r = post_token(lake.port, "grant_type=client_credentials", basic=("alice", lake.alice), path="/oauth2/token")
    assert_token_answer(r, lake.alice, expires_in=7200)
    # the default path is now an ordinary (unknown) prefix of the Iceberg route, never a token
    r = post_token(lake.port, "grant_type=client_credentials", basic=("alice", lake.alice))
    assert r.status == 401 and r.json()["error"]["type"] == "NotAuthorizedException", r
    assert lake.alice.encode() not in r.body
    assert lake.catalog.snapshot() == []


def test_basic_header_wins_over_form_fields(lake):
    wrong = "fgk_" + "q" * 43
    good_form = urlencode({"grant_type": "client_credentials", "client_id": "bob", "client_secret": lake.bob})
    bad_form = urlencode({"grant_type": "client_credentials", "client_id": "bob", "client_secret": wrong})
    assert_token_answer(post_token(lake.port, bad_form, basic=("alice", lake.alice)), lake.alice)
    assert_oauth_error(post_token(lake.port, good_form, basic=("alice", wrong)), 401, "invalid_client")
    assert_secrets_hidden(lake, lake.alice, lake.bob, wrong)


BAD_CLIENTS = {
    "wrong-secret": lambda k: ("alice", "fgk_" + "s" * 43),
    "wrong-id": lambda k: ("nobody", k["alice"]),
    "another-keys-secret": lambda k: ("alice", k["bob"]),  # a valid key, of another id
    "key-of-another-authenticator": lambda k: ("carol", k["carol"]),  # valid bearer, not ops-keys
    "empty-secret": lambda k: ("alice", ""),
    "empty-id": lambda k: ("", k["alice"]),
    "secret-with-suffix": lambda k: ("alice", k["alice"] + "x"),
}


@pytest.mark.parametrize("case", list(BAD_CLIENTS))
@pytest.mark.parametrize("where", ["basic", "form"])
def test_wrong_client_credentials_are_invalid_client(lake, case, where):
    cid, secret = BAD_CLIENTS[case](lake.keys)
    if where == "basic":
        r = post_token(lake.port, "grant_type=client_credentials&scope=catalog", basic=(cid, secret))
    else:
        r = post_token(lake.port, urlencode({"grant_type": "client_credentials", "client_id": cid,
                                             "client_secret": secret, "scope": "catalog"}))
    assert_oauth_error(r, 401, "invalid_client")
    assert not secret or secret.encode() not in r.body
    lake.fg.wait_log(rf"info access method=POST path={TOKEN_PATH} status=401 .*")
    assert_secrets_hidden(lake, *[s for s in (secret, lake.alice, lake.bob, lake.carol) if s])
    assert lake.catalog.snapshot() == []


def test_no_client_credentials_is_invalid_client(lake):
    assert_oauth_error(post_token(lake.port, "grant_type=client_credentials&scope=catalog"), 401, "invalid_client")
    # a Bearer header is not client authentication, even with a valid key
    r = request(lake.port, "POST", TOKEN_PATH, {"Content-Type": FORM, "Authorization": f"Bearer {lake.alice}"},
                b"grant_type=client_credentials")
    assert_oauth_error(r, 401, "invalid_client")
    # only an id, only a secret
    assert_oauth_error(post_token(lake.port, "grant_type=client_credentials&client_id=alice"), 401,
                       "invalid_client")
    assert_oauth_error(post_token(lake.port, f"grant_type=client_credentials&client_secret={lake.alice}"), 401,
                       "invalid_client")
    assert_secrets_hidden(lake, lake.alice)


@pytest.mark.parametrize("grant", ["password", "authorization_code", "refresh_token",
                                   "urn:ietf:params:oauth:grant-type:token-exchange",
                                   "CLIENT_CREDENTIALS", "client_credentials "])
def test_unsupported_grant_type_is_400(lake, grant):
    body = urlencode({"grant_type": grant, "client_id": "alice", "client_secret": lake.alice,
                      "subject_token": lake.alice,
                      "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"})
    r = post_token(lake.port, body, basic=("alice", lake.alice))
    assert_oauth_error(r, 400, "unsupported_grant_type")
    assert lake.alice.encode() not in r.body
    assert_secrets_hidden(lake, lake.alice)


@pytest.mark.parametrize("body", ["", "scope=catalog", "client_id=alice&client_secret=SECRET",
                                  "grant_type=&scope=catalog",
                                  "grant_type=client_credentials&grant_type=client_credentials"])
def test_missing_grant_type_is_invalid_request(lake, body):
    r = post_token(lake.port, body.replace("SECRET", lake.alice), basic=("alice", lake.alice))
    assert_oauth_error(r, 400, "invalid_request")
    assert_secrets_hidden(lake, lake.alice)


@pytest.mark.concurrency
def test_token_endpoint_follows_key_file_reloads(lake):
    form = "grant_type=client_credentials&scope=catalog"
    assert_token_answer(post_token(lake.port, form, basic=("bob", lake.bob)), lake.bob)
    # bob's key is withdrawn: the token endpoint stops answering for it at once
    lake.fg.write("keys.txt", key_line("alice", lake.alice, ALICE_GROUPS) + "\n")
    lake.fg.hup()
    assert_oauth_error(post_token(lake.port, form, basic=("bob", lake.bob)), 401, "invalid_client")
    assert_token_answer(post_token(lake.port, form, basic=("alice", lake.alice)), lake.alice)
    assert_secrets_hidden(lake, lake.alice, lake.bob)


def test_token_endpoint_oversized_body_is_an_oauth_error(lake):
    """The token endpoint answers in OAuth2's error format, whatever went wrong (clients parse
    OAuthError there, not the Iceberg error model)."""
    body = "grant_type=client_credentials&scope=" + "a" * 20000
    r = post_token(lake.port, body, basic=("alice", lake.alice))
    assert r.status in (400, 413), r
    assert lake.alice.encode() not in r.body
    assert_oauth_error(r, r.status, "invalid_request")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_token_endpoint_other_methods_are_405(lake, method):
    body = None if method in ("GET", "DELETE") else "grant_type=client_credentials"
    r = post_token(lake.port, body, basic=("alice", lake.alice), method=method)
    assert_oauth_error(r, 405, "invalid_request")
    assert lake.alice.encode() not in r.body
    assert lake.catalog.snapshot() == []


def test_wrong_id_and_wrong_secret_cost_the_same(lake):
    """
    frontgate hashes the presented secret whatever the id (README: "a wrong id and a wrong
    secret cost the same"). On loopback a request costs ~0.1 ms, dominated by HTTP and a
    SHA-256 either way, so this cannot see nanoseconds; it pins that neither failure takes
    a visibly different path (an early return before hashing, an extra lookup, a delay on
    one branch only). Medians of many interleaved attempts on one kept-alive connection;
    the bound is generous so that scheduling noise cannot make it flaky.
    """
    n = 200
    conn = http.client.HTTPConnection("127.0.0.1", lake.port, timeout=10)
    cases = {
        "wrong-id": urlencode({"grant_type": "client_credentials", "client_id": "no-such-client-id",
                               "client_secret": lake.alice}),
        "wrong-secret": urlencode({"grant_type": "client_credentials", "client_id": "alice",
                                   "client_secret": "fgk_" + "t" * 43}),
    }
    times = {k: [] for k in cases}
    try:
        for i in range(n * 2):
            name = list(cases)[i % 2]
            t0 = time.perf_counter()
            conn.request("POST", TOKEN_PATH, body=cases[name], headers={"Content-Type": FORM})
            resp = conn.getresponse()
            body = resp.read()
            times[name].append(time.perf_counter() - t0)
            assert resp.status == 401 and json.loads(body)["error"] == "invalid_client", body
    finally:
        conn.close()
    med = {k: statistics.median(v[n // 10:]) for k, v in times.items()}  # skip warm-up
    ratio = max(med.values()) / min(med.values())
    print(f"median wrong-id {med['wrong-id'] * 1e6:.0f} us, wrong-secret {med['wrong-secret'] * 1e6:.0f} us, "
          f"ratio {ratio:.2f}")
    assert ratio < 1.5, med
    assert_secrets_hidden(lake, lake.alice)


# ---------------------------------------------------------------------------
# 2. frontgate broker


@pytest.fixture
def broker_factory():
    started = []

    def start(token_file, *args, port=None, wait=True):
        b = Broker(token_file, *args, port=port)
        started.append(b)
        return b.started() if wait else b

    yield start
    for b in started:
        b.stop()


def write_atomic(path, text):
    tmp = str(path) + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def assert_broker_token(r, token, expires_in=60):
    assert r.status == 200, r
    assert_no_cache(r)
    doc = r.json()
    assert doc == {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}, doc
    assert type(doc["expires_in"]) is int and "refresh_token" not in doc


def test_broker_serves_the_token_file_and_rereads_it_every_request(broker_factory, tmp_path):
    tf = tmp_path / "token"
    tf.write_text("sa-token-one\n")
    b = broker_factory(tf)
    assert_broker_token(b.request("POST"), "sa-token-one")  # whitespace trimmed
    # kubelet rotates the projected token: the next request gets the new one (atomic replace)
    write_atomic(tf, "sa-token-two")
    assert_broker_token(b.request("POST"), "sa-token-two")
    # ... and an in-place rewrite, on one kept-alive connection (no per-connection caching)
    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
    try:
        for i in range(3):
            tf.write_text(f"  sa-token-{i}-\u00e9\t\n")
            conn.request("POST", "/token", body="grant_type=client_credentials", headers={"Content-Type": FORM})
            resp = conn.getresponse()
            doc = json.loads(resp.read())
            assert resp.status == 200 and doc["access_token"] == f"sa-token-{i}-\u00e9", doc
    finally:
        conn.close()
    # health
    r = b.request("GET", "/healthz")
    assert r.status == 200 and r.body.strip() == b"ok", r
    for ln in b.log:
        assert "sa-token" not in ln, "the broker logged a token"


def test_broker_duckdb_and_pyiceberg_requests(broker_factory, tmp_path):
    tf = tmp_path / "token"
    tf.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZHVjayJ9.c2ln")
    token = tf.read_text()
    b = broker_factory(tf)
    # DuckDB: CLIENT_ID/CLIENT_SECRET must be non-empty for it; the broker ignores their values
    r = b.request("POST", body=b"grant_type=client_credentials&scope=PRINCIPAL_ROLE%3AALL",
                  headers={"Content-Type": FORM, "Authorization": "Basic " + b64("duckdb:ignored")})
    assert_broker_token(r, token)
    # PyIceberg legacy credential: client_id/client_secret in the body
    r = b.request("POST", body=urlencode({"grant_type": "client_credentials", "client_id": "x",
                                          "client_secret": "y", "scope": "catalog"}).encode(),
                  headers={"Content-Type": FORM})
    assert_broker_token(r, token)
    # no body, no credentials, no content type, any grant: still the token (documented)
    assert_broker_token(b.request("POST"), token)
    assert_broker_token(b.request("POST", body=b"grant_type=password", headers={"Content-Type": FORM}), token)
    assert_broker_token(b.request("POST", "/token?x=1"), token)


def test_broker_expires_in(broker_factory, tmp_path):
    tf = tmp_path / "token"
    tf.write_text("tok")
    b = broker_factory(tf, "--expires-in", "300")
    assert_broker_token(b.request("POST"), "tok", expires_in=300)
    for bad in ("0", "abc", "-5", ""):
        p = subprocess.run([FRONTGATE_BIN, "broker", "--token-file", str(tf), "--listen",
                            f"127.0.0.1:{closed_port()}", "--expires-in", bad],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode != 0 and "--expires-in" in p.stderr, (bad, p.stderr)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_broker_other_methods_are_405(broker_factory, tmp_path, method):
    tf = tmp_path / "token"
    tf.write_text("secret-sa-token")
    b = broker_factory(tf)
    r = b.request(method, body=b"grant_type=client_credentials" if method in ("PUT", "PATCH") else None)
    assert r.status == 405, r
    assert (r.value("Content-Type") or "").startswith("application/json"), r.headers
    doc = r.json()
    assert doc["error"] == "invalid_request" and doc.get("error_description"), doc
    assert b"secret-sa-token" not in r.body
    assert_broker_token(b.request("POST"), "secret-sa-token")  # still serving


def test_broker_missing_or_empty_file_is_503(broker_factory, tmp_path):
    tf = tmp_path / "token"
    b = broker_factory(tf)  # starts without the file: kubelet may not have written it yet
    for content in (None, "", " \n\t\n"):
        if content is None:
            if tf.exists():
                tf.unlink()
        else:
            tf.write_text(content)
        r = b.request("POST", body=b"grant_type=client_credentials", headers={"Content-Type": FORM})
        assert r.status == 503, r
        assert_no_cache(r)
        doc = r.json()
        assert doc["error"] == "server_error" and doc.get("error_description"), doc
        assert b.request("GET", "/healthz").status == 503
    tf.write_text("finally")
    assert_broker_token(b.request("POST"), "finally")
    assert b.request("GET", "/healthz").status == 200


@pytest.mark.parametrize("listen", ["0.0.0.0:{port}", "[::]:{port}", ":{port}", "192.0.2.1:{port}",
                                    "example.com:{port}", "127.evil.example:{port}"])
def test_broker_refuses_non_loopback(tmp_path, listen):
    tf = tmp_path / "token"
    tf.write_text("tok")
    addr = listen.format(port=closed_port())
    p = subprocess.run([FRONTGATE_BIN, "broker", "--token-file", str(tf), "--listen", addr],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode != 0, p.stdout + p.stderr
    assert "loopback" in p.stderr and addr in p.stderr, p.stderr
    assert "refusing" in p.stderr, p.stderr


def test_broker_refuses_to_start_twice_on_one_port(broker_factory, tmp_path):
    tf = tmp_path / "token"
    tf.write_text("first")
    first = broker_factory(tf)
    second = broker_factory(tf, port=first.port, wait=False)
    rc, out = second.wait_exit()
    assert rc != 0, out
    assert f"127.0.0.1:{first.port}" in out and re.search(r"already|in use", out), out
    assert_broker_token(first.request("POST"), "first")  # the first one is untouched
    # a port some other program holds: same refusal
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        third = broker_factory(tf, port=s.getsockname()[1], wait=False)
        rc, out = third.wait_exit()
        assert rc != 0 and "cannot listen" in out, out
    finally:
        s.close()


def test_broker_sigterm_exits_0(tmp_path):
    tf = tmp_path / "token"
    tf.write_text("tok")
    b = Broker(tf).started()
    try:
        assert_broker_token(b.request("POST"), "tok")
        b.proc.send_signal(signal.SIGTERM)
        rc, out = b.wait_exit()
        assert not re.search(r"Sanitizer|runtime error:", out), out
        assert rc == 0, out
    finally:
        b.stop()


def test_broker_needs_token_file():
    p = subprocess.run([FRONTGATE_BIN, "broker"], capture_output=True, text=True, timeout=10)
    assert p.returncode != 0 and "--token-file" in p.stderr, p.stderr


# ---------------------------------------------------------------------------
# 3. frontgate token, against oauth2-mock-server over TLS


SECRET = "s3cret+/value=&x"  # needs form-escaping inside the Basic header (RFC 6749 2.3.1)
ROBOT = {"sub": "ci-robot", "aud": "frontgate", "groups": ["deployers"]}


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "client-secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return str(path)


def run_token(*args, env=None, timeout=30):
    return subprocess.run([FRONTGATE_BIN, "token", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def basic_of(req):
    auth = req["authorization"] or ""
    assert auth.startswith("Basic "), req
    return base64.b64decode(auth[6:]).decode()


def assert_private_file(path):
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)


def no_temp_files(directory):
    return [n for n in os.listdir(directory) if ".tmp" in n]


def test_token_once_with_issuer_discovery_and_with_token_url(idp_factory, pki, secret_file, tmp_path):
    idp = idp_factory()
    idp.call("tokenClaims", claims=ROBOT)
    out = tmp_path / "out" / "token"
    out.parent.mkdir()
    c0 = idp.counts()
    p = run_token("--issuer", idp.issuer, "--client-id", "ci", "--client-secret-file", secret_file,
                  "--scope", "catalog read", "--audience", "frontgate", "--ca-file", pki.ca_file,
                  "--out", str(out), "--once")
    assert p.returncode == 0, p.stderr
    assert SECRET not in p.stdout + p.stderr
    token = out.read_text()
    assert_private_file(out)
    claims = jwt_claims(token)
    assert claims["iss"] == idp.issuer and claims["sub"] == "ci-robot", claims
    c1 = idp.counts()
    assert c1["discovery"] == c0["discovery"] + 1 and c1["token"] == c0["token"] + 1, (c0, c1)
    req = idp.call("tokenRequests")["requests"][-1]
    # client authentication: Basic with each part form-encoded (RFC 6749 2.3.1); secret not in the body
    assert basic_of(req) == "ci:" + "s3cret%2B%2Fvalue%3D%26x", req
    assert req["contentType"].startswith(FORM), req
    assert req["body"] == {"grant_type": "client_credentials", "scope": "catalog read", "audience": "frontgate"}
    assert re.search(r"info token: wrote \S*token \(expires in 3600s", p.stderr), p.stderr

    # --token-url: no discovery; --client-auth post puts the pair in the body
    first_inode = os.stat(out).st_ino
    p = run_token("--token-url", idp.issuer + "/token", "--client-id", "ci", "--client-secret-file", secret_file,
                  "--ca-file", pki.ca_file, "--client-auth", "post", "--out", str(out), "--once")
    assert p.returncode == 0, p.stderr
    c2 = idp.counts()
    assert c2["discovery"] == c1["discovery"] and c2["token"] == c1["token"] + 1, (c1, c2)
    req = idp.call("tokenRequests")["requests"][-1]
    assert req["authorization"] is None and req["body"] == {
        "grant_type": "client_credentials", "client_id": "ci", "client_secret": SECRET}, req
    assert os.stat(out).st_ino != first_inode, "the token file was rewritten in place, not replaced"
    assert_private_file(out)
    assert jwt_claims(out.read_text())["sub"] == "ci-robot"
    assert no_temp_files(out.parent) == []


def test_token_refuses_secret_on_argv_and_untrusted_tls(idp_factory, secret_file, tmp_path):
    idp = idp_factory()
    out = tmp_path / "token"
    p = run_token("--issuer", idp.issuer, "--client-id", "ci", "--client-secret", "hunter2",
                  "--out", str(out), "--once")
    assert p.returncode == 2 and "--client-secret-file" in p.stderr, p.stderr
    # the IdP's certificate is from the test CA: without --ca-file it is not trusted
    p = run_token("--token-url", idp.issuer + "/token", "--client-id", "ci", "--client-secret-file", secret_file,
                  "--out", str(out), "--once")
    assert p.returncode != 0, p.stderr
    assert not out.exists() and no_temp_files(tmp_path) == []
    assert idp.counts()["token"] == 0


def test_token_out_keeps_the_file_fresh_and_keeps_it_while_the_idp_fails(idp_factory, pki, secret_file,
                                                                       tmp_path):
    idp = idp_factory()
    idp.call("tokenClaims", claims=ROBOT)
    out = tmp_path / "token"
    common = ["--token-url", idp.issuer + "/token", "--client-id", "ci", "--client-secret-file", secret_file,
              "--ca-file", pki.ca_file, "--out", str(out)]
    p = run_token(*common, "--once")
    assert p.returncode == 0, p.stderr
    old = out.read_text()

    # the IdP fails: the background refresher retries with backoff and keeps the old file
    idp.call("tokenResponse", status=500)
    proc = subprocess.Popen([FRONTGATE_BIN, "token", *common], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = queue.Queue()
    log = []
    threading.Thread(target=lambda: [lines.put(ln.decode()) for ln in iter(proc.stderr.readline, b"")]
                     + [lines.put(None)], daemon=True).start()

    def wait_log(pattern, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for ln in log:
                if re.search(pattern, ln):
                    log.remove(ln)
                    return ln
            try:
                ln = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no log line {pattern!r} in {log}")
            if ln is None:
                raise AssertionError(f"frontgate token exited (rc={proc.wait(5)}): {log}")
            log.append(ln)

    # a reader that watches the file all along: always a whole token, never missing or partial
    seen, bad, stop = set(), [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                text = out.read_text()
            except OSError as e:
                bad.append(repr(e))
                continue
            if text.count(".") != 2 or not text.split(".")[2]:
                bad.append(text)
            else:
                seen.add(text)
    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    try:
        wait_log(rf"warn token: refresh failed; keeping {re.escape(str(out))}, retrying in 1s", 10)
        wait_log(rf"warn token: refresh failed; keeping {re.escape(str(out))}, retrying in 2s", 10)
        assert any("HTTP 500" in ln for ln in log), log
        assert out.read_text() == old, "the old token file was not kept while the IdP failed"

        # the IdP recovers, with short-lived tokens: written at once, then refreshed after 2/3 of 6 s (5 s min)
        idp.call("tokenResponse", status=200, expiresIn=6)
        wait_log(rf"info token: wrote {re.escape(str(out))} \(expires in 6s, next refresh in 5s\)", 10)
        second = out.read_text()
        assert second != old and jwt_claims(second)["sub"] == "ci-robot"
        assert_private_file(out)
        wait_log(rf"info token: wrote {re.escape(str(out))} \(expires in 6s", 10)
        third = out.read_text()
        assert third not in (old, second), "the token file was not refreshed"
        assert_private_file(out)
    finally:
        stop.set()
        rt.join(5)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(5)
    while True:  # the rest of its stderr, up to EOF
        try:
            ln = lines.get(timeout=5)
        except queue.Empty:
            break
        if ln is None:
            break
        log.append(ln)
    assert not re.search(r"Sanitizer|runtime error:", "".join(log)), "".join(log)
    assert rc == 0
    assert bad == [], f"a reader saw a missing or partial token file: {bad[:3]}"
    assert seen <= {old, second, third}, "a reader saw a token that was never the whole file"
    assert no_temp_files(tmp_path) == []
    assert all(SECRET not in ln for ln in log)


def test_exec_credential_prints_and_caches(idp_factory, pki, secret_file, tmp_path):
    idp = idp_factory()
    idp.call("tokenClaims", claims=ROBOT)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": "",
           "KUBERNETES_EXEC_INFO": json.dumps({"kind": "ExecCredential",
                                               "apiVersion": "client.authentication.k8s.io/v1",
                                               "spec": {"interactive": False}})}
    args = ["--issuer", idp.issuer, "--client-id", "kubectl", "--client-secret-file", secret_file,
            "--ca-file", pki.ca_file, "--exec-credential"]
    t0 = datetime.datetime.now(datetime.timezone.utc)
    p = run_token(*args, env=env)
    assert p.returncode == 0, p.stderr
    cred = json.loads(p.stdout)
    assert cred["apiVersion"] == "client.authentication.k8s.io/v1" and cred["kind"] == "ExecCredential", cred
    status = cred["status"]
    assert set(status) == {"token", "expirationTimestamp"}, status
    assert jwt_claims(status["token"])["sub"] == "ci-robot"
    ts = status["expirationTimestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ts), ts  # RFC 3339, UTC
    exp = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    assert abs((exp - t0).total_seconds() - 3600) < 30, (ts, t0)
    assert SECRET not in p.stdout + p.stderr

    # the cache: a private file under ~/.cache/frontgate, reused by the next call
    cache_dir = home / ".cache" / "frontgate"
    files = os.listdir(cache_dir)
    assert len(files) == 1 and re.fullmatch(r"exec-[0-9a-f]{16}\.json", files[0]), files
    assert_private_file(cache_dir / files[0])
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    n = idp.counts()["token"]
    p2 = run_token(*args, env=env)
    assert p2.returncode == 0, p2.stderr
    assert json.loads(p2.stdout) == cred
    assert idp.counts()["token"] == n, "the cached token was not reused"

    # a token that expires within a minute is not reused
    idp.call("tokenResponse", expiresIn=50)
    cache = tmp_path / "short.json"
    for i in range(2):
        p = run_token(*args, "--cache-file", str(cache), env=env)
        assert p.returncode == 0, p.stderr
    assert idp.counts()["token"] == n + 2
    assert_private_file(cache)

    # the IdP fails and nothing is cached: no credential, non-zero exit (kubectl reports it)
    idp.call("tokenResponse", status=500)
    p = run_token(*args, "--cache-file", str(tmp_path / "none.json"), env=env)
    assert p.returncode != 0 and p.stdout == "", p.stdout
    # ... while the cached one still answers
    p = run_token(*args, env=env)
    assert p.returncode == 0 and json.loads(p.stdout) == cred, p.stderr


def kubectl_missing():
    if not (os.path.isfile(KUBECTL) and os.access(KUBECTL, os.X_OK)):
        return f"no executable kubectl at FG_KUBECTL={KUBECTL}"
    return None


def test_kubectl_uses_frontgate_token_as_exec_plugin(idp_factory, pki, echo_shard, frontgate_factory,
                                                     secret_file, tmp_path):
    why = kubectl_missing()
    if why:
        pytest.skip(why)
    idp = idp_factory()
    idp.call("tokenClaims", claims=ROBOT)
    entry = {
        "issuer": {"url": idp.issuer, "audiences": ["frontgate"], "certificateAuthority": pki.ca_pem},
        "claimMappings": {"username": {"claim": "sub", "prefix": "oidc:"},
                          "groups": {"claim": "groups", "prefix": "oidc:"}},
    }
    cfg = f"""\
workers: 2
listeners:
  - address: 127.0.0.1:0
  - address: 127.0.0.1:0
    tls: {{certFile: tls.crt, keyFile: tls.key}}
shards:
  - name: demo
    url: {echo_shard}
routes:
  - prefix: /clusters/
    workspace: path
workspaces:
  - cluster: 2x8ab3xq
    path: root:org:team
    shard: demo
authenticators:
{authenticator_yaml({"name": "corp-sso", "jwt": entry})}authentication:
  global: [corp-sso]
limits:
  shutdownGracePeriod: 3s
"""
    fg = frontgate_factory(cfg, {"tls.crt": pki.cert_pem, "tls.key": pki.key_pem})
    deadline = time.monotonic() + 15
    while request(fg.port, "GET", "/readyz").status != 200:
        assert time.monotonic() < deadline, "frontgate never became ready:\n" + fg.log()
        time.sleep(0.05)
    https_port = next(p for s, _, p in fg.listeners if s == "https")
    home = tmp_path / "home"
    home.mkdir()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fg", "cluster": {"server": f"https://127.0.0.1:{https_port}/clusters/root:org:team",
                                                 "certificate-authority": pki.ca_file}}],
        "contexts": [{"name": "fg", "context": {"cluster": "fg", "user": "robot"}}],
        "current-context": "fg",
        "users": [{"name": "robot", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": FRONTGATE_BIN,
            "args": ["token", "--issuer", idp.issuer, "--client-id", "kubectl", "--client-secret-file",
                     secret_file, "--ca-file", pki.ca_file, "--exec-credential"],
            "interactiveMode": "Never",
        }}}],
    }
    kc = tmp_path / "kubeconfig"
    kc.write_text(json.dumps(kubeconfig))  # JSON is YAML
    env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(kc)}
    env.pop("XDG_CACHE_HOME", None)

    def kubectl(*args):
        p = subprocess.run([KUBECTL, *args], capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode == 0, p.stdout + p.stderr + "\n" + fg.log()[-2000:]
        return p.stdout

    info = json.loads(kubectl("auth", "whoami", "-o", "json"))["status"]["userInfo"]
    assert info["username"] == "oidc:ci-robot", info
    assert Counter(info["groups"]) == Counter(["oidc:deployers", AUTHENTICATED]), info
    line = fg.wait_log(r"access method=POST path=/clusters/\S+/selfsubjectreviews status=201 .*").group(0)
    assert " user=oidc:ci-robot " in line and " authn=corp-sso " in line, line
    tokens = idp.counts()["token"]
    assert tokens == 1, idp.counts()
    # a second kubectl process: the plugin answers from its cache file, no new token
    out = kubectl("auth", "whoami")
    assert re.search(r"^Username\s+oidc:ci-robot\s*$", out, re.M), out
    assert idp.counts()["token"] == tokens
    cache = os.listdir(home / ".cache" / "frontgate")
    assert len(cache) == 1
    token = json.loads((home / ".cache" / "frontgate" / cache[0]).read_text())["token"]
    assert token not in fg.log()
    assert SECRET not in fg.log()
