"""
A fake Iceberg REST catalog that answers like Lakekeeper, for frontgate's
Iceberg end-to-end tests (standard library + cryptography only).

    GET  /catalog/v1/config?warehouse=NAME
         {"defaults":{"prefix":<warehouse id>,"rest-page-size":"100"},
          "overrides":{"uri":<base uri>/catalog},"endpoints":[...],
          "idempotency-key-lifetime":"PT30M"}
         400 without ?warehouse= or with it twice, 404 NoSuchWarehouseException for an
         unknown name
    GET  /catalog/v1/{prefix}/namespaces[?parent=a%1Fb]     list (in memory, per warehouse)
    POST /catalog/v1/{prefix}/namespaces                    create ({"namespace":[..],"properties":{..}})
    GET  /catalog/v1/{prefix}/namespaces/{ns}               load (404 NoSuchNamespaceException)
    anything else under /catalog/v1/{prefix}/...            200 echo

The base uri is built the way Lakekeeper's determine_base_uri builds it:
X-Forwarded-Host (else Host), X-Forwarded-Proto (else https when any
forwarded header is present, else http), X-Forwarded-Port unless the host
already has a port or the port is the protocol's default, then
"/" + X-Forwarded-Prefix stripped of slashes.

Every request is recorded with its headers and the identity the catalog
received: the X-Remote-User/-Group headers, the Authorization bearer, and,
when the catalog trusts an OIDC issuer (verify_issuer=...), the verified
claims of that bearer JWT. Like Lakekeeper pointed at an OpenID provider,
it reads {issuer}/.well-known/openid-configuration and the jwks_uri it
names over HTTP, and fetches the JWKS again when a token names a kid it
does not know. A token that does not verify gets 401 and is recorded with
the reason.
"""
import base64
import hashlib
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

ENDPOINTS = [
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
]


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_thumbprint(jwk):
    """RFC 7638 thumbprint (SHA-256, base64url) of a public JWK."""
    if jwk["kty"] == "RSA":
        members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    else:
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    canon = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64u(hashlib.sha256(canon).digest())


def jwk_public_key(jwk):
    if jwk["kty"] == "RSA":
        n = int.from_bytes(b64u_decode(jwk["n"]), "big")
        e = int.from_bytes(b64u_decode(jwk["e"]), "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if jwk["kty"] == "EC" and jwk.get("crv") == "P-256":
        x = int.from_bytes(b64u_decode(jwk["x"]), "big")
        y = int.from_bytes(b64u_decode(jwk["y"]), "big")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    raise ValueError(f"unsupported JWK {jwk.get('kty')}/{jwk.get('crv')}")


class VerifyError(Exception):
    pass


class OidcVerifier:
    """Verifies bearer JWTs of one issuer the way an OIDC relying party does."""

    def __init__(self, issuer, audience, leeway=0):
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.discovery = None
        self.keys = {}  # kid -> JWK
        self.fetches = {"discovery": 0, "jwks": 0}
        self._lock = threading.Lock()

    def _get(self, url):
        with urllib.request.urlopen(url, timeout=10) as resp:
            if resp.status != 200:
                raise VerifyError(f"GET {url}: HTTP {resp.status}")
            return json.loads(resp.read())

    def discover(self):
        with self._lock:
            if self.discovery is None:
                doc = self._get(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
                self.fetches["discovery"] += 1
                if doc.get("issuer") != self.issuer:
                    raise VerifyError(f"discovery issuer {doc.get('issuer')!r} != {self.issuer!r}")
                if not doc.get("jwks_uri"):
                    raise VerifyError("discovery document without jwks_uri")
                self.discovery = doc
            return self.discovery

    def refresh_keys(self):
        doc = self.discover()
        jwks = self._get(doc["jwks_uri"])
        with self._lock:
            self.fetches["jwks"] += 1
            self.keys = {k["kid"]: k for k in jwks.get("keys", [])}
            return dict(self.keys)

    def verify(self, token, now=None):
        """The claims of a valid token; VerifyError otherwise."""
        now = time.time() if now is None else now
        parts = token.split(".")
        if len(parts) != 3:
            raise VerifyError("not a JWS compact token")
        try:
            header = json.loads(b64u_decode(parts[0]))
            claims = json.loads(b64u_decode(parts[1]))
            sig = b64u_decode(parts[2])
        except ValueError as e:
            raise VerifyError(f"undecodable token: {e}")
        kid = header.get("kid")
        alg = header.get("alg")
        if alg not in ("RS256", "ES256"):
            raise VerifyError(f"algorithm {alg!r} not accepted")
        with self._lock:
            jwk = self.keys.get(kid)
        if jwk is None:
            jwk = self.refresh_keys().get(kid)  # an unknown kid: fetch the key set again
        if jwk is None:
            raise VerifyError(f"kid {kid!r} is not in the issuer's JWKS")
        if jwk_thumbprint(jwk) != kid:
            raise VerifyError("kid is not the RFC 7638 thumbprint of its key")
        if jwk.get("alg") not in (None, alg):
            raise VerifyError(f"token alg {alg} but key alg {jwk.get('alg')}")
        key = jwk_public_key(jwk)
        signing_input = (parts[0] + "." + parts[1]).encode()
        try:
            if alg == "RS256":
                if not isinstance(key, rsa.RSAPublicKey):
                    raise VerifyError("RS256 token, non-RSA key")
                key.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
            else:
                if not isinstance(key, ec.EllipticCurvePublicKey) or len(sig) != 64:
                    raise VerifyError("ES256 token: not a P-256 key or not a 64-byte r||s signature")
                der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
                key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise VerifyError("signature does not verify")
        if claims.get("iss") != self.issuer:
            raise VerifyError(f"iss {claims.get('iss')!r} != {self.issuer!r}")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if self.audience not in auds:
            raise VerifyError(f"aud {aud!r} does not contain {self.audience!r}")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now - self.leeway:
            raise VerifyError(f"expired or no exp ({exp!r})")
        nbf = claims.get("nbf")
        if isinstance(nbf, int) and nbf > now + 60:
            raise VerifyError("not valid yet")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise VerifyError("no sub")
        groups = claims.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise VerifyError("groups is not a list of strings")
        return {"header": header, "claims": claims}


class CatalogRequest:
    """One request as the catalog received it."""

    def __init__(self, method, target, headers, body):
        self.method = method
        self.target = target
        split = urlsplit(target)
        self.path = split.path
        self.query_lists = parse_qs(split.query, keep_blank_values=True)  # names and values decoded
        self.query = {k: v[0] for k, v in self.query_lists.items()}
        self.headers = headers  # [(name, value)] in wire order
        self.body = body
        self.identity = None  # what the catalog concluded: see FakeCatalog._identify
        self.auth_error = None

    def values(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def value(self, name):
        vals = self.values(name)
        return vals[0] if vals else None

    @property
    def bearer(self):
        v = self.value("Authorization") or ""
        return v[7:] if v[:7].lower() == "bearer " else None

    def __repr__(self):
        return f"<CatalogRequest {self.method} {self.target} identity={self.identity}>"


def base_uri(req):
    """Lakekeeper's determine_base_uri with use_x_forwarded_headers (its default)."""
    fhost = req.value("X-Forwarded-Host")
    fproto = req.value("X-Forwarded-Proto")
    fport = req.value("X-Forwarded-Port")
    fprefix = req.value("X-Forwarded-Prefix")
    any_forwarded = fhost is not None or fproto is not None or fport is not None
    host = fhost or req.value("Host")
    proto = fproto or ("https" if any_forwarded else "http")
    uri = f"{proto}://{host}"
    if fport and not (":" in host or (proto == "https" and fport == "443")
                      or (proto == "http" and fport == "80")):
        uri += f":{fport}"
    if fprefix is not None and fprefix.strip("/"):
        uri += "/" + fprefix.strip("/")
    return uri


class FakeCatalog:
    """
    warehouses: {name: id}. verify_issuer/verify_audience: trust bearer JWTs
    from that issuer (a Lakekeeper with LAKEKEEPER__OPENID_PROVIDER_URI).
    """

    PREFIX = "/catalog/v1/"

    def __init__(self, warehouses, verify_issuer=None, verify_audience=None):
        self.warehouses = dict(warehouses)
        self.by_id = {v: k for k, v in self.warehouses.items()}
        self.namespaces = {wid: {} for wid in self.by_id}  # id -> {tuple(ns): properties}
        self.requests = []
        self.verifier = OidcVerifier(verify_issuer, verify_audience) if verify_issuer else None
        self._cond = threading.Condition()
        catalog = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec = CatalogRequest(self.command, self.path, list(self.headers.items()), body)
                status, doc = catalog._answer(rec)
                catalog._record(rec)
                payload = b"" if doc is None else json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    # -- queries used by tests

    def _record(self, rec):
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()

    def snapshot(self):
        with self._cond:
            return list(self.requests)

    def wait_for(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.requests:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the catalog never saw a matching request: {self.requests}")
                self._cond.wait(left)

    def last(self, path_suffix=None):
        reqs = self.snapshot()
        if path_suffix:
            reqs = [r for r in reqs if r.path.endswith(path_suffix)]
        assert reqs, f"the catalog saw no request ending in {path_suffix!r}"
        return reqs[-1]

    def namespace_names(self, warehouse_id):
        with self._cond:
            return sorted(list(ns) for ns in self.namespaces[warehouse_id])

    # -- serving

    @staticmethod
    def _error(code, type_, message):
        return code, {"error": {"message": message, "type": type_, "code": code}}

    def _identify(self, rec):
        """What identity the request carries; returns an error answer or None."""
        ident = {
            "user": rec.value("X-Remote-User"),
            "groups": rec.values("X-Remote-Group"),
            "bearer": rec.bearer,
        }
        if self.verifier is not None:
            if rec.bearer is None:
                rec.auth_error = "Missing Authorization Header"
                return self._error(401, "MissingAuthorizationHeader", rec.auth_error)
            try:
                v = self.verifier.verify(rec.bearer)
            except (VerifyError, OSError, ValueError) as e:
                rec.auth_error = str(e)
                return self._error(401, "AuthenticationFailed", f"token rejected: {e}")
            ident.update(user=v["claims"]["sub"], groups=v["claims"].get("groups", []),
                         claims=v["claims"], jwt_header=v["header"])
        rec.identity = ident
        return None

    def _answer(self, rec):
        err = self._identify(rec)
        if err:
            return err
        if not rec.path.startswith(self.PREFIX):
            return self._error(404, "NotFound", f"no route {rec.path}")
        rest = rec.path[len(self.PREFIX):]
        if rest == "config":
            if len(rec.query_lists.get("warehouse", [])) > 1:
                # Lakekeeper's Query extractor (serde_urlencoded into a struct) refuses it
                return self._error(400, "BadRequestException", "duplicate field `warehouse`")
            name = rec.query.get("warehouse")
            if not name:
                return self._error(400, "GetConfigNoWarehouseProvided", "warehouse is required")
            wid = self.warehouses.get(name)
            if wid is None:
                return self._error(404, "NoSuchWarehouseException", f"warehouse {name} not found")
            return 200, {
                "defaults": {"prefix": wid, "rest-page-size": "100"},
                "overrides": {"uri": base_uri(rec) + "/catalog"},
                "endpoints": ENDPOINTS,
                "idempotency-key-lifetime": "PT30M",
            }
        segs = rest.split("/")
        wid = segs[0]
        if wid not in self.namespaces:
            return self._error(404, "NoSuchWarehouseException", f"warehouse {wid} not found")
        store = self.namespaces[wid]
        if segs[1:] == ["namespaces"] and rec.method == "GET":
            parent = rec.query.get("parent")
            with self._cond:
                if parent is None:
                    names = [list(ns) for ns in store if len(ns) == 1]
                else:
                    p = tuple(parent.split("\x1f"))
                    names = [list(ns) for ns in store if len(ns) == len(p) + 1 and ns[:len(p)] == p]
            return 200, {"namespaces": sorted(names)}
        if segs[1:] == ["namespaces"] and rec.method == "POST":
            try:
                doc = json.loads(rec.body)
                ns = tuple(doc["namespace"])
            except (ValueError, KeyError, TypeError):
                return self._error(400, "BadRequestException", "bad CreateNamespaceRequest")
            props = doc.get("properties") or {}
            with self._cond:
                if ns in store:
                    return self._error(409, "AlreadyExistsException", f"namespace {list(ns)} exists")
                store[ns] = dict(props, owner=(rec.identity or {}).get("user") or "")
            return 200, {"namespace": list(ns), "properties": props}
        if len(segs) == 3 and segs[1] == "namespaces" and rec.method in ("GET", "HEAD"):
            ns = tuple(unquote(segs[2]).split("\x1f"))
            with self._cond:
                props = store.get(ns)
            if props is None:
                return self._error(404, "NoSuchNamespaceException", f"namespace {list(ns)} not found")
            return 200, {"namespace": list(ns), "properties": props}
        return 200, {"method": rec.method, "path": rec.path, "warehouse": wid}
