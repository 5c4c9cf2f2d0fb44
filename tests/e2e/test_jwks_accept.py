"""
The JWKS request's Accept header, as kube-apiserver's service-account issuer negotiates it.

kube-apiserver serves its JWKS (/openid/v1/jwks) as application/jwk-set+json and answers
406 Not Acceptable to `Accept: application/json` alone; its discovery document is
application/json. frontgate once asked for both with `Accept: application/json`, so a jwt
authenticator pointed at a real apiserver's issuer never got keys (/readyz 503 forever; found by
tests/interop/test_kube.py). The issuer here is a small loopback HTTP server that negotiates the
way kube-apiserver does and records the Accept header of every request.
"""
import base64
import http.server
import json
import threading
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from conftest import request, std_config

KID = "kube-like"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def acceptable(accept, mtype):
    """kube's rule, in short: no Accept, */*, type/* or the exact media type."""
    if not accept:
        return True
    for part in accept.split(","):
        t = part.split(";")[0].strip().lower()
        if t in ("*/*", mtype, mtype.split("/")[0] + "/*"):
            return True
    return False


class KubeLikeIssuer:
    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        nums = self.key.public_key().public_numbers()
        self.jwks = {"keys": [{"use": "sig", "kty": "RSA", "kid": KID, "alg": "RS256",
                               "n": b64(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
                               "e": b64(nums.e.to_bytes(3, "big"))}]}
        self.seen = []  # (path, Accept, status)
        issuer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                accept = self.headers.get("Accept")
                if self.path == "/.well-known/openid-configuration":
                    mtype, doc = "application/json", {
                        "issuer": issuer.url, "jwks_uri": issuer.url + "/openid/v1/jwks",
                        "response_types_supported": ["id_token"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256"]}
                elif self.path == "/openid/v1/jwks":
                    mtype, doc = "application/jwk-set+json", issuer.jwks
                else:
                    mtype, doc = None, None
                if doc is None:
                    status, body, ctype = 404, b"{}", "application/json"
                elif not acceptable(accept, mtype):
                    status, ctype = 406, "application/json"
                    body = json.dumps({"kind": "Status", "code": 406,
                                       "reason": "NotAcceptable"}).encode()
                else:
                    status, body, ctype = 200, json.dumps(doc).encode(), mtype
                issuer.seen.append((self.path, accept, status))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, sub, aud="frontgate"):
        now = int(time.time())
        head = b64(json.dumps({"alg": "RS256", "kid": KID, "typ": "JWT"}).encode())
        body = b64(json.dumps({"iss": self.url, "sub": sub, "aud": [aud], "iat": now,
                               "nbf": now, "exp": now + 600}).encode())
        sig = self.key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{b64(sig)}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def issuer():
    i = KubeLikeIssuer()
    yield i
    i.stop()


def test_jwks_from_an_issuer_that_refuses_plain_application_json(issuer, shard, frontgate_factory):
    extra = f"""\
authenticators:
  - name: sa
    jwt:
      issuer: {{url: {issuer.url}, audiences: [frontgate]}}
      claimMappings:
        username: {{claim: sub, prefix: "sa:"}}
authentication:
  global: [sa]
"""
    fg = frontgate_factory(std_config(shard.url, keys=False, extra=extra))
    deadline = time.monotonic() + 15
    while request(fg.port, "GET", "/readyz").status != 200:
        assert time.monotonic() < deadline, f"no keys; the issuer saw {issuer.seen}"
        time.sleep(0.1)
    jwks = [s for s in issuer.seen if s[0] == "/openid/v1/jwks"]
    assert jwks and all(st == 200 for _, _, st in jwks), issuer.seen
    assert "application/jwk-set+json" in jwks[0][1]
    r = request(fg.port, "GET", "/api/v1/namespaces",
                headers={"Authorization": "Bearer " + issuer.token("system:serviceaccount:a:b")})
    assert r.status == 200, r.body
    assert shard.snapshot()[-1].value("X-Remote-User") == "sa:system:serviceaccount:a:b"
