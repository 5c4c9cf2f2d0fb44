"""
The admin listener and /metrics: a strict parser checks the whole exposition (names, types,
label escaping, one TYPE per family before its samples, no repeated series, histogram buckets
cumulative and ending at +Inf equal to _count), and tests scrape before and after a known mix of
requests and assert exact deltas per label set.
"""
import math
import re
import urllib.error
import urllib.request

import pytest

from test_oidc import idp_factory, pki  # noqa: F401  (fixtures)
from conftest import (
    WS_PATH,
    Frontgate,
    bearer,
    key_line,
    new_key,
    request,
    std_config,
)

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"')
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def parse(text):
    """{(name, frozenset(labels)): value}, after checking the text format strictly."""
    assert text.endswith("\n")
    types, helps, series, order = {}, set(), {}, []
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            name = ln.split(" ", 3)[2]
            assert NAME.match(name) and name not in helps, ln
            helps.add(name)
            continue
        if ln.startswith("# TYPE "):
            _, _, name, typ = ln.split(" ")
            assert NAME.match(name) and name not in types, ln
            assert typ in ("counter", "gauge", "histogram"), ln
            types[name] = typ
            continue
        assert not ln.startswith("#") and ln, repr(ln)
        m = SAMPLE.match(ln)
        assert m, ln
        name, labels, value = m.groups()
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                family = name[: -len(suffix)]
        assert family in types, f"no TYPE before {ln}"
        if types[family] == "counter":
            assert name.endswith("_total"), ln
        lab = {}
        if labels:
            body = labels[1:-1]
            pos = 0
            while pos < len(body):
                lm = LABEL.match(body, pos)
                assert lm, f"bad label syntax in {ln}"
                assert lm.group(1) not in lab, ln
                lab[lm.group(1)] = lm.group(2).replace('\\"', '"').replace("\\n", "\n").replace(
                    "\\\\", "\\")
                pos = lm.end()
                if pos < len(body):
                    assert body[pos] == ",", ln
                    pos += 1
        v = float(value)
        assert not math.isnan(v), ln
        key = (name, frozenset(lab.items()))
        assert key not in series, f"repeated series {ln}"
        series[key] = v
        order.append((name, lab, v))
    for family, typ in types.items():
        if typ != "histogram":
            continue
        # one histogram per label set (without le)
        sets = {}
        for n, lab, v in order:
            if n == family + "_bucket":
                rest = frozenset((k, x) for k, x in lab.items() if k != "le")
                sets.setdefault(rest, []).append((lab["le"], v))
        for rest, buckets in sets.items():
            assert buckets and buckets[-1][0] == "+Inf", family
            les = [float(le) for le, _ in buckets[:-1]]
            assert les == sorted(les) and len(set(les)) == len(les), family
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), f"{family}: buckets not cumulative"
            assert series[(family + "_count", rest)] == counts[-1], family
            assert (family + "_sum", rest) in series, family
    return series


def scrape(fg):
    with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin_port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = r.read().decode()
    return text, parse(text)


def val(series, name, **labels):
    return series.get((name, frozenset(labels.items())), 0.0)


def delta(before, after, name, **labels):
    return val(after, name, **labels) - val(before, name, **labels)


@pytest.fixture
def env(shard, tmp_path):
    key = new_key()
    fg = Frontgate(tmp_path / "fg", std_config(shard.url),
                   files={"keys.txt": key_line("ops", key, ["dev"]) + "\n"})
    fg.start()
    yield fg, key
    fg.stop()


def test_the_exposition_is_valid_and_names_the_build(env):
    fg, _ = env
    text, s = scrape(fg)
    assert val(s, "frontgate_build_info", version=re.search(r'version="([^"]+)"', text).group(1)) == 1
    assert val(s, "frontgate_config_generation") == 1
    assert val(s, "frontgate_process_start_time_seconds") > 1.7e9


@pytest.mark.concurrency  # workers count while the control loop scrapes
def test_exact_deltas_for_a_known_mix_of_requests(env):
    fg, key = env
    # a first request of each kind: the connections and label slots exist from here on
    request(fg.port, "GET", f"/clusters/{WS_PATH}/api", headers=bearer(key))
    _, before = scrape(fg)
    for _ in range(3):
        assert request(fg.port, "GET", f"/clusters/{WS_PATH}/api", headers=bearer(key)).status == 200
    for _ in range(2):
        assert request(fg.port, "GET", f"/clusters/{WS_PATH}/api",
                       headers=bearer("fgk_" + "x" * 43)).status == 401
    assert request(fg.port, "GET", f"/clusters/{WS_PATH}/api").status == 401  # no credentials
    assert request(fg.port, "GET", "/clusters/root:nope/api", headers=bearer(key)).status == 403
    assert request(fg.port, "POST", "/apis/x", headers=bearer(key), body=b"{}").status == 200
    assert request(fg.port, "DELETE", "/apis/x", headers=bearer(key)).status == 200
    assert request(fg.port, "GET", "/healthz").status == 200
    _, after = scrape(fg)
    d = lambda name, **kw: delta(before, after, name, **kw)  # noqa: E731
    R = "frontgate_requests_total"
    assert d(R, route="/clusters/", method="GET", code="200") == 3
    assert d(R, route="/clusters/", method="GET", code="401") == 3
    assert d(R, route="/clusters/", method="GET", code="403") == 1
    assert d(R, route="/", method="POST", code="200") == 1
    assert d(R, route="/", method="DELETE", code="200") == 1
    assert d(R, route="none", method="GET", code="200") == 1  # /healthz: frontgate's own
    total = sum(v for (n, _), v in after.items() if n == R) - \
        sum(v for (n, _), v in before.items() if n == R)
    assert total == 10
    A = "frontgate_authentication_attempts_total"
    assert d(A, authenticator="ops-keys", result="success", reason="none") == 6  # + 403, POST, DELETE
    # a key nobody knows and no credentials: no authenticator decided
    assert d(A, authenticator="none", result="failure", reason="unknown_key") == 2
    assert d(A, authenticator="none", result="failure", reason="no_credentials") == 1
    assert sum(v for (n, _), v in after.items() if n == A) - \
        sum(v for (n, _), v in before.items() if n == A) == 9
    H = "frontgate_request_duration_seconds"
    assert d(H + "_count") == 10
    assert d(H + "_sum") > 0
    # what reached the shard, by shard
    assert d("frontgate_upstream_duration_seconds_count", shard="shard-1") == 5


def test_reloads_are_counted_by_result_with_the_generation(env):
    fg, _ = env
    _, before = scrape(fg)
    fg.hup()
    text = open(fg.config_path).read()
    fg.write("frontgate.yaml", text + "bogus: 1\n")
    fg.hup(expect_ok=False)
    _, after = scrape(fg)
    R = "frontgate_config_reloads_total"
    assert delta(before, after, R, result="success") == 1
    assert delta(before, after, R, result="failure") == 1
    assert val(after, "frontgate_config_generation") == 2
    assert val(after, "frontgate_config_last_reload_success_timestamp_seconds") >= \
        val(before, "frontgate_config_last_reload_success_timestamp_seconds")


def test_no_credential_or_user_reaches_a_label(env):
    fg, key = env
    request(fg.port, "GET", f"/clusters/{WS_PATH}/api", headers=bearer(key))
    request(fg.port, "GET", f"/clusters/{WS_PATH}/api", headers=bearer("fgk_secret" + "y" * 40))
    request(fg.port, "GET", "/clusters/root:acme-private/api", headers=bearer(key))
    text, _ = scrape(fg)
    for secret in (key, "fgk_secret", "ops", "root:acme-private", WS_PATH, "dev"):
        assert f'="{secret}"' not in text and secret not in text.replace("ops-keys", ""), secret


def test_the_admin_listener_serves_health_and_refuses_the_rest(env):
    fg, _ = env
    base = f"http://127.0.0.1:{fg.admin_port}"
    for path in ("/healthz", "/livez", "/readyz"):
        with urllib.request.urlopen(base + path, timeout=5) as r:
            assert (r.status, r.read()) == (200, b"ok\n"), path
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/nope", timeout=5)
    assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(base + "/metrics", data=b"x", method="POST"),
                               timeout=5)
    assert e.value.code == 405 and e.value.headers["Allow"] == "GET, HEAD"
    # the main listeners keep their health endpoints
    assert request(fg.port, "GET", "/livez").status == 200


def test_admin_address_errors_and_off(shard, tmp_path):
    import subprocess
    from conftest import FRONTGATE_BIN
    base = std_config(shard.url, keys=False)
    for extra, want in (('admin: {address: "nope"}\n', 'admin address "nope" must be host:port'),
                        ("admin: {adress: x}\n", 'unknown key "adress"'),
                        ("admin: 9090\n", "admin must be a mapping")):
        p = tmp_path / "c.yaml"
        p.write_text(base + extra)
        r = subprocess.run([FRONTGATE_BIN, "check", "-c", str(p)], capture_output=True, text=True)
        assert r.returncode != 0 and want in r.stderr and "c.yaml:" in r.stderr, (extra, r.stderr)
    off = Frontgate(tmp_path / "off", base + 'admin: {address: ""}\n').start()
    try:
        assert off.admin_port is None and "admin: listening" not in off.log()
    finally:
        off.stop()


def test_an_explicit_admin_address_in_use_stops_startup(shard, tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        fg = Frontgate(tmp_path / "fg", std_config(shard.url, keys=False) +
                       f'admin: {{address: "127.0.0.1:{port}"}}\n')
        with pytest.raises(AssertionError):
            fg.start(timeout=5)
        assert f"admin: cannot listen on 127.0.0.1:{port}" in fg.log()
        fg.proc.wait(5)
        assert fg.proc.returncode != 0
    finally:
        s.close()


def test_jwt_failures_are_counted_by_reason_as_the_log_says(idp_factory, pki, tmp_path):  # noqa: F811
    from test_oidc import fg_config as oidc_config, jwt_entry, authenticator_yaml
    idp = idp_factory()
    shard_dir = tmp_path / "fg"
    cfg = oidc_config("http://127.0.0.1:9", authenticator_yaml({"name": "corp-sso",
                                                                  "jwt": jwt_entry(idp.issuer, pki)}))
    fg = Frontgate(shard_dir, cfg).start()
    try:
        path = f"/clusters/{WS_PATH}/api"
        tokens = {
            "expired": idp.mint(expires_in=-120),
            "wrong_audience": idp.mint({"aud": "someone-else"}),
            "unknown_issuer": None,
        }
        other = idp_factory()
        tokens["unknown_issuer"] = other.mint()
        _, before = scrape(fg)
        for reason, tok in tokens.items():
            assert request(fg.port, "GET", path, headers=bearer(tok)).status == 401, reason
            line = fg.wait_log(r"status=401 .*reason_code=" + reason).group(0)
            assert tok not in line
        _, after = scrape(fg)
        A = "frontgate_authentication_attempts_total"
        assert delta(before, after, A, authenticator="corp-sso", result="failure",
                     reason="expired") == 1
        assert delta(before, after, A, authenticator="corp-sso", result="failure",
                     reason="wrong_audience") == 1
        assert delta(before, after, A, authenticator="none", result="failure",
                     reason="unknown_issuer") == 1
    finally:
        fg.stop()


def test_the_token_cache_counts_hits_misses_and_entries(idp_factory, pki, tmp_path):  # noqa: F811
    from test_oidc import fg_config as oidc_config, jwt_entry, authenticator_yaml
    idp = idp_factory()
    cfg = oidc_config("http://127.0.0.1:9", authenticator_yaml({"name": "corp-sso",
                                                                  "jwt": jwt_entry(idp.issuer, pki)}))
    fg = Frontgate(tmp_path / "fg", cfg).start()
    try:
        tok = idp.mint()
        path = f"/clusters/{WS_PATH}/api"
        fg.wait_log(r"frontgate ready: /readyz answers 200", timeout=10)  # the issuer's keys are in
        _, before = scrape(fg)
        for _ in range(3):  # fresh connections: no per-connection memo, the cache answers
            assert request(fg.port, "GET", path, headers=bearer(tok)).status == 502  # no shard
        _, after = scrape(fg)
        assert delta(before, after, "frontgate_token_cache_misses_total") == 1
        assert delta(before, after, "frontgate_token_cache_hits_total") == 2
        assert delta(before, after, "frontgate_token_cache_entries") == 1
        assert delta(before, after, "frontgate_token_cache_evictions_total") == 0
    finally:
        fg.stop()


def test_discovery_and_jwks_fetches_are_counted_by_issuer(idp_factory, pki, tmp_path):  # noqa: F811
    from test_oidc import fg_config as oidc_config, jwt_entry, authenticator_yaml
    up, down = idp_factory(), idp_factory(down=True)
    auths = authenticator_yaml({"name": "corp-sso", "jwt": jwt_entry(up.issuer, pki)}) + \
        authenticator_yaml({"name": "down-sso", "jwt": jwt_entry(down.issuer, pki)})
    fg = Frontgate(tmp_path / "fg", oidc_config("http://127.0.0.1:9", auths)).start()
    try:
        def counts():
            s = scrape(fg)[1]
            return lambda iss, kind, result: val(s, "frontgate_jwks_fetches_total", issuer=iss,
                                                 kind=kind, result=result)
        from test_kcp_index import eventually
        eventually(lambda: counts()(up.issuer, "jwks", "success") >= 1, "the keys fetched")
        eventually(lambda: counts()(down.issuer, "discovery", "failure") >= 1, "a failed discovery",
                   timeout=10)
        c = counts()
        assert c(up.issuer, "discovery", "success") >= 1
        assert c(down.issuer, "discovery", "success") == 0 and c(down.issuer, "jwks", "success") == 0
    finally:
        fg.stop()


@pytest.mark.concurrency
def test_open_watches_tunnels_and_shard_connections_are_gauges(env, shard):
    import socket
    fg, key = env
    _, before = scrape(fg)
    # a watch held open by the shard (the fake's .../watch streams chunks with a delay)
    s = socket.create_connection(("127.0.0.1", fg.port))
    s.sendall(f"GET /clusters/{WS_PATH}/api/v1/watch?watch=true&chunks=50&delay_ms=200 HTTP/1.1\r\n"
              f"Host: a\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
    assert s.recv(12).startswith(b"HTTP/1.1 200")
    from test_kcp_index import eventually
    eventually(lambda: val(scrape(fg)[1], "frontgate_open_streams", kind="watch") == 1, "counted")
    _, during = scrape(fg)
    assert val(during, "frontgate_upstream_connections", shard="shard-1", protocol="http/1.1") >= 1
    s.close()
    eventually(lambda: val(scrape(fg)[1], "frontgate_open_streams", kind="watch") == 0,
               "the ended watch leaves the gauge")
    _, after = scrape(fg)
    assert delta(before, after, "frontgate_streams_total") == 1
    assert val(after, "frontgate_open_streams", kind="tunnel") == 0
