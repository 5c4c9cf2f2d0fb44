"""Hostile request targets: refused with 400 (or 403), and the shard receives nothing."""
import pytest

from conftest import WS_CLUSTER, WS_PATH, RawClient, request, std_config

W = WS_PATH

HOSTILE = {
    # dot segments
    "dotdot-unknown": "/clusters/a/../b/api",
    "dotdot-into-other-ws": f"/clusters/{W}/../{WS_CLUSTER}/api",
    "dotdot-out-of-ws": f"/clusters/{W}/api/../../other/api",
    "dotdot-at-end": f"/clusters/{W}/api/..",
    "dot": f"/clusters/{W}/./api",
    "dotdot-non-ws-route": "/api/../clusters/x/api",
    # percent-encoded dots, every case mix
    "pct-2e2e": f"/clusters/{W}/%2e%2e/x/api",
    "pct-2E2E": f"/clusters/{W}/%2E%2E/x/api",
    "pct-2e2E": f"/clusters/{W}/%2e%2E/x/api",
    "pct-2E2e": f"/clusters/{W}/%2E%2e/x/api",
    "pct-dot-2e": f"/clusters/{W}/.%2e/x/api",
    "pct-2e-dot": f"/clusters/{W}/%2e./x/api",
    "pct-dot-2E": f"/clusters/{W}/.%2E/x/api",
    "pct-2E-dot": f"/clusters/{W}/%2E./x/api",
    "pct-single-2e": f"/clusters/{W}/%2e/api",
    "pct-dots-in-ws": "/clusters/%2e%2e/api",
    # empty segments
    "double-slash-mid": f"/clusters/{W}//api",
    "double-slash-lead": f"//clusters/{W}/api",
    "double-slash-ws": f"/clusters//{W}/api",
    # encoded slashes and backslashes
    "pct-2f": f"/clusters/{W}%2fapi",
    "pct-2F": f"/clusters/{W}/api%2F..%2F..%2Fx",
    "pct-5c": f"/clusters/{W}/api%5c..%5cx",
    "pct-5C": f"/clusters/{W}/api%5C..%5Cx",
    # encoded unreserved characters (decode to something routing never saw)
    "pct-63": f"/clusters/{W}/%63lusters",
    "pct-41": f"/clusters/{W}/api/v1/n%41mespaces",
    "pct-7e": f"/clusters/{W}/api/%7euser",
    "pct-in-ws-name": "/clusters/root:org:te%61m/api",
    "pct-in-ws-letter": "/clusters/r%6fot:org:team/api",
    # raw backslash
    "backslash": f"/clusters/{W}/api\\..\\x",
    "backslash-ws": f"/clusters/{W}\\..\\other/api",
    # NUL and bad escapes
    "pct-00": f"/clusters/{W}/api%00",
    "pct-bad-hex": f"/clusters/{W}/api%zz",
    "pct-truncated": f"/clusters/{W}/api%2",
}


@pytest.mark.parametrize("target", list(HOSTILE.values()), ids=list(HOSTILE.keys()))
@pytest.mark.parametrize("auth", ["key", "none"])
def test_hostile_path_is_refused_and_never_forwarded(env, target, auth):
    c = RawClient(env.port)
    head = f"GET {target} HTTP/1.1\r\nHost: x\r\n"
    if auth == "key":
        head += f"Authorization: Bearer {env.alice}\r\n"
    c.send((head + "\r\n").encode("latin-1"))
    r = c.read_response()
    c.close()
    assert r.status in (400, 403), (target, r)
    if r.status == 400:
        assert r.json()["code"] == 400
    assert env.shard.snapshot() == [], f"{target!r} reached the shard"


@pytest.mark.parametrize(
    "target",
    ["/clusters/a/../b/api", f"/clusters/{W}/%2e%2e/x", f"/clusters/{W}//api", f"/clusters/{W}%2fapi"],
    ids=["dotdot", "pct-dots", "double-slash", "pct-2f"],
)
def test_hostile_path_is_refused_in_passthrough_mode(shard, frontgate_factory, target):
    fg = frontgate_factory(std_config(shard.url, keys=False))
    c = RawClient(fg.port)
    c.send(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    r = c.read_response()
    c.close()
    assert r.status in (400, 403), (target, r)
    assert shard.snapshot() == []


def test_reserved_escapes_and_trailing_slash_still_work(env):
    """The path check must not refuse ordinary targets (control for the cases above)."""
    for target in (
        f"/clusters/{W}/api/v1/namespaces/",
        f"/clusters/{W}/api/v1/namespaces/a%3Ab?fieldSelector=a%2Fb",
        f"/clusters/{W}/apis/x.y/v1/a..b",
    ):
        r = request(env.port, "GET", target, {"Authorization": f"Bearer {env.alice}"})
        assert r.status == 200, (target, r)
        rec = env.shard.wait_for(lambda x, t=target: x.target == f"/clusters/{WS_CLUSTER}" + t[len(f"/clusters/{W}"):])
        assert rec.complete
