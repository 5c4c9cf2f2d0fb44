"""
frontgate's jwt authenticator against a real Keycloak (keycloak_env.py): Keycloak's own
discovery document, JWKS and tokens, with the lakehouse workshop's mappings (realm `iceberg`,
the `lakekeeper` client scope whose audience mapper puts `lakekeeper` in `aud`, the catalog's
audiences `lakekeeper,starrocks`, client credentials for machines and a user's password grant),
plus a groups mapper. frontgate forwards to the e2e suite's recording shard with
identity: requestHeader, so each test reads the X-Remote-* headers the shard received.
"""
import re
import threading
import time
from collections import Counter

import pytest

from conftest import Frontgate, fg_e2e, request
from keycloak_env import OTHER_REALM, claims, header, keycloak  # noqa: F401 (fixture)

FakeShard = fg_e2e.FakeShard
WS_PATH = fg_e2e.WS_PATH
WS_CLUSTER = fg_e2e.WS_CLUSTER
NS_PATH = f"/clusters/{WS_PATH}/api/v1/namespaces"
AUTHN = "keycloak"


def fg_config(kc, username=("preferred_username", "iceberg:"), groups=("groups", "iceberg:")):
    return f"""\
workers: 2
listeners:
  - address: 127.0.0.1:0
shards:
  - name: shard-1
    url: {{shard}}
    identity: requestHeader
routes:
  - prefix: /clusters/
    workspace: path
workspaces:
  - cluster: {WS_CLUSTER}
    path: {WS_PATH}
    shard: shard-1
authenticators:
  - name: {AUTHN}
    jwt:
      issuer: {{url: "{kc.issuer()}", audiences: [lakekeeper, starrocks],
               audienceMatchPolicy: MatchAny}}
      claimMappings:
        username: {{claim: {username[0]}, prefix: "{username[1]}"}}
        groups: {{claim: {groups[0]}, prefix: "{groups[1]}"}}
        uid: {{claim: sub}}
        extra:
          - {{key: example.org/client-id, valueExpression: claims.azp}}
authentication:
  global: [{AUTHN}]
limits:
  shutdownGracePeriod: 3s
  connectTimeout: 2s
"""


class Env:
    def __init__(self, fg, shard):
        self.fg, self.shard, self._n = fg, shard, 0

    def get(self, token):
        self._n += 1
        path = f"{NS_PATH}/req-{self._n}"
        r = request(self.fg.port, "GET", path, {"Authorization": f"Bearer {token}"})
        return r, path

    def access(self, path):
        return self.fg.wait_log(rf"info access method=GET path={re.escape(path)} status=\d+\b.*$").group(0)

    def ok(self, token):
        r, path = self.get(token)
        assert r.status == 200, (r, self.fg.log()[-3000:])
        assert f" authn={AUTHN} " in self.access(path)
        suffix = path[len(NS_PATH):]
        return self.shard.wait_for(lambda x: x.complete and x.path.endswith(suffix))

    def refused(self, token, reason):
        before = len(self.shard.snapshot())
        r, path = self.get(token)
        fg_e2e.assert_unauthorized(r)
        line = self.access(path)
        assert fg_e2e.log_reason(line) == reason, line
        assert token not in self.fg.log(), "the token reached frontgate's log"
        assert len(self.shard.snapshot()) == before, "a refused request reached the shard"


@pytest.fixture
def env(keycloak, tmp_path):  # noqa: F811
    shard = FakeShard()
    started = []

    def start(**kw):
        fg = Frontgate(tmp_path / f"fg{len(started)}", fg_config(keycloak, **kw).replace("{shard}", shard.url))
        started.append(fg)
        fg.start()
        deadline = time.monotonic() + 30
        while request(fg.port, "GET", "/readyz").status != 200:
            assert time.monotonic() < deadline, "frontgate never got Keycloak's keys:\n" + fg.log()
            time.sleep(0.05)
        return Env(fg, shard)

    yield start
    for fg in started:
        fg.stop()
    shard.stop()


def identity(rec):
    return rec.value("X-Remote-User"), Counter(rec.values("X-Remote-Group"))


# ---------------------------------------------------------------------------


def test_client_credentials_token_admitted(keycloak, env):  # noqa: F811
    """A machine user's token (client credentials, scope=lakekeeper as the workshop scripts ask)."""
    e = env()
    token = keycloak.client_token()
    c = claims(token)
    assert c["iss"] == keycloak.issuer() and c["aud"] == "lakekeeper", c
    rec = e.ok(token)
    assert identity(rec) == ("iceberg:service-account-airflow-sp-1",
                             Counter(["iceberg:engineers", "system:authenticated"])), rec.headers
    assert rec.values("X-Remote-Uid") == [c["sub"]]
    assert rec.values("X-Remote-Extra-Example.org%2fclient-Id") == ["airflow-sp-1"], rec.headers
    # Keycloak's jti becomes kube's credential-id extra
    assert rec.values("X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id") == [f"JTI={c['jti']}"]
    assert rec.values("Authorization") == []


def test_password_grant_user_token_admitted(keycloak, env):  # noqa: F811
    e = env()
    token = keycloak.user_token("anna")
    rec = e.ok(token)
    assert identity(rec) == ("iceberg:anna", Counter(["iceberg:analysts", "iceberg:engineers",
                                                      "system:authenticated"])), rec.headers
    assert rec.values("X-Remote-Extra-Example.org%2fclient-Id") == ["workshop-cli"]


def test_group_full_paths_and_email_username(keycloak, env):  # noqa: F811
    """Keycloak's group mapper with full.path=true (/lakehouse/analysts) in its own claim, and
    email as the username: anna's email is verified; peter's is not, so kube's rule refuses him."""
    e = env(username=("email", ""), groups=("group_paths", "kc:"))
    rec = e.ok(keycloak.user_token("anna", scope="lakekeeper group-paths"))
    assert identity(rec) == ("anna@example.com", Counter(["kc:/lakehouse/analysts", "kc:/lakehouse/engineers",
                                                          "system:authenticated"])), rec.headers
    peter = keycloak.user_token("peter", scope="lakekeeper group-paths")
    assert claims(peter)["email_verified"] is False
    e.refused(peter, "email not verified")
    # a token without the group-paths scope has no such claim: no groups but system:authenticated
    rec = e.ok(keycloak.user_token("anna"))
    assert identity(rec) == ("anna@example.com", Counter(["system:authenticated"]))


def test_wrong_audience_other_realm_and_expired_refused(keycloak, env):  # noqa: F811
    e = env()
    # the trino scope's audience mapper instead of lakekeeper's
    wrong = keycloak.client_token(scope="trino")
    assert claims(wrong)["aud"] == "trino"
    e.refused(wrong, "token audience does not match")
    # another realm of the same Keycloak: same audience, another issuer (not this authenticator's)
    other = keycloak.client_token(realm=OTHER_REALM)
    assert claims(other)["aud"] == "lakekeeper" and claims(other)["iss"] == keycloak.issuer(OTHER_REALM)
    e.refused(other, "the token's issuer is not configured")
    # a 3 s token (the short-lived client's access.token.lifespan): admitted, then refused once expired
    short = keycloak.client_token(client="short-lived", scope=None)
    exp = claims(short)["exp"]
    assert exp - claims(short)["iat"] == 3
    e.ok(short)
    while time.time() < exp + 1:
        time.sleep(0.1)
    e.refused(short, "token expired")


def test_key_rotation_under_load(keycloak, env):  # noqa: F811
    """
    Clients keep sending valid tokens while the realm rotates its signing key through the admin
    REST API: a new rsa-generated key of higher priority (new tokens name a kid frontgate has not
    seen: one forced JWKS fetch), the old key made passive, then disabled. Not one 401.
    """
    e = env()
    old_kid = header(keycloak.client_token())["kid"]
    realm_id = keycloak.admin("GET", "")[1]["id"]
    providers = keycloak.admin("GET", "/components?type=org.keycloak.keys.KeyProvider")[1]
    old = [p for p in providers if p["providerId"] == "rsa-generated"]
    assert len(old) == 1, providers
    old = old[0]

    lock = threading.Lock()
    current = {"token": keycloak.client_token()}
    counts = Counter()
    failures = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            with lock:
                token = current["token"]
            r, _ = e.get(token)
            kid = header(token)["kid"]
            with lock:
                counts["requests"] += 1
                counts[f"status {r.status}"] += 1
                counts["new kid" if kid != old_kid else "old kid"] += 1
                if r.status != 200 and len(failures) < 5:
                    failures.append((r.status, kid, r.body[:200]))

    def refresh_for(seconds):
        """New tokens from Keycloak every 0.3 s for that long."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = keycloak.client_token()
            with lock:
                current["token"] = t
            time.sleep(0.3)
        return t

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        refresh_for(2)
        status, _, hdrs = keycloak.admin("POST", "/components", {
            "name": "rsa-rotated", "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider", "parentId": realm_id,
            "config": {"priority": ["200"], "keySize": ["2048"], "algorithm": ["RS256"],
                       "active": ["true"], "enabled": ["true"]}})
        assert status == 201, status
        t = refresh_for(3)
        new_kid = header(t)["kid"]
        assert new_kid != old_kid, "Keycloak still signs with the old key"
        old["config"]["active"] = ["false"]  # passive: verifies, never signs
        keycloak.admin("PUT", f"/components/{old['id']}", old)
        refresh_for(2)
        old["config"]["enabled"] = ["false"]  # disabled: out of the JWKS
        keycloak.admin("PUT", f"/components/{old['id']}", old)
        assert old_kid not in keycloak.jwks_kids() and new_kid in keycloak.jwks_kids()
        refresh_for(2)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert counts["status 401"] == 0 and not failures, (counts, failures)
    assert counts["requests"] > 200, counts
    assert counts["new kid"] > 50 and counts["old kid"] > 50, counts
    # frontgate took Keycloak's new key set (with the new kid) while serving
    log = e.fg.log()
    assert len(re.findall(rf"jwt {AUTHN}: \d+ signing keys", log)) >= 2, log[-2000:]
    # a token fetched after the rotation (new kid) keeps working
    e.ok(keycloak.client_token())
