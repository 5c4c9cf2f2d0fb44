"""
Misbehaving peers for the fault-injection tests (test_faults.py) and the soak
(tests/soak/run): a shard, an OIDC issuer (discovery + JWKS) and a TokenReview
API server, each a plain-HTTP server on 127.0.0.1 whose behaviour a test flips
with `.mode` while frontgate runs.

Every server records what it received (`.events`, with a condition to wait on),
counts the connections it holds open (`.open`), and on `.stop()` closes them
all, so a stalled handler never outlives its test.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import threading
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# ---------------------------------------------------------------------------
# the server skeleton


class Conn:
    """One accepted connection with buffered reads."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_until(self, delim):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[: i + len(delim)])
                del self.buf[: i + len(delim)]
                return out
            if not self._fill():
                return None

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_request(self):
        """(method, target, {lower-name: value}, body) or None at EOF."""
        head = self.read_until(b"\r\n\r\n")
        if head is None:
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length") or 0)
        body = self.read_exact(n) if n else b""
        return method, target, headers, body or b""

    def send(self, data):
        self.sock.sendall(data)

    def reset(self):
        """Closes with an RST (SO_LINGER 0) instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def response(status, body=b"", ctype="application/json", extra=""):
    reason = {200: "OK", 201: "Created", 500: "Internal Server Error"}.get(status, "X")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


class Server:
    """Threaded TCP server; subclasses implement serve(conn) for one connection."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(512)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.cond = threading.Condition()
        self.events = []  # (kind, detail) in arrival order
        self.open = 0  # connections currently open (frontgate's side not yet closed)
        self.accepted = 0
        self.stopping = threading.Event()
        self._socks = set()
        self._threads = []
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept.start()

    def stop(self):
        self.stopping.set()
        self._accept.join(5)
        self.lsock.close()
        with self.cond:
            socks = list(self._socks)
            self.cond.notify_all()
        for s in socks:
            for f in (lambda: s.shutdown(socket.SHUT_RDWR), s.close):
                try:
                    f()
                except OSError:
                    pass
        for t in self._threads:
            t.join(5)

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(None)
            with self.cond:
                self._socks.add(s)
                self.open += 1
                self.accepted += 1
                self.cond.notify_all()
            t = threading.Thread(target=self._run, args=(s,), daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _run(self, s):
        c = Conn(s)
        try:
            self.serve(c)
        except (OSError, ValueError):
            pass
        finally:
            with self.cond:
                self._socks.discard(s)
                self.open -= 1
                self.cond.notify_all()
            try:
                s.close()
            except OSError:
                pass

    def serve(self, conn):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- recording and waiting

    def record(self, kind, detail=None):
        with self.cond:
            self.events.append((kind, detail))
            self.cond.notify_all()

    def count(self, kind):
        with self.cond:
            return sum(1 for k, _ in self.events if k == kind)

    def wait_until(self, pred, timeout=10.0, what="condition"):
        """Waits (on the server's condition) until pred() holds; pred runs under the lock."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{type(self).__name__}: timed out waiting for {what} "
                                         f"(events {self.events[-10:]}, open {self.open})")
                self.cond.wait(left)

    def wait_count(self, kind, n, timeout=10.0):
        self.wait_until(lambda: sum(1 for k, _ in self.events if k == kind) >= n, timeout,
                        f"{n} x {kind}")

    def stall(self, conn):
        """Holds conn without a byte until the peer closes it or the server stops."""
        conn.sock.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                if not conn.sock.recv(65536):
                    return
            except socket.timeout:
                continue


# ---------------------------------------------------------------------------
# the shard


class FaultShard(Server):
    """
    A shard whose answer is chosen by `.mode` (read when a request arrives):

      ok            200 JSON echo, keep-alive
      ok-rst        the same answer, then an RST on the kept-alive connection
      rst-head      the head cut half-way ("HTTP/1.1 200 OK\\r\\nContent-"), then RST
      rst-before    the request read, then RST without a byte
      rst-cl        head with Content-Length: 10000, 100 body bytes, then RST
      rst-chunked   chunked head, two chunks, then RST (no last chunk)
      garbage       bytes that are not HTTP; the connection stays open
      bad-status    a malformed status line (`.bad_line`), then a plausible rest
      stall         the request read, never an answer
      stall-body    head with Content-Length: 10000, 100 bytes, then nothing
    """

    PARTIAL = b"x" * 100

    def __init__(self, mode="ok"):
        self.mode = mode
        self.bad_line = b"HTTP/1.1 2x0 OK"
        super().__init__()

    def serve(self, conn):
        while not self.stopping.is_set():
            req = conn.read_request()
            if req is None:
                return
            method, target, headers, body = req
            mode = self.mode
            self.record("request", (mode, method, target))
            if mode in ("ok", "ok-rst"):
                doc = json.dumps({"method": method, "target": target, "user": headers.get("x-remote-user"),
                                  "body_len": len(body)}).encode()
                conn.send(response(200, doc))
                if mode == "ok":
                    continue
                conn.reset()  # kept alive as far as frontgate knows, then reset while idle
                return
            if mode == "rst-head":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-")
                self.record("sent", mode)
                conn.reset()
            elif mode == "rst-before":
                conn.reset()
            elif mode == "rst-cl":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10000\r\n\r\n"
                          + self.PARTIAL)
                self.record("sent", mode)
                self.wait_taken(conn)
                conn.reset()
            elif mode == "rst-chunked":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n"
                          b"6\r\n{\"a\":1\r\n6\r\n,\"b\":2\r\n")
                self.record("sent", mode)
                self.wait_taken(conn)
                conn.reset()
            elif mode == "garbage":
                conn.send(b"\x16\x03\x01\x00\xa5SSH-2.0-OpenSSH_9.2\r\n\x00\xff\xfe garbage\r\n\r\n")
                self.record("sent", mode)
                self.stall(conn)
            elif mode == "bad-status":
                conn.send(self.bad_line + b"\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 2\r\n\r\n{}")
                self.record("sent", mode)
                self.stall(conn)
            elif mode == "stall":
                self.stall(conn)
            elif mode == "stall-body":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10000\r\n\r\n"
                          + self.PARTIAL)
                self.record("sent", mode)
                self.stall(conn)
            return

    def wait_taken(self, conn):
        """Lets frontgate read what was sent before the RST (an RST discards unread data)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self.stopping.is_set():
            with self.cond:
                if self.taken:
                    self.taken = False
                    return
                self.cond.wait(0.05)

    taken = False

    def mark_taken(self):
        """The test saw the partial response on the client: the shard may reset now."""
        with self.cond:
            self.taken = True
            self.cond.notify_all()


# ---------------------------------------------------------------------------
# tokens


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class SigningKey:
    """An RSA-2048 key with a kid, its JWK and an RS256 signer."""

    def __init__(self, kid, key=None):
        self.kid = kid
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = self.key.public_key().public_numbers()
        self.jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": _uint(pub.n),
                    "e": _uint(pub.e)}

    def sign(self, claims):
        header = b64u(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.kid}).encode())
        payload = b64u(json.dumps(claims, separators=(",", ":")).encode())
        si = f"{header}.{payload}".encode()
        return si.decode() + "." + b64u(self.key.sign(si, padding.PKCS1v15(), hashes.SHA256()))


_KEY_POOL = []
_KEY_LOCK = threading.Lock()


def signing_key(i):
    """The i-th key of a process-wide pool (RSA generation costs ~50 ms: make each once)."""
    with _KEY_LOCK:
        while len(_KEY_POOL) <= i:
            _KEY_POOL.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return _KEY_POOL[i]


# ---------------------------------------------------------------------------
# the OIDC issuer


class FaultIdp(Server):
    """
    An OIDC issuer over plain HTTP on loopback (frontgate accepts http:// for loopback
    issuers): discovery at /.well-known/openid-configuration and the key set at /jwks.
    `.modes[path_kind]` (kind "discovery" or "jwks") picks the answer:

      ok          the document
      500         HTTP 500 with a JSON error
      huge        a 50 MiB JSON document (Content-Length), streamed
      huge-chunk  a 50 MiB JSON document, chunked (no length up front)
      malformed   200 with a JSON text cut in the middle
      stall       the request read, never an answer
      trickle     a head and then one body byte every `trickle_s` (never finishing in time)
    """

    HUGE = 50 << 20

    def __init__(self, audience="frontgate"):
        self.modes = {"discovery": "ok", "jwks": "ok"}
        self.audience = audience
        self.keys = [SigningKey("k1", signing_key(0))]
        self.trickle_s = 0.5
        super().__init__()
        self.issuer = self.url

    def rotate(self, keep_old=True):
        """Publishes a new key (keeping the old ones unless told not to); returns it."""
        with self.cond:
            k = SigningKey(f"k{len(self.keys) + 1}", signing_key(len(self.keys)))
            self.keys = (self.keys if keep_old else []) + [k]
            return k

    def token(self, sub="alice", key=None, ttl=600, **claims):
        now = int(time.time())
        c = {"iss": self.issuer, "aud": self.audience, "sub": sub, "iat": now, "exp": now + ttl,
             "jti": b64u(os.urandom(9)), **claims}
        return (key or self.keys[-1]).sign(c)

    def doc(self, kind):
        if kind == "discovery":
            return {"issuer": self.issuer, "jwks_uri": self.issuer + "/jwks",
                    "id_token_signing_alg_values_supported": ["RS256"]}
        with self.cond:
            return {"keys": [k.jwk for k in self.keys]}

    def serve(self, conn):
        req = conn.read_request()
        if req is None:
            return
        _, target, _, _ = req
        kind = "discovery" if target.endswith("/openid-configuration") else "jwks"
        mode = self.modes[kind]
        self.record(kind, mode)
        send_fault(self, conn, mode, 200, json.dumps(self.doc(kind)).encode())


def send_fault(srv, conn, mode, status, body):
    """Answers conn as mode says (see FaultIdp); body is the good document."""
    if mode == "ok":
        conn.send(response(status, body, extra="Connection: close\r\n"))
    elif mode == "500":
        conn.send(response(500, b'{"error":"internal"}', extra="Connection: close\r\n"))
    elif mode in ("huge", "huge-chunk"):
        filler = b'{"keys":[],"pad":"' + b"A" * (FaultIdp.HUGE - 21) + b'"}'
        if mode == "huge":
            conn.send(f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(filler)}\r\n\r\n".encode())
            for i in range(0, len(filler), 1 << 20):
                conn.send(filler[i:i + (1 << 20)])
        else:
            conn.send(f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n".encode())
            for i in range(0, len(filler), 1 << 20):
                part = filler[i:i + (1 << 20)]
                conn.send(b"%x\r\n%s\r\n" % (len(part), part))
            conn.send(b"0\r\n\r\n")
        srv.record("huge-sent", mode)
    elif mode == "malformed":
        conn.send(response(status, body[: len(body) // 2], extra="Connection: close\r\n"))
    elif mode == "stall":
        srv.stall(conn)
    elif mode == "trickle":
        conn.send(f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode())
        for b in body:
            if srv.stopping.wait(srv.trickle_s):
                return
            conn.send(bytes([b]))
    else:
        raise ValueError(mode)


# ---------------------------------------------------------------------------
# the TokenReview API server


REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


class FaultReviewer(Server):
    """
    POST /apis/authentication.k8s.io/v1/tokenreviews over plain HTTP. Tokens in
    `.allowed` (token -> username) authenticate; others get authenticated: false.
    `.mode` as for FaultIdp (ok, 500, huge, huge-chunk, malformed, stall, trickle).
    """

    def __init__(self, audiences=("frontgate",)):
        self.mode = "ok"
        self.allowed = {}
        self.audiences = list(audiences)
        self.trickle_s = 0.3
        super().__init__()

    def serve(self, conn):
        req = conn.read_request()
        if req is None:
            return
        _, target, _, body = req
        try:
            spec = json.loads(body)["spec"]
        except (ValueError, KeyError, TypeError):
            spec = {}
        mode = self.mode
        self.record("review", mode)
        tok = spec.get("token")
        user = self.allowed.get(tok)
        status = ({"authenticated": True, "audiences": spec.get("audiences") or self.audiences,
                   "user": {"username": user, "uid": "uid-" + user, "groups": ["reviewed"]}}
                  if user else {"user": {}, "error": "token lookup failed"})
        doc = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
        if target != REVIEW_PATH:
            conn.send(response(404, b"{}"))
            return
        send_fault(self, conn, mode, 201, json.dumps(doc).encode())


# ---------------------------------------------------------------------------
# the frontgate process


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def cpu_seconds(pid):
    """User + system CPU time of the process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(pred, timeout, what, interval=0.02):
    """Polls pred() until it returns something truthy; returns it, or fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()
