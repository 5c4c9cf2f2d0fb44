"""
Keycloak as a real OIDC issuer for the interop suite (test_keycloak.py).

One Keycloak per test module: `kc.sh start --optimized` of the distribution that
tests/interop/peers/keycloak fetched and built (FG_KEYCLOAK_HOME, FG_KEYCLOAK_JAVA_HOME), plain
HTTP on 127.0.0.1 and a free port, hostname strict off (the issuer is the URL the client used),
a local cache (no clustering sockets), the realms of tests/interop/keycloak/ imported at start
(--import-realm) from a home of its own in tmp: bin/kc.sh copied, lib, conf, providers and themes
linked to the cache, data/ (imports, tmp files) real. Secrets (client secrets, the users'
password, the admin's) are made per run and reach Keycloak as environment variables, which its
realm import substitutes for the ${...} placeholders of the realm files; none is in the repo.
"""
import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import HERE, free_port, peer_path

REALM_DIR = os.path.join(HERE, "keycloak")
REALM = "iceberg"
OTHER_REALM = "other"
START_TIMEOUT = 240.0


def b64json(seg):
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def header(token):
    return b64json(token.split(".")[0])


def claims(token):
    return b64json(token.split(".")[1])


class Keycloak:
    def __init__(self, home, java_home, work):
        self.dist = home
        self.java_home = java_home
        self.home = os.path.join(work, "keycloak-home")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sp_secret = secrets.token_urlsafe(24)
        self.cli_secret = secrets.token_urlsafe(24)
        self.user_password = secrets.token_urlsafe(18)
        self.admin_password = secrets.token_urlsafe(18)
        self.log_path = os.path.join(work, "keycloak.log")
        self.proc = None
        self._admin_token = None
        self._admin_exp = 0

    def issuer(self, realm=REALM):
        return f"{self.url}/realms/{realm}"

    def start(self):
        os.makedirs(os.path.join(self.home, "bin"))
        shutil.copy2(os.path.join(self.dist, "bin", "kc.sh"), os.path.join(self.home, "bin", "kc.sh"))
        for d in ("lib", "conf", "providers", "themes"):
            os.symlink(os.path.join(self.dist, d), os.path.join(self.home, d))
        imp = os.path.join(self.home, "data", "import")
        os.makedirs(imp)
        for name in sorted(os.listdir(REALM_DIR)):
            if name.endswith("-realm.json"):
                shutil.copy(os.path.join(REALM_DIR, name), imp)
        env = dict(os.environ)
        env.update({
            "JAVA_HOME": self.java_home,
            # modest memory; C1 only: the JIT's second tier costs a start more than it gains here
            "JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx512m",
            "JAVA_OPTS_APPEND": "-XX:TieredStopAtLevel=1 -XX:ActiveProcessorCount=2",
            "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
            "KC_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password,
            "FG_KC_SP_SECRET": self.sp_secret,
            "FG_KC_CLI_SECRET": self.cli_secret,
            "FG_KC_USER_PASSWORD": self.user_password,
        })
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [os.path.join(self.home, "bin", "kc.sh"), "start", "--optimized", "--cache=local",
             "--http-enabled=true", "--http-host=127.0.0.1", f"--http-port={self.port}",
             "--hostname-strict=false", "--import-realm"],
            cwd=self.home, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"Keycloak exited with status {self.proc.returncode} before serving its "
                            f"realm; its log ends:\n{self.log_tail()}")
            try:
                doc = self.get_json(f"{self.issuer()}/.well-known/openid-configuration", timeout=2)
                if doc.get("issuer") == self.issuer():
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Keycloak did not serve {self.issuer()} within {START_TIMEOUT:.0f} s; "
                            f"its log ends:\n{self.log_tail()}")
            time.sleep(0.25)
        return self

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    # -- HTTP

    def get_json(self, url, token=None, timeout=10):
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)

    def token(self, form, realm=REALM):
        """The token endpoint's answer (a dict); fails the test on an error answer."""
        data = urllib.parse.urlencode(form).encode()
        url = f"{self.issuer(realm)}/protocol/openid-connect/token"
        try:
            with urllib.request.urlopen(url, data, timeout=15) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            pytest.fail(f"Keycloak's token endpoint answered {e.code}: {e.read()[:300]!r}")

    def client_token(self, scope="lakekeeper", client="airflow-sp-1", realm=REALM):
        form = {"grant_type": "client_credentials", "client_id": client, "client_secret": self.sp_secret}
        if scope:
            form["scope"] = scope
        return self.token(form, realm)["access_token"]

    def user_token(self, user="anna", scope="lakekeeper"):
        form = {"grant_type": "password", "client_id": "workshop-cli", "client_secret": self.cli_secret,
                "username": user, "password": self.user_password, "scope": scope}
        return self.token(form)["access_token"]

    # -- admin REST API

    def admin_token(self):
        if time.time() > self._admin_exp - 10:
            t = self.token({"grant_type": "password", "client_id": "admin-cli", "username": "admin",
                            "password": self.admin_password}, realm="master")
            self._admin_token = t["access_token"]
            self._admin_exp = time.time() + t["expires_in"]
        return self._admin_token

    def admin(self, method, path, body=None):
        url = f"{self.url}/admin/realms/{REALM}{path}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.admin_token()}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None), r.headers
        except urllib.error.HTTPError as e:
            pytest.fail(f"Keycloak admin {method} {path} answered {e.code}: {e.read()[:300]!r}")

    def jwks_kids(self):
        doc = self.get_json(f"{self.issuer()}/protocol/openid-connect/certs")
        return {k["kid"] for k in doc["keys"] if k.get("use", "sig") == "sig"}


@pytest.fixture(scope="module")
def keycloak(tmp_path_factory):
    home = peer_path("FG_KEYCLOAK_HOME")
    java_home = peer_path("FG_KEYCLOAK_JAVA_HOME")
    kc = Keycloak(home, java_home, str(tmp_path_factory.mktemp("keycloak")))
    try:
        yield kc.start()
    finally:
        kc.stop()
