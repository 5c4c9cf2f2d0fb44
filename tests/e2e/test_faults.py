"""
Fault injection (the Reliability issue): shards, IdPs and TokenReview servers that
reset, stall, answer garbage or huge documents; files replaced non-atomically under
SIGHUP; file-descriptor exhaustion. The misbehaving peers live in faults.py.

Every test asserts the same four things around its fault:
  - no crash: the process is alive after the fault and exits 0 on SIGTERM (with the
    ASan build, LeakSanitizer makes a leak a non-zero exit);
  - the exact answer: 502 Status for a shard that fails before its response head,
    the connection closed when it fails after the head, the generic 401 when an
    IdP or API server fails and nothing is cached (DESIGN's error table);
  - no leak: frontgate's open fds (/proc/<pid>/fd) back to the baseline once the
    fault's connections are gone (pooled shard connections are off unless a test is
    about the pool, so the count is exact), and RSS growth bounded;
  - recovery: the first request after the peer is healthy again succeeds.

Synchronisation is on events (a fake recording a request, the client seeing bytes,
a log line) or on a condition polled with a deadline; nothing sleeps and hopes.
"""
import os
import re
import resource
import socket
import subprocess
import threading
import time
from collections import Counter

import pytest

from conftest import (
    DEAD_PATH,
    Frontgate,
    RawClient,
    WS_PATH,
    assert_unauthorized,
    bearer,
    key_line,
    log_reason,
    new_key,
    request,
    std_config,
)
from faults import (
    FaultIdp,
    FaultReviewer,
    FaultShard,
    cpu_seconds,
    fd_count,
    rss_kib,
    wait_for,
)

SANITIZED = os.environ.get("FG_SANITIZED") == "1"
SLOW = 3.0 if SANITIZED else 1.0  # the ASan build is slower: every deadline stretches
API = f"/clusters/{WS_PATH}/api"


# ---------------------------------------------------------------------------
# helpers


def config(shard_url, *, keys=True, pool=False, grace="3s", second_shard=None, extra=""):
    """std_config with the shard pool off (exact fd counts) and extra top-level text."""
    text = std_config(shard_url, dead_url=second_shard, keys=keys)
    text = text.replace("shutdownGracePeriod: 3s", f"shutdownGracePeriod: {grace}")
    if not pool:
        text += "  upstreamMaxIdle: 0\n"
    return text + extra


def get(fg, key, path=API, timeout=10.0):
    return request(fg.port, "GET", path, bearer(key) if key else None, timeout=timeout)


def req_bytes(key, path=API):
    return f"GET {path} HTTP/1.1\r\nHost: fg.test\r\nAuthorization: Bearer {key}\r\n\r\n".encode()


def settled_fds(fg, at_most, timeout=5.0):
    """Waits until frontgate holds at most `at_most` fds; returns the count."""
    pid = fg.proc.pid
    return wait_for(lambda: (n := fd_count(pid)) <= at_most and n, timeout * SLOW,
                    f"frontgate's fds back to {at_most} (now {fd_count(pid)})")


def baseline_fds(fg, key):
    """fds after a healthy request, once stable (the client's connection closed)."""
    assert get(fg, key).status == 200
    pid = fg.proc.pid
    prev = None
    deadline = time.monotonic() + 5 * SLOW
    while True:
        n = fd_count(pid)
        if n == prev or time.monotonic() > deadline:
            return n
        prev = n
        time.sleep(0.05)


def assert_alive(fg):
    assert fg.proc.poll() is None, "frontgate died:\n" + fg.log()[-4000:]


def assert_clean_exit(fg):
    assert_alive(fg)
    rc = fg.term(timeout=15 * SLOW)
    log = fg.log()
    assert not re.search(r"Sanitizer|runtime error:", log), log[-4000:]
    assert rc == 0, f"exit status {rc}:\n" + log[-4000:]


def assert_502(r):
    assert r.status == 502, r
    doc = r.json()
    assert doc["kind"] == "Status" and doc["code"] == 502 and doc["reason"] == "ServiceUnavailable", doc
    for leak in ("127.0.0.1", "reset", "malformed", "refused", "errno"):
        assert leak not in r.body.decode(), r.body


def access_line(fg, path, start):
    return fg.wait_log(rf"info access method=GET path={re.escape(path)} status=\d+", start=start,
                       timeout=5 * SLOW).string


@pytest.fixture
def fault_shard():
    s = FaultShard()
    yield s
    s.stop()


@pytest.fixture
def idp():
    s = FaultIdp()
    yield s
    s.stop()


@pytest.fixture
def reviewer():
    s = FaultReviewer()
    yield s
    s.stop()


@pytest.fixture
def keyed(fault_shard, frontgate_factory):
    """(fg, key) in front of the fault shard, pool off."""
    key = new_key()
    fg = frontgate_factory(config(fault_shard.url), {"keys.txt": key_line("alice", key) + "\n"})
    return fg, key


# ---------------------------------------------------------------------------
# 1. shards


BEFORE_HEAD = {
    "rst-head": ("rst-head", None),            # head cut half-way, then RST
    "rst-before": ("rst-before", None),        # request read, RST without a byte
    "garbage": ("garbage", None),              # not HTTP at all; the socket stays open
    "bad-status-letters": ("bad-status", b"HTTP/1.1 2x0 OK"),
    "bad-status-4-digits": ("bad-status", b"HTTP/1.1 2000 OK"),
    "bad-status-not-http": ("bad-status", b"ICY 200 OK"),
}


@pytest.mark.parametrize("case", list(BEFORE_HEAD), ids=list(BEFORE_HEAD))
def test_shard_failing_before_its_head_is_502_then_recovers(keyed, fault_shard, case):
    fg, key = keyed
    mode, line = BEFORE_HEAD[case]
    base = baseline_fds(fg, key)
    fault_shard.mode = mode
    if line:
        fault_shard.bad_line = line
    c = RawClient(fg.port, timeout=10 * SLOW)
    try:
        for _ in range(3):  # the same keep-alive connection, three times
            c.send(req_bytes(key))
            assert_502(c.read_response())
        assert fault_shard.count("request") >= 4
        # frontgate dropped the shard connection (the garbage ones stay open on our side)
        fault_shard.wait_until(lambda: fault_shard.open == 0, 5 * SLOW, "the shard connections closed")
        fg.wait_log(r"warn shard shard-1: (malformed response|connection error|connection "
                    r"closed before the response completed)", timeout=5 * SLOW)
        # recovery: the shard is healthy again; the same client connection and a new one work
        fault_shard.mode = "ok"
        c.send(req_bytes(key))
        r = c.read_response()
        assert r.status == 200 and r.json()["user"] == "alice", r
    finally:
        c.close()
    assert get(fg, key).status == 200
    settled_fds(fg, base)
    assert_clean_exit(fg)


@pytest.mark.parametrize("mode", ["rst-cl", "rst-chunked"])
def test_shard_reset_after_its_head_closes_the_client_connection(keyed, fault_shard, mode):
    fg, key = keyed
    base = baseline_fds(fg, key)
    fault_shard.mode = mode
    c = RawClient(fg.port, timeout=10 * SLOW)
    try:
        c.send(req_bytes(key))
        r = c.read_head()
        assert r.status == 200, r
        got = bytearray()
        if mode == "rst-cl":
            assert r.value("Content-Length") == "10000", r.headers
            got += c.rd.read_exact(100)
            assert bytes(got) == FaultShard.PARTIAL
        else:
            assert (r.value("Transfer-Encoding") or "").lower() == "chunked", r.headers
            want = b"6\r\n{\"a\":1\r\n6\r\n,\"b\":2\r\n"
            got += c.rd.read_exact(len(want))
            assert bytes(got) == want, got
        fault_shard.mark_taken()  # the client saw the partial body: now the shard resets
        assert c.closed(timeout=5 * SLOW), "frontgate kept a connection whose response it cannot finish"
        # never a fake ending: no last chunk, no 502 appended to a started response
        rest = bytes(c.rd.buf)
        assert b"0\r\n\r\n" not in rest and b"HTTP/1.1" not in rest, rest
    finally:
        c.close()
    fg.wait_log(r"warn shard shard-1: (connection error|connection closed before the response completed)",
                timeout=5 * SLOW)
    fault_shard.mode = "ok"
    assert get(fg, key).status == 200
    settled_fds(fg, base)
    assert_clean_exit(fg)


def test_stalled_shard_holds_only_its_own_requests(fault_shard, shard, frontgate_factory):
    """
    A shard that accepts and never answers (and one that stops mid-body): the client waits
    (frontgate has no response timeout, by design: watches are long); everything else is
    served; the client leaving frees the shard connection; SIGTERM ends the stalled
    request after the grace period and exits 0.
    """
    key = new_key()
    fg = frontgate_factory(config(fault_shard.url, grace="1s", second_shard=shard.url),
                           {"keys.txt": key_line("alice", key) + "\n"})
    base = baseline_fds(fg, key)
    other = f"/clusters/{DEAD_PATH}/api"  # the workspace on the healthy second shard

    # headers then nothing: the client has the head and the first bytes
    fault_shard.mode = "stall-body"
    c = RawClient(fg.port, timeout=10 * SLOW)
    c.send(req_bytes(key))
    r = c.read_head()
    assert r.status == 200 and r.value("Content-Length") == "10000", r
    assert c.rd.read_exact(100) == FaultShard.PARTIAL
    assert get(fg, key, other).status == 200, "a stalled shard held up another shard's request"
    c.close()
    fault_shard.wait_until(lambda: fault_shard.open == 0, 5 * SLOW, "the stalled shard connection closed")
    settled_fds(fg, base)

    # no answer at all
    fault_shard.mode = "stall"
    held = [RawClient(fg.port, timeout=10 * SLOW) for _ in range(5)]
    for h in held:
        h.send(req_bytes(key))
    fault_shard.wait_until(lambda: fault_shard.count("request") >= 7, 5 * SLOW, "5 stalled requests")
    assert get(fg, key, other).status == 200
    for h in held[:4]:
        h.close()
    fault_shard.wait_until(lambda: fault_shard.open == 1, 5 * SLOW, "four stalled connections closed")
    fault_shard.mode = "ok"
    assert get(fg, key).status == 200  # recovery, while one request is still stalled
    settled_fds(fg, base + 2)  # the one left: its client connection and its shard connection

    t0 = time.monotonic()
    assert_clean_exit(fg)
    assert time.monotonic() - t0 < 10 * SLOW
    assert held[4].closed(timeout=5), "the stalled request outlived frontgate"
    held[4].close()
    assert "grace period over" in fg.log()


def test_pooled_connection_reset_while_idle_is_retried(fault_shard, frontgate_factory):
    """The shard resets kept-alive connections after each answer: no client ever sees it."""
    key = new_key()
    fg = frontgate_factory(config(fault_shard.url, pool=True), {"keys.txt": key_line("alice", key) + "\n"})
    fault_shard.mode = "ok-rst"
    statuses = Counter(get(fg, key).status for _ in range(30))
    assert statuses == Counter({200: 30}), (statuses, fg.log()[-2000:])
    fault_shard.wait_until(lambda: fault_shard.open == 0, 5 * SLOW, "the reset connections gone")
    assert_clean_exit(fg)


def test_repeated_shard_faults_leak_no_fds_and_bounded_rss(keyed, fault_shard):
    fg, key = keyed
    pid = fg.proc.pid
    base = baseline_fds(fg, key)
    modes = ["rst-head", "rst-before", "garbage", "bad-status"]

    def round_of(n):
        for i in range(n):
            fault_shard.mode = modes[i % len(modes)]
            assert get(fg, key).status == 502
        fault_shard.wait_until(lambda: fault_shard.open == 0, 10 * SLOW, "shard connections closed")

    round_of(100)  # warm-up: allocator arenas, buffers
    rss0 = rss_kib(pid)
    round_of(400)
    grew = rss_kib(pid) - rss0
    fault_shard.mode = "ok"
    assert get(fg, key).status == 200
    settled_fds(fg, base)
    if not SANITIZED:  # ASan keeps freed memory in quarantine; LeakSanitizer checks at exit
        assert grew < 2048, f"RSS grew {grew} KiB over 400 shard faults"
    assert_clean_exit(fg)


# ---------------------------------------------------------------------------
# 2. the OIDC issuer


def jwt_config(shard_url, idp):
    return config(shard_url, keys=False, extra=f"""\
authenticators:
  - name: corp-sso
    jwt:
      issuer: {{url: "{idp.issuer}", audiences: [frontgate]}}
      claimMappings:
        username: {{claim: sub, prefix: "oidc:"}}
authentication:
  global: [corp-sso]
""")


def readyz(fg):
    return request(fg.port, "GET", "/readyz").status


def jwt_call(fg, token, n=[0]):
    """(response, access-log line) for a request on a path of its own."""
    n[0] += 1
    path = f"{API}/r{n[0]}"
    start = fg.nlines()
    r = get(fg, token, path, timeout=20 * SLOW)
    return r, access_line(fg, path, start)


IDP_AT_START = {
    "jwks-500": ("jwks", "500", r"JWKS fetch failed: unexpected HTTP status"),
    "jwks-huge": ("jwks", "huge", r"JWKS fetch failed: response too large"),
    "jwks-malformed": ("jwks", "malformed", r"JWKS fetch failed: not a JWKS document"),
    "discovery-huge-chunked": ("discovery", "huge-chunk", r"discovery failed: "),
    "discovery-malformed": ("discovery", "malformed", r"discovery failed: "),
}


@pytest.mark.parametrize("case", list(IDP_AT_START), ids=list(IDP_AT_START))
def test_idp_failing_at_start_is_401_then_recovers(fault_shard, idp, frontgate_factory, case):
    where, mode, logged = IDP_AT_START[case]
    idp.modes[where] = mode
    fg = frontgate_factory(jwt_config(fault_shard.url, idp))
    pid = fg.proc.pid
    fg.wait_log(r"warn jwt corp-sso: " + logged + r".*; no keys yet, retrying", timeout=10 * SLOW)
    rss0 = rss_kib(pid)
    assert readyz(fg) == 503
    token = idp.token()
    r, line = jwt_call(fg, token)
    assert_unauthorized(r)
    assert log_reason(line) == "the issuer's signing keys are not available yet", line
    assert fault_shard.count("request") == 0
    if mode.startswith("huge") and not SANITIZED:
        assert rss_kib(pid) - rss0 < 8192, "a 50 MiB IdP answer was buffered"
    idp.modes[where] = "ok"
    wait_for(lambda: readyz(fg) == 200, 15 * SLOW, "/readyz 200 after the IdP recovered")
    r, line = jwt_call(fg, token)  # the refused token works: the failure was not cached
    assert r.status == 200, (r, line)
    idp.wait_until(lambda: idp.open == 0, 5 * SLOW, "IdP connections closed")
    assert_clean_exit(fg)


IDP_AFTER_START = {
    "500": r"unexpected HTTP status",
    "huge": r"response too large",
    "malformed": r"not a JWKS document",
    "stall": r"timed out",
}


@pytest.mark.parametrize("mode", list(IDP_AFTER_START), ids=list(IDP_AFTER_START))
def test_idp_failing_after_start_keeps_the_last_good_keys(fault_shard, idp, frontgate_factory, mode):
    fg = frontgate_factory(jwt_config(fault_shard.url, idp))
    wait_for(lambda: readyz(fg) == 200, 10 * SLOW, "ready")
    old = idp.keys[0]
    assert jwt_call(fg, idp.token("warm", key=old))[0].status == 200
    base = baseline_fds(fg, idp.token("base", key=old))
    idp.modes["jwks"] = mode
    new = idp.rotate()  # a new key the failing JWKS cannot deliver

    results = {}

    def unknown_kid():  # parks on the forced fetch, which fails
        results["unknown"] = jwt_call(fg, idp.token("newkid", key=new))

    t = threading.Thread(target=unknown_kid)
    t.start()
    idp.wait_count("jwks", 2, timeout=5 * SLOW)  # the forced fetch is under way
    # meanwhile tokens of the known key neither wait for it nor fail
    t0 = time.monotonic()
    for i in range(5):
        r, line = jwt_call(fg, idp.token(f"known-{i}", key=old))
        assert r.status == 200, (r, line)
    assert time.monotonic() - t0 < 2 * SLOW, "known-key requests waited for a failing JWKS fetch"
    t.join(20 * SLOW)
    r, line = results["unknown"]
    assert_unauthorized(r)
    assert log_reason(line) == "the signing key is not in the issuer's key set", line
    fg.wait_log(r"warn jwt corp-sso: JWKS fetch failed: " + IDP_AFTER_START[mode] +
                r".*keeping the current keys", timeout=5 * SLOW)
    assert readyz(fg) == 200
    # recovery: the retry after the failure brings the new key in
    idp.modes["jwks"] = "ok"
    fg.wait_log(r"info jwt corp-sso: 2 signing keys", timeout=15 * SLOW)
    r, line = jwt_call(fg, idp.token("newkid-again", key=new))
    assert r.status == 200, (r, line)
    idp.wait_until(lambda: idp.open == 0, 5 * SLOW, "IdP connections closed")
    settled_fds(fg, base)
    assert_clean_exit(fg)


def test_trickling_jwks_does_not_hold_requests_past_the_fetch_timeout(fault_shard, idp, frontgate_factory):
    """
    A JWKS that sends its head and then a byte every half second never goes idle for the
    5 s fetch timeout. A request that needs keys must still be answered (401) within the
    fetch timeout, not parked for as long as the IdP keeps trickling.
    """
    idp.modes["jwks"] = "trickle"
    fg = frontgate_factory(jwt_config(fault_shard.url, idp))
    idp.wait_count("jwks", 1, timeout=5 * SLOW)
    t0 = time.monotonic()
    try:
        r = get(fg, idp.token(), timeout=12 * SLOW)
        status = r.status
    except socket.timeout:
        status = "no answer"
    took = time.monotonic() - t0
    idp.modes["jwks"] = "ok"
    idp.stopping.set()  # ends the trickle (the server stops at teardown anyway)
    assert status == 401 and took < 7 * SLOW, (
        f"a trickling JWKS held a request for {took:.1f} s ({status}); fetch timeout 5 s")
    assert_clean_exit(fg)


def test_jwks_rotation_under_load_has_no_401(fault_shard, idp, frontgate_factory):
    """Four clients with fresh tokens; the IdP rotates to a new key in the middle."""
    fg = frontgate_factory(jwt_config(fault_shard.url, idp))
    wait_for(lambda: readyz(fg) == 200, 10 * SLOW, "ready")
    stop = threading.Event()
    lock = threading.Lock()
    seen = Counter()
    bad = []

    def client(n):
        i = 0
        while not stop.is_set():
            i += 1
            tok = idp.token(f"c{n}-{i}")  # signed with whatever key is current
            try:
                r = get(fg, tok, f"{API}/c{n}-{i}", timeout=10 * SLOW)
                st = r.status
            except OSError as e:
                st = repr(e)
            with lock:
                seen[st] += 1
                if st != 200:
                    bad.append((tok.split(".")[0], st))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: seen[200] >= 100, 10 * SLOW, "100 requests before the rotation")
        idp.rotate()
        before = seen[200]
        wait_for(lambda: seen[200] >= before + 200, 15 * SLOW, "200 requests after the rotation")
    finally:
        stop.set()
        for t in threads:
            t.join(15 * SLOW)
    assert bad == [] and set(seen) == {200}, (seen, bad[:5], fg.log()[-2000:])
    assert idp.count("jwks") == 2, f"{idp.count('jwks')} JWKS fetches for one rotation (want 2)"
    fg.wait_log(r"info jwt corp-sso: 2 signing keys")
    assert_clean_exit(fg)


# ---------------------------------------------------------------------------
# 3. the TokenReview API server


def tr_config(shard_url, reviewer, timeout="1s"):
    return config(shard_url, keys=False, extra=f"""\
authenticators:
  - name: cluster-sa
    tokenReview:
      url: {reviewer.url}
      audiences: [frontgate]
      timeout: {timeout}
authentication:
  global: [cluster-sa]
""")


TR_FAULTS = {
    "500": "token review unavailable",
    "huge": "token review unavailable",
    "huge-chunk": "token review unavailable",
    "stall": "token review unavailable",
    # a 201 whose JSON is cut in the middle is no answer: it must not be cached as a refusal
    "malformed": "token review: malformed response",
}


@pytest.mark.parametrize("mode", list(TR_FAULTS), ids=list(TR_FAULTS))
def test_tokenreview_failure_is_401_not_cached_then_recovers(fault_shard, reviewer, frontgate_factory,
                                                             mode):
    fg = frontgate_factory(tr_config(fault_shard.url, reviewer, timeout=f"{int(1000 * SLOW)}ms"))
    pid = fg.proc.pid
    reviewer.allowed["warm"] = "warm"
    base = baseline_fds(fg, "warm")
    rss0 = rss_kib(pid)
    tok = f"sa-token-{mode}"
    reviewer.allowed[tok] = "system:serviceaccount:ns:sa"
    reviewer.mode = mode
    t0 = time.monotonic()
    r, line = jwt_call(fg, tok)
    took = time.monotonic() - t0
    assert_unauthorized(r)
    assert log_reason(line) == TR_FAULTS[mode], line
    assert took < 3 * SLOW, f"{took:.1f} s for a review with a 1 s timeout"
    if mode.startswith("huge") and not SANITIZED:
        assert rss_kib(pid) - rss0 < 8192, "a 50 MiB TokenReview answer was buffered"
    assert fault_shard.count("request") == 1  # only the warm-up reached the shard
    reviewer.mode = "ok"
    r, line = jwt_call(fg, tok)  # the same token, right away: nothing was cached
    assert r.status == 200, (r, line)
    reviewer.wait_until(lambda: reviewer.open == 0, 5 * SLOW, "review connections closed")
    settled_fds(fg, base)
    assert_clean_exit(fg)


def test_trickling_tokenreview_respects_the_review_timeout(fault_shard, reviewer, frontgate_factory):
    """`timeout:` is per review, retries included (README): a server that trickles its
    answer a byte at a time must not hold the request past it."""
    fg = frontgate_factory(tr_config(fault_shard.url, reviewer, timeout="1s"))
    reviewer.allowed["slow"] = "slow"
    reviewer.mode = "trickle"
    t0 = time.monotonic()
    try:
        status = get(fg, "slow", timeout=6 * SLOW).status
    except socket.timeout:
        status = "no answer"
    took = time.monotonic() - t0
    reviewer.stopping.set()  # ends the trickle
    assert status == 401 and took < 3 * SLOW, f"a 1 s review took {took:.1f} s ({status})"
    assert_clean_exit(fg)


# ---------------------------------------------------------------------------
# 4. files replaced non-atomically under SIGHUP


def write_raw(path, text):
    """Writes in place (truncate, then write), as a careless editor or `cat >` does."""
    with open(path, "w") as f:
        f.write(text)


def test_half_written_key_file_keeps_the_old_keys(env):
    fg, alice, bob = env.fg, env.alice, env.keys["bob"]
    carol = new_key()
    good = key_line("alice", alice) + "\n" + key_line("carol", carol) + "\n"
    path = fg.path("keys.txt")
    for cut in (len(key_line("alice", alice)) + 20, len(good) - 10):  # inside a hash, twice
        write_raw(path, good[:cut])
        fg.hup(expect_ok=False)
        assert get(fg, alice).status == 200 and get(fg, bob).status == 200, "old keys lost"
        assert get(fg, carol).status == 401
    write_raw(path, good)  # the writer finishes; the next SIGHUP takes it whole
    fg.hup()
    assert get(fg, carol).status == 200 and get(fg, alice).status == 200
    assert get(fg, bob).status == 401
    assert_clean_exit(fg)


def test_key_file_truncated_during_a_reload_does_not_lock_everyone_out(env):
    """
    `cat new > keys.txt` truncates first: a SIGHUP in between reads an empty file. The
    README's promise is that a reload never locks anyone out; an empty key file is the
    state of a write in progress far more often than a wish to revoke every key.
    """
    fg, alice = env.fg, env.alice
    path = fg.path("keys.txt")
    text = open(path).read()
    write_raw(path, "")
    fg.hup(expect_ok=None)
    locked_out = get(fg, alice).status
    write_raw(path, text)
    fg.hup()
    assert get(fg, alice).status == 200
    assert locked_out == 200, "a SIGHUP between truncate and write revoked every key"
    assert_clean_exit(fg)


def test_config_truncated_at_any_line_never_fails_open_or_locks_out(env):
    """
    The config rewritten in place, SIGHUP at every line boundary of the write: each
    reload either fails (previous snapshot whole) or — never — serves a prefix of the
    file that drops authentication (anonymous 200) or the workspaces (403 for alice).
    """
    fg, alice = env.fg, env.alice
    text = open(fg.config_path).read()
    lines = text.splitlines(keepends=True)
    verdicts = []
    for i in range(len(lines)):
        write_raw(fg.config_path, "".join(lines[:i]))
        outcome = fg.hup(expect_ok=None)
        verdicts.append((i, "ok" if "reloaded" in outcome else "failed",
                         get(fg, alice).status, get(fg, None).status))
        assert_alive(fg)
    write_raw(fg.config_path, text)
    fg.hup()
    assert get(fg, alice).status == 200 and get(fg, None).status == 401
    wrong = [(i, lines[i - 1].rstrip() if i else "", o, a, anon) for i, o, a, anon in verdicts
             if a != 200 or anon != 401]
    assert wrong == [], "config prefixes that reloaded into a different security posture " \
        "(lines kept, last line, reload, alice, anonymous):\n" + "\n".join(map(repr, wrong))
    assert_clean_exit(fg)


# ---------------------------------------------------------------------------
# 5. file-descriptor exhaustion


class LimitedFrontgate(Frontgate):
    """Frontgate started with RLIMIT_NOFILE soft = hard = nofile (it raises soft to hard)."""

    nofile = 48

    def start(self, timeout=10.0):
        n = self.nofile
        real = subprocess.Popen

        def popen(*a, **kw):
            return real(*a, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)), **kw)

        subprocess.Popen = popen
        try:
            return super().start(timeout)
        finally:
            subprocess.Popen = real


def test_fd_exhaustion_survives_and_serves_again(fault_shard, tmp_path):
    key = new_key()
    # One worker: each worker has its own SO_REUSEPORT listening socket and the kernel spreads
    # connections over them by hash, so with two a connection can wait in the queue of the
    # worker that found no fd left, never accepted, and socks[0] below would hang (seen once).
    text = config(fault_shard.url).replace("workers: 2\n", "workers: 1\n")
    assert "workers: 1\n" in text
    fg = LimitedFrontgate(tmp_path / "fg", text, {"keys.txt": key_line("alice", key) + "\n"})
    try:
        fg.start()
        pid = fg.proc.pid
        base = baseline_fds(fg, key)
        assert base < LimitedFrontgate.nofile - 10, base
        socks = [socket.create_connection(("127.0.0.1", fg.port)) for _ in range(2 * LimitedFrontgate.nofile)]
        try:
            wait_for(lambda: fd_count(pid) >= LimitedFrontgate.nofile - 1, 5 * SLOW, "every fd in use")
            # exhausted, with connections still waiting in the accept queue
            n0, c0, t0 = fg.nlines(), cpu_seconds(pid), time.monotonic()
            time.sleep(1.0)  # a measurement window, not a synchronisation
            cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
            logged = fg.nlines() - n0
            assert_alive(fg)
            # an accepted connection is answered: no fd for the shard is a 502, never a hang
            socks[0].settimeout(5 * SLOW)
            socks[0].sendall(req_bytes(key))
            first = socks[0].recv(64)
            assert first.startswith(b"HTTP/1.1 502 "), first
        finally:
            for s in socks:
                s.close()
        # connections gone: frontgate serves again and gives the fds back
        wait_for(lambda: _status_or_none(fg, key) == 200, 10 * SLOW, "a 200 after the connections closed")
        settled_fds(fg, base, timeout=10)
        assert cpu < 0.5, f"frontgate burned {cpu:.2f} CPU-seconds per second while out of fds (accept loop)"
        assert logged < 100, f"{logged} log lines in one second while out of fds"
        assert_clean_exit(fg)
    finally:
        fg.stop()


def _status_or_none(fg, key):
    try:
        return get(fg, key, timeout=2).status
    except OSError:
        return None
