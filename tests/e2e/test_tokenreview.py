"""
The tokenReview authenticator end to end (issue 4), against fake_apiserver.FakeAPIServer:
a stdlib HTTPS server with a test CA that speaks authentication.k8s.io/v1 TokenReview,
authenticates frontgate (bearer from tokenFile, or a client certificate), counts the
reviews and answers as each test tells it.

Every refusal is checked three ways: the exact generic 401 body, the `reason=` of
frontgate's access-log line, and the token appearing nowhere in the log.
"""
import concurrent.futures
import json
import re
import secrets
import threading
import time
from collections import Counter

import pytest

from conftest import (
    RawClient,
    WS_CLUSTER,
    WS_PATH,
    assert_not_logged,
    assert_unauthorized,
    bearer,
    log_reason,
    request,
    std_config,
)
from fake_apiserver import (  # noqa: F401  (fixtures)
    SA_ISSUER,
    TestCA,
    apiserver_factory,
    make_jwt,
    sa_token,
    sa_user,
    tls_ca,
    tokenreview_yaml,
)

AUD = "https://frontgate.test"
AUTHN = "cluster-sa"
API_PATH = f"/clusters/{WS_PATH}/api"


def new_caller():
    return "caller-" + secrets.token_urlsafe(24)


# ---------------------------------------------------------------------------
# helpers


def start_fg(frontgate_factory, shard, api, ca, *, caller=None, client_cert=None, drop_groups=None,
             name="fg", **tr):
    """frontgate with one global tokenReview authenticator in front of shard."""
    files = {"apiserver-ca.crt": ca.pem}
    token_file = None
    if caller is not None:
        files["caller-token"] = caller + "\n"
        token_file = "caller-token"
    cc = None
    if client_cert is not None:
        files["reviewer.crt"], files["reviewer.key"] = client_cert
        cc = ("reviewer.crt", "reviewer.key")
    extra = "authenticators:\n" + tokenreview_yaml(
        AUTHN, api.url, token_file=token_file, client_cert=cc, **{"audiences": (AUD,), **tr}
    )
    extra += f"authentication:\n  global: [{AUTHN}]\n"
    if drop_groups is not None:
        extra += f"  dropGroups: {json.dumps(drop_groups)}\n"
    return frontgate_factory(std_config(shard.url, keys=False, extra=extra), files, name=name)


def call(fg, token=None, path=API_PATH, timeout=15.0):
    """One request; returns (response, its access-log line)."""
    start = fg.nlines()
    r = request(fg.port, "GET", path, bearer(token) if token else {}, timeout=timeout)
    q = path.split("?")[0]
    m = fg.wait_log(rf"access method=GET path={re.escape(q)} status={r.status}\b", start=start)
    return r, m.string








def extra_headers(rec):
    return [(k, v) for k, v in rec.headers if k.lower().startswith("x-remote-extra-")]


@pytest.fixture
def tr(shard, apiserver_factory, frontgate_factory, tls_ca):
    """(fg, api, caller) with default TTLs, one caller token, audiences [AUD]."""
    caller = new_caller()
    api = apiserver_factory(callers={caller})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=caller)
    return fg, api, caller


# ---------------------------------------------------------------------------
# the happy path and the wire format


def test_service_account_token_is_reviewed_and_forwarded(tr, shard):
    fg, api, caller = tr
    tok = sa_token("ns", "sa")
    user = sa_user("ns", "sa")
    user["groups"] = user["groups"] + ["system:masters"]  # dropped by the default dropGroups
    api.allow(tok, user)
    r, line = call(fg, tok)
    assert r.status == 200, r

    # what the API server received: exactly the v1 wire format, our caller credential
    [rv] = api.snapshot()
    assert rv.doc == {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "spec": {"token": tok, "audiences": [AUD]}}, rv.doc
    assert rv.caller == caller
    assert rv.client_cn is None
    assert api.errors == []

    # what the shard received: the identity as the API server stated it, minus dropGroups
    rec = shard.wait_for(lambda x: x.complete)
    assert rec.target == f"/clusters/{WS_CLUSTER}/api"
    assert rec.values("X-Remote-User") == ["system:serviceaccount:ns:sa"]
    assert rec.values("X-Remote-Uid") == ["sa-uid-ns-sa"]
    assert Counter(rec.values("X-Remote-Group")) == Counter(
        ["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"]
    ), rec.headers
    assert sorted(extra_headers(rec)) == sorted([
        ("X-Remote-Extra-Authentication.kubernetes.io%2fpod-Name", "p"),
        ("X-Remote-Extra-Authentication.kubernetes.io%2fpod-Uid", "p-uid"),
        ("X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id",
         "JTI=0f8b0d7c-4a4e-4c9e-9b46-2f8c1f0e9d11"),
    ]), rec.headers
    assert rec.values("Authorization") == [], "frontgate validated the token: it must not forward it"
    assert "user=system:serviceaccount:ns:sa" in line and f"authn={AUTHN}" in line, line
    assert_not_logged(fg, tok, caller)


def test_dropgroups_empty_keeps_system_groups_of_a_reviewed_identity(shard, apiserver_factory,
                                                                     frontgate_factory, tls_ca):
    caller = new_caller()
    api = apiserver_factory(callers={caller})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=caller, drop_groups=[])
    tok = sa_token()
    user = sa_user()
    user["groups"] = ["system:masters", "system:kcp:logical-cluster-admin"]
    api.allow(tok, user)
    r, _ = call(fg, tok)
    assert r.status == 200, r
    rec = shard.wait_for(lambda x: x.complete)
    assert Counter(rec.values("X-Remote-Group")) == Counter(
        ["system:masters", "system:kcp:logical-cluster-admin", "system:authenticated"]
    ), rec.headers


@pytest.mark.concurrency
def test_thousand_concurrent_requests_cause_one_review(tr, shard):
    """1,000 requests with one fresh token, all in flight while the review is pending."""
    fg, api, _ = tr
    # frontgate opens up to one shard connection per parked request when the review lands:
    # give the fake shard's listener a backlog that takes the burst (Linux updates it in place)
    shard.lsock.listen(2048)
    tok = sa_token("ns", "burst")
    api.allow(tok, sa_user("ns", "burst"))
    api.delay = 0.5  # all requests overlap the pending review
    threads, per_thread = 50, 20
    req = (f"GET {API_PATH} HTTP/1.1\r\nHost: fg.test\r\nAuthorization: Bearer {tok}\r\n\r\n").encode()
    barrier = threading.Barrier(threads)

    def worker(_):
        conns = [RawClient(fg.port, timeout=30) for _ in range(per_thread)]
        try:
            barrier.wait(30)
            for c in conns:
                c.send(req)
            sent = time.monotonic()
            first = [c.read_response().status for c in conns]
            # the same keep-alive connections again: answered from the cache
            for c in conns:
                c.send(req)
            second = [c.read_response().status for c in conns]
            return first, second, sent
        finally:
            for c in conns:
                c.close()

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        results = list(ex.map(worker, range(threads)))
    first = Counter(s for f, _, _ in results for s in f)
    second = Counter(s for _, s2, _ in results for s in s2)
    bad = [ln for ln in fg.lines() if " status=" in ln and " status=200 " not in ln][:5]
    bad += [ln for ln in fg.lines() if " warn " in ln or " error " in ln][:5]
    assert first == Counter({200: threads * per_thread}), (first, bad)
    assert second == Counter({200: threads * per_thread}), second
    assert api.calls() == 1, f"{api.calls()} TokenReviews for one token"
    # every request was on the wire before the (delayed) review was answered
    answered = api.snapshot()[0].t + api.delay
    assert max(sent for _, _, sent in results) < answered, "the requests did not overlap the review"
    assert api.errors == []
    assert time.monotonic() - t0 < 30
    assert_not_logged(fg, tok)


@pytest.mark.concurrency
def test_concurrent_requests_with_a_refused_token_cause_one_review(tr, shard):
    fg, api, _ = tr
    tok = sa_token("ns", "refused")  # unknown to the API server
    api.delay = 0.3
    n = 100
    barrier = threading.Barrier(n)

    def one(_):
        barrier.wait(10)
        return request(fg.port, "GET", API_PATH, bearer(tok), timeout=15).status

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        statuses = Counter(ex.map(one, range(n)))
    assert statuses == Counter({401: n}), statuses
    assert api.calls() == 1, f"{api.calls()} TokenReviews for one refused token"
    assert shard.snapshot() == []


@pytest.mark.concurrency
def test_hung_api_server_is_401_within_the_timeout(shard, apiserver_factory, frontgate_factory, tls_ca):
    caller = new_caller()
    api = apiserver_factory(callers={caller})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=caller, timeout="500ms")
    tok = sa_token()
    api.allow(tok, sa_user())
    api.delay = 3.0
    t0 = time.monotonic()
    r, line = call(fg, tok)
    elapsed = time.monotonic() - t0
    assert_unauthorized(r)
    assert log_reason(line) == "token review unavailable", line
    assert elapsed < 2.0, f"a hung API server held the request for {elapsed:.1f} s (timeout 500ms)"
    api.delay = 0
    r, _ = call(fg, tok)  # the timeout was not cached
    assert r.status == 200, r


# ---------------------------------------------------------------------------
# caching


@pytest.mark.concurrency
def test_positive_result_is_cached(tr):
    fg, api, _ = tr
    a, b = sa_token("ns", "a"), sa_token("ns", "b")
    api.allow(a, sa_user("ns", "a"))
    api.allow(b, sa_user("ns", "b"))
    for _ in range(3):
        r, _ = call(fg, a)
        assert r.status == 200, r
    assert api.calls(a) == 1
    r, _ = call(fg, b)  # another token is reviewed on its own
    assert r.status == 200, r
    assert api.calls(b) == 1 and api.calls() == 2


@pytest.mark.concurrency
def test_refusal_is_cached_for_negative_cache_ttl(shard, apiserver_factory, frontgate_factory, tls_ca):
    caller = new_caller()
    api = apiserver_factory(callers={caller})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=caller, negative_cache_ttl="1s")
    tok = sa_token("ns", "revoked")  # unknown to the API server: refused
    t0 = time.monotonic()
    r, line = call(fg, tok)
    assert_unauthorized(r)
    assert log_reason(line) == "token review: not authenticated", line
    assert api.calls(tok) == 1
    r, line = call(fg, tok)  # within negativeCacheTTL: no new review
    assert_unauthorized(r)
    assert log_reason(line) == "token review: not authenticated (cached)", line
    assert api.calls(tok) == 1
    # after negativeCacheTTL the token is reviewed again
    while api.calls(tok) < 2:
        assert time.monotonic() - t0 < 5, "the refusal stayed cached for more than 5 s"
        r, _ = call(fg, tok)
        assert_unauthorized(r)
        if api.calls(tok) < 2:
            time.sleep(0.05)
    assert time.monotonic() - t0 >= 0.95, "the refusal was cached for less than negativeCacheTTL"
    assert shard.snapshot() == []
    assert_not_logged(fg, tok)


@pytest.mark.concurrency
def test_server_down_new_tokens_401_cached_ones_work_until_ttl(shard, apiserver_factory,
                                                               frontgate_factory, tls_ca):
    caller = new_caller()
    api = apiserver_factory(callers={caller})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=caller, cache_ttl="2s", timeout="1s")
    old, new = sa_token("ns", "old"), sa_token("ns", "new")
    api.allow(old, sa_user("ns", "old"))
    api.allow(new, sa_user("ns", "new"))
    t_sent = time.monotonic()
    r, _ = call(fg, old)
    t_cached = time.monotonic()  # the cache entry was made between t_sent and now
    assert r.status == 200, r
    assert api.calls() == 1

    api.down()
    r, line = call(fg, new)
    assert_unauthorized(r)
    assert log_reason(line) == "token review unavailable", line

    # the cached token keeps working until cacheTTL, then fails like a new one
    last_ok = None
    while True:
        t = time.monotonic()
        r, line = call(fg, old)
        if r.status != 200:
            break
        last_ok = t
        assert t - t_cached < 3.0, "a cached review outlived cacheTTL"
        time.sleep(0.1)
    t_fail = time.monotonic()
    assert_unauthorized(r)
    assert log_reason(line) == "token review unavailable", line
    assert last_ok is not None, "the cached token failed at once"
    assert t_fail - t_sent >= 2.0, "the cached review expired before cacheTTL"
    assert api.calls() == 1  # nothing reached the server while it was down

    # back up: nothing about the outage was cached
    api.up()
    r, _ = call(fg, new)
    assert r.status == 200, r
    r, _ = call(fg, old)
    assert r.status == 200, r
    assert api.calls(new) == 1 and api.calls(old) == 2
    assert_not_logged(fg, old, new)


# ---------------------------------------------------------------------------
# audiences


@pytest.mark.parametrize(
    "status_audiences",
    [["https://other.example"], [], None],
    ids=["disjoint", "empty", "absent"],
)
def test_authenticated_but_audiences_do_not_intersect_is_401(tr, shard, status_audiences):
    fg, api, _ = tr
    tok = sa_token()
    status = {"authenticated": True, "user": sa_user()}
    if status_audiences is not None:
        status["audiences"] = status_audiences
    api.answer(tok, status)
    r, line = call(fg, tok)
    assert_unauthorized(r)
    assert "audiences" in (log_reason(line) or ""), line
    assert api.snapshot()[0].audiences == [AUD]
    assert shard.snapshot() == []
    assert_not_logged(fg, tok)


def test_one_of_several_audiences_is_enough(shard, apiserver_factory, frontgate_factory, tls_ca):
    caller = new_caller()
    api = apiserver_factory(callers={caller})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=caller,
                  audiences=("https://a.example", "https://b.example"))
    tok = sa_token()
    api.allow(tok, sa_user(), audiences=["https://b.example"])
    r, _ = call(fg, tok)
    assert r.status == 200, r
    assert api.snapshot()[0].audiences == ["https://a.example", "https://b.example"]


# ---------------------------------------------------------------------------
# retries and failures


@pytest.mark.parametrize("code,times", [(500, 2), (429, 1), (503, 1)])
def test_transient_failures_are_retried_within_the_timeout(shard, apiserver_factory, frontgate_factory,
                                                          tls_ca, code, times):
    caller = new_caller()
    api = apiserver_factory(callers={caller})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=caller, timeout="3s")
    tok = sa_token()
    api.allow(tok, sa_user())
    api.fail(times, code=code, token=tok)
    r, _ = call(fg, tok)
    assert r.status == 200, r
    assert api.calls(tok) == times + 1
    r, _ = call(fg, tok)  # the success is cached like any other
    assert r.status == 200, r
    assert api.calls(tok) == times + 1


def test_failing_server_is_401_and_never_cached(shard, apiserver_factory, frontgate_factory, tls_ca):
    caller = new_caller()
    api = apiserver_factory(callers={caller})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=caller, timeout="1s", name="fg2")
    tok = sa_token()
    api.allow(tok, sa_user())
    api.fail(None, code=500)  # forever
    t0 = time.monotonic()
    r, line = call(fg, tok)
    elapsed = time.monotonic() - t0
    assert_unauthorized(r)
    assert log_reason(line) == "token review unavailable", line
    assert api.calls(tok) >= 2, "a 500 was not retried"
    assert elapsed < 3.0, f"the review outlived its 1 s timeout ({elapsed:.1f} s)"
    assert shard.snapshot() == []
    # the server recovers: the failure was not cached
    api.clear_failures()
    n = api.calls(tok)
    r, _ = call(fg, tok)
    assert r.status == 200, r
    assert api.calls(tok) == n + 1


def test_client_error_from_the_api_server_is_401_not_retried(tr, shard):
    fg, api, _ = tr
    tok = sa_token()
    api.allow(tok, sa_user())
    api.fail(1, code=403, token=tok)  # e.g. our caller lacks create on tokenreviews
    r, line = call(fg, tok)
    assert_unauthorized(r)
    assert log_reason(line) == "token review refused our request", line
    assert api.calls(tok) == 1
    r, _ = call(fg, tok)  # not cached either
    assert r.status == 200, r
    assert api.calls(tok) == 2


# ---------------------------------------------------------------------------
# issuers


def test_issuers_filter_what_is_sent_to_the_api_server(shard, apiserver_factory, frontgate_factory, tls_ca):
    caller = new_caller()
    api = apiserver_factory(callers={caller})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=caller, issuers=(SA_ISSUER,))
    opaque = "opaque-" + secrets.token_urlsafe(32)
    oidc = make_jwt({"iss": "https://sso.example.com", "sub": "alice", "aud": "frontgate",
                     "exp": int(time.time()) + 600})
    sa = sa_token()
    # the API server would accept all three: only the filter keeps them away
    for t in (opaque, oidc, sa):
        api.allow(t, sa_user())

    r, line = call(fg, opaque)
    assert_unauthorized(r)
    assert api.calls() == 0, "an opaque token went to the API server although issuers is set"
    r, line = call(fg, oidc)
    assert_unauthorized(r)
    assert api.calls() == 0, "an OIDC token went to the API server"
    r, _ = call(fg, sa)
    assert r.status == 200, r
    assert api.calls() == 1 and api.calls(sa) == 1
    assert_not_logged(fg, opaque, oidc, sa)


# ---------------------------------------------------------------------------
# frontgate's own credential


@pytest.mark.concurrency
def test_caller_token_file_is_reread_when_it_changes(shard, apiserver_factory, frontgate_factory, tls_ca):
    first, second = new_caller(), new_caller()
    api = apiserver_factory(callers={first})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=first)
    a, b = sa_token("ns", "a"), sa_token("ns", "b")
    api.allow(a, sa_user("ns", "a"))
    api.allow(b, sa_user("ns", "b"))
    r, _ = call(fg, a)
    assert r.status == 200, r
    assert api.snapshot()[-1].caller == first

    # kubelet rotates the projected token: a new file renamed over the old one
    api.callers = {second}
    fg.write("caller-token", second + "\n")
    r, _ = call(fg, b)
    assert r.status == 200, r
    assert [rv.caller for rv in api.snapshot()] == [first, second]
    assert_not_logged(fg, first, second)


def test_api_server_refusing_our_caller_token_is_401(shard, apiserver_factory, frontgate_factory, tls_ca):
    good = new_caller()
    api = apiserver_factory(callers={good})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=new_caller())
    tok = sa_token()
    api.allow(tok, sa_user())
    r, line = call(fg, tok)
    assert_unauthorized(r)
    assert log_reason(line) == "token review refused our request", line
    # the operator fixes the token file: the next request works (nothing was cached)
    fg.write("caller-token", good)
    r, _ = call(fg, tok)
    assert r.status == 200, r
    assert api.snapshot()[-1].caller == good


# ---------------------------------------------------------------------------
# TLS to the API server


def test_api_server_with_an_untrusted_certificate_is_unavailable(shard, apiserver_factory,
                                                                 frontgate_factory, tls_ca):
    caller = new_caller()
    api = apiserver_factory(ca=TestCA("another CA"), callers={caller})
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=caller, timeout="500ms")
    tok = sa_token()
    api.allow(tok, sa_user())
    r, line = call(fg, tok)
    assert_unauthorized(r)
    assert log_reason(line) == "token review unavailable", line
    assert api.calls() == 0, "frontgate sent a review over an unverified connection"
    assert api.tls_errors, "no TLS handshake failed"


def test_client_certificate_instead_of_token_file(shard, apiserver_factory, frontgate_factory, tls_ca):
    client_ca = TestCA("frontgate clients CA")
    api = apiserver_factory(client_ca=client_ca)
    fg = start_fg(frontgate_factory, shard, api, tls_ca,
                  client_cert=client_ca.issue("frontgate-reviewer", server=False, client=True))
    tok = sa_token()
    api.allow(tok, sa_user())
    r, _ = call(fg, tok)
    assert r.status == 200, r
    [rv] = api.snapshot()
    assert rv.client_cn == "frontgate-reviewer"
    assert rv.caller is None, "no bearer is sent without a tokenFile"
    rec = shard.wait_for(lambda x: x.complete)
    assert rec.values("X-Remote-User") == ["system:serviceaccount:ns:sa"]


def test_api_server_requiring_a_client_certificate_refuses_a_token_only_caller(
        shard, apiserver_factory, frontgate_factory, tls_ca):
    client_ca = TestCA("frontgate clients CA")
    api = apiserver_factory(client_ca=client_ca)
    fg = start_fg(frontgate_factory, shard, api, tls_ca, caller=new_caller(), timeout="500ms")
    tok = sa_token()
    api.allow(tok, sa_user())
    r, line = call(fg, tok)
    assert_unauthorized(r)
    assert log_reason(line) == "token review unavailable", line
    assert api.calls() == 0


# ---------------------------------------------------------------------------
# what a reviewed identity may contain


@pytest.mark.parametrize(
    "field",
    ["username-crlf", "group-lf", "extra-value-cr", "uid-lf"],
)
def test_reviewed_identity_with_control_characters_is_401(tr, shard, field):
    fg, api, _ = tr
    tok = sa_token()
    user = sa_user()
    if field == "username-crlf":
        user["username"] = "a\r\nX-Remote-Group: system:masters"
    elif field == "group-lf":
        user["groups"] = ["dev\nX-Remote-User: root"]
    elif field == "extra-value-cr":
        user["extra"] = {"example.com/x": ["v\r"]}
    else:
        user["uid"] = "u\n1"
    api.allow(tok, user)
    r, line = call(fg, tok)
    assert_unauthorized(r)
    assert log_reason(line) == "identity contains characters not allowed in a header", line
    assert shard.snapshot() == []


def test_reviews_are_counted_by_result_with_their_latency(tr):
    from test_metrics import delta, scrape
    fg, api, _ = tr
    good, bad, refused = sa_token("ns", "good"), sa_token("ns", "bad"), sa_token("ns", "refused")
    api.allow(good, sa_user("ns", "good"))
    api.allow(refused, sa_user("ns", "refused"))
    api.fail(1, code=403, token=refused)
    _, before = scrape(fg)
    assert call(fg, good)[0].status == 200
    assert call(fg, good)[0].status == 200  # cached: no second call
    r, line = call(fg, bad)
    assert_unauthorized(r)
    assert "reason_code=review_denied" in line, line
    r, line = call(fg, refused)
    assert "reason_code=review_unavailable" in line, line
    _, after = scrape(fg)
    T = "frontgate_tokenreview_requests_total"
    assert delta(before, after, T, result="authenticated") == 1
    assert delta(before, after, T, result="denied") == 1
    assert delta(before, after, T, result="http_error") == 1
    assert delta(before, after, "frontgate_tokenreview_duration_seconds_count") == 3
    assert delta(before, after, "frontgate_tokenreview_duration_seconds_sum") > 0
    assert api.calls() == 3
