"""
The OIDC/JWT authenticator end to end (issue 3 acceptance), against a real
OIDC/OAuth2 server from npm: oauth2-mock-server, run by idp/idp.mjs over TLS
(https://127.0.0.1:PORT, a test CA made here), trusted by frontgate through
`certificateAuthority` (PEM inline in the YAML) or `certificateAuthorityFile`.

The IdP mints tokens with the claims a test asks for, rotates and retires
keys, goes down and comes back, and counts the discovery and JWKS requests it
serves. Tokens an IdP would never issue (alg none, HS256, crit, garbage) are
built here with base64url and cryptography.

Every failure is checked three ways: the exact generic 401 body, the specific
`reason=` of frontgate's access-log line, and the token text appearing in
neither the response nor the log.

Needs node (FG_NODE, else the one on PATH) and `oauth2-mock-server` in
FG_NODE_MODULES (default: this checkout's tests/node_modules, i.e.
tests/node_modules of the checkout, installed by `cd tests && npm ci`); the tests
that need them are skipped, with the reason, when either is missing.
"""
import conftest
import base64
import concurrent.futures
import datetime
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import queue
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import (
    FRONTGATE_BIN,
    UNAUTHORIZED_BODY,
    WS_CLUSTER,
    WS_PATH,
    assert_unauthorized,
    closed_port,
    log_reason,
    request,
)

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = os.environ.get("FG_NODE") or shutil.which("node")
# tests/node_modules of this checkout, filled by `npm ci`
NODE_MODULES = os.environ.get("FG_NODE_MODULES") or os.path.join(os.path.dirname(HERE), "node_modules")
IDP_JS = os.path.join(HERE, "idp", "idp.mjs")

AUD = "frontgate"
AUTHN = "corp-sso"
NS_PATH = f"/clusters/{WS_PATH}/api/v1/namespaces"

# The claims of a token that maps to a full identity with the default entry.
ALICE = {
    "sub": "alice",
    "aud": AUD,
    "groups": ["dev", "ops"],
    "uid": "u-1234",
    "tenant": "acme",
    "roles": ["reader", "writer"],
}


def idp_missing():
    if not NODE:
        return "node is not installed (the OIDC provider of these tests is a Node.js program)"
    pkg = os.path.join(NODE_MODULES, "oauth2-mock-server", "package.json")
    if not os.path.isfile(pkg):
        return (f"oauth2-mock-server is not installed in FG_NODE_MODULES={NODE_MODULES} "
                "(run `cd tests && npm ci`)")
    return None


# ---------------------------------------------------------------------------
# test PKI: a CA, and a server certificate for IP 127.0.0.1 (the IdP and
# frontgate's TLS listener)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class Pki:
    def __init__(self, directory):
        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(_name("frontgate oidc test CA"))
            .issuer_name(_name("frontgate oidc test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("127.0.0.1"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_pem = _pem(ca)
        self.cert_pem = _pem(cert)
        self.key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.ca_file = os.path.join(directory, "ca.crt")
        self.cert_file = os.path.join(directory, "server.crt")
        self.key_file = os.path.join(directory, "server.key")
        for path, text in ((self.ca_file, self.ca_pem), (self.cert_file, self.cert_pem),
                           (self.key_file, self.key_pem)):
            with open(path, "w") as f:
                f.write(text)

    def client_context(self):
        ctx = ssl.create_default_context(cadata=self.ca_pem)
        return ctx


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return Pki(str(tmp_path_factory.mktemp("oidc-pki")))


@pytest.fixture(scope="session")
def local_key():
    """An RSA key the IdP does not know."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# ---------------------------------------------------------------------------
# JWS by hand


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_json(obj):
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def compact(header, claims, sign=None):
    """A JWS compact token; sign(signing_input) -> signature bytes (none: empty)."""
    si = b64u_json(header) + "." + b64u_json(claims)
    return si + "." + (b64u(sign(si.encode())) if sign else "")


def rs256(key):
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def jwk_public_pem(jwk):
    n = int.from_bytes(unb64u(jwk["n"]), "big")
    e = int.from_bytes(unb64u(jwk["e"]), "big")
    return rsa.RSAPublicNumbers(e, n).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def segments(token):
    return token.split(".")


# ---------------------------------------------------------------------------
# the IdP: idp/idp.mjs (oauth2-mock-server) over its stdin/stdout protocol


class Idp:
    def __init__(self, pki, down=False):
        self.pki = pki
        self._reserve = None
        port = 0
        if down:
            # the IdP's port is known before it serves: keep it bound meanwhile, so that
            # connecting is refused and nothing else (frontgate's own port-0 listener) gets it
            port = self._hold_port(0)
        argv = [NODE, IDP_JS, "--port", str(port), "--cert", pki.cert_file, "--key", pki.key_file]
        if down:
            argv.append("--down")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "FG_NODE_MODULES": NODE_MODULES},
        )
        self._lines = queue.Queue()
        self._err = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        first = self._next(30)
        assert first.get("event") == "started", first
        self.issuer = first["issuer"]
        self.port = first["port"]
        self.kid = first["kid"]  # the key it signs with now

    def _read_out(self):
        for line in iter(self.proc.stdout.readline, b""):
            self._lines.put(line.decode())
        self._lines.put(None)

    def _read_err(self):
        for line in iter(self.proc.stderr.readline, b""):
            self._err.append(line.decode("utf-8", "replace"))

    def _next(self, timeout):
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the IdP did not answer; its stderr:\n" + "".join(self._err))
        if line is None:
            self.proc.wait(5)
            raise AssertionError(f"the IdP exited (rc={self.proc.returncode}):\n" + "".join(self._err))
        return json.loads(line)

    def call(self, op, raw=None, **kw):
        """One request; raw is the request line itself (for JSON Python cannot nest)."""
        line = raw if raw is not None else json.dumps({"op": op, **kw})
        with self._lock:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
            r = self._next(60)
        assert r.get("ok"), f"IdP {op}: {r.get('error')}"
        return r

    def mint(self, claims=None, header=None, kid=None, expires_in=None, base=ALICE):
        """A token signed by the IdP: base claims, then claims over them (None removes one)."""
        req = {"claims": {**base, **(claims or {})}}
        if header:
            req["header"] = header
        if kid:
            req["kid"] = kid
        if expires_in is not None:
            req["expiresIn"] = expires_in
        return conftest.register_secret(self.call("mint", **req)["token"])

    def _hold_port(self, port):
        """Binds the port without listening: connections to it are refused."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        self._reserve = s
        return s.getsockname()[1]

    def _release_port(self):
        if self._reserve is not None:
            self._reserve.close()
            self._reserve = None

    def serve(self):
        self._release_port()
        return self.call("serve")

    def stop_serving(self):
        r = self.call("stop")
        self._hold_port(self.port)
        return r

    def rotate(self):
        self.kid = self.call("rotate")["kid"]
        return self.kid

    def retire(self, kid):
        self.call("retire", kid=kid)

    def jwks(self):
        return self.call("jwks")["keys"]

    def counts(self):
        """Requests the IdP served: discovery, jwks, token, total."""
        r = self.call("counts")
        r.pop("ok")
        return r

    def token_endpoint(self, form):
        """POST /token over TLS, as an OAuth2 client would; returns the access token."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.pki.client_context(),
                                           timeout=10)
        try:
            conn.request("POST", "/token", body=urlencode(form),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, (resp.status, body)
            return json.loads(body)["access_token"]
        finally:
            conn.close()

    def close(self):
        self._release_port()
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"op":"quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def idp_factory(pki):
    why = idp_missing()
    if why:
        pytest.skip(why)
    started = []

    def start(**kw):
        idp = Idp(pki, **kw)
        started.append(idp)
        return idp

    yield start
    for idp in started:
        idp.close()


# ---------------------------------------------------------------------------
# frontgate's config: the jwt entry as data, written as YAML


def to_yaml(v, indent=0):
    """Block YAML for dicts and lists of dicts; PEM text as a literal block scalar."""
    pad = " " * indent
    out = ""
    for k, x in v.items():
        if isinstance(x, dict):
            out += f"{pad}{k}:\n" + to_yaml(x, indent + 2)
        elif isinstance(x, list) and x and isinstance(x[0], dict):
            out += f"{pad}{k}:\n"
            for item in x:
                body = to_yaml(item, indent + 4)
                out += f"{pad}  - " + body[indent + 4:]
        elif isinstance(x, list):
            out += f"{pad}{k}: [" + ", ".join(json.dumps(i) for i in x) + "]\n"
        elif isinstance(x, str) and "\n" in x:
            out += f"{pad}{k}: |\n" + "".join(f"{pad}  {ln}\n" for ln in x.splitlines())
        elif isinstance(x, bool):
            out += f"{pad}{k}: {'true' if x else 'false'}\n"
        elif isinstance(x, (int, float)):
            out += f"{pad}{k}: {x}\n"
        else:
            out += f"{pad}{k}: {json.dumps(x)}\n"
    return out


def jwt_entry(issuer_url, pki, ca="inline", username=None):
    """A Kubernetes AuthenticationConfiguration jwt[] entry for the test IdP."""
    issuer = {"url": issuer_url, "audiences": [AUD]}
    if ca == "inline":
        issuer["certificateAuthority"] = pki.ca_pem
    elif ca == "file":
        issuer["certificateAuthorityFile"] = "idp-ca.crt"
    return {
        "issuer": issuer,
        "claimMappings": {
            "username": username or {"claim": "sub", "prefix": "oidc:"},
            "groups": {"claim": "groups", "prefix": "oidc:"},
            "uid": {"claim": "uid"},
            "extra": [
                {"key": "example.org/tenant", "valueExpression": "claims.tenant"},
                {"key": "example.org/roles", "valueExpression": "claims.roles"},
            ],
        },
    }


def authenticator_yaml(fields):
    body = to_yaml(fields, 4)
    return "  - " + body[4:]


def fg_config(shard_url, authenticators, limits=None, tls_listener=False):
    text = "workers: 2\nlisteners:\n  - address: 127.0.0.1:0\n"
    if tls_listener:
        text += "  - address: 127.0.0.1:0\n    tls: {certFile: tls.crt, keyFile: tls.key}\n"
    text += f"""\
shards:
  - name: shard-1
    url: {shard_url}
    identity: requestHeader
routes:
  - prefix: /clusters/
    workspace: path
workspaces:
  - cluster: {WS_CLUSTER}
    path: {WS_PATH}
    shard: shard-1
authenticators:
{authenticators}authentication:
  global: [{AUTHN}]
limits:
  shutdownGracePeriod: 3s
  connectTimeout: 2s
"""
    for k, v in (limits or {}).items():
        text += f"  {k}: {v}\n"
    return text


# ---------------------------------------------------------------------------
# the environment: IdP, fake shard, frontgate




ACCESS_RE = r"info access method=(\S+) path=(\S+) status=(\d+)\b.*$"




class OidcEnv:
    def __init__(self, fg, idp, shard):
        self.fg = fg
        self.idp = idp
        self.shard = shard
        self._n = 0

    @property
    def port(self):
        return self.fg.port

    def path(self):
        """A path of its own for each request, so its access-log line is unambiguous (lines
        are written after the response, so they may come after the next request's start)."""
        self._n += 1
        return f"{NS_PATH}/req-{self._n}"

    def get(self, token, path=None):
        return request(self.port, "GET", path or self.path(), {"Authorization": f"Bearer {token}"})

    def readyz(self):
        return request(self.port, "GET", "/readyz").status

    def wait_ready(self, timeout=15.0):
        """Polls /readyz until 200; returns the seconds it took."""
        t0 = time.monotonic()
        while True:
            if self.readyz() == 200:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"/readyz not 200 within {timeout} s:\n" + self.fg.log())
            time.sleep(0.05)

    def access(self, path):
        """The access-log line of the request for path."""
        return self.fg.wait_log(rf"info access method=GET path={re.escape(path)} status=\d+\b.*$").group(0)

    def ok(self, token, user=None):
        """Expects 200: returns the request the shard received."""
        path = self.path()
        r = self.get(token, path)
        assert r.status == 200, (r, self.fg.log()[-3000:])
        line = self.access(path)
        assert " status=200 " in line and f" authn={AUTHN} " in line, line
        if user:
            assert f" user={user} " in line, line
        suffix = path[len(NS_PATH):]
        return self.shard.wait_for(lambda x: x.complete and x.path.endswith(suffix))

    def unauthorized(self, token, reason):
        """Expects the generic 401 with this log reason; the token is never shown."""
        before = len(self.shard.snapshot())
        path = self.path()
        r = self.get(token, path)
        assert_unauthorized(r)
        line = self.access(path)
        assert " status=401 " in line, line
        assert log_reason(line) == reason, line
        assert_token_hidden(token, r, self.fg.log())
        assert len(self.shard.snapshot()) == before, "a refused request reached the shard"
        return line


def assert_token_hidden(token, resp, log):
    raw = json.dumps(resp.headers).encode() + resp.body
    assert token.encode() not in raw, "the token is in the response"
    assert token not in log, "the token is in frontgate's log"
    for seg in segments(token):
        if len(seg) >= 24:
            assert seg not in log, "a token segment is in frontgate's log"
            assert seg.encode() not in raw, "a token segment is in the response"


@pytest.fixture
def oidc(pki, idp_factory, shard, frontgate_factory):
    """start(idp=None, entry=..., name=..., **kw) -> OidcEnv; waits for /readyz unless told not to."""

    def start(idp=None, entry=None, authenticator=None, files=None, limits=None, wait_ready=True,
              tls_listener=False, name="fg", shard_url=None):
        idp = idp or idp_factory()
        if authenticator is None:
            authenticator = {"name": AUTHN, "jwt": entry or jwt_entry(idp.issuer, pki)}
        files = dict(files or {})
        if tls_listener:
            files.update({"tls.crt": pki.cert_pem, "tls.key": pki.key_pem})
        cfg = fg_config(shard_url or shard.url, authenticator_yaml(authenticator), limits, tls_listener)
        fg = frontgate_factory(cfg, files, name=name)
        env = OidcEnv(fg, idp, shard)
        if wait_ready:
            env.wait_ready()
        return env

    return start


def assert_alice_identity(rec):
    """The identity the default entry maps ALICE's claims to, as the shard sees it."""
    assert rec.path.startswith(f"/clusters/{WS_CLUSTER}/api/v1/namespaces/req-"), rec.path
    assert rec.values("X-Remote-User") == ["oidc:alice"], rec.headers
    assert Counter(rec.values("X-Remote-Group")) == Counter(
        ["oidc:dev", "oidc:ops", "system:authenticated"]), rec.headers
    assert rec.values("X-Remote-Uid") == ["u-1234"], rec.headers
    names = rec.names()
    # kube's requestheader escaping, cased as kcp sends it
    assert "X-Remote-Extra-Example.org%2ftenant" in names, names
    assert rec.values("X-Remote-Extra-Example.org%2ftenant") == ["acme"]
    assert rec.values("X-Remote-Extra-Example.org%2froles") == ["reader", "writer"]
    assert rec.values("Authorization") == [], "Authorization reached the shard after frontgate validated it"


def now_s():
    return int(time.time())


# ---------------------------------------------------------------------------
# 1. claims to identity


def test_idp_tokens_map_to_identity_headers(oidc):
    env = oidc()
    idp = env.idp

    # username (claim + prefix), groups (array), uid, extras (string and array)
    token = idp.mint(claims={"jti": "tok-42"})
    rec = env.ok(token, user="oidc:alice")
    assert_alice_identity(rec)
    # a jti becomes kube's credential-id extra
    assert rec.values("X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id") == ["JTI=tok-42"], rec.headers
    assert_token_hidden(token, env.get(token), env.fg.log())

    # groups as a single string; no uid, tenant or roles claim: no header for them
    token = idp.mint(claims={"sub": "bob", "groups": "solo", "uid": None, "tenant": None, "roles": None})
    rec = env.ok(token, user="oidc:bob")
    assert rec.values("X-Remote-User") == ["oidc:bob"]
    assert Counter(rec.values("X-Remote-Group")) == Counter(["oidc:solo", "system:authenticated"])
    assert rec.values("X-Remote-Uid") == []
    assert not [n for n in rec.names() if n.lower().startswith("x-remote-extra-")], rec.headers

    # a token from the IdP's own token endpoint (client credentials grant over TLS)
    idp.call("tokenClaims", claims={"sub": "robot", "groups": ["bots"], "uid": "u-robot"})
    token = idp.token_endpoint({"grant_type": "client_credentials", "scope": "read", "aud": AUD})
    assert idp.counts()["token"] == 1
    rec = env.ok(token, user="oidc:robot")
    assert rec.values("X-Remote-User") == ["oidc:robot"]
    assert Counter(rec.values("X-Remote-Group")) == Counter(["oidc:bots", "system:authenticated"])
    assert rec.values("X-Remote-Uid") == ["u-robot"]
    assert rec.values("Authorization") == []
    assert token not in env.fg.log()


def test_certificate_authority_file(oidc, pki, idp_factory):
    idp = idp_factory()
    env = oidc(idp=idp, entry=jwt_entry(idp.issuer, pki, ca="file"), files={"idp-ca.crt": pki.ca_pem})
    assert_alice_identity(env.ok(idp.mint(), user="oidc:alice"))


def test_untrusted_idp_certificate_keeps_frontgate_not_ready(oidc, pki, idp_factory):
    """Without the test CA (system roots), the IdP's certificate does not verify: no keys."""
    idp = idp_factory()
    env = oidc(idp=idp, entry=jwt_entry(idp.issuer, pki, ca=None), wait_ready=False)
    env.fg.wait_log(r"warn jwt corp-sso: discovery failed: .*no keys yet", timeout=10)
    assert env.readyz() == 503
    env.unauthorized(idp.mint(), "the issuer's signing keys are not available yet")
    assert idp.counts()["total"] == 0, "a request reached the IdP over an unverified TLS connection"


# ---------------------------------------------------------------------------
# 2. key rotation


@pytest.mark.concurrency
def test_key_rotation_is_picked_up_on_first_token(oidc):
    env = oidc()
    idp = env.idp
    old_kid = idp.kid
    env.ok(idp.mint(), user="oidc:alice")
    fetched = idp.counts()["jwks"]
    assert fetched == 1

    new_kid = idp.rotate()
    assert new_kid != old_kid
    token = idp.mint(claims={"sub": "alice-after-rotation"})
    assert json.loads(unb64u(segments(token)[0]))["kid"] == new_kid
    # the very first token signed with the new key: 200, after one JWKS fetch
    env.ok(token, user="oidc:alice-after-rotation")
    assert idp.counts()["jwks"] == fetched + 1
    env.fg.wait_log(r"info jwt corp-sso: 2 signing keys")
    # the new key is known now: more tokens need no fetch; old-key tokens still work
    env.ok(idp.mint(claims={"sub": "carol"}), user="oidc:carol")
    env.ok(idp.mint(claims={"sub": "dave"}, kid=old_kid), user="oidc:dave")
    assert idp.counts()["jwks"] == fetched + 1
    assert "status=401" not in env.fg.log()


# ---------------------------------------------------------------------------
# 3. and 4. the IdP down at start, and after start


@pytest.mark.concurrency
def test_idp_down_at_start_then_recovers(oidc, idp_factory):
    idp = idp_factory(down=True)
    env = oidc(idp=idp, wait_ready=False)
    env.fg.wait_log(r"warn jwt corp-sso: discovery failed: .*no keys yet", timeout=10)
    assert env.readyz() == 503
    token = idp.mint()
    env.unauthorized(token, "the issuer's signing keys are not available yet")
    assert env.readyz() == 503

    idp.serve()
    took = env.wait_ready(timeout=15)
    assert env.readyz() == 200
    rec = env.ok(token, user="oidc:alice")  # the token refused before now works
    assert_alice_identity(rec)
    counts = idp.counts()
    assert counts["discovery"] >= 1 and counts["jwks"] >= 1, counts
    print(f"ready {took:.2f} s after the IdP came up; IdP served {counts}")


def test_require_ready_false_keeps_readyz_up_while_idp_down(oidc, pki, idp_factory):
    idp = idp_factory(down=True)
    env = oidc(idp=idp, authenticator={"name": AUTHN, "jwt": jwt_entry(idp.issuer, pki),
                                       "requireReady": False}, wait_ready=False)
    env.fg.wait_log(r"warn jwt corp-sso: discovery failed", timeout=10)
    assert env.readyz() == 200
    env.unauthorized(idp.mint(), "the issuer's signing keys are not available yet")


@pytest.mark.concurrency
def test_idp_down_after_start_keeps_keys(oidc, local_key):
    env = oidc()
    idp = env.idp
    env.ok(idp.mint(), user="oidc:alice")
    jwks = idp.counts()["jwks"]
    idp.stop_serving()

    # new tokens (never seen, so not from the cache) signed with the known key still work
    for who in ("erin", "frank", "grace"):
        env.ok(idp.mint(claims={"sub": who}), user=f"oidc:{who}")
    # an unknown kid forces a JWKS fetch, which fails: refused, and the keys stay
    foreign = compact({"alg": "RS256", "typ": "JWT", "kid": "kid-unknown"},
                      {**ALICE, "iss": idp.issuer, "exp": now_s() + 600}, rs256(local_key))
    env.unauthorized(foreign, "the signing key is not in the issuer's key set")
    env.fg.wait_log(r"warn jwt corp-sso: JWKS fetch failed: .*keeping the current keys", timeout=10)
    env.ok(idp.mint(claims={"sub": "heidi"}), user="oidc:heidi")
    assert env.readyz() == 200
    assert idp.counts()["jwks"] == jwks  # the IdP saw none of it


@pytest.mark.concurrency
def test_sigterm_after_oidc_traffic_exits_cleanly(oidc, local_key):
    """
    SIGTERM with a key refresh and a fetch retry pending: exit status 0 and nothing from
    the sanitizers (with the ASan build, LeakSanitizer turns a leak into exit status 23).
    """
    env = oidc()
    idp = env.idp
    env.ok(idp.mint(), user="oidc:alice")  # a periodic refresh is now scheduled
    idp.stop_serving()
    foreign = compact({"alg": "RS256", "typ": "JWT", "kid": "kid-unknown"},
                      {**ALICE, "iss": idp.issuer, "exp": now_s() + 600}, rs256(local_key))
    env.unauthorized(foreign, "the signing key is not in the issuer's key set")
    env.fg.wait_log(r"warn jwt corp-sso: JWKS fetch failed: ", timeout=10)  # a retry is scheduled
    rc = env.fg.term()
    log = env.fg.log()
    assert not re.search(r"Sanitizer|runtime error:", log), log[-4000:]
    assert rc == 0, log[-4000:]


# ---------------------------------------------------------------------------
# 5. a flood of unknown kids


@pytest.mark.concurrency
def test_random_kid_flood_makes_few_jwks_fetches(oidc):
    env = oidc()
    idp = env.idp
    env.ok(idp.mint(), user="oidc:alice")
    before = idp.counts()

    now = now_s()
    header_claims = {**ALICE, "iss": idp.issuer, "iat": now, "exp": now + 600}
    tokens = []
    for i in range(1000):
        # a well-formed RS256 token whose kid the IdP never had (the signature is never checked)
        t = compact({"alg": "RS256", "typ": "JWT", "kid": "rnd-" + os.urandom(8).hex()},
                    {**header_claims, "sub": f"u{i}"})
        tokens.append(t + b64u(os.urandom(256)))

    local = threading.local()
    conns = []
    conns_lock = threading.Lock()

    def send(token):
        for attempt in range(2):
            c = getattr(local, "conn", None)
            if c is None:
                c = local.conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=30)
                with conns_lock:
                    conns.append(c)
            try:
                c.request("GET", NS_PATH, headers={"Authorization": f"Bearer {token}"})
                resp = c.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, ConnectionError):
                c.close()
                local.conn = None
                if attempt:
                    raise

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(send, tokens))
    took = time.monotonic() - t0
    for c in conns:
        c.close()

    assert Counter(s for s, _ in results) == Counter({401: 1000})
    assert all(b in (UNAUTHORIZED_BODY, UNAUTHORIZED_BODY + b"\n") for _, b in results)
    after = idp.counts()
    fetched = after["jwks"] - before["jwks"]
    assert fetched <= 3, f"{fetched} JWKS fetches for 1,000 unknown kids"
    assert after["discovery"] - before["discovery"] <= 1

    # every request is logged with the reason
    deadline = time.monotonic() + 10
    while True:
        lines = [ln for ln in env.fg.lines() if " status=401 " in ln]
        if len(lines) >= 1000 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert Counter(log_reason(ln) for ln in lines) == Counter(
        {"the signing key is not in the issuer's key set": 1000})
    log = env.fg.log()
    assert not any(t.split(".")[2] in log for t in tokens[:50])
    # the IdP's real tokens still work afterwards
    env.ok(idp.mint(claims={"sub": "after-flood"}), user="oidc:after-flood")
    print(f"1,000 random-kid tokens in {took:.2f} s, {fetched} JWKS fetch(es)")


# ---------------------------------------------------------------------------
# 6. bad input: 401, the generic body, a specific log reason


def _flip_sig(token):
    h, c, s = segments(token)
    sig = bytearray(unb64u(s))
    sig[len(sig) // 2] ^= 0x01
    return f"{h}.{c}.{b64u(bytes(sig))}"


def _bomb(ctx):
    """Claims with a 5,000-deep array, signed by the IdP's key (Python's json and
    jose cannot nest that deep, so the payload text is built here and signed as is)."""
    depth = 5000
    payload = json.dumps(_std_claims(ctx))[:-1] + ', "bomb": ' + "[" * depth + "]" * depth + "}"
    return ctx.idp.call("sign", payload=payload)["token"]


def _other_issuer(ctx):
    other = ctx.idp_factory()
    assert other.issuer != ctx.idp.issuer
    return other.mint()


def _hs256(ctx):
    pem = jwk_public_pem(next(k for k in ctx.idp.jwks() if k["kid"] == ctx.idp.kid))
    claims = {**ALICE, "iss": ctx.idp.issuer, "iat": ctx.now, "exp": ctx.now + 600}
    return compact({"alg": "HS256", "typ": "JWT", "kid": ctx.idp.kid}, claims,
                   lambda data: hmac.new(pem, data, hashlib.sha256).digest())


def _std_claims(ctx, **kw):
    return {**ALICE, "iss": ctx.idp.issuer, "iat": ctx.now, "nbf": ctx.now - 10, "exp": ctx.now + 600, **kw}


def _non_b64(ctx):
    h, c, s = segments(ctx.idp.mint())
    return f"{h}.{c[:10]}+/{c[12:]}.{s}"


BAD = {
    "expired": (
        lambda x: x.idp.mint(claims={"iat": x.now - 600, "nbf": x.now - 600, "exp": x.now - 120}),
        "token expired"),
    "nbf-in-the-future": (
        lambda x: x.idp.mint(claims={"nbf": x.now + 300}),
        "token not valid yet"),
    "wrong-iss": (_other_issuer, "the token's issuer is not configured"),
    "wrong-aud": (
        lambda x: x.idp.mint(claims={"aud": ["someone-else", "another"]}),
        "token audience does not match"),
    "bad-signature": (lambda x: _flip_sig(x.idp.mint()), "token signature does not verify"),
    "key-not-in-jwks": (
        lambda x: compact({"alg": "RS256", "typ": "JWT", "kid": x.idp.kid}, _std_claims(x),
                          rs256(x.local_key)),
        "token signature does not verify"),
    "alg-none": (
        lambda x: compact({"alg": "none", "typ": "JWT"}, _std_claims(x)),
        "unsigned tokens (alg none) are not accepted"),
    "hs256-with-rsa-public-key": (_hs256, "HMAC tokens (HS*) are not accepted"),
    "unknown-crit-header": (
        lambda x: compact({"alg": "RS256", "typ": "JWT", "kid": x.idp.kid, "crit": ["x-frontgate-test"],
                           "x-frontgate-test": True}, _std_claims(x), rs256(x.local_key)),
        "critical token header extensions are not supported"),
    "truncated-signature": (
        # 336 of 342 characters: still canonical base64url, 252 bytes instead of 256
        lambda x: x.idp.mint()[:-6],
        "token signature has the wrong length"),
    "truncated-after-claims": (
        lambda x: x.idp.mint().rsplit(".", 1)[0] + ".",
        "token has no signature"),
    "non-base64url": (_non_b64, "token claims are not canonical base64url"),
    # over the 16 KiB cap, within the default maxHeaderBytes (64Ki)
    "60KiB": (
        lambda x: x.idp.mint(claims={"pad": "x" * (45 * 1024)}),
        "token too large"),
    # with maxHeaderBytes: 256Ki in this test's config, so the request reaches authentication
    "100KiB": (
        lambda x: x.idp.mint(claims={"pad": "x" * (77 * 1024)}),
        "token too large"),
    "nested-json-bomb": (_bomb, "token claims are nested too deeply"),
    "sub-with-crlf": (
        lambda x: x.idp.mint(claims={"sub": "alice\r\nX-Evil: 1"}),
        "identity contains characters not allowed in a header"),
    "groups-wrong-type": (
        lambda x: x.idp.mint(claims={"groups": 42}),
        "groups claim has the wrong type"),
    "email-not-verified": (
        lambda x: x.idp.mint(claims={"email": "alice@example.org", "email_verified": False}),
        "email not verified"),
}


class Ctx:
    pass


@pytest.mark.parametrize("case", list(BAD))
def test_bad_token_is_401_with_specific_reason(case, oidc, pki, idp_factory, local_key):
    idp = idp_factory()
    kw = {}
    if case == "email-not-verified":
        kw["entry"] = jwt_entry(idp.issuer, pki, username={"claim": "email", "prefix": ""})
    if case == "100KiB":
        kw["limits"] = {"maxHeaderBytes": "256Ki"}
    env = oidc(idp=idp, **kw)
    x = Ctx()
    x.idp, x.idp_factory, x.local_key, x.now = idp, idp_factory, local_key, now_s()
    make, reason = BAD[case]
    token = make(x)
    if case == "100KiB":
        assert 100 * 1024 <= len(token) < 110 * 1024
    if case == "60KiB":
        assert 60 * 1024 <= len(token) < 62 * 1024
    line = env.unauthorized(token, reason)
    assert "X-Evil" not in line
    # the same IdP's good tokens work on the same frontgate
    env.ok(idp.mint(claims={"email": "alice@example.org", "email_verified": True}))


# ---------------------------------------------------------------------------
# 7. the verified-token cache


@pytest.mark.concurrency
def test_verified_token_cache_and_reload(oidc):
    """
    What is observed (and pinned here):
    - a verified token is cached: after its key is gone from frontgate's key set (the IdP
      retired it from its JWKS), the cached token still gets 200, while a fresh token
      signed with the same retired key gets 401;
    - the IdP going down changes nothing for a cached token;
    - SIGHUP builds a new snapshot, which flushes the cache (the retired key's token is
      now refused), but keeps the issuer's keys (tokens of the current key keep working,
      with no JWKS fetch and no 401).
    """
    env = oidc()
    idp = env.idp
    kid1 = idp.kid
    t1 = idp.mint(claims={"sub": "cached"})
    env.ok(t1, user="oidc:cached")

    idp.stop_serving()
    env.ok(t1, user="oidc:cached")  # the same token again, IdP down
    idp.serve()

    # the IdP rotates and stops publishing the old key; the new key's first token
    # makes frontgate fetch the JWKS, which no longer has kid1
    idp.rotate()
    idp.retire(kid1)
    jwks = idp.counts()["jwks"]
    t2 = idp.mint(claims={"sub": "fresh"})
    env.ok(t2, user="oidc:fresh")
    assert idp.counts()["jwks"] == jwks + 1

    env.ok(t1, user="oidc:cached")  # only the cache can still vouch for it
    env.unauthorized(idp.mint(claims={"sub": "not-cached"}, kid=kid1),
                     "the signing key is not in the issuer's key set")

    jwks = idp.counts()["jwks"]
    env.fg.hup()
    env.ok(t2, user="oidc:fresh")  # keys kept across the reload
    env.ok(idp.mint(claims={"sub": "after-reload"}), user="oidc:after-reload")
    assert idp.counts()["jwks"] == jwks, "the reload refetched the JWKS"
    env.unauthorized(t1, "the signing key is not in the issuer's key set")  # cache flushed


@pytest.mark.concurrency
def test_keepalive_connection_reuse_is_bounded_by_expiry_and_reload(oidc):
    """
    A connection that presents the same token again is answered from a per-connection
    memo. Pinned here: the memo keys on the exact token (two tokens alternating on one
    connection each keep their own identity), never outlives the token's expiry, and
    never survives a reload (the same rules as the shared token cache).
    """
    env = oidc()
    idp = env.idp
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=10)

    def send(token):
        path = env.path()
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            return resp.status, None
        suffix = path[len(NS_PATH):]
        rec = env.shard.wait_for(lambda x: x.complete and x.path.endswith(suffix))
        return 200, rec.value("X-Remote-User")

    try:
        exp = time.time() + 3
        short = idp.mint(claims={"sub": "short"}, expires_in=3)
        other = idp.mint(claims={"sub": "other"})
        for token, user in [(short, "short"), (other, "other"), (short, "short"),
                            (short, "short"), (other, "other")]:
            assert send(token) == (200, f"oidc:{user}")

        # the short token stops working on this very connection once it expires
        while True:
            status, _ = send(short)
            now = time.time()
            if status == 401:
                break
            assert now < exp + 2, "an expired token was still accepted on a kept-alive connection"
            time.sleep(0.1)
        assert now >= exp - 1.5, "the token was refused well before its expiry"

        # a reload drops what the connection remembered: a retired key's token is refused
        kid1 = idp.kid
        cached = idp.mint(claims={"sub": "cached"})
        assert send(cached) == (200, "oidc:cached")
        idp.rotate()
        idp.retire(kid1)
        assert send(idp.mint(claims={"sub": "fresh"})) == (200, "oidc:fresh")  # JWKS refetched
        assert send(cached) == (200, "oidc:cached")  # still vouched for by the caches
        env.fg.hup()
        assert send(cached) == (401, None)
    finally:
        conn.close()


@pytest.mark.concurrency
def test_sighup_under_oidc_traffic_has_no_401(oidc):
    env = oidc()
    idp = env.idp
    tokens = [idp.mint(claims={"sub": f"user{i}"}) for i in range(5)]
    for t in tokens:
        env.ok(t)
    for _ in range(3):
        env.fg.hup()
        for t in tokens:
            r = env.get(t)
            assert r.status == 200, r
        env.ok(idp.mint(claims={"sub": "new-after-hup"}))
    assert "status=401" not in env.fg.log()


# ---------------------------------------------------------------------------
# 8. kubectl


@pytest.fixture
def echo_shard():
    port = closed_port()
    proc = subprocess.Popen([FRONTGATE_BIN, "echo-shard", "--listen", f"127.0.0.1:{port}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = queue.Queue()

    def read():
        for ln in iter(proc.stderr.readline, b""):
            lines.put(ln.decode("utf-8", "replace"))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 10
    while True:
        try:
            ln = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            raise AssertionError("the echo shard did not start")
        if "echo shard listening on" in ln:
            break
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_kubectl_auth_whoami_with_oidc_token(oidc, echo_shard, pki, tmp_path):
    kubectl = conftest.KUBECTL
    if not kubectl or not os.access(kubectl, os.X_OK):
        pytest.skip(f"no executable kubectl at {kubectl} (set FG_KUBECTL, or run .ci/install-deps test)")
    env = oidc(tls_listener=True, shard_url=echo_shard)
    https_port = next(p for s, _, p in env.fg.listeners if s == "https")
    token = env.idp.mint()
    ca = tmp_path / "ca.crt"
    ca.write_text(pki.ca_pem)
    p = subprocess.run(
        [kubectl, "--server", f"https://127.0.0.1:{https_port}/clusters/{WS_PATH}",
         "--certificate-authority", str(ca), "--token", token, "auth", "whoami", "-o", "json"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "no-kubeconfig")},
    )
    assert p.returncode == 0, p.stdout + p.stderr
    info = json.loads(p.stdout)["status"]["userInfo"]
    assert info["username"] == "oidc:alice", info
    assert Counter(info["groups"]) == Counter(["oidc:dev", "oidc:ops", "system:authenticated"]), info
    assert info.get("uid") == "u-1234", info
    extra = {k.lower(): v for k, v in info.get("extra", {}).items()}
    assert extra.get("example.org/tenant") == ["acme"], info
    line = env.fg.wait_log(r"access method=POST path=/clusters/\S+/selfsubjectreviews status=201 .*").group(0)
    assert " user=oidc:alice " in line and f" authn={AUTHN} " in line, line
    assert token not in env.fg.log()

    # and the table kubectl prints for a person
    p = subprocess.run(
        [kubectl, "--server", f"https://127.0.0.1:{https_port}/clusters/{WS_PATH}",
         "--certificate-authority", str(ca), "--token", token, "auth", "whoami"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "no-kubeconfig")},
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"^Username\s+oidc:alice\s*$", p.stdout, re.M), p.stdout
    assert re.search(r"^Groups\s+\[.*oidc:dev.*\]", p.stdout, re.M), p.stdout


# ---------------------------------------------------------------------------
# 9. authenticationConfigurationFile


def test_authentication_configuration_file(oidc, pki, idp_factory):
    idp = idp_factory()
    kube = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": [jwt_entry(idp.issuer, pki)],
    }
    env = oidc(idp=idp, authenticator={"name": AUTHN, "authenticationConfigurationFile": "authn-config.yaml"},
               files={"authn-config.yaml": to_yaml(kube)})
    assert 'kind: "AuthenticationConfiguration"' in open(env.fg.path("authn-config.yaml")).read()
    assert_alice_identity(env.ok(idp.mint(), user="oidc:alice"))
    env.unauthorized(idp.mint(claims={"aud": "nope"}), "token audience does not match")
    env.unauthorized(_flip_sig(idp.mint()), "token signature does not verify")


# ---------------------------------------------------------------------------
# 10. frontgate check: kube's validation rules, with file:line:column


def _check(tmp_path, text):
    path = tmp_path / "frontgate.yaml"
    path.write_text(text)
    p = subprocess.run([FRONTGATE_BIN, "check", "-c", str(path)], capture_output=True, text=True, timeout=30)
    return p, str(path)


def _pos(text, needle, nth=1):
    """1-based line and column of the nth occurrence of needle in text."""
    i = -1
    for _ in range(nth):
        i = text.index(needle, i + 1)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


CHECK_BASE = """\
listeners:
  - address: 127.0.0.1:0
shards:
  - name: shard-1
    url: http://127.0.0.1:1
routes:
  - prefix: /
    shard: shard-1
authentication:
  global: [sso]
authenticators:
"""


def _entry(url="https://127.0.0.1:8443", username='{claim: sub, prefix: "oidc:"}', more=""):
    return f"""\
    jwt:
      issuer:
        url: {url}
        audiences: [frontgate]
      claimMappings:
        username: {username}
{more}"""


CHECK_CASES = {
    "cel-expression": (
        "  - name: sso\n" + _entry(username="{expression: \"claims.sub + 'x'\"}"),
        "\"claims.sub + 'x'\"",
        "claimMappings.username.expression: CEL expressions are not supported"),
    "claim-without-prefix": (
        "  - name: sso\n" + _entry(more="        groups: {claim: groups}\n"),
        "{claim: groups}",
        "claimMappings.groups: prefix is required when claim is set"),
    "http-issuer-not-loopback": (
        "  - name: sso\n" + _entry(url="http://idp.example.com"),
        "http://idp.example.com",
        'jwt.issuer.url "http://idp.example.com" must use https://'),
    "duplicate-issuers": (
        "  - name: sso\n" + _entry() + "  - name: sso-again\n" + _entry(),
        "name: sso-again",
        'jwt issuer "https://127.0.0.1:8443" is configured twice'),
    "extra-key-under-kubernetes.io": (
        "  - name: sso\n" + _entry(more="        extra:\n          - key: example.kubernetes.io/team\n"
                                        "            valueExpression: claims.team\n"),
        "example.kubernetes.io/team",
        'claimMappings.extra key "example.kubernetes.io/team" uses a reserved domain'),
}


@pytest.mark.parametrize("case", list(CHECK_CASES))
def test_check_rejects_with_position(case, tmp_path):
    authn, needle, message = CHECK_CASES[case]
    text = CHECK_BASE + authn
    p, path = _check(tmp_path, text)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    line, col = _pos(text, needle)
    want = f"{path}:{line}:{col}: {message}"
    assert any(ln.startswith(want) for ln in out.splitlines()), f"wanted {want!r} in:\n{out}"


def test_check_accepts_a_valid_jwt_config(tmp_path, pki):
    authn = "  - name: sso\n" + _entry(more=(
        "        groups: {claim: groups, prefix: \"oidc:\"}\n"
        "        uid: {expression: claims.uid}\n"
        "        extra:\n          - key: example.org/tenant\n            valueExpression: claims.tenant\n"))
    authn = authn.replace("        audiences: [frontgate]\n",
                          "        audiences: [frontgate]\n        certificateAuthorityFile: ca.crt\n")
    (tmp_path / "ca.crt").write_text(pki.ca_pem)
    p, _ = _check(tmp_path, CHECK_BASE + authn)
    assert p.returncode == 0, p.stdout + p.stderr


# ---------------------------------------------------------------------------
# identity values with whitespace at an end (the Reliability issue's critical finding)


def test_group_with_whitespace_at_an_end_is_401_not_a_bypass_of_drop_groups(oidc, pki, idp_factory):
    """With an empty group prefix, " system:masters" would pass dropGroups (which looks for
    system:masters) and a shard would read it as system:masters: it fails authentication."""
    idp = idp_factory()
    entry = jwt_entry(idp.issuer, pki)
    entry["claimMappings"]["groups"]["prefix"] = ""
    entry["claimMappings"]["username"]["prefix"] = ""
    e = oidc(idp=idp, entry=entry)
    for g in [" system:masters", "system:masters ", "\tsystem:masters", "system:masters\t"]:
        e.unauthorized(idp.mint(claims={"groups": ["dev", g]}),
                       "identity contains characters not allowed in a header")
    for u in [" alice", "alice "]:
        e.unauthorized(idp.mint(claims={"sub": u}), "identity contains characters not allowed in a header")
    # the clean spelling is dropped as before; inner spaces are the group's own
    rec = e.ok(idp.mint(claims={"groups": ["dev", "system:masters", "team a"]}))
    assert Counter(rec.values("X-Remote-Group")) == Counter(["dev", "team a", "system:authenticated"]), rec.headers
