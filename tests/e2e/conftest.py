"""
End-to-end fixtures for frontgate: the real binary, a recording fake shard,
and small HTTP clients (raw sockets where the bytes matter).

Everything listens on 127.0.0.1 with kernel-chosen ports. Every server a test
starts is stopped by the fixture that started it.
"""
import hashlib
import http.client
import json
import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest

# Defaults are relative to this checkout: build/frontgate and .tools/bin/kubectl (install-deps).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRONTGATE_BIN = os.environ.get("FRONTGATE_BIN") or os.path.join(REPO, "build", "frontgate")
KUBECTL = os.environ.get("FG_KUBECTL") or os.path.join(REPO, ".tools", "bin", "kubectl")
# FG_E2E_WORKERS=N starts every frontgate with N worker threads whatever its config says
# (tests/run's ThreadSanitizer step: more workers, more interleavings).
E2E_WORKERS = os.environ.get("FG_E2E_WORKERS")

UNAUTHORIZED_BODY = (
    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    b'"message":"Unauthorized","reason":"Unauthorized","code":401}'
)


def assert_unauthorized(r):
    """The generic 401: Kubernetes Status body, JSON, nothing about why."""
    assert r.status == 401, r
    assert r.body in (UNAUTHORIZED_BODY, UNAUTHORIZED_BODY + b"\n"), r.body
    assert (r.value("Content-Type") or "").startswith("application/json")


def log_reason(line):
    """The reason= value of an access-log line (logfmt, maybe quoted), or None."""
    m = re.search(r' reason=("(?:[^"\\]|\\.)*"|\S+)', line)
    if not m:
        return None
    v = m.group(1)
    return json.loads(v) if v.startswith('"') else v


def assert_not_logged(fg, *secrets):
    """No secret (token, key) appears anywhere in frontgate's log."""
    log = fg.log()
    for s in secrets:
        assert s not in log, "a secret reached the log"

# The standard test workspace and the cluster the shard sees for it.
WS_PATH = "root:org:team"
WS_CLUSTER = "2x8ab3xq"
DEAD_PATH = "root:org:dead"
DEAD_CLUSTER = "dead1cluster"


def pytest_configure(config):
    if not (os.path.isfile(FRONTGATE_BIN) and os.access(FRONTGATE_BIN, os.X_OK)):
        raise pytest.UsageError(
            f"frontgate binary not found or not executable: {FRONTGATE_BIN} "
            "(build it with `ninja -C build` or set FRONTGATE_BIN)"
        )


# ---------------------------------------------------------------------------
# keys


# Every key and token the suite makes (register_secret): no log line of any frontgate the suite
# runs may hold one, or a JWT's payload or signature alone. Checked as each frontgate stops
# (Frontgate.stop, term), counted for the summary at the end of the run.
SECRETS = set()
SECRET_PARTS = set()
SCAN = {"frontgates": 0, "lines": 0}
_RUN = re.compile(r"[A-Za-z0-9_.~+/=-]{20,}")


def register_secret(value):
    SECRETS.add(value)
    for part in value.split("."):
        if len(part) >= 20:
            SECRET_PARTS.add(part)
    return value


def leaked_in(lines):
    """(line, secret) pairs: a registered key or token (or a JWT's part) in a log line."""
    found = []
    for ln in lines:
        for run in _RUN.findall(ln):
            for cand in [run] + run.split("."):
                if cand in SECRETS or cand in SECRET_PARTS:
                    found.append((ln, cand[:12] + "..."))
    return found


def pytest_terminal_summary(terminalreporter):
    if SCAN["frontgates"]:
        terminalreporter.write_line(
            f"secret scan: {SCAN['lines']} log lines of {SCAN['frontgates']} frontgate runs "
            f"against {len(SECRETS)} keys and tokens: none found")


def new_key():
    """A random API key in frontgate's format."""
    return register_secret("fgk_" + secrets.token_urlsafe(32)[:43])


def key_line(key_id, key, groups=()):
    h = hashlib.sha256(key.encode()).hexdigest()
    return f"{key_id}:{h}" + (":" + ",".join(groups) if groups else "")


# ---------------------------------------------------------------------------
# the fake shard


class Reader:
    """Buffered reads from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, delim, limit=1 << 20):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[: i + len(delim)])
                del self.buf[: i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if not self._fill():
                return None

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_some(self):
        if not self.buf:
            self._fill()
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_to_eof(self):
        while self._fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


class Recorded:
    """One request as the shard received it."""

    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # [(name, value)] in wire order
        split = urlsplit(target)
        self.path = split.path
        self.query = split.query
        self.body = b""
        self.chunked = False
        self.complete = False
        self.t = time.monotonic()

    def values(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def value(self, name):
        vals = self.values(name)
        return vals[0] if vals else None

    def names(self):
        return [k for k, _ in self.headers]

    def __repr__(self):
        return f"<Recorded {self.method} {self.target} complete={self.complete}>"


class FakeShard:
    """
    A threaded HTTP/1.1 server that records every request and picks a behaviour
    from the last path segment:

      .../watch       chunked response: ?chunks=5&delay_ms=300, one JSON line a chunk
      .../slow-close  body delimited by the close of the connection, parts with delays
      .../slow        sleeps ?ms=1500, then echoes
      .../upgrade     101 Switching Protocols (Upgrade: websocket), then a raw echo tunnel
      .../big-body    {"sha256": ..., "length": ...} of the request body
      anything else   200 JSON echo of method, target, headers and body digest
    """

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests = []
        self.errors = []  # framing errors the shard saw (must stay empty)
        self.tunnel_received = bytearray()
        self.connections = 0
        self._cond = threading.Condition()
        self._socks = set()
        self._threads = []
        self._stop = threading.Event()
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept.start()

    # -- lifecycle

    def stop(self):
        self._stop.set()
        self._accept.join(5)
        self.lsock.close()
        with self._cond:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(5)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(None)
            with self._cond:
                self._socks.add(s)
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            self._threads.append(t)
            t.start()

    # -- queries used by tests

    def wait_for(self, pred, timeout=5.0):
        """Waits until some recorded request satisfies pred; returns it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.requests:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the shard never saw a matching request: {self.requests}")
                self._cond.wait(left)

    def wait_count(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([r for r in self.requests if r.complete]) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"shard saw {len(self.requests)} requests, wanted {n}")
                self._cond.wait(left)
            return list(self.requests)

    def snapshot(self):
        with self._cond:
            return list(self.requests)

    # -- serving

    def _record(self, rec):
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()

    def _changed(self):
        with self._cond:
            self._cond.notify_all()

    def _error(self, what):
        with self._cond:
            self.errors.append(what)
            self._cond.notify_all()

    def _serve(self, s):
        rd = Reader(s)
        try:
            while not self._stop.is_set():
                head = rd.read_until(b"\r\n\r\n")
                if head is None:
                    if rd.buf:
                        self._error(f"truncated head: {bytes(rd.buf)[:200]!r}")
                    return
                lines = head[:-4].split(b"\r\n")
                try:
                    method, target, version = lines[0].decode("latin-1").split(" ")
                except ValueError:
                    self._error(f"bad request line: {lines[0]!r}")
                    return
                headers = []
                for ln in lines[1:]:
                    name, sep, value = ln.decode("latin-1").partition(":")
                    if not sep or name != name.strip() or not name:
                        self._error(f"bad header line: {ln!r}")
                        return
                    headers.append((name, value.strip(" \t")))
                rec = Recorded(method, target, version, headers)
                self._record(rec)
                te = [v.lower() for k, v in headers if k.lower() == "transfer-encoding"]
                cl = [v for k, v in headers if k.lower() == "content-length"]
                if len(cl) > 1 or (te and cl) or (te and te != ["chunked"]):
                    self._error(f"ambiguous framing reached the shard: {headers}")
                    return
                if rec.value("Expect") and rec.value("Expect").lower() == "100-continue":
                    s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if te:
                    rec.chunked = True
                    body = self._read_chunked(rd)
                    if body is None:
                        self._changed()
                        return
                elif cl:
                    if not cl[0].isdigit():
                        self._error(f"bad Content-Length {cl[0]!r}")
                        return
                    body = rd.read_exact(int(cl[0]))
                    if body is None:
                        self._changed()
                        return
                else:
                    body = b""
                rec.body = body
                rec.complete = True
                self._changed()
                if not self._respond(s, rd, rec):
                    return
                conn = (rec.value("Connection") or "").lower()
                if "close" in conn or version == "HTTP/1.0":
                    return
        except OSError:
            pass
        finally:
            with self._cond:
                self._socks.discard(s)
                self._cond.notify_all()
            try:
                s.close()
            except OSError:
                pass

    def _read_chunked(self, rd):
        body = bytearray()
        while True:
            line = rd.read_until(b"\r\n", limit=4096)
            if line is None:
                return None  # cut off: incomplete, not malformed
            size_s = line[:-2].split(b";", 1)[0]
            if not re.fullmatch(rb"[0-9a-fA-F]{1,16}", size_s):
                self._error(f"malformed chunk size line reached the shard: {line!r}")
                return None
            size = int(size_s, 16)
            if size == 0:
                while True:  # trailers
                    t = rd.read_until(b"\r\n", limit=65536)
                    if t is None:
                        return None
                    if t == b"\r\n":
                        return bytes(body)
            data = rd.read_exact(size + 2)
            if data is None:
                return None
            if data[-2:] != b"\r\n":
                self._error(f"chunk data not followed by CRLF reached the shard: {data[-2:]!r}")
                return None
            body += data[:-2]

    def _send_json(self, s, status, doc, extra=b""):
        body = json.dumps(doc).encode() + b"\n"
        reason = {200: "OK", 400: "Bad Request"}.get(status, "X")
        s.sendall(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n".encode() + extra + b"\r\n" + body
        )

    def _respond(self, s, rd, rec):
        """Answers; returns False when the connection must not be reused."""
        segs = [p for p in rec.path.split("/") if p]
        last = segs[-1] if segs else ""
        q = {k: v[0] for k, v in parse_qs(rec.query).items()}
        if last == "watch":
            n, delay = int(q.get("chunks", 5)), int(q.get("delay_ms", 300)) / 1000
            s.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for i in range(n):
                if i:
                    time.sleep(delay)
                data = json.dumps({"type": "ADDED", "n": i}).encode() + b"\n"
                s.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            s.sendall(b"0\r\n\r\n")
            return True
        if last == "slow-close":
            n, delay = int(q.get("parts", 3)), int(q.get("delay_ms", 200)) / 1000
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
            for i in range(n):
                if i:
                    time.sleep(delay)
                s.sendall(b"part-%d\n" % i)
            s.shutdown(socket.SHUT_WR)
            return False
        if last == "slow":
            time.sleep(int(q.get("ms", 1500)) / 1000)
        if last == "upgrade":
            up = (rec.value("Upgrade") or "").lower()
            conn = (rec.value("Connection") or "").lower()
            if up != "websocket" or "upgrade" not in conn:
                self._send_json(s, 400, {"error": "expected Connection: Upgrade, Upgrade: websocket"})
                return True
            s.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                b"shard-hello\n"
            )
            pending = rd.read_some() if rd.buf else b""
            while True:
                if pending:
                    with self._cond:
                        self.tunnel_received += pending
                        self._cond.notify_all()
                    s.sendall(pending)
                pending = s.recv(65536)
                if not pending:
                    break
            s.shutdown(socket.SHUT_WR)
            return False
        if last == "big-body":
            self._send_json(
                s, 200, {"sha256": hashlib.sha256(rec.body).hexdigest(), "length": len(rec.body),
                         "chunked": rec.chunked}
            )
            return True
        self._send_json(
            s,
            200,
            {
                "method": rec.method,
                "target": rec.target,
                "headers": rec.headers,
                "body_len": len(rec.body),
                "body_sha256": hashlib.sha256(rec.body).hexdigest(),
            },
        )
        return True


# ---------------------------------------------------------------------------
# frontgate


class Frontgate:
    """The real binary with a config written into a directory of its own."""

    LISTEN_RE = re.compile(r"info listening on (https?)://(\S+):(\d+)\s*$")
    ADMIN_RE = re.compile(r"info admin: listening on http://\S+:(\d+) ")

    def __init__(self, directory, config_text, files=None):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.config_path = os.path.join(self.dir, "frontgate.yaml")
        for name, text in (files or {}).items():
            self.write(name, text)
        if E2E_WORKERS:
            config_text = re.sub(r"(?m)^workers: \d+$", "workers: " + E2E_WORKERS, config_text)
        # the admin listener on a port of its own (the default, 127.0.0.1:9090, would be shared
        # by every frontgate a test starts); appended, so line numbers in errors stay the test's
        if not re.search(r"(?m)^admin:", config_text):
            config_text = config_text.rstrip("\n") + '\nadmin: {address: "127.0.0.1:0"}\n'
        self.write("frontgate.yaml", config_text)
        self.proc = None
        self._lines = []
        self._cond = threading.Condition()
        self._reader = None
        self.listeners = []  # [(scheme, host, port)]
        self.generation = 1

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        """Writes a file atomically (as an operator's tool would)."""
        tmp = self.path(name + ".tmp")
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path(name))

    # -- process

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen(
            [FRONTGATE_BIN, "-c", self.config_path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.dir,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.wait_log(r"info frontgate ready: ", timeout=timeout)
        for line in self.lines():
            m = self.LISTEN_RE.search(line)
            if m:
                self.listeners.append((m.group(1), m.group(2), int(m.group(3))))
        assert self.listeners, "no 'listening on' line:\n" + self.log()
        self.admin_port = None
        for line in self.lines():
            m = self.ADMIN_RE.search(line)
            if m:
                self.admin_port = int(m.group(1))
        return self

    def _read_stderr(self):
        for raw in iter(self.proc.stderr.readline, b""):
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._lines.append(None)  # EOF marker
            self._cond.notify_all()

    def lines(self):
        with self._cond:
            return [ln for ln in self._lines if ln is not None]

    def log(self):
        return "\n".join(self.lines())

    def wait_log(self, pattern, timeout=5.0, start=0):
        """Waits for a log line (from index start) matching the regex; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self._lines):
                    ln = self._lines[i]
                    if ln is None:
                        raise AssertionError(
                            f"frontgate exited (rc={self.proc.poll()}) before logging "
                            f"{pattern!r}:\n" + self.log()
                        )
                    m = rx.search(ln)
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no log line matching {pattern!r}:\n" + self.log())
                self._cond.wait(left)

    def nlines(self):
        with self._cond:
            return len(self._lines)

    @property
    def port(self):
        return next(p for s, _, p in self.listeners if s == "http")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def hup(self, expect_ok=True, timeout=20.0):
        """SIGHUP; waits for the reload outcome (up to 20 s: a ThreadSanitizer build on a loaded
        machine took more than 5) and returns that log line."""
        start = self.nlines()
        self.proc.send_signal(signal.SIGHUP)
        m = self.wait_log(
            r"reloaded configuration generation (\d+)|reload failed; still serving", timeout,
            start,
        )
        if m.group(1):
            self.generation = int(m.group(1))
        if expect_ok is not None:
            ok = m.group(1) is not None
            assert ok == expect_ok, f"reload outcome {m.group(0)!r}:\n" + self.log()
        return m.group(0)

    def term(self, timeout=10.0):
        """SIGTERM; waits for the exit and returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        if self._reader:
            self._reader.join(2)
        return rc

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            if self._reader:
                self._reader.join(2)
            self.scan_secrets()
            return
        stop_process(self.proc)
        if self._reader:
            self._reader.join(2)
        self.scan_secrets()

    def scan_secrets(self):
        """No key or token the suite made is in this frontgate's log (once per run)."""
        if self.proc is None or getattr(self, "_scanned", None) is self.proc:
            return
        self._scanned = self.proc
        lines = self.lines()
        SCAN["frontgates"] += 1
        SCAN["lines"] += len(lines)
        found = leaked_in(lines)
        assert not found, f"a secret in frontgate's log: {found[:3]}"


def std_config(shard_url, dead_url=None, keys=True, extra=""):
    """The config most tests use: path routing, one workspace, static keys."""
    text = f"""\
workers: 2
listeners:
  - address: 127.0.0.1:0
shards:
  - name: shard-1
    url: {shard_url}
    identity: requestHeader
"""
    if dead_url:
        text += f"""\
  - name: dead
    url: {dead_url}
"""
    text += f"""\
routes:
  - prefix: /clusters/
    workspace: path
  - prefix: /
    shard: shard-1
workspaces:
  - cluster: {WS_CLUSTER}
    path: {WS_PATH}
    shard: shard-1
"""
    if dead_url:
        text += f"""\
  - cluster: {DEAD_CLUSTER}
    path: {DEAD_PATH}
    shard: dead
"""
    if keys:
        text += """\
authenticators:
  - name: ops-keys
    staticKeys: {file: keys.txt}
authentication:
  global: [ops-keys]
"""
    text += """\
limits:
  shutdownGracePeriod: 3s
  connectTimeout: 2s
"""
    return text + extra


def closed_port():
    """A loopback port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------
# clients


class Response:
    def __init__(self, status, reason, headers, body, version="HTTP/1.1"):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.version = version

    def values(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def value(self, name):
        vals = self.values(name)
        return vals[0] if vals else None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


class RawClient:
    """A client that writes exactly the bytes it is given."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.rd = Reader(self.sock)

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def read_head(self):
        head = self.rd.read_until(b"\r\n\r\n")
        if head is None:
            raise ConnectionError(f"connection closed before a response head: {bytes(self.rd.buf)!r}")
        lines = head[:-4].decode("latin-1").split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers.append((k, v.strip()))
        return Response(int(status), reason[0] if reason else "", headers, b"", version)

    def read_response(self, method="GET", allow_interim=False):
        while True:
            r = self.read_head()
            if 100 <= r.status < 200 and r.status != 101 and not allow_interim:
                continue
            break
        if method == "HEAD" or r.status in (101, 204, 304) or 100 <= r.status < 200:
            return r
        te = r.value("Transfer-Encoding")
        cl = r.value("Content-Length")
        if te and te.lower() == "chunked":
            body = bytearray()
            while True:
                line = self.rd.read_until(b"\r\n")
                assert line is not None, "connection closed inside a chunked body"
                size = int(line[:-2].split(b";")[0], 16)
                if size == 0:
                    while self.rd.read_until(b"\r\n") not in (b"\r\n", None):
                        pass
                    break
                data = self.rd.read_exact(size + 2)
                assert data is not None and data[-2:] == b"\r\n", "bad chunk from frontgate"
                body += data[:-2]
            r.body = bytes(body)
        elif cl is not None:
            data = self.rd.read_exact(int(cl))
            assert data is not None, "connection closed inside a Content-Length body"
            r.body = data
        else:
            r.body = self.rd.read_to_eof()
        return r

    def closed(self, timeout=3.0):
        """True when the server closes (EOF or reset) within timeout, discarding data."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if self.rd.buf:
                    self.rd.buf.clear()
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


# ---------------------------------------------------------------------------
# frontgate broker (test_tokens.py, tests/interop)


class Broker:
    """`frontgate broker` on a loopback port (it takes --listen, not port 0); its log in .log."""

    def __init__(self, token_file, *args, port=None):
        self.port = port or closed_port()
        self.listen = f"127.0.0.1:{self.port}"
        argv = [FRONTGATE_BIN, "broker", "--token-file", str(token_file), "--listen", self.listen, *args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self._lines = queue.Queue()
        self.log = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for ln in iter(self.proc.stderr.readline, b""):
            self._lines.put(ln.decode("utf-8", "replace"))
        self._lines.put(None)

    def wait_log(self, pattern, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            for ln in self.log:
                if re.search(pattern, ln):
                    return ln
            try:
                ln = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the broker never logged {pattern!r}: {self.log}")
            if ln is None:
                raise AssertionError(f"the broker exited (rc={self.proc.wait(5)}) before {pattern!r}: {self.log}")
            self.log.append(ln)
            if time.monotonic() > deadline:
                raise AssertionError(f"the broker never logged {pattern!r}: {self.log}")

    def started(self):
        self.wait_log(rf"broker listening on http://127\.0\.0\.1:{self.port}\b")
        return self

    def wait_exit(self, timeout=10.0):
        rc = self.proc.wait(timeout)
        out = self.proc.stdout.read().decode()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                ln = self._lines.get(timeout=0.5)
            except queue.Empty:
                break
            if ln is None:
                break
            self.log.append(ln)
        return rc, out + "".join(self.log)

    def request(self, method, path="/token", body=None, headers=None):
        return request(self.port, method, path, headers or {}, body)

    def stop(self):
        if self.proc.poll() is None:
            stop_process(self.proc)



def stop_process(proc, grace=5.0):
    """SIGTERM, then SIGKILL if it is still there after grace seconds; reaps it."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def raw_request(port, data, method="GET", timeout=10.0):
    """Sends bytes, reads one response; returns (response, client) — close the client."""
    c = RawClient(port, timeout)
    c.send(data)
    return c.read_response(method), c


def request(port, method, path, headers=None, body=None, timeout=10.0):
    """One request on a fresh connection with http.client."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, resp.reason, resp.getheaders(), resp.read())
    finally:
        conn.close()


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture
def shard():
    s = FakeShard()
    yield s
    s.stop()


@pytest.fixture
def shard_factory():
    shards = []

    def make():
        s = FakeShard()
        shards.append(s)
        return s

    yield make
    for s in shards:
        s.stop()


@pytest.fixture
def frontgate_factory(tmp_path):
    """start(config_text, files={name: text}, name='fg') -> a started Frontgate."""
    started = []

    def start(config_text, files=None, name="fg"):
        fg = Frontgate(tmp_path / name, config_text, files)
        started.append(fg)
        return fg.start()

    yield start
    for fg in started:
        fg.stop()


class Env:
    """A shard, frontgate in front of it with the standard config, and keys."""

    def __init__(self, fg, shard, keys):
        self.fg = fg
        self.shard = shard
        self.keys = keys  # id -> key
        self.alice = keys["alice"]

    @property
    def port(self):
        return self.fg.port


ALICE_GROUPS = ("developers", "viewers")


@pytest.fixture
def env(shard, frontgate_factory):
    alice, bob = new_key(), new_key()
    keys = "# test keys\n" + key_line("alice", alice, ALICE_GROUPS) + "\n" + key_line("bob", bob) + "\n"
    fg = frontgate_factory(
        std_config(shard.url, dead_url=f"http://127.0.0.1:{closed_port()}"),
        {"keys.txt": keys},
    )
    return Env(fg, shard, {"alice": alice, "bob": bob})
