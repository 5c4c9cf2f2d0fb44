"""
frontgate as the ingress of an Iceberg REST catalog (issue 5): `workspace:
iceberg` routes, forwarding for catalogs, and identity translation
(`identity: mint`), against fake_catalog.FakeCatalog, a stdlib catalog that
answers like Lakekeeper (/v1/config hands out the warehouse id as `prefix`
and an `overrides.uri` built from X-Forwarded-*) and records the identity of
every request it receives.

The real client is iceberg-js (npm, pinned in tests/package.json), run by
iceberg/client.mjs; those tests are skipped, with the reason, when node or
the package is missing (FG_NODE_MODULES, default tests/node_modules).
"""
import http.client
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import FRONTGATE_BIN, closed_port, raw_request, request
from fake_catalog import OidcVerifier, b64u_decode, jwk_thumbprint
from lake_env import (  # noqa: F401 (fixtures)
    ALICE_GROUPS, ANALYTICS, AUTHENTICATED, FORBIDDEN, HIDDEN, MARKETING, NOT_AUTHORIZED, OFFLINE,
    UNKNOWN, assert_iceberg_error, catalog_factory, iceberg_error, lake, lake_config, lake_factory)
from test_oidc import Pki

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = os.environ.get("FG_NODE") or shutil.which("node")
NODE_MODULES = os.environ.get("FG_NODE_MODULES") or os.path.join(os.path.dirname(HERE), "node_modules")
ICEBERG_JS = os.path.join(HERE, "iceberg", "client.mjs")


def iceberg_js_missing():
    if not NODE:
        return "node is not installed (iceberg-js is a Node.js client)"
    if not os.path.isfile(os.path.join(NODE_MODULES, "iceberg-js", "package.json")):
        return (f"iceberg-js is not installed in FG_NODE_MODULES={NODE_MODULES} "
                "(run `cd tests && npm ci`)")
    return None


def run_iceberg_js(base_url, catalog_name, token, steps):
    spec = {"baseUrl": base_url, "catalogName": catalog_name, "token": token, "steps": steps}
    p = subprocess.run([NODE, ICEBERG_JS], input=json.dumps(spec), capture_output=True, text=True, timeout=60,
                       env={**os.environ, "FG_NODE_MODULES": NODE_MODULES})
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout)["results"]


# ---------------------------------------------------------------------------
# 1. a real Iceberg client through frontgate


def test_iceberg_js_lists_and_creates_namespaces_through_frontgate(lake):
    why = iceberg_js_missing()
    if why:
        pytest.skip(why)
    # iceberg-js builds {baseUrl}/v1/{catalogName}/namespaces: baseUrl is the catalog's root
    base_url = f"{lake.base}/catalog"
    results = run_iceberg_js(base_url, ANALYTICS, lake.alice, [
        {"op": "list"},
        {"op": "create", "namespace": ["sales"], "properties": {"team": "revenue"}},
        {"op": "create", "namespace": ["ops"]},
        {"op": "create", "namespace": ["sales", "eu"]},
        {"op": "list"},
        {"op": "list", "parent": ["sales"]},
        {"op": "load", "namespace": ["sales"]},
        {"op": "exists", "namespace": ["nowhere"]},
        {"op": "create", "namespace": ["sales"]},
    ])
    assert [r["ok"] for r in results] == [True] * 8 + [False], results
    assert results[0]["value"] == []
    assert results[1]["value"] == {"namespace": ["sales"], "properties": {"team": "revenue"}}
    assert results[4]["value"] == [{"namespace": ["ops"]}, {"namespace": ["sales"]}]
    assert results[5]["value"] == [{"namespace": ["sales", "eu"]}]
    assert results[6]["value"]["properties"]["team"] == "revenue"
    assert results[7]["value"] is False  # HEAD 404 from the catalog passes through
    assert results[8]["status"] == 409 and results[8]["type"] == "AlreadyExistsException", results[8]

    # the namespaces exist at the catalog, in that warehouse only, created as alice
    assert lake.catalog.namespace_names(ANALYTICS) == [["ops"], ["sales"], ["sales", "eu"]]
    assert lake.catalog.namespace_names(MARKETING) == []
    reqs = lake.catalog.snapshot()
    assert len(reqs) == 9, reqs
    for rec in reqs:
        assert rec.path.startswith(f"/catalog/v1/{ANALYTICS}/namespaces"), rec
        assert rec.values("X-Remote-User") == ["alice"], rec.headers
        assert sorted(rec.values("X-Remote-Group")) == sorted([*ALICE_GROUPS, AUTHENTICATED]), rec.headers
        assert rec.bearer is None, "the validated API key reached the catalog"
    assert lake.catalog.namespaces[ANALYTICS][("sales",)]["owner"] == "alice"

    # bob, in another warehouse
    results = run_iceberg_js(base_url, MARKETING, lake.bob, [
        {"op": "create", "namespace": ["campaigns"]}, {"op": "list"}])
    assert results[1] == {"ok": True, "value": [{"namespace": ["campaigns"]}]}, results
    assert lake.catalog.last().values("X-Remote-User") == ["bob"]
    assert lake.catalog.namespace_names(MARKETING) == [["campaigns"]]

    # a prefix frontgate does not know (even one the catalog knows), and no credentials
    before = len(lake.catalog.snapshot())
    for name, token, status, type_ in ((HIDDEN, lake.alice, 403, "ForbiddenException"),
                                       (UNKNOWN, lake.alice, 403, "ForbiddenException"),
                                       (ANALYTICS, None, 401, "NotAuthorizedException"),
                                       (ANALYTICS, "fgk_" + "x" * 43, 401, "NotAuthorizedException")):
        results = run_iceberg_js(base_url, name, token, [
            {"op": "list"}, {"op": "create", "namespace": ["pwned"]}])
        for r in results:
            assert not r["ok"] and r["status"] == status and r["type"] == type_ and r["code"] == status, r
    assert len(lake.catalog.snapshot()) == before, "a refused request reached the catalog"
    assert lake.catalog.namespace_names(HIDDEN) == []
    assert lake.alice not in lake.fg.log() and lake.bob not in lake.fg.log()


# ---------------------------------------------------------------------------
# 2. /config, forwarding, every request checked


SPOOFED = {
    "X-Forwarded-Host": "evil.example.com",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Prefix": "/evil",
    "X-Forwarded-For": "203.0.113.7",
    "Forwarded": "for=203.0.113.7;host=evil.example.com;proto=https",
    "X-Remote-User": "admin",
    "X-Remote-Group": "system:masters",
}


def assert_frontgate_forwarding(rec, port, prefix=None, proto="http"):
    """The catalog sees frontgate's X-Forwarded-* only (one of each), none of the client's."""
    assert rec.values("X-Forwarded-Host") == [f"127.0.0.1:{port}"], rec.headers
    assert rec.values("X-Forwarded-Proto") == [proto], rec.headers
    assert rec.values("X-Forwarded-Port") == [str(port)], rec.headers
    assert rec.values("X-Forwarded-For") == ["127.0.0.1"], rec.headers
    assert rec.values("X-Forwarded-Prefix") == ([prefix] if prefix else []), rec.headers
    assert rec.values("Forwarded") == [], rec.headers
    assert "admin" not in rec.values("X-Remote-User")
    assert "system:masters" not in rec.values("X-Remote-Group")


def test_config_resolves_warehouse_by_name_and_overrides_uri_points_back(lake):
    r = lake.get("/catalog/v1/config?warehouse=analytics", lake.alice, SPOOFED)
    assert r.status == 200, r
    cfg = r.json()
    assert cfg["defaults"]["prefix"] == ANALYTICS
    assert cfg["overrides"]["uri"] == f"http://127.0.0.1:{lake.port}/catalog", cfg
    rec = lake.catalog.last("/config")
    assert rec.target == "/catalog/v1/config?warehouse=analytics"  # forwarded unchanged
    assert_frontgate_forwarding(rec, lake.port)
    assert rec.values("X-Remote-User") == ["alice"]

    # a client follows the catalog's answer: {uri}/v1/{prefix}/namespaces, back through frontgate
    uri = cfg["overrides"]["uri"]
    assert uri.startswith(lake.base + "/")
    path = uri[len(lake.base):] + f"/v1/{cfg['defaults']['prefix']}/namespaces"
    r = lake.get(path, lake.alice, SPOOFED)
    assert r.status == 200 and r.json() == {"namespaces": []}, r
    assert_frontgate_forwarding(lake.catalog.last("/namespaces"), lake.port)

    # the name is looked up in frontgate's index: a warehouse only the catalog knows is refused
    n = len(lake.catalog.snapshot())
    assert_iceberg_error(lake.get("/catalog/v1/config?warehouse=hidden", lake.alice), FORBIDDEN)
    assert_iceberg_error(lake.get("/catalog/v1/config?warehouse=nosuch", lake.alice), FORBIDDEN)
    # ... and so is the id where the name belongs
    assert_iceberg_error(lake.get(f"/catalog/v1/config?warehouse={ANALYTICS}", lake.alice), FORBIDDEN)
    assert len(lake.catalog.snapshot()) == n


@pytest.mark.parametrize("query", ["", "?", "?warehouse=", "?other=analytics", "?warehouses=analytics"])
def test_config_without_warehouse_is_400(lake, query):
    for key in (lake.alice, None):
        r = lake.get("/catalog/v1/config" + query, key)
        assert r.status == 400, r
        err = r.json()["error"]
        assert err["type"] == "BadRequestException" and err["code"] == 400 and err["message"], err
    assert lake.catalog.snapshot() == []


def test_config_unknown_warehouse_unauthenticated_is_401(lake):
    for key in (None, "fgk_" + "y" * 43):
        assert_iceberg_error(lake.get("/catalog/v1/config?warehouse=nosuch", key), NOT_AUTHORIZED)
        assert_iceberg_error(lake.get("/catalog/v1/config?warehouse=analytics", key), NOT_AUTHORIZED)
    assert lake.catalog.snapshot() == []


@pytest.mark.parametrize("query", ["warehouse=analytics&warehouse=hidden",
                                   "warehouse=analytics&%77arehouse=hidden"])
def test_config_with_an_ambiguous_warehouse_is_refused(lake, query):
    """
    frontgate authorizes the first `warehouse` it finds and forwards the query unchanged;
    a catalog that reads another occurrence (Starlette/FastAPI keep the last value, and
    decode `%77arehouse` to `warehouse`) would answer for a warehouse frontgate never
    checked. Lakekeeper happens to refuse duplicates; frontgate must not rely on the
    catalog's parser: an ambiguous warehouse is a 400, like a repeated grant_type on the
    token endpoint, and never forwarded.
    """
    r = lake.get(f"/catalog/v1/config?{query}", lake.alice)
    assert r.status == 400, (r, [x.target for x in lake.catalog.snapshot()])
    assert r.json()["error"]["type"] == "BadRequestException", r
    assert lake.catalog.snapshot() == [], "an ambiguous warehouse reached the catalog"


def test_config_without_host_header_still_points_back_through_frontgate(lake):
    """
    HTTP/1.0 needs no Host. Without one, frontgate sends no X-Forwarded-Host and the
    catalog builds overrides.uri from the Host frontgate sends it (the catalog's own
    address), so every later request of the client would go around frontgate. Either
    frontgate refuses such a request on a catalog route, or the catalog must be told
    frontgate's own address.
    """
    raw = (f"GET /catalog/v1/config?warehouse=analytics HTTP/1.0\r\n"
           f"Authorization: Bearer {lake.alice}\r\n\r\n").encode()
    resp, c = raw_request(lake.port, raw)
    c.close()
    if resp.status == 400:
        assert lake.catalog.snapshot() == []
        return
    assert resp.status == 200, resp
    uri = json.loads(resp.body)["overrides"]["uri"]
    assert f":{lake.catalog.port}" not in uri, f"overrides.uri {uri} points at the catalog, around frontgate"
    assert uri == f"http://127.0.0.1:{lake.port}/catalog", uri
    rec = lake.catalog.last("/config")
    assert len(rec.values("X-Forwarded-Host")) == 1, rec.headers


@pytest.mark.parametrize("path", [
    f"/catalog/v1/{ANALYTICS}/namespaces/../../{HIDDEN}/namespaces",
    f"/catalog/v1/{ANALYTICS}%2f..%2f{HIDDEN}/namespaces",
])
def test_hostile_path_under_the_catalog_prefix_is_400_in_iceberg_model(lake, path):
    raw = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{lake.port}\r\n"
           f"Authorization: Bearer {lake.alice}\r\nConnection: close\r\n\r\n").encode()
    resp, c = raw_request(lake.port, raw)
    c.close()
    assert resp.status == 400, resp
    assert lake.catalog.snapshot() == [], "a hostile path reached the catalog"
    # an Iceberg client parses {"error":{...}}; a Kubernetes Status is "Could not decode json payload"
    err = json.loads(resp.body).get("error")
    assert isinstance(err, dict) and err.get("type") == "BadRequestException" and err.get("code") == 400, \
        resp.body


# Requests under a prefix frontgate's index does not hold: every method, every depth.
UNKNOWN_PREFIX_REQUESTS = [
    ("GET", f"/catalog/v1/{HIDDEN}/namespaces"),
    ("POST", f"/catalog/v1/{HIDDEN}/namespaces"),
    ("DELETE", f"/catalog/v1/{HIDDEN}/namespaces/sales"),
    ("GET", f"/catalog/v1/{HIDDEN}/namespaces/sales/tables/orders"),
    ("POST", f"/catalog/v1/{HIDDEN}/transactions/commit"),
    ("GET", f"/catalog/v1/{UNKNOWN}/namespaces"),
    ("PUT", f"/catalog/v1/{UNKNOWN}/namespaces/x/properties"),
    ("GET", "/catalog/v1/NOT_AN_ID/namespaces"),
    ("GET", "/catalog/v1/analytics/namespaces"),  # the name is not the prefix
    ("GET", "/catalog/v1/"),
    ("GET", "/catalog/v1/config/namespaces"),
    ("GET", f"/catalog/v1/{HIDDEN}"),
]


@pytest.mark.parametrize("method,path", UNKNOWN_PREFIX_REQUESTS)
def test_unknown_prefix_is_403_and_never_forwarded(lake, method, path):
    body = b'{"namespace":["pwned"]}' if method in ("POST", "PUT") else None
    assert_iceberg_error(lake.get(path, lake.alice, method=method, body=body), FORBIDDEN)
    # an unauthenticated caller cannot tell which warehouses exist
    assert_iceberg_error(lake.get(path, None, method=method, body=body), NOT_AUTHORIZED)
    assert_iceberg_error(lake.get(path, "fgk_" + "z" * 43, method=method, body=body), NOT_AUTHORIZED)
    assert lake.catalog.snapshot() == [], "a request under an unknown prefix reached the catalog"
    assert lake.catalog.namespace_names(HIDDEN) == []
    line = lake.fg.wait_log(rf"info access method={method} path={re.escape(path)} status=403 .*").group(0)
    assert " user=alice " in line, line


def test_every_request_under_a_known_prefix_needs_credentials(lake):
    for method, path in (("GET", f"/catalog/v1/{ANALYTICS}/namespaces"),
                         ("POST", f"/catalog/v1/{ANALYTICS}/namespaces"),
                         ("GET", f"/catalog/v1/{ANALYTICS}/namespaces/a/tables/b"),
                         ("DELETE", f"/catalog/v1/{MARKETING}/namespaces/a")):
        body = b'{"namespace":["x"]}' if method == "POST" else None
        assert_iceberg_error(lake.get(path, None, method=method, body=body), NOT_AUTHORIZED)
        assert_iceberg_error(lake.get(path, "fgk_" + "w" * 43, method=method, body=body), NOT_AUTHORIZED)
    assert lake.catalog.snapshot() == []
    r = lake.get(f"/catalog/v1/{ANALYTICS}/namespaces/a/tables/b", lake.bob)
    assert r.status == 200 and r.json()["warehouse"] == ANALYTICS, r
    assert lake.catalog.last().values("X-Remote-User") == ["bob"]


def test_unavailable_warehouse_503_and_dead_shard_502_in_iceberg_model(lake):
    r = lake.get(f"/catalog/v1/{OFFLINE}/namespaces", lake.alice)
    assert r.status == 503 and iceberg_error(503, "ServiceUnavailableException")(r), r
    assert_iceberg_error(lake.get(f"/catalog/v1/{OFFLINE}/namespaces", None), NOT_AUTHORIZED)
    r = lake.get("/catalog/v1/config?warehouse=broken", lake.alice)
    assert r.status == 502 and iceberg_error(502, "ServiceUnavailableException")(r), r
    assert "127.0.0.1" not in r.json()["error"]["message"]
    assert lake.catalog.snapshot() == []


def test_strip_headers_any_case_and_other_headers_pass(lake):
    headers = {
        "X-Project-ID": "00000000-0000-0000-0000-000000000001",
        "x-ASSUME-role": "0195f1c2-aaaa-7000-8000-000000000001",
        "X-Iceberg-Access-Delegation": "vended-credentials",
        "X-Client-Version": "PyIceberg 0.9.0",
        "Idempotency-Key": "0195f1c2-bbbb-7000-8000-000000000001",
    }
    r = lake.get(f"/catalog/v1/{ANALYTICS}/namespaces", lake.alice, headers)
    assert r.status == 200, r
    # http.client cannot send one name twice: the raw second spelling goes in a raw request
    raw = (f"GET /catalog/v1/{ANALYTICS}/namespaces/x HTTP/1.1\r\nHost: 127.0.0.1:{lake.port}\r\n"
           f"Authorization: Bearer {lake.alice}\r\nx-project-id: a\r\nX-PROJECT-ID: b\r\n"
           "X-Assume-Role: c\r\nx-assume-role: d\r\nConnection: close\r\n\r\n").encode()
    resp, c = raw_request(lake.port, raw)
    c.close()
    assert resp.status == 404, resp  # the catalog's own answer: no such namespace
    for rec in lake.catalog.snapshot():
        names = [k.lower() for k, _ in rec.headers]
        assert "x-project-id" not in names and "x-assume-role" not in names, rec.headers
    first = lake.catalog.snapshot()[0]
    assert first.values("X-Iceberg-Access-Delegation") == ["vended-credentials"]
    assert first.values("X-Client-Version") == ["PyIceberg 0.9.0"]
    assert first.values("Idempotency-Key") == [headers["Idempotency-Key"]]


def test_forwarded_prefix_sets_x_forwarded_prefix(lake_factory):
    lake = lake_factory(forwarded_prefix="/lake")
    r = lake.get("/catalog/v1/config?warehouse=marketing", lake.alice, SPOOFED)
    assert r.status == 200, r
    assert r.json()["defaults"]["prefix"] == MARKETING
    # Lakekeeper appends the forwarded prefix: the gateway is mounted under /lake
    assert r.json()["overrides"]["uri"] == f"http://127.0.0.1:{lake.port}/lake/catalog", r.json()
    assert_frontgate_forwarding(lake.catalog.last("/config"), lake.port, prefix="/lake")
    r = lake.get(f"/catalog/v1/{MARKETING}/namespaces", lake.bob, {"X-Forwarded-Prefix": "/other"})
    assert r.status == 200, r
    assert lake.catalog.last().values("X-Forwarded-Prefix") == ["/lake"]


def test_tls_listener_forwards_https(lake_factory, tmp_path):
    pki = Pki(str(tmp_path))
    lake = lake_factory(tls=True, files={"tls.crt": pki.cert_pem, "tls.key": pki.key_pem})
    tls_port = next(p for s, _, p in lake.fg.listeners if s == "https")
    conn = http.client.HTTPSConnection("127.0.0.1", tls_port, context=pki.client_context(), timeout=10)
    try:
        conn.request("GET", "/catalog/v1/config?warehouse=analytics",
                     headers={"Authorization": f"Bearer {lake.alice}", **SPOOFED})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, body
    assert json.loads(body)["overrides"]["uri"] == f"https://127.0.0.1:{tls_port}/catalog"
    assert_frontgate_forwarding(lake.catalog.last("/config"), tls_port, proto="https")


# ---------------------------------------------------------------------------
# 5. identity translation: identity: mint


def mint_key_pem(alg):
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def jwt_parts(token):
    h, c, s = token.split(".")
    return json.loads(b64u_decode(h)), json.loads(b64u_decode(c)), b64u_decode(s)


@pytest.fixture
def mint_lake(lake_factory, catalog_factory):
    """start(alg, ttl='60s') -> Lake whose catalog trusts only JWTs from frontgate's issuer."""

    def start(alg, ttl="60s"):
        port = closed_port()
        issuer = f"http://127.0.0.1:{port}/mint"
        catalog = catalog_factory(verify_issuer=issuer, verify_audience="lakekeeper")
        mint = {"issuer": issuer, "keyFile": "mint.pem", "audience": "lakekeeper", "ttl": ttl}
        lake = lake_factory(catalog=catalog, listen=f"127.0.0.1:{port}", identity="mint", mint=mint,
                            files={"mint.pem": mint_key_pem(alg)})
        assert lake.port == port
        lake.issuer = issuer
        lake.mint = mint
        return lake

    return start


@pytest.mark.concurrency
@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_mint_catalog_verifies_minted_jwt_against_frontgates_jwks(mint_lake, alg):
    lake = mint_lake(alg)
    issuer = lake.issuer

    # frontgate is an OpenID provider for its issuer path, without credentials
    r = request(lake.port, "GET", "/mint/.well-known/openid-configuration")
    assert r.status == 200, r
    disc = r.json()
    assert disc["issuer"] == issuer and disc["jwks_uri"] == issuer + "/jwks", disc
    assert alg in disc["id_token_signing_alg_values_supported"], disc
    r = request(lake.port, "GET", "/mint/jwks")
    assert r.status == 200, r
    keys = r.json()["keys"]
    assert len(keys) == 1 and keys[0]["kid"] == jwk_thumbprint(keys[0]), keys
    assert keys[0]["kty"] == ("RSA" if alg == "RS256" else "EC") and keys[0].get("alg") == alg, keys
    assert "d" not in keys[0] and "p" not in keys[0], "a private key member is in the JWKS"
    kid1 = keys[0]["kid"]

    # alice's API key in, a JWT the catalog verifies itself out
    t0 = int(time.time())
    r = lake.get(f"/catalog/v1/{ANALYTICS}/namespaces", lake.alice, {"X-Remote-User": "admin"})
    assert r.status == 200, (r, [x.auth_error for x in lake.catalog.snapshot()])
    rec = lake.catalog.last()
    assert rec.auth_error is None
    ident = rec.identity
    assert ident["user"] == "alice", ident
    assert sorted(ident["groups"]) == sorted([*ALICE_GROUPS, AUTHENTICATED]), ident
    assert rec.values("X-Remote-User") == [] and rec.values("X-Remote-Group") == [], rec.headers
    assert rec.bearer != lake.alice and lake.alice not in json.dumps(rec.headers)
    claims = ident["claims"]
    assert claims["iss"] == issuer and claims["aud"] == "lakekeeper" and claims["sub"] == "alice", claims
    assert claims["exp"] - claims["iat"] == 60 and abs(claims["iat"] - t0) <= 2, claims
    assert claims["nbf"] <= claims["iat"] and claims.get("jti"), claims
    assert ident["jwt_header"] == {"alg": alg, "kid": kid1, "typ": "JWT"}, ident["jwt_header"]
    if alg == "ES256":
        assert len(jwt_parts(rec.bearer)[2]) == 64  # JOSE r||s, not DER
    assert lake.catalog.verifier.fetches["discovery"] == 1

    # the same identity within the TTL gets the same token; another identity its own
    lake.get(f"/catalog/v1/{ANALYTICS}/namespaces", lake.alice)
    assert lake.catalog.last().bearer == rec.bearer, "the minted token was not reused"
    r = lake.get("/catalog/v1/config?warehouse=marketing", lake.bob)
    assert r.status == 200, r
    bob_rec = lake.catalog.last()
    assert bob_rec.identity["user"] == "bob" and bob_rec.identity["groups"] == [AUTHENTICATED]
    assert bob_rec.bearer != rec.bearer

    # unauthenticated: frontgate refuses, nothing is minted, the catalog sees nothing
    n = len(lake.catalog.snapshot())
    assert_iceberg_error(lake.get(f"/catalog/v1/{ANALYTICS}/namespaces"), NOT_AUTHORIZED)
    assert len(lake.catalog.snapshot()) == n
    # the catalog refuses what frontgate did not mint (it trusts no header)
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(urllib.request.Request(
            f"{lake.catalog.url}/catalog/v1/{ANALYTICS}/namespaces",
            headers={"X-Remote-User": "alice", "Authorization": f"Bearer {rec.bearer[:-4]}AAAA"}), timeout=5)

    # key rollover: SIGHUP with a new keyFile
    old_token = rec.bearer
    lake.fg.write("mint2.pem", mint_key_pem(alg))
    cfg = open(lake.fg.config_path).read().replace("keyFile: mint.pem", "keyFile: mint2.pem")
    lake.fg.write("frontgate.yaml", cfg)
    lake.fg.hup()
    keys = request(lake.port, "GET", "/mint/jwks").json()["keys"]
    kids = {k["kid"] for k in keys}
    assert len(keys) == 2 and kid1 in kids, keys
    kid2 = (kids - {kid1}).pop()
    # a token minted before the reload still verifies against the JWKS as it is now
    # (a relying party that starts now: discovery and JWKS fetched after the reload)
    fresh = OidcVerifier(issuer, "lakekeeper")
    assert fresh.verify(old_token)["claims"]["sub"] == "alice"
    assert fresh.fetches == {"discovery": 1, "jwks": 1}
    # new tokens use the new key (the reload started an empty token cache)
    jwks_fetches = lake.catalog.verifier.fetches["jwks"]
    r = lake.get(f"/catalog/v1/{ANALYTICS}/namespaces", lake.alice)
    assert r.status == 200, (r, lake.catalog.last().auth_error)
    new = lake.catalog.last()
    assert new.identity["jwt_header"]["kid"] == kid2 and new.bearer != old_token
    assert new.identity["user"] == "alice"
    # the catalog met an unknown kid and fetched the JWKS again, from frontgate
    assert lake.catalog.verifier.fetches["jwks"] == jwks_fetches + 1
    assert old_token not in lake.fg.log() and new.bearer not in lake.fg.log()
    # and a clean exit (with the ASan build, a leak of a retired key would be exit status 23)
    rc = lake.fg.term()
    log = lake.fg.log()
    assert not re.search(r"Sanitizer|runtime error:", log), log[-4000:]
    assert rc == 0, log[-4000:]


def test_mint_key_must_be_rs256_or_es256(tmp_path):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    for key, why in ((weak, "at least 2048 bits"), (p384, "P-256")):
        (tmp_path / "mint.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        cfg = tmp_path / "frontgate.yaml"
        cfg.write_text(lake_config("http://127.0.0.1:1", identity="mint", mint={
            "issuer": "http://127.0.0.1:1/mint", "keyFile": "mint.pem", "audience": "lakekeeper"})
        )
        (tmp_path / "keys.txt").write_text("# no keys\n")
        (tmp_path / "other-keys.txt").write_text("# no keys\n")
        p = subprocess.run([FRONTGATE_BIN, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=30)
        assert p.returncode == 1, p.stdout + p.stderr
        out = p.stdout + p.stderr
        assert re.search(rf"frontgate\.yaml:\d+:\d+: \S*mint\.pem: cannot load mint\.keyFile: .*{why}", out), out
        assert "1 error(s)" in out, out
