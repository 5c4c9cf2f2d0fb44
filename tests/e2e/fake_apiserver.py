"""
A fake Kubernetes API server for the tokenReview authenticator, in the Python
standard library (plus `cryptography` for the test certificates).

It serves exactly one endpoint, `POST /apis/authentication.k8s.io/v1/tokenreviews`,
over HTTPS with a test CA, and mirrors the authentication.k8s.io/v1 wire format:

  request   {"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",
             "spec":{"token":"...","audiences":["..."]}}
  response  201 {"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",
                 "metadata":{"creationTimestamp":null},"spec":{...as sent...},
                 "status":{"authenticated":true,
                           "user":{"username":..,"uid":..,"groups":[..],"extra":{k:[..]}},
                           "audiences":[..]}}
            an unknown token: 201 with status {"user":{},"error":"..."} (authenticated omitted)

Like kube-apiserver it authenticates its caller: with `callers` set, the
request must carry `Authorization: Bearer <one of callers>` (else 401 Status);
with `client_ca` set, the TLS handshake requires a client certificate signed by
that CA. Every review is recorded (caller token, client certificate CN,
reviewed token, audiences) and counted.

A test tells it, per token, what to answer (`allow`, `answer`), to delay its
answers (`delay`), to fail with 500/429 a number of times (`fail`), or to go
down and come back (`down()`, `up()`).
"""
import base64
import datetime
import ipaddress
import json
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import conftest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
API_VERSION = "authentication.k8s.io/v1"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


# ---------------------------------------------------------------------------
# certificates


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class TestCA:
    """A throwaway CA (EC P-256) that issues server and client certificates."""

    __test__ = False  # not a pytest class

    def __init__(self, cn="frontgate e2e test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, cn, server=True, client=False, ips=("127.0.0.1",), dns=("localhost",)):
        """(cert_pem, key_pem) for a leaf certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if server:
            alt = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        return (
            cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
        )

    def write_leaf(self, directory, stem, **kw):
        """Issues a leaf and writes <stem>.crt and <stem>.key; returns their paths."""
        cert, key = self.issue(stem if "cn" not in kw else kw.pop("cn"), **kw)
        crt_path = os.path.join(str(directory), stem + ".crt")
        key_path = os.path.join(str(directory), stem + ".key")
        with open(crt_path, "w") as f:
            f.write(cert)
        with open(key_path, "w") as f:
            f.write(key)
        return crt_path, key_path

    def write_ca(self, directory, name="ca.crt"):
        path = os.path.join(str(directory), name)
        with open(path, "w") as f:
            f.write(self.pem)
        return path


# ---------------------------------------------------------------------------
# tokens


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_SIGNING_KEY = None


def make_jwt(claims, kid="sa-key-1"):
    """An RS256 JWT with the given claims (signed with a key nobody verifies: the API server decides)."""
    # the e2e suite's secret scan; the interop suite loads this file beside its own conftest
    register = getattr(conftest, "register_secret", None)
    token = _make_jwt(claims, kid)
    return register(token) if register else token


def _make_jwt(claims, kid):
    global _SIGNING_KEY
    if _SIGNING_KEY is None:
        _SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header = b64url(json.dumps({"alg": "RS256", "kid": kid}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = _SIGNING_KEY.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{b64url(sig)}"


def sa_token(ns="ns", sa="sa", iss=SA_ISSUER, aud=("https://kubernetes.default.svc",)):
    """A fresh, unique, bound service-account token (JWT-shaped, as kubelet projects them)."""
    now = int(time.time())
    jti = b64url(os.urandom(12))
    return make_jwt(
        {
            "aud": list(aud),
            "exp": now + 3600,
            "iat": now,
            "nbf": now,
            "iss": iss,
            "jti": jti,
            "kubernetes.io": {
                "namespace": ns,
                "node": {"name": "node-1", "uid": "node-uid"},
                "pod": {"name": "p", "uid": "pod-uid-" + jti},
                "serviceaccount": {"name": sa, "uid": "sa-uid-" + ns + "-" + sa},
            },
            "sub": f"system:serviceaccount:{ns}:{sa}",
        }
    )


def sa_user(ns="ns", sa="sa", pod="p"):
    """status.user as kube-apiserver returns it for a bound service-account token."""
    return {
        "username": f"system:serviceaccount:{ns}:{sa}",
        "uid": f"sa-uid-{ns}-{sa}",
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
        "extra": {
            "authentication.kubernetes.io/pod-name": [pod],
            "authentication.kubernetes.io/pod-uid": [f"{pod}-uid"],
            "authentication.kubernetes.io/credential-id": ["JTI=0f8b0d7c-4a4e-4c9e-9b46-2f8c1f0e9d11"],
        },
    }


# ---------------------------------------------------------------------------
# the server


class Review:
    """One POST to the tokenreviews endpoint, as the fake received it."""

    def __init__(self, caller, client_cn, doc, t):
        self.caller = caller  # the bearer token frontgate presented, or None
        self.client_cn = client_cn  # CN of frontgate's client certificate, or None
        self.doc = doc  # the request JSON (None if it did not parse)
        self.t = t
        spec = (doc or {}).get("spec") or {}
        self.token = spec.get("token")
        self.audiences = spec.get("audiences")

    def __repr__(self):
        return f"<Review caller={'set' if self.caller else None} cn={self.client_cn} audiences={self.audiences}>"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr, handler, owner):
        self.owner = owner
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        # The TLS handshake runs in the connection's own thread, never in accept().
        request.settimeout(10)
        ctx = self.owner.ssl_ctx
        try:
            tls = ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.owner._note_tls_error(e)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"

    def log_message(self, *args):  # quiet; and never print a token
        pass

    def _send(self, code, doc, extra_headers=()):
        body = json.dumps(doc, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _status(self, code, reason, message):
        self._send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": reason, "code": code})

    def do_GET(self):
        self.server.owner._error(f"unexpected GET {self.path}")
        self._status(405, "MethodNotAllowed", "only POST tokenreviews here")

    def do_POST(self):
        owner = self.server.owner
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.path != REVIEW_PATH:
            owner._error(f"unexpected path {self.path}")
            self._status(404, "NotFound", "the server could not find the requested resource")
            return
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/json":
            owner._error(f"Content-Type {ctype!r}")
        auth = self.headers.get("Authorization")
        caller = auth[7:] if auth and auth.startswith("Bearer ") else None
        cn = None
        peer = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if peer:
            for rdn in peer.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        rv = Review(caller, cn, doc, time.monotonic())
        owner._record(rv)
        # kube-apiserver authenticates its caller before anything else
        if owner.callers is not None and caller not in owner.callers:
            self._status(401, "Unauthorized", "Unauthorized")
            return
        if (
            not isinstance(doc, dict)
            or doc.get("apiVersion") != API_VERSION
            or doc.get("kind") != "TokenReview"
            or not isinstance(doc.get("spec"), dict)
        ):
            owner._error(f"malformed TokenReview request: {raw[:200]!r}")
            self._status(400, "BadRequest", "malformed TokenReview")
            return
        if not rv.token:
            self._status(400, "BadRequest", "token is required for TokenReview in authentication")
            return
        delay, failure, answer = owner._plan(rv)
        if delay:
            time.sleep(delay)
        if failure:
            code, headers = failure
            self._status(code, "InternalError" if code >= 500 else "TooManyRequests", "try again")
            return
        spec = dict(doc["spec"])
        out = {"apiVersion": API_VERSION, "kind": "TokenReview",
               "metadata": {"creationTimestamp": None}, "spec": spec, "status": answer}
        self._send(201, out)


class FakeAPIServer:
    """See the module docstring. Start with .start(); stop with .stop()."""

    def __init__(self, ca, callers=None, client_ca=None, cn="fake-apiserver"):
        cert, key = ca.issue(cn)
        self.ca = ca
        self.callers = set(callers) if callers is not None else None
        self.ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load_chain(cert, key)
        if client_ca is not None:
            self.ssl_ctx.verify_mode = ssl.CERT_REQUIRED
            self.ssl_ctx.load_verify_locations(cadata=client_ca.pem)
        self.lock = threading.Condition()
        self.reviews = []
        self.errors = []  # protocol violations by the client (must stay empty)
        self.tls_errors = []
        self.delay = 0.0
        self._answers = {}  # token -> status dict, or callable(review) -> status dict
        self._failures = []  # [(token or None, code, remaining)]
        self._server = None
        self._thread = None
        self.port = None

    def _load_chain(self, cert, key):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            cp, kp = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            with open(cp, "w") as f:
                f.write(cert)
            with open(kp, "w") as f:
                f.write(key)
            self.ssl_ctx.load_cert_chain(cp, kp)

    # -- lifecycle

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def start(self):
        self._server = _Server(("127.0.0.1", self.port or 0), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def down(self):
        """Stops listening: new connections are refused (a transport error for frontgate)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def up(self):
        """Listens again on the same port."""
        if self._server is None:
            self.start()

    def stop(self):
        self.down()

    # -- what to answer

    def allow(self, token, user, audiences=None, extra_status=None):
        """token authenticates as user; status.audiences = audiences (default: the requested ones)."""

        def answer(rv):
            st = {"authenticated": True, "user": user,
                  "audiences": list(rv.audiences or []) if audiences is None else audiences}
            st.update(extra_status or {})
            return st

        with self.lock:
            self._answers[token] = answer

    def answer(self, token, status):
        """token gets exactly this status object (or callable(review) -> status)."""
        with self.lock:
            self._answers[token] = status

    def fail(self, count, code=500, token=None):
        """The next count reviews (of token, or any) get HTTP code; count=None: forever."""
        with self.lock:
            self._failures.append([token, code, count])

    def clear_failures(self):
        with self.lock:
            self._failures = []

    def _plan(self, rv):
        with self.lock:
            failure = None
            for f in self._failures:
                tok, code, left = f
                if tok is not None and tok != rv.token:
                    continue
                if left is not None and left <= 0:
                    continue
                if left is not None:
                    f[2] = left - 1
                failure = (code, ())
                break
            a = self._answers.get(rv.token)
            delay = self.delay
        if failure:
            return delay, failure, None
        if a is None:
            status = {"user": {}, "error": "[invalid bearer token, token lookup failed]"}
        elif callable(a):
            status = a(rv)
        else:
            status = a
        return delay, None, status

    # -- what happened

    def _record(self, rv):
        with self.lock:
            self.reviews.append(rv)
            self.lock.notify_all()

    def _error(self, what):
        with self.lock:
            self.errors.append(what)

    def _note_tls_error(self, e):
        with self.lock:
            self.tls_errors.append(repr(e))
            self.lock.notify_all()

    def calls(self, token=None):
        with self.lock:
            return len([r for r in self.reviews if token is None or r.token == token])

    def snapshot(self):
        with self.lock:
            return list(self.reviews)

    def wait_calls(self, n, token=None, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len([r for r in self.reviews if token is None or r.token == token]) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the API server saw {len(self.reviews)} reviews, wanted {n}")
                self.lock.wait(left)
            return list(self.reviews)


# ---------------------------------------------------------------------------
# frontgate config and pytest fixtures (import them into a test module)


def tokenreview_yaml(name, url, *, ca_file="apiserver-ca.crt", token_file="caller-token",
                     client_cert=None, audiences=("https://frontgate.test",), issuers=None,
                     cache_ttl=None, negative_cache_ttl=None, timeout=None):
    """One `authenticators:` entry (indented for the list) for a tokenReview authenticator."""
    out = [f"  - name: {name}", "    tokenReview:", f"      url: {url}"]
    if ca_file:
        out.append(f"      caFile: {ca_file}")
    if token_file:
        out.append(f"      tokenFile: {token_file}")
    if client_cert:
        out.append(f"      clientCertFile: {client_cert[0]}")
        out.append(f"      clientKeyFile: {client_cert[1]}")
    if audiences is not None:
        out.append(f"      audiences: {json.dumps(list(audiences))}")
    if issuers is not None:
        out.append(f"      issuers: {json.dumps(list(issuers))}")
    for key, val in (("cacheTTL", cache_ttl), ("negativeCacheTTL", negative_cache_ttl), ("timeout", timeout)):
        if val is not None:
            out.append(f"      {key}: {val}")
    return "\n".join(out) + "\n"


@pytest.fixture
def tls_ca():
    return TestCA()


@pytest.fixture
def apiserver_factory(tls_ca):
    """make(**kw) -> a started FakeAPIServer with a certificate from tls_ca; stopped at teardown."""
    started = []

    def make(ca=None, **kw):
        s = FakeAPIServer(ca or tls_ca, **kw).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
