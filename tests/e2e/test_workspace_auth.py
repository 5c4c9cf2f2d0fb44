"""
Per-workspace authentication end to end (issue 4): workspace types bring their own
authenticators (staticKeys and tokenReview here), unioned after the global ones; the
identity policy for each member; the kcp wire form of the scope extras; unavailable and
unknown workspaces; and kubectl against a TLS listener with the built-in echo shard.

The fake shard records the raw header list in wire order, so header names are checked
exactly as kcp's shards receive them (`X-Remote-Extra-Authentication.kcp.io%2fscopes`).
"""
import conftest
import json
import os
import re
import subprocess
import threading
from collections import Counter

import pytest

from conftest import (
    FRONTGATE_BIN,
    WS_CLUSTER,
    WS_PATH,
    assert_not_logged,
    assert_unauthorized,
    bearer,
    key_line,
    log_reason,
    new_key,
    raw_request,
    request,
)
from fake_apiserver import (  # noqa: F401  (fixtures)
    SA_ISSUER,
    apiserver_factory,
    sa_token,
    sa_user,
    tls_ca,
    tokenreview_yaml,
)

KUBECTL = conftest.KUBECTL

# workspaces: (path, cluster)
TEAM = (WS_PATH, WS_CLUSTER)                # type root:org:with-keys  [team-keys, ws-review]
B = ("root:org:b", "b2cluster")             # type root:org:with-other [other-keys]
PLAIN = ("root:org:plain", "plain3cluster")  # type root:org:plain      []
NOTYPE = ("root:org:notype", "notype4cluster")  # no type
DOWN = ("root:org:down", "down5cluster")    # type root:org:with-keys, phase Unavailable
IDX = ("root:org:idx", "idx6cluster")       # indexFile, type root:org:with-keys
IDXDOWN = ("root:org:idxdown", "idxdown7cluster")  # indexFile, phase Unavailable

SCOPES_HDR = "X-Remote-Extra-Authentication.kcp.io%2fscopes"
CLUSTER_NAME_HDR = "X-Remote-Extra-Authentication.kcp.io%2fcluster-Name"
AUD = "https://frontgate.test"

OPS_GROUPS = ["ops-team", "system:masters", "system:kcp:admin", "system:kcp:logical-cluster-admin",
              "system:kcp:initializer:root:org", "system:kcp:terminator:x"]
CAROL_GROUPS = ["dev", "system:masters", "system:kcp:admin"]


class Keys:
    def __init__(self):
        self.ops = new_key()      # global
        self.shared = new_key()   # in the global file (as "both") and the team file
        self.carol = new_key()    # team-keys (type root:org:with-keys)
        self.dave = new_key()     # other-keys (type root:org:with-other)

    def files(self):
        return {
            "global-keys.txt": key_line("ops", self.ops, OPS_GROUPS) + "\n" + key_line("both", self.shared) + "\n",
            "team-keys.txt": key_line("carol", self.carol, CAROL_GROUPS) + "\n"
            + key_line("team-shared", self.shared, ["dev"]) + "\n",
            "other-keys.txt": key_line("dave", self.dave, ["qa"]) + "\n",
            "workspaces.tsv": "# the index file\ncluster\tpath\tshard\ttype\tphase\n"
            f"{IDX[1]}\t{IDX[0]}\tshard-1\troot:org:with-keys\t-\n"
            f"{IDXDOWN[1]}\t{IDXDOWN[0]}\tshard-1\troot:org:with-keys\tUnavailable\n",
        }

    def all(self):
        return [self.ops, self.shared, self.carol, self.dave]


def ws_config(shard_url, api_url=None, *, global_authns=("global-keys",), drop_groups=None,
              team_prefix=None, listeners=None, ws_review_issuers=None, global_review=False):
    listeners = listeners or "  - address: 127.0.0.1:0\n"
    team_authns = ["team-keys"] + (["ws-review"] if api_url else [])
    prefix = f", usernamePrefix: {json.dumps(team_prefix)}" if team_prefix is not None else ""
    text = f"""\
workers: 2
listeners:
{listeners}shards:
  - name: shard-1
    url: {shard_url}
    identity: requestHeader
routes:
  - prefix: /clusters/
    workspace: path
  - prefix: /
    shard: shard-1
workspaces:
  - {{cluster: {TEAM[1]}, path: "{TEAM[0]}", shard: shard-1, type: "root:org:with-keys"}}
  - {{cluster: {B[1]}, path: "{B[0]}", shard: shard-1, type: "root:org:with-other"}}
  - {{cluster: {PLAIN[1]}, path: "{PLAIN[0]}", shard: shard-1, type: "root:org:plain"}}
  - {{cluster: {NOTYPE[1]}, path: "{NOTYPE[0]}", shard: shard-1}}
  - {{cluster: {DOWN[1]}, path: "{DOWN[0]}", shard: shard-1, type: "root:org:with-keys", phase: Unavailable}}
indexFile: workspaces.tsv
authenticators:
  - name: global-keys
    staticKeys: {{file: global-keys.txt}}
  - name: team-keys
    staticKeys: {{file: team-keys.txt{prefix}}}
  - name: other-keys
    staticKeys: {{file: other-keys.txt}}
"""
    if api_url:
        text += tokenreview_yaml("ws-review", api_url, audiences=(AUD,), issuers=ws_review_issuers)
    if global_review:
        text += tokenreview_yaml("cluster-sa", api_url, audiences=(AUD,), issuers=(SA_ISSUER,))
    text += "authentication:\n"
    text += f"  global: {json.dumps(list(global_authns))}\n"
    if drop_groups is not None:
        text += f"  dropGroups: {json.dumps(drop_groups)}\n"
    text += f"""\
workspaceTypes:
  - name: root:org:with-keys
    authenticators: {json.dumps(team_authns)}
  - name: root:org:with-other
    authenticators: [other-keys]
  - name: root:org:plain
    authenticators: []
limits:
  shutdownGracePeriod: 3s
"""
    return text


class WsEnv:
    def __init__(self, fg, shard, api, keys, caller):
        self.fg, self.shard, self.api, self.keys, self.caller = fg, shard, api, keys, caller

    def call(self, ws, token=None, path="/api", headers=None):
        """One request to /clusters/<ws><path>; returns (response, its access-log line)."""
        start = self.fg.nlines()
        h = dict(headers or {})
        if token:
            h.update(bearer(token))
        target = f"/clusters/{ws}{path}"
        r = request(self.fg.port, "GET", target, h)
        m = self.fg.wait_log(rf"access method=GET path={re.escape(target)} status={r.status}\b", start=start)
        return r, m.string

    def last(self, cluster):
        return self.shard.wait_for(lambda x: x.complete and x.path.startswith(f"/clusters/{cluster}/"))


def make_env(shard, apiserver_factory, frontgate_factory, tls_ca, name="fg", **kw):
    keys = Keys()
    caller = "caller-" + new_key()
    api = apiserver_factory(callers={caller})
    files = keys.files()
    files["apiserver-ca.crt"] = tls_ca.pem
    files["caller-token"] = caller + "\n"
    fg = frontgate_factory(ws_config(shard.url, api.url, **kw), files, name=name)
    return WsEnv(fg, shard, api, keys, caller)


@pytest.fixture
def wenv(shard, apiserver_factory, frontgate_factory, tls_ca):
    return make_env(shard, apiserver_factory, frontgate_factory, tls_ca)








def extras(rec):
    """[(name as on the wire, value)] of the X-Remote-Extra-* headers."""
    return [(k, v) for k, v in rec.headers if k.lower().startswith("x-remote-extra-")]


def scoped(cluster):
    return [(SCOPES_HDR, f"cluster:{cluster}"), (CLUSTER_NAME_HDR, cluster)]


# ---------------------------------------------------------------------------
# a workspace authenticator admits, scoped to its workspace


@pytest.mark.parametrize("ws", [TEAM[0], TEAM[1]], ids=["path", "cluster-id"])
def test_workspace_key_is_admitted_with_a_scoped_identity(wenv, ws):
    r, line = wenv.call(ws, wenv.keys.carol)
    assert r.status == 200, r
    rec = wenv.last(TEAM[1])
    assert rec.target == f"/clusters/{TEAM[1]}/api"
    assert rec.values("X-Remote-User") == ["carol"]
    # every system: group dropped, system:authenticated added
    assert Counter(rec.values("X-Remote-Group")) == Counter(["dev", "system:authenticated"]), rec.headers
    # exact header names on the wire, as kcp's front-proxy sends them
    assert sorted(extras(rec)) == sorted(scoped(TEAM[1])), rec.headers
    assert rec.values("Authorization") == []
    assert "user=carol" in line and "authn=team-keys" in line, line
    assert wenv.api.calls() == 0  # team-keys answered before ws-review was asked
    assert_not_logged(wenv.fg, *wenv.keys.all())


def test_workspace_key_from_the_index_file_is_scoped_to_that_cluster(wenv):
    r, _ = wenv.call(IDX[0], wenv.keys.carol)
    assert r.status == 200, r
    rec = wenv.last(IDX[1])
    assert sorted(extras(rec)) == sorted(scoped(IDX[1])), rec.headers


@pytest.mark.parametrize("ws", [B, PLAIN, NOTYPE], ids=["other-type", "type-without-authenticators", "no-type"])
def test_workspace_key_is_401_on_another_workspace(wenv, ws):
    r, line = wenv.call(ws[0], wenv.keys.carol)
    assert_unauthorized(r)
    # a key in frontgate's format that no authenticator of this workspace has
    assert log_reason(line) == "unknown API key" and "reason_code=unknown_key" in line, line
    assert wenv.shard.snapshot() == []
    assert wenv.api.calls() == 0, "ws-review was asked on a workspace whose type does not have it"
    assert_not_logged(wenv.fg, wenv.keys.carol)


def test_token_valid_for_type_a_is_401_on_type_b(wenv):
    # team-keys (type A) on workspace B, other-keys (type B) on the team workspace
    r, _ = wenv.call(B[0], wenv.keys.carol)
    assert_unauthorized(r)
    r, _ = wenv.call(TEAM[0], wenv.keys.dave)
    assert_unauthorized(r)
    # a token the type-A tokenReview accepts, on workspace B: never even reviewed
    tok = sa_token("ns", "a")
    wenv.api.allow(tok, {"username": "alice", "groups": ["dev"]})
    r, _ = wenv.call(B[0], tok)
    assert_unauthorized(r)
    assert wenv.api.calls(tok) == 0
    # each works at home
    r, _ = wenv.call(B[0], wenv.keys.dave)
    assert r.status == 200, r
    assert sorted(extras(wenv.last(B[1]))) == sorted(scoped(B[1]))
    r, _ = wenv.call(TEAM[0], tok)
    assert r.status == 200, r
    assert wenv.api.calls(tok) == 1
    assert wenv.shard.wait_count(2)


# ---------------------------------------------------------------------------
# global authenticators: first, everywhere, only dropGroups


@pytest.mark.parametrize("ws", [TEAM, B, PLAIN, NOTYPE, IDX], ids=["team", "other-type", "plain", "no-type", "index"])
def test_global_key_works_on_every_workspace_with_global_policy(wenv, ws):
    r, line = wenv.call(ws[0], wenv.keys.ops)
    assert r.status == 200, r
    rec = wenv.last(ws[1])
    assert rec.values("X-Remote-User") == ["ops"]
    # default dropGroups (kcp's): system:masters, logical-cluster-admin, initializer:*, terminator:*
    assert Counter(rec.values("X-Remote-Group")) == Counter(
        ["ops-team", "system:kcp:admin", "system:authenticated"]
    ), rec.headers
    assert extras(rec) == [], "a global identity is not scoped"
    assert "authn=global-keys" in line, line
    assert wenv.api.calls() == 0


def test_global_authenticators_are_tried_first(wenv):
    # the same key is "both" in global-keys and "team-shared" in team-keys
    r, line = wenv.call(TEAM[0], wenv.keys.shared)
    assert r.status == 200, r
    rec = wenv.last(TEAM[1])
    assert rec.values("X-Remote-User") == ["both"]
    assert rec.values("X-Remote-Group") == ["system:authenticated"]
    assert extras(rec) == []
    assert "authn=global-keys" in line, line


@pytest.mark.parametrize(
    "drop,expected",
    [
        (None, ["ops-team", "system:kcp:admin"]),
        ([], OPS_GROUPS),
        (["system:kcp:*"], ["ops-team", "system:masters"]),
    ],
    ids=["default", "empty-keeps-all", "prefix"],
)
def test_drop_groups_for_global_identities(shard, apiserver_factory, frontgate_factory, tls_ca, drop, expected):
    e = make_env(shard, apiserver_factory, frontgate_factory, tls_ca, drop_groups=drop)
    r, _ = e.call(TEAM[0], e.keys.ops)
    assert r.status == 200, r
    rec = e.last(TEAM[1])
    assert Counter(rec.values("X-Remote-Group")) == Counter(expected + ["system:authenticated"]), rec.headers
    # dropGroups never applies to workspace identities: those lose every system: group anyway
    r, _ = e.call(TEAM[0], e.keys.carol)
    assert r.status == 200, r
    recs = [x for x in e.shard.wait_count(2) if x.values("X-Remote-User") == ["carol"]]
    assert Counter(recs[0].values("X-Remote-Group")) == Counter(["dev", "system:authenticated"])


# ---------------------------------------------------------------------------
# no credentials, no global authenticators, pass-through


def test_no_credentials_on_a_workspace_with_authenticators_is_401(wenv):
    r, line = wenv.call(TEAM[0])
    assert_unauthorized(r)
    assert log_reason(line) == "no credentials", line
    r, line = wenv.call(TEAM[0], "fgk_WRONG" + new_key()[4:])
    assert_unauthorized(r)
    assert wenv.shard.snapshot() == []


def test_without_global_authenticators_workspace_types_still_authenticate(
        shard, apiserver_factory, frontgate_factory, tls_ca):
    e = make_env(shard, apiserver_factory, frontgate_factory, tls_ca, global_authns=())
    # no credentials: 401, never 500 (kcp answered 500 here before PR #4368)
    r, line = e.call(TEAM[0])
    assert_unauthorized(r)
    assert log_reason(line) == "no credentials", line
    r, _ = e.call(TEAM[0], headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_unauthorized(r)
    wrong = "fgk_WRONG" + new_key()[4:]
    r, _ = e.call(TEAM[0], wrong)
    assert_unauthorized(r)
    assert e.shard.snapshot() == []
    r, _ = e.call(TEAM[0], e.keys.carol)
    assert r.status == 200, r
    assert sorted(extras(e.last(TEAM[1]))) == sorted(scoped(TEAM[1]))
    # elsewhere nothing authenticates: pass-through, Authorization left for the shard
    for ws in (PLAIN, NOTYPE):
        auth = f"Bearer {e.keys.carol}"
        r, _ = e.call(ws[0], headers={"Authorization": auth, "X-Remote-User": "system:admin"})
        assert r.status == 200, r
        rec = e.last(ws[1])
        assert rec.values("Authorization") == [auth]
        assert not any(k.lower().startswith("x-remote-") for k, _ in rec.headers), rec.headers
    assert_not_logged(e.fg, wrong, e.keys.carol)


def test_pass_through_when_no_authenticators_anywhere(shard, frontgate_factory):
    text = f"""\
workers: 2
listeners:
  - address: 127.0.0.1:0
shards:
  - {{name: shard-1, url: "{shard.url}", identity: requestHeader}}
routes:
  - {{prefix: /clusters/, workspace: path}}
workspaces:
  - {{cluster: {TEAM[1]}, path: "{TEAM[0]}", shard: shard-1, type: "root:org:plain"}}
  - {{cluster: {NOTYPE[1]}, path: "{NOTYPE[0]}", shard: shard-1}}
workspaceTypes:
  - {{name: "root:org:plain", authenticators: []}}
"""
    fg = frontgate_factory(text)
    auth = "Bearer shard-checks-this.opaque_token+/="
    for ws in (TEAM, NOTYPE):
        r, c = raw_request(
            fg.port,
            (f"GET /clusters/{ws[0]}/api HTTP/1.1\r\nHost: fg.test\r\nAuthorization: {auth}\r\n"
             "X-Remote-User: system:admin\r\nX-Remote-Group: system:masters\r\n"
             "X-Remote-Extra-Authentication.kcp.io%2fscopes: cluster:x\r\n\r\n").encode(),
        )
        c.close()
        assert r.status == 200, r
        rec = shard.wait_for(lambda x, cl=ws[1]: x.complete and x.path.startswith(f"/clusters/{cl}/"))
        assert rec.values("Authorization") == [auth], rec.headers
        assert not any(k.lower().startswith("x-remote-") for k, _ in rec.headers), rec.headers
    # without credentials too
    r = request(fg.port, "GET", f"/clusters/{TEAM[0]}/api")
    assert r.status == 200, r


# ---------------------------------------------------------------------------
# identity policy for workspace identities (tokenReview attached through the type)


@pytest.mark.parametrize("username", ["system:admin", "system:serviceaccount:ns:sa", "system:kcp:admin"])
def test_workspace_identity_with_a_system_username_is_401(wenv, username):
    tok = sa_token()
    wenv.api.allow(tok, {"username": username, "groups": ["system:masters"]})
    r, line = wenv.call(TEAM[0], tok)
    assert_unauthorized(r)
    assert log_reason(line) == "system usernames are not admitted", line
    assert wenv.api.calls() == 1
    assert wenv.shard.snapshot() == []
    # (a global tokenReview admits system:serviceaccount:... users: test_tokenreview.py)
    assert_not_logged(wenv.fg, tok)


def test_workspace_static_key_with_a_system_username_prefix_is_401(shard, apiserver_factory,
                                                                   frontgate_factory, tls_ca):
    e = make_env(shard, apiserver_factory, frontgate_factory, tls_ca, team_prefix="system:")
    r, line = e.call(TEAM[0], e.keys.carol)  # user "system:carol"
    assert_unauthorized(r)
    assert log_reason(line) == "system usernames are not admitted", line
    assert e.shard.snapshot() == []


def test_workspace_identity_groups_and_extras_are_filtered(wenv):
    tok = sa_token()
    wenv.api.allow(tok, {
        "username": "alice@corp.example",
        "uid": "alice-uid",
        "groups": ["dev", "system:masters", "system:kcp:admin", "system:authenticated",
                   "system:kcp:logical-cluster-admin", "admins"],
        "extra": {
            "authentication.kcp.io/scopes": ["cluster:evil", f"cluster:{B[1]}"],
            "authentication.kcp.io/cluster-name": ["evil"],
            "kcp.io/test": ["dropped"],
            "foo.kcp.io.example/bar": ["dropped too: the key contains kcp.io"],
            "other.example.com/test": ["kept", "kept-2"],
        },
    })
    r, line = wenv.call(TEAM[0], tok)
    assert r.status == 200, r
    rec = wenv.last(TEAM[1])
    assert rec.values("X-Remote-User") == ["alice@corp.example"]
    assert rec.values("X-Remote-Uid") == ["alice-uid"]
    assert Counter(rec.values("X-Remote-Group")) == Counter(["dev", "admins", "system:authenticated"]), rec.headers
    # scopes replaced by exactly cluster:<id> (never merged with the claimed ones)
    assert sorted(extras(rec)) == sorted(scoped(TEAM[1]) + [
        ("X-Remote-Extra-Other.example.com%2ftest", "kept"),
        ("X-Remote-Extra-Other.example.com%2ftest", "kept-2"),
    ]), rec.headers
    assert "authn=ws-review" in line and "user=alice@corp.example" in line, line
    [rv] = wenv.api.snapshot()
    assert rv.caller == wenv.caller and rv.audiences == [AUD]
    assert_not_logged(wenv.fg, tok, wenv.caller)


@pytest.mark.concurrency
def test_cached_review_is_scoped_per_request_not_per_cache_entry(wenv):
    """One review, two workspaces of the same type: each request gets its own cluster scope."""
    tok = sa_token()
    wenv.api.allow(tok, {"username": "alice", "groups": ["dev"]})
    r, _ = wenv.call(TEAM[0], tok)
    assert r.status == 200, r
    r, _ = wenv.call(IDX[0], tok)
    assert r.status == 200, r
    assert wenv.api.calls(tok) == 1
    assert sorted(extras(wenv.last(TEAM[1]))) == sorted(scoped(TEAM[1]))
    assert sorted(extras(wenv.last(IDX[1]))) == sorted(scoped(IDX[1]))
    # and on a workspace of another type the cached identity does not apply at all
    r, _ = wenv.call(B[0], tok)
    assert_unauthorized(r)


@pytest.mark.parametrize(
    "user",
    [
        {"username": "a\r\nb", "groups": ["dev"]},
        {"username": "alice", "groups": ["dev\nX-Remote-Group: admins"]},
        {"username": "alice", "groups": ["dev"], "extra": {"other.example.com/x": ["v\r\nX-Remote-User: root"]}},
        {"username": "alice", "groups": ["dev"], "extra": {"other.example.com/x\ny": ["v"]}},
        # A shard reads " system:admin" as system:admin (RFC 9110 5.5: OWS is not part of a
        # value): the policy must judge what the shard will read, so such identities fail.
        {"username": " system:admin", "groups": ["dev"]},
        {"username": "system:admin ", "groups": ["dev"]},
        {"username": "\tsystem:admin", "groups": ["dev"]},
        {"username": "alice", "groups": ["dev", " system:masters"]},
        {"username": "alice", "groups": ["dev", "system:masters "]},
        {"username": "alice", "groups": ["dev"], "extra": {"other.example.com/x": [" v"]}},
    ],
    ids=["username-crlf", "group-lf", "extra-value-crlf", "extra-key-lf", "user-leading-sp",
         "user-trailing-sp", "user-leading-tab", "group-leading-sp", "group-trailing-sp",
         "extra-leading-sp"],
)
def test_workspace_identity_not_clean_for_a_header_is_401(wenv, user):
    tok = sa_token()
    wenv.api.allow(tok, user)
    r, line = wenv.call(TEAM[0], tok)
    assert_unauthorized(r)
    assert log_reason(line) == "identity contains characters not allowed in a header", line
    assert wenv.shard.snapshot() == []


# ---------------------------------------------------------------------------
# unavailable and unknown workspaces


@pytest.mark.parametrize("ws", [DOWN, IDXDOWN], ids=["inline", "index-file"])
def test_unavailable_workspace_is_503_after_authentication(wenv, ws):
    for key, authn in ((wenv.keys.ops, "global-keys"), (wenv.keys.carol, "team-keys")):
        r, line = wenv.call(ws[0], key)
        assert r.status == 503, r
        doc = r.json()
        assert doc["kind"] == "Status" and doc["apiVersion"] == "v1", doc
        assert doc["status"] == "Failure" and doc["code"] == 503, doc
        assert doc["reason"] == "ServiceUnavailable", doc
        assert f"authn={authn}" in line, line
    # an unauthenticated caller learns nothing about the workspace
    r, _ = wenv.call(ws[0])
    assert_unauthorized(r)
    r, _ = wenv.call(ws[0], "fgk_WRONG" + new_key()[4:])
    assert_unauthorized(r)
    r, _ = wenv.call(ws[0], wenv.keys.dave)  # valid, but for another type
    assert_unauthorized(r)
    assert wenv.shard.snapshot() == []


@pytest.mark.parametrize("ws", ["root:org:nope", "nosuchcluster"])
def test_unknown_workspace_is_401_unauthenticated_403_authenticated(wenv, ws):
    r, line = wenv.call(ws)
    assert_unauthorized(r)
    r, _ = wenv.call(ws, "fgk_WRONG" + new_key()[4:])
    assert_unauthorized(r)
    # a workspace-only key is not a global credential: still 401
    r, _ = wenv.call(ws, wenv.keys.carol)
    assert_unauthorized(r)
    r, _ = wenv.call(ws, wenv.keys.ops)
    assert r.status == 403, r
    doc = r.json()
    assert doc["reason"] == "Forbidden" and doc["code"] == 403, doc
    assert doc["message"].endswith("workspace access not permitted"), doc
    assert wenv.shard.snapshot() == []
    assert wenv.api.calls() == 0


def test_unknown_workspace_without_global_authenticators_does_not_leak(
        shard, apiserver_factory, frontgate_factory, tls_ca):
    """
    With no global authenticator, an existing workspace whose type has authenticators
    answers an anonymous caller 401; an unknown one must answer the same, or the status
    tells which workspaces exist (DESIGN.md, errors table: 401 whenever the request carries
    no credential a global authenticator accepts).
    """
    e = make_env(shard, apiserver_factory, frontgate_factory, tls_ca, global_authns=())
    r, _ = e.call(TEAM[0])
    assert_unauthorized(r)
    for ws in ("root:org:nope", "nosuchcluster"):
        r, _ = e.call(ws)
        assert_unauthorized(r)
        r, _ = e.call(ws, e.keys.carol)
        assert_unauthorized(r)
    assert e.shard.snapshot() == []


# ---------------------------------------------------------------------------
# kubectl end to end


class EchoShard:
    """`frontgate echo-shard`: answers SelfSubjectReview from the X-Remote-* headers it gets."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [FRONTGATE_BIN, "echo-shard", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.port = None
        self._lines = []
        found = threading.Event()

        def read():
            for ln in self.proc.stderr:
                self._lines.append(ln)
                m = re.search(r"echo shard listening on http://127\.0\.0\.1:(\d+)", ln)
                if m:
                    self.port = int(m.group(1))
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(10):
            self.stop()
            raise AssertionError("echo shard did not start: " + "".join(self._lines))

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def kube(tmp_path, apiserver_factory, frontgate_factory, tls_ca):
    if not (KUBECTL and os.path.isfile(KUBECTL) and os.access(KUBECTL, os.X_OK)):
        pytest.skip(f"kubectl not found at {KUBECTL!r} (set FG_KUBECTL)")
    echo = EchoShard()
    try:
        keys = Keys()
        caller = "caller-" + new_key()
        api = apiserver_factory(callers={caller})
        files = keys.files()
        files["apiserver-ca.crt"] = tls_ca.pem
        files["caller-token"] = caller + "\n"
        files["tls.crt"], files["tls.key"] = tls_ca.issue("frontgate")
        listeners = ("  - address: 127.0.0.1:0\n"
                     "  - address: 127.0.0.1:0\n    tls: {certFile: tls.crt, keyFile: tls.key}\n")
        # the global tokenReview only sees service-account JWTs (issuers), never the API keys
        text = ws_config(echo.url, api.url, listeners=listeners, global_review=True,
                         global_authns=("global-keys", "cluster-sa"))
        fg = frontgate_factory(text, files)
        https_port = next(p for s, _, p in fg.listeners if s == "https")
        ca_path = tls_ca.write_ca(tmp_path, "frontgate-ca.crt")
        yield KubeEnv(fg, api, keys, https_port, ca_path, tmp_path)
    finally:
        echo.stop()


class KubeEnv:
    def __init__(self, fg, api, keys, port, ca_path, tmp):
        self.fg, self.api, self.keys, self.port, self.ca_path, self.tmp = fg, api, keys, port, ca_path, tmp
        self.n = 0

    def kubectl(self, token, *args):
        self.n += 1
        cfg = os.path.join(str(self.tmp), f"kubeconfig-{self.n}")
        with open(cfg, "w") as f:
            f.write(f"""\
apiVersion: v1
kind: Config
clusters:
  - name: frontgate
    cluster:
      server: https://127.0.0.1:{self.port}/clusters/{WS_PATH}
      certificate-authority: {self.ca_path}
users:
  - name: caller
    user:
      token: {token}
contexts:
  - name: frontgate
    context: {{cluster: frontgate, user: caller}}
current-context: frontgate
""")
        p = subprocess.run(
            [KUBECTL, "--kubeconfig", cfg, "--cache-dir", os.path.join(str(self.tmp), "kube-cache"),
             "--request-timeout", "20s", *args],
            capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(self.tmp)},
        )
        assert p.returncode == 0, f"kubectl {args}: rc={p.returncode}\n{p.stderr}"
        return json.loads(p.stdout)

    def whoami(self, token):
        doc = self.kubectl(token, "auth", "whoami", "-o", "json")
        assert doc["kind"] == "SelfSubjectReview", doc
        return doc["status"]["userInfo"]

    def raw_api(self, token):
        # `kubectl get --raw` ignores the path of the kubeconfig server URL (kubectl's
        # behaviour, not frontgate's): the raw path has to carry /clusters/<workspace> itself.
        return self.kubectl(token, "get", "--raw", f"/clusters/{WS_PATH}/api")


def test_kubectl_global_static_key(kube):
    info = kube.whoami(kube.keys.ops)
    assert info["username"] == "ops"
    assert Counter(info["groups"]) == Counter(["ops-team", "system:kcp:admin", "system:authenticated"]), info
    assert not info.get("extra"), info
    doc = kube.raw_api(kube.keys.ops)
    assert doc["path"] == f"/clusters/{WS_CLUSTER}/api", doc
    assert doc["user"]["username"] == "ops", doc
    assert kube.api.calls() == 0
    assert_not_logged(kube.fg, *kube.keys.all())


def test_kubectl_workspace_type_static_key(kube):
    info = kube.whoami(kube.keys.carol)
    assert info["username"] == "carol"
    assert Counter(info["groups"]) == Counter(["dev", "system:authenticated"]), info
    assert info["extra"] == {
        "authentication.kcp.io/scopes": [f"cluster:{WS_CLUSTER}"],
        "authentication.kcp.io/cluster-name": [WS_CLUSTER],
    }, info
    doc = kube.raw_api(kube.keys.carol)
    assert doc["path"] == f"/clusters/{WS_CLUSTER}/api", doc
    assert doc["user"]["username"] == "carol", doc
    assert doc["user"]["extra"]["authentication.kcp.io/scopes"] == [f"cluster:{WS_CLUSTER}"], doc
    assert_not_logged(kube.fg, kube.keys.carol)


def test_kubectl_service_account_token_via_tokenreview(kube):
    tok = sa_token("team-ns", "deployer")
    kube.api.allow(tok, sa_user("team-ns", "deployer", pod="deployer-7d9f"))
    info = kube.whoami(tok)
    assert info["username"] == "system:serviceaccount:team-ns:deployer", info
    assert info.get("uid") in (None, "sa-uid-team-ns-deployer"), info
    assert Counter(info["groups"]) == Counter(
        ["system:serviceaccounts", "system:serviceaccounts:team-ns", "system:authenticated"]
    ), info
    assert info["extra"] == {
        "authentication.kubernetes.io/pod-name": ["deployer-7d9f"],
        "authentication.kubernetes.io/pod-uid": ["deployer-7d9f-uid"],
        "authentication.kubernetes.io/credential-id": ["JTI=0f8b0d7c-4a4e-4c9e-9b46-2f8c1f0e9d11"],
    }, info
    doc = kube.raw_api(tok)
    assert doc["path"] == f"/clusters/{WS_CLUSTER}/api", doc
    assert doc["user"]["username"] == "system:serviceaccount:team-ns:deployer", doc
    assert kube.api.calls() == 1, "the second kubectl call should be answered from the cache"
    [rv] = kube.api.snapshot()
    assert rv.audiences == [AUD]
    assert_not_logged(kube.fg, tok)
