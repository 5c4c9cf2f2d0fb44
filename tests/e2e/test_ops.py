"""Operations: SIGHUP reloads, SIGTERM draining, and the command line (check, hash-key, demo)."""
import conftest
import hashlib
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import (
    FRONTGATE_BIN,
    WS_PATH,
    UNAUTHORIZED_BODY,
    bearer,
    key_line,
    new_key,
    request,
    std_config,
)


def status(port, key, path=f"/clusters/{WS_PATH}/api"):
    return request(port, "GET", path, bearer(key) if key else None).status


# ---------------------------------------------------------------------------
# SIGHUP


@pytest.mark.concurrency
def test_sighup_rotates_keys(env):
    old, new = env.alice, new_key()
    assert status(env.port, old) == 200
    assert status(env.port, new) == 401
    # a kept-alive connection opened before the reload follows the new key set too
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=10)
    conn.request("GET", f"/clusters/{WS_PATH}/api", headers=bearer(old))
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200
    env.fg.write("keys.txt", key_line("alice", new, ["developers"]) + "\n")
    env.fg.hup()
    assert status(env.port, new) == 200
    r = request(env.port, "GET", f"/clusters/{WS_PATH}/api", bearer(old))
    assert r.status == 401 and r.body.rstrip(b"\n") == UNAUTHORIZED_BODY
    conn.request("GET", f"/clusters/{WS_PATH}/api", headers=bearer(old))
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 401, "a connection opened before the reload still accepts the revoked key"
    conn.close()
    rec = env.shard.wait_for(lambda x: x.values("X-Remote-Group") == ["developers", "system:authenticated"])
    assert rec.values("X-Remote-User") == ["alice"]


BAD_KEY_FILES = {
    "no-colon": ("# comment\n{good}\nthis line has no separator\n", 3, 1),
    "short-hash": ("{good}\n\nmallory:abcdef\n", 3, 9),
    "bad-hex": ("{good}\nmallory:" + "z" * 64 + "\n", 2, 9),
    "duplicate-id": ("{good}\nnewcomer:" + "0" * 64 + "\n", 2, 1),
    "empty-group": ("{good}\nmallory:" + "1" * 64 + ":a,,b\n", 2, 76),
}


@pytest.mark.concurrency
@pytest.mark.parametrize("case", list(BAD_KEY_FILES), ids=list(BAD_KEY_FILES))
def test_sighup_malformed_key_file_keeps_old_keys(env, case):
    text, line, col = BAD_KEY_FILES[case]
    newcomer = new_key()
    good = key_line("newcomer", newcomer)
    env.fg.write("keys.txt", text.format(good=good))
    start = env.fg.nlines()
    env.fg.hup(expect_ok=False)
    keys_path = env.fg.path("keys.txt")
    m = env.fg.wait_log(re.escape(f"{keys_path}:{line}:") + r"(\d+): (.+)", start=start)
    assert int(m.group(1)) == col, m.group(0)
    assert m.group(2).strip(), "the log must say why"
    env.fg.wait_log(r"reload failed; still serving configuration generation 1", start=start)
    assert status(env.port, env.alice) == 200, "the old key stopped working after a failed reload"
    assert status(env.port, env.keys["bob"]) == 200
    assert status(env.port, newcomer) == 401, "a key from the rejected file was admitted"
    # fixing the file and reloading again recovers
    env.fg.write("keys.txt", good + "\n")
    env.fg.hup()
    assert status(env.port, newcomer) == 200
    assert status(env.port, env.alice) == 401


@pytest.mark.concurrency
def test_sighup_missing_key_file_keeps_old_keys(env):
    os.remove(env.fg.path("keys.txt"))
    start = env.fg.nlines()
    env.fg.hup(expect_ok=False)
    env.fg.wait_log(re.escape(env.fg.path("keys.txt")) + r": cannot read key file", start=start)
    assert status(env.port, env.alice) == 200


@pytest.mark.concurrency
def test_sighup_bad_config_keeps_serving_and_names_the_line(env):
    cfg = open(env.fg.config_path).read()
    lines = cfg.splitlines()
    i = lines.index("routes:")
    lines.insert(i, "bogusKey: 1")
    env.fg.write("frontgate.yaml", "\n".join(lines) + "\n")
    start = env.fg.nlines()
    env.fg.hup(expect_ok=False)
    env.fg.wait_log(re.escape(f"{env.fg.config_path}:{i + 1}:1: ") + r'unknown key "bogusKey"', start=start)
    assert status(env.port, env.alice) == 200


@pytest.mark.concurrency
def test_request_loop_survives_20_sighups(env):
    stop = threading.Event()
    results = {"ok": 0, "fail": []}
    lock = threading.Lock()

    def fresh_connections():
        while not stop.is_set():
            try:
                r = request(env.port, "GET", f"/clusters/{WS_PATH}/api/v1/pods", bearer(env.alice), timeout=5)
                good = r.status == 200 and r.json()["target"].endswith("/api/v1/pods")
                err = None if good else f"status {r.status}: {r.body[:200]!r}"
            except Exception as e:  # noqa: BLE001 - every failure counts
                err = repr(e)
            with lock:
                if err:
                    results["fail"].append(err)
                else:
                    results["ok"] += 1

    def kept_alive():
        conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=5)
        while not stop.is_set():
            try:
                conn.request("POST", f"/clusters/{WS_PATH}/api/v1/pods", body=b"{}", headers=bearer(env.alice))
                resp = conn.getresponse()
                data = resp.read()
                err = None if resp.status == 200 else f"keep-alive status {resp.status}: {data[:200]!r}"
            except Exception as e:  # noqa: BLE001
                err = "keep-alive " + repr(e)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=5)
            with lock:
                if err:
                    results["fail"].append(err)
                else:
                    results["ok"] += 1
        conn.close()

    threads = [threading.Thread(target=f) for f in (fresh_connections, fresh_connections, kept_alive)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.1)
        keys = open(env.fg.path("keys.txt")).read()
        for i in range(20):
            env.fg.write("keys.txt", keys + f"# reload {i}\n")
            env.fg.hup()
            time.sleep(0.02)
    finally:
        time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(10)
    assert env.fg.generation == 21
    assert results["fail"] == [], f"{len(results['fail'])} failures, first: {results['fail'][:3]}"
    assert results["ok"] >= 40, results


# ---------------------------------------------------------------------------
# SIGTERM and health


@pytest.mark.concurrency
def test_sigterm_finishes_in_flight_request_then_exits_0(env):
    out = {}

    def slow():
        try:
            out["r"] = request(env.port, "GET", f"/clusters/{WS_PATH}/api/slow?ms=1200", bearer(env.alice), timeout=10)
            out["t"] = time.monotonic()
            out["alive"] = env.fg.proc.poll() is None
        except Exception as e:  # noqa: BLE001
            out["err"] = e

    t = threading.Thread(target=slow)
    t.start()
    env.shard.wait_for(lambda x: x.path.endswith("/slow"))
    env.fg.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert env.fg.proc.poll() is None, "frontgate exited with a request in flight"
    rc = env.fg.proc.wait(10)
    t_exit = time.monotonic()
    t.join(10)
    assert "err" not in out, out.get("err")
    r = out["r"]
    assert r.status == 200, r
    assert r.json()["target"].endswith("/slow?ms=1200")
    assert out["t"] <= t_exit
    assert rc == 0, env.fg.log()
    assert "stopped" in env.fg.log()


def test_sigterm_with_idle_connection_exits_promptly(env):
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=10)
    conn.request("GET", "/healthz")
    conn.getresponse().read()
    t0 = time.monotonic()
    rc = env.fg.term(timeout=10)
    assert rc == 0
    assert time.monotonic() - t0 < 2.0, "an idle keep-alive connection held up the shutdown"
    conn.close()


def test_readyz_and_healthz_without_auth(env):
    for path in ("/healthz", "/readyz", "/livez", "/healthz?verbose=1"):
        r = request(env.port, "GET", path)
        assert (r.status, r.body) == (200, b"ok\n"), (path, r)
    r = request(env.port, "HEAD", "/readyz")
    assert r.status == 200 and r.body == b""
    assert env.shard.snapshot() == []


# ---------------------------------------------------------------------------
# frontgate check


BAD_CONFIG = """\
listeners:
  - address: 127.0.0.1:8080
    bogus: 1
shards:
  - name: s1
    url: ftp://shard.example
routes:
  - prefix: /
    shard: nope
"""


def test_check_prints_file_line_column_errors(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BAD_CONFIG)
    p = subprocess.run([FRONTGATE_BIN, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=10)
    assert p.returncode != 0
    out = p.stdout + p.stderr
    errs = re.findall(re.escape(str(cfg)) + r":(\d+):(\d+): (.*)", out)
    found = {(int(line), int(col)): msg for line, col, msg in errs}
    assert found.get((3, 5), "").startswith('unknown key "bogus"'), out
    assert "ftp://shard.example" in found.get((6, 10), ""), out
    assert "nope" in found.get((9, 12), ""), out
    assert len(errs) == 3, out


def test_check_reports_yaml_syntax_error_position(tmp_path):
    cfg = tmp_path / "syntax.yaml"
    cfg.write_text("listeners:\n  - address: [127.0.0.1:8080\nroutes: []\n")
    p = subprocess.run([FRONTGATE_BIN, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=10)
    assert p.returncode != 0
    assert re.search(re.escape(str(cfg)) + r":\d+:\d+: ", p.stdout + p.stderr), p.stdout + p.stderr


def test_check_accepts_a_good_config_with_port_zero(tmp_path, shard):
    (tmp_path / "keys.txt").write_text(key_line("alice", new_key()) + "\n")
    cfg = tmp_path / "good.yaml"
    cfg.write_text(std_config(shard.url))
    p = subprocess.run([FRONTGATE_BIN, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok" in p.stdout


def test_check_accepts_two_port_zero_listeners(tmp_path, shard):
    cfg = tmp_path / "two.yaml"
    cfg.write_text(std_config(shard.url, keys=False).replace(
        "  - address: 127.0.0.1:0\n", "  - address: 127.0.0.1:0\n  - address: 127.0.0.1:0\n", 1))
    p = subprocess.run([FRONTGATE_BIN, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stdout + p.stderr


def test_frontgate_refuses_to_start_with_a_bad_config(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BAD_CONFIG)
    p = subprocess.run([FRONTGATE_BIN, "-c", str(cfg)], capture_output=True, text=True, timeout=10)
    assert p.returncode != 0
    assert f"{cfg}:3:5:" in p.stderr


# ---------------------------------------------------------------------------
# hash-key


def run_hash_key(*args):
    return subprocess.run([FRONTGATE_BIN, "hash-key", *args], capture_output=True, text=True, timeout=10)


def test_hash_key_prints_key_and_line():
    p = run_hash_key("--id", "x", "--groups", "a,b")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 2, p.stdout
    m1 = re.fullmatch(r"key: (\S+)", lines[0])
    m2 = re.fullmatch(r"line: x:([0-9a-f]{64}):a,b", lines[1])
    assert m1 and m2, p.stdout
    key = m1.group(1)
    assert hashlib.sha256(key.encode()).hexdigest() == m2.group(1)
    assert len(key) >= 32
    # fresh every time
    assert run_hash_key("--id", "x").stdout.splitlines()[0] != lines[0]


def test_hash_key_without_groups():
    p = run_hash_key("--id", "svc-1")
    assert p.returncode == 0
    key = re.search(r"^key: (\S+)$", p.stdout, re.M).group(1)
    assert re.search(r"^line: svc-1:([0-9a-f]{64})$", p.stdout, re.M).group(1) == hashlib.sha256(key.encode()).hexdigest()


@pytest.mark.parametrize("args", [["--id", "bad id"], ["--id", "x", "--groups", "a,,b"], ["--bogus"]])
def test_hash_key_rejects_bad_input(args):
    p = run_hash_key(*args)
    assert p.returncode != 0
    assert "key:" not in p.stdout


def test_hash_key_line_is_accepted_by_frontgate(shard, frontgate_factory):
    p = run_hash_key("--id", "ci-bot", "--groups", "builders")
    key = re.search(r"^key: (\S+)$", p.stdout, re.M).group(1)
    line = re.search(r"^line: (\S+)$", p.stdout, re.M).group(1)
    fg = frontgate_factory(std_config(shard.url), {"keys.txt": line + "\n"})
    assert status(fg.port, key) == 200
    rec = shard.wait_for(lambda x: x.complete)
    assert rec.values("X-Remote-User") == ["ci-bot"]
    assert sorted(rec.values("X-Remote-Group")) == ["builders", "system:authenticated"]


# ---------------------------------------------------------------------------
# demo


class Demo:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="fgd")  # short: the demo wants TMPDIR < 40 chars
        self.proc = subprocess.Popen(
            [FRONTGATE_BIN, "demo", "--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "TMPDIR": self.tmp},
        )
        self.out, self.err = [], []
        self.signalled = False
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._pump, args=(s, b), daemon=True)
                         for s, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    def _pump(self, stream, buf):
        for line in iter(stream.readline, b""):
            with self._cond:
                buf.append(line.decode())
                self._cond.notify_all()
        with self._cond:
            buf.append(None)
            self._cond.notify_all()

    def text(self, buf):
        return "".join(x for x in buf if x)

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ("Ctrl-C stops" in self.text(self.out) and "frontgate ready" in self.text(self.err)):
                errors = re.findall(r"^\S+:\d+:\d+: .*$", self.text(self.err), re.M)
                if errors or (None in self.out and None in self.err) or self.proc.poll() is not None:
                    raise AssertionError(f"demo failed to start (exit status {self.proc.poll()}, None = still running):\n"
                                         + self.text(self.out) + self.text(self.err))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("demo never became ready:\n" + self.text(self.out) + self.text(self.err))
                self._cond.wait(left)
        return self.text(self.out), self.text(self.err)

    def stop(self):
        if self.proc.poll() is None:
            if not self.signalled:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(0.1 if self.signalled else 3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def demo():
    d = Demo()
    yield d
    d.stop()


def parse_demo(out, err):
    key = re.search(r"API key \(printed once[^)]*\): (\S+)", out).group(1)
    curls = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("curl ")]
    kubectl = re.search(r"^\s*(kubectl .*?)$(?<!\\)", out.replace("\\\n", " "), re.M).group(1)
    listening = re.findall(r"info listening on (https?)://(\S+)", err)
    return key, curls, kubectl, listening


def run_curl_line(line):
    argv = shlex.split(line, comments=True)
    p = subprocess.run(argv + ["-w", "\n%{http_code}", "--max-time", "10"], capture_output=True, text=True, timeout=20)
    body, _, code = p.stdout.rpartition("\n")
    return int(code), body


def test_demo_prints_working_curl_lines(demo):
    out, err = demo.wait_ready()
    key, curls, _, listening = parse_demo(out, err)
    assert key.startswith("fgk_") and key in out
    http_addr = next(a for s, a in listening if s == "http")
    assert not http_addr.endswith(":0")
    assert len(curls) == 3, out
    for c in curls:
        assert f"http://{http_addr}/" in c, (c, listening)
    code, body = run_curl_line(curls[0])
    assert code == 200, body
    doc = json.loads(body)
    assert doc["user"]["username"] == "demo-user", doc
    assert set(doc["user"]["groups"]) == {"developers", "viewers", "system:authenticated"}
    assert doc["path"] == "/clusters/1demo2cluster/api/v1/namespaces"
    assert doc["headers"].get("authorization") is None, "the key reached the shard"
    code, body = run_curl_line(curls[1])
    assert code == 401 and "# no key: 401" in curls[1], body
    code, body = run_curl_line(curls[2])
    assert code == 403 and json.loads(body)["message"].endswith("workspace access not permitted"), body
    # the key never appears in frontgate's log
    assert key not in demo.text(demo.err)


def test_demo_kubectl_auth_whoami(demo, tmp_path):
    kubectl = conftest.KUBECTL
    if not kubectl or not os.access(kubectl, os.X_OK):
        pytest.skip(f"no executable kubectl at {kubectl} (set FG_KUBECTL, or run .ci/install-deps test)")
    out, err = demo.wait_ready()
    key, _, line, listening = parse_demo(out, err)
    tls_addr = next(a for s, a in listening if s == "https")
    argv = shlex.split(line)
    assert argv[0] == "kubectl"
    assert f"https://{tls_addr}/clusters/root:demo" in argv, argv
    assert key in argv
    ca = argv[argv.index("--certificate-authority") + 1]
    assert os.path.isfile(ca), ca
    p = subprocess.run(
        [kubectl] + argv[1:], capture_output=True, text=True, timeout=60,
        env={**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "no-kubeconfig")},
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"^Username\s+demo-user\s*$", p.stdout, re.M), p.stdout
    assert re.search(r"^Groups\s+\[.*developers.*\]", p.stdout, re.M), p.stdout


def test_demo_stops_on_sigterm_and_removes_its_files(demo):
    out, _ = demo.wait_ready()
    m = re.search(r"Config: (\S+)/frontgate\.yaml", out)
    d = m.group(1)
    assert os.path.isdir(d)
    assert d.startswith(demo.tmp)
    demo.proc.send_signal(signal.SIGTERM)
    demo.signalled = True
    try:
        rc = demo.proc.wait(3)
    except subprocess.TimeoutExpired:
        pytest.fail("frontgate demo did not exit within 3 s of SIGTERM (it logged: "
                    + repr(demo.text(demo.err).strip().splitlines()[-1:]) + ")")
    assert rc == 0
    assert not os.path.exists(d), "the demo left its key file and TLS key behind"


@pytest.mark.parametrize("max_idle,expect_new", [(None, "reused"), ("0", "every request")])
def test_shard_pool_keeps_idle_connections_up_to_upstream_max_idle(shard, frontgate_factory, max_idle,
                                                                   expect_new):
    """Shard connections are pooled per worker (limits.upstreamMaxIdle, default 256): sequential
    requests reuse them; with 0 nothing is kept and each request dials the shard."""
    key = new_key()
    extra = f"  upstreamMaxIdle: {max_idle}\n" if max_idle is not None else ""  # continues limits:
    fg = frontgate_factory(std_config(shard.url) + extra, {"keys.txt": key_line("alice", key) + "\n"})
    before = shard.connections
    n = 6
    for i in range(n):
        r = request(fg.port, "GET", f"/clusters/{WS_PATH}/api/v1/pool-{i}", bearer(key))
        assert r.status == 200, r
        shard.wait_for(lambda x, i=i: x.complete and x.target.endswith(f"/pool-{i}"))
    opened = shard.connections - before
    if expect_new == "reused":
        assert opened <= 2, f"{opened} shard connections for {n} sequential requests (2 workers)"
    else:
        assert opened == n, f"{opened} shard connections for {n} requests with upstreamMaxIdle 0"
