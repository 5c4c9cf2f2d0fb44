"""
The Iceberg group's environment: Apache Iceberg's REST catalog test fixture (the real server,
peers/iceberg-rest), a recording relay between frontgate and it, DuckDB with the iceberg
extension loaded from its PyPI packages, and frontgate's config for them.

The fixture hands out no `prefix` in /v1/config (`{"defaults":{},"overrides":{},"endpoints":[...]}`)
and serves its routes without one (/v1/namespaces/...; a prefixed path is a 400 "No route"); it
ignores `?warehouse=` and checks no credentials. frontgate's `workspace: iceberg` route takes the
segment after the route prefix as the warehouse id, so a catalog without a prefix is one warehouse
whose id is `namespaces`, the first segment of its namespace and table routes: the index entry
`cluster: namespaces, warehouse: lake` routes both `/v1/config?warehouse=lake` and every
`/v1/namespaces/...` request to it (its `/v1/tables/rename` and `/v1/transactions/commit` would
need entries `tables` and `transactions`; no client flow here uses them).
"""
import importlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import REPO, fg_e2e, peer_path

WAREHOUSE = "lake"
# the catalog's routes start with /v1/namespaces: to frontgate, that is the warehouse id
WAREHOUSE_ID = "namespaces"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fake_apiserver = _load("fg_fake_apiserver", "tests/e2e/fake_apiserver.py")
fake_catalog = _load("fg_fake_catalog", "tests/e2e/fake_catalog.py")


# ---------------------------------------------------------------------------
# the catalog


class IcebergRest:
    """RESTCatalogServer on 127.0.0.1 (kernel-chosen port), JDBC on SQLite, a file:// warehouse."""

    LISTEN_RE = re.compile(r"iceberg-rest: listening on 127\.0\.0\.1:(\d+)")

    def __init__(self, directory, env=None):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.warehouse = os.path.join(self.dir, "warehouse")
        os.makedirs(self.warehouse)
        jar = peer_path("FG_ICEBERG_REST_JAR")
        java = os.environ.get("FG_JAVA") or "java"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.dir,
            "CATALOG_WAREHOUSE": "file://" + self.warehouse,
            "CATALOG_URI": "jdbc:sqlite:" + os.path.join(self.dir, "catalog.db"),
            **(env or {}),
        }
        self.log_path = os.path.join(self.dir, "iceberg-rest.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([java, "-Xmx512m", "-jar", jar], cwd=self.dir, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log)
        self.port = None
        self._ready = threading.Event()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self):
        for raw in iter(self.proc.stdout.readline, b""):
            m = self.LISTEN_RE.search(raw.decode("utf-8", "replace"))
            if m and self.port is None:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout=90.0):
        """Until it listens and GET /v1/config answers 200."""
        deadline = time.monotonic() + timeout
        self._ready.wait(timeout)
        if self.port is None:
            pytest.fail(f"the Iceberg REST fixture never said it listens (exit status {self.proc.poll()}):\n"
                        + self.log()[-4000:])
        while True:
            try:
                with urllib.request.urlopen(self.url + "/v1/config", timeout=5) as r:
                    if r.status == 200:
                        return json.loads(r.read())
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"GET {self.url}/v1/config never answered 200 (exit status {self.proc.poll()}):\n"
                            + self.log()[-4000:])
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


# ---------------------------------------------------------------------------
# the relay: what reached the catalog


class _Tee:
    """
    Reads the client's bytes and keeps them to parse; a piece is forwarded to the catalog once it
    is parsed, so a request's head is recorded before the catalog can see it (and answer it).
    Body bytes are forwarded as they arrive.
    """

    def __init__(self, src, dst):
        self.src = src
        self.dst = dst
        self.buf = bytearray()

    def _fill(self):
        data = self.src.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def until(self, delim, forward=True):
        """The bytes up to and with delim; forwarded now unless forward=False (then call send)."""
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                if forward:
                    self.send(out)
                return out
            if not self._fill():
                return None

    def send(self, data):
        self.dst.sendall(data)

    def skip(self, n):
        while len(self.buf) < n:
            n -= len(self.buf)
            self.send(bytes(self.buf))
            self.buf.clear()
            if not self._fill():
                return False
        self.send(bytes(self.buf[:n]))
        del self.buf[:n]
        return True


class RecordingRelay:
    """
    A TCP relay 127.0.0.1:port -> the catalog that parses the bytes going to the catalog as
    HTTP/1.1 requests (Content-Length and chunked bodies, keep-alive) and records every head.
    The bytes pass unchanged; answers are relayed as they come.
    """

    def __init__(self, target_port):
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.errors = []
        self._cond = threading.Condition()
        self._conns = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            u = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError as e:
            self._error(f"cannot reach the catalog: {e}")
            c.close()
            return
        u.settimeout(None)
        with self._cond:
            self._conns += [c, u]
        back = threading.Thread(target=self._pump, args=(u, c), daemon=True)
        back.start()
        try:
            self._parse(_Tee(c, u))
        except OSError:
            pass
        try:
            u.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        back.join(30)
        c.close()
        u.close()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _parse(self, rd):
        while True:
            head = rd.until(b"\r\n\r\n", forward=False)
            if head is None:
                return
            lines = head[:-4].decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
            rec = fg_e2e.Recorded(method, target, version, headers)  # tests/e2e's record of a head
            with self._cond:
                self.requests.append(rec)
                self._cond.notify_all()
            rd.send(head)  # recorded first: the answer the client waits for comes after this
            te = (rec.value("Transfer-Encoding") or "").lower()
            if te == "chunked":
                while True:
                    line = rd.until(b"\r\n")
                    if line is None:
                        return
                    size = int(line.split(b";")[0], 16)
                    if size == 0:
                        while rd.until(b"\r\n") not in (b"\r\n", None):
                            pass
                        break
                    if not rd.skip(size + 2):
                        return
            elif rec.value("Content-Length"):
                if not rd.skip(int(rec.value("Content-Length"))):
                    return

    def _error(self, what):
        with self._cond:
            self.errors.append(what)

    def mark(self):
        with self._cond:
            return len(self.requests)

    def since(self, mark):
        with self._cond:
            return list(self.requests[mark:])

    def wait_for(self, pred, mark=0, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.requests[mark:]:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the catalog never received a matching request: {self.requests[mark:]}")
                self._cond.wait(left)

    def stop(self):
        self.sock.close()
        with self._cond:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


# ---------------------------------------------------------------------------
# DuckDB with the iceberg extension from its PyPI packages


def duckdb_connect(directory):
    """
    A DuckDB connection that finds the iceberg extension and what it loads (avro, httpfs) in an
    extension directory laid out as DuckDB's own (v<version>/<platform>/<name>.duckdb_extension),
    whose files are those the duckdb-extension-* packages ship; nothing is ever downloaded.
    """
    import duckdb

    plat = duckdb.execute("PRAGMA platform").fetchone()[0]
    ver = "v" + duckdb.__version__
    ext_dir = os.path.join(str(directory), "duckdb-extensions")
    target = os.path.join(ext_dir, ver, plat)
    os.makedirs(target, exist_ok=True)
    for name in ("avro", "httpfs", "iceberg"):
        pkg = importlib.import_module("duckdb_extension_" + name)
        src = os.path.join(os.path.dirname(pkg.__file__), "extensions", ver, name + ".duckdb_extension")
        if not os.path.isfile(src):
            pytest.fail(f"duckdb-extension-{name} ships no {src} for DuckDB {duckdb.__version__}: "
                        "its version in tests/interop/versions must be DuckDB's")
        dst = os.path.join(target, name + ".duckdb_extension")
        if not os.path.exists(dst):
            os.symlink(src, dst)
    con = duckdb.connect(config={"extension_directory": ext_dir, "autoinstall_known_extensions": False,
                                 "autoload_known_extensions": True, "allow_unsigned_extensions": False})
    con.execute("LOAD iceberg")
    loaded = dict(con.execute("SELECT extension_name, install_path FROM duckdb_extensions() WHERE loaded").fetchall())
    assert loaded.get("iceberg", "").startswith(ext_dir), loaded
    return con


def sql_quote(s):
    return "'" + s.replace("'", "''") + "'"


# ---------------------------------------------------------------------------
# frontgate


def iceberg_config(catalog_url, identity="requestHeader", mint=None, tokenreview=None, listen="127.0.0.1:0"):
    """
    frontgate in front of the catalog: route /v1/ (`workspace: iceberg`; its token endpoint is
    /v1/oauth/tokens, where Iceberg clients look by default), the warehouse `lake` (id
    `namespaces`, see the module docstring), static keys (ops-keys; keys.txt), and with
    tokenreview=<authenticators entry text> a TokenReview authenticator `cluster-sa`.
    """
    text = f"""\
workers: 2
listeners:
  - address: {listen}
shards:
  - name: catalog
    url: {catalog_url}
    identity: {identity}
"""
    if mint:
        text += "    mint: {" + ", ".join(f"{k}: {v}" for k, v in mint.items()) + "}\n"
    text += f"""\
routes:
  - prefix: /v1/
    workspace: iceberg
    tokenEndpoint: {{authenticator: ops-keys}}
workspaces:
  - cluster: {WAREHOUSE_ID}
    warehouse: {WAREHOUSE}
    shard: catalog
authenticators:
  - name: ops-keys
    staticKeys: {{file: keys.txt}}
"""
    if tokenreview:
        text += tokenreview
    text += f"""\
authentication:
  global: [ops-keys{", cluster-sa" if tokenreview else ""}]
limits:
  shutdownGracePeriod: 3s
"""
    return text
