"""
index.fromKcp.workspaceAuthentication: per-workspace authentication live from kcp's
WorkspaceTypes and WorkspaceAuthenticationConfigurations (WACs), as kcp's own front proxy takes
them (pkg/authentication): a LogicalCluster's type annotation names a WorkspaceType
(kcp.io/path:name), whose spec.authenticationConfigurations name WACs in the type's own logical
cluster; each WAC's spec.jwt[] is a jwt authenticator for the workspaces of that type only.

The peer is test_kcp_index.py's in-process kcp shard (kcp's list/watch wire), here also serving
workspacetypes and workspaceauthenticationconfigurations; the issuer is test_oidc.py's IdP
(oauth2-mock-server over TLS). A real kcp with WACs (v0.30+) cannot be built from the Go module
proxy here (tests/interop/README.md), so these tests are the wire-level ones.
"""
import json
import subprocess

import pytest

from conftest import FRONTGATE_BIN, Frontgate, bearer, key_line, new_key, request
from test_kcp_index import KcpShard, eventually, lc
from test_oidc import ALICE, idp_factory, pki  # noqa: F401  (fixtures)

TYPES = "workspacetypes"
WACS = "workspaceauthenticationconfigurations"
ORG = ("root:org", "15hh88sn7dzq6n6y")
TEAM = ("root:org:team", "team1cluster")    # type root:org:with-oidc -> WAC oidc
PLAIN = ("root:org:plain", "plain2cluster")  # type root:org:plain -> no WACs
OTHER = ("root:org:other", "other3cluster")  # type root:org:elsewhere -> a WAC of another cluster
SCOPES = "X-Remote-Extra-Authentication.kcp.io%2fscopes"
CLUSTER_NAME = "X-Remote-Extra-Authentication.kcp.io%2fcluster-Name"


def wac(name, cluster, *entries):
    return {"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "WorkspaceAuthenticationConfiguration",
            "metadata": {"name": name, "annotations": {"kcp.io/cluster": cluster}},
            "spec": {"jwt": list(entries)}}


def wstype(name, cluster, path, *wacs):
    return {"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "WorkspaceType",
            "metadata": {"name": name,
                         "annotations": {"kcp.io/cluster": cluster, "kcp.io/path": path}},
            "spec": {"authenticationConfigurations": [{"name": n} for n in wacs]}}


def entry(idp, pki, prefix="oidc:", **issuer):
    return {"issuer": {"url": idp.issuer, "audiences": ["frontgate"],
                       "certificateAuthority": pki.ca_pem, **issuer},
            "claimMappings": {"username": {"claim": "sub", "prefix": prefix},
                              "groups": {"claim": "groups", "prefix": prefix}}}


class Env:
    def __init__(self, kcp, fg, idp, pki, ops_key):
        self.kcp, self.fg, self.idp, self.pki, self.ops_key = kcp, fg, idp, pki, ops_key

    def who(self, ws, token, rest="/api"):
        """(status, user, groups, scopes, cluster-name) as the shard received them."""
        path = f"/clusters/{ws[0]}{rest}"
        before = len(self.kcp.heads)
        r = request(self.fg.port, "GET", path, headers=bearer(token))
        if r.status != 200:
            return r.status, None, None, None, None
        got = [h for p, h in self.kcp.heads[before:] if p == f"/clusters/{ws[1]}{rest}"]
        assert got, (path, self.kcp.heads[before:])
        h = got[-1]
        one = lambda n: [v for k, v in h if k == n]  # noqa: E731
        user = one("X-Remote-User")
        return 200, user[0] if user else None, one("X-Remote-Group"), one(SCOPES), one(CLUSTER_NAME)

    def put_wac(self, obj, quiet=False):
        self.kcp.put_obj(WACS, (obj["metadata"]["annotations"]["kcp.io/cluster"],
                                obj["metadata"]["name"]), obj, quiet=quiet)

    def builds(self, name="oidc"):
        return self.fg.log().count(f"WorkspaceAuthenticationConfiguration {ORG[1]}|{name}: ")


def fg_config(kcp_url, wac_on=True):
    return f"""
workers: 1
listeners: [{{address: 127.0.0.1:0}}]
routes: [{{prefix: /clusters/, workspace: path}}]
authenticators:
  - name: ops-keys
    staticKeys: {{file: keys.txt}}
authentication:
  global: [ops-keys]
index:
  fromKcp:
    rootShard: {{url: "{kcp_url}", tokenFile: kcp.token}}
    workspaceAuthentication: {"true" if wac_on else "false"}
"""


def new_kcp(idp, pki):
    k = KcpShard()
    k.put_shard("root", k.url, quiet=True)
    k.put_lc(lc("root"), quiet=True)
    k.put_lc(lc(ORG[1], ORG[0], "root:organization"), quiet=True)
    k.put_lc(lc(TEAM[1], TEAM[0], "root:org:with-oidc"), quiet=True)
    k.put_lc(lc(PLAIN[1], PLAIN[0], "root:org:plain"), quiet=True)
    k.put_lc(lc(OTHER[1], OTHER[0], "root:org:elsewhere"), quiet=True)
    k.put_obj(TYPES, "with-oidc", wstype("with-oidc", ORG[1], ORG[0], "oidc"), quiet=True)
    k.put_obj(TYPES, "plain", wstype("plain", ORG[1], ORG[0]), quiet=True)
    # names a WAC "oidc" that exists only in another cluster (root's): kcp does not look there
    k.put_obj(TYPES, "elsewhere", wstype("elsewhere", ORG[1], ORG[0], "root-only"), quiet=True)
    k.put_obj(WACS, ("root", "root-only"), wac("root-only", "root", entry(idp, pki)), quiet=True)
    k.put_obj(WACS, (ORG[1], "oidc"), wac("oidc", ORG[1], entry(idp, pki)), quiet=True)
    return k


@pytest.fixture
def env(idp_factory, pki, tmp_path):  # noqa: F811
    idp = idp_factory()
    kcp = new_kcp(idp, pki)
    ops = new_key()
    fg = Frontgate(tmp_path / "fg", fg_config(kcp.url),
                   files={"kcp.token": "watcher-token\n", "keys.txt": key_line("ops", ops) + "\n"})
    fg.start()
    fg.wait_log(r"kcp: every shard has synced its logical clusters, WorkspaceTypes and "
                r"WorkspaceAuthenticationConfigurations")
    # the fake replays nothing: events go only to watches already open
    for res in ("logicalclusters", TYPES, WACS):
        kcp.wait(lambda: kcp.open_watches(res) == 1, f"the {res} watch")
    yield Env(kcp, fg, idp, pki, ops)
    fg.stop()
    kcp.stop()


@pytest.fixture
def alone(idp_factory, pki, tmp_path):  # noqa: F811
    """(idp, kcp, start): for the tests that start frontgate their own way; start(text, files)
    starts one in tmp_path/fg; everything is stopped at teardown."""
    idp = idp_factory()
    kcp = new_kcp(idp, pki)
    started = []

    def start(text, files=None, wait=True):
        f = Frontgate(tmp_path / f"fg{len(started)}", text, files={
            "kcp.token": "t\n", "keys.txt": key_line("ops", new_key()) + "\n", **(files or {})})
        started.append(f)
        return f.start()

    yield idp, kcp, start
    for f in started:
        f.stop()
    kcp.stop()


def test_a_wac_admits_its_issuers_users_in_its_types_workspaces_only(env):
    tok = env.idp.mint()
    st, user, groups, scopes, cname = env.who(TEAM, tok)
    assert st == 200
    assert user == "oidc:alice"
    assert sorted(groups) == ["oidc:dev", "oidc:ops", "system:authenticated"]
    assert scopes == [f"cluster:{TEAM[1]}"] and cname == [TEAM[1]]
    # the same user elsewhere: no workspace authenticator takes the token
    for ws in (PLAIN, ORG, OTHER, ("root", "root")):
        assert env.who(ws, tok)[0] == 401, ws
    # the global key still works everywhere, unscoped
    st, user, _, scopes, _ = env.who(TEAM, env.ops_key)
    assert (st, user, scopes) == (200, "ops", [])


def test_a_wac_from_another_logical_cluster_is_not_used(env):
    # type "elsewhere" (in root:org) names "root-only", which lives in root: kcp takes a type's
    # configurations from the type's own logical cluster only
    assert env.who(OTHER, env.idp.mint())[0] == 401
    env.put_wac(wac("root-only", ORG[1], entry(env.idp, env.pki, prefix="org:")))
    eventually(lambda: env.who(OTHER, env.idp.mint())[:2] == (200, "org:alice"),
               "the WAC of the type's own cluster admits")


def test_editing_the_wac_takes_effect_without_reload(env):
    assert env.who(TEAM, env.idp.mint())[1] == "oidc:alice"
    reloads = env.fg.log().count("reloaded configuration")  # the first Shards list made one
    env.put_wac(wac("oidc", ORG[1], entry(env.idp, env.pki, prefix="sso:")))
    eventually(lambda: env.who(TEAM, env.idp.mint())[1] == "sso:alice", "the new prefix applies")
    assert env.fg.log().count("reloaded configuration") == reloads
    assert env.builds() == 2


def test_a_resync_and_unrelated_events_keep_the_authenticator(env):
    tok = env.idp.mint()
    assert env.who(TEAM, tok)[1] == "oidc:alice"
    assert env.builds() == 1
    jwks = env.idp.counts()["jwks"]
    # the same spec again (kcp's resync, a status or label change), and other objects changing
    same = wac("oidc", ORG[1], entry(env.idp, env.pki))
    same["metadata"]["labels"] = {"touched": "yes"}
    env.put_wac(same)
    env.kcp.put_lc(lc("new4cluster", "root:org:new", "root:org:with-oidc"))
    env.kcp.put_obj(TYPES, "plain", wstype("plain", ORG[1], ORG[0]))
    eventually(lambda: env.who(("root:org:new", "new4cluster"), tok)[0] == 200,
               "the new workspace of the type routes")
    assert env.who(TEAM, tok)[1] == "oidc:alice"
    assert env.builds() == 1, env.fg.log()
    assert env.idp.counts()["jwks"] == jwks  # no second key fetch either


def test_a_wac_that_does_not_build_keeps_the_last_good_one(env):
    tok = env.idp.mint()
    assert env.who(TEAM, tok)[1] == "oidc:alice"
    n = env.fg.nlines()
    env.put_wac(wac("oidc", ORG[1], entry(env.idp, env.pki, url="http://sso.example.com")))
    env.fg.wait_log(r"WorkspaceAuthenticationConfiguration 15hh88sn7dzq6n6y\|oidc \(shard root\) "
                    r"spec:\d+:\d+: jwt.issuer.url \"http://sso.example.com\" must use https://", start=n)
    env.fg.wait_log(r"WorkspaceAuthenticationConfiguration 15hh88sn7dzq6n6y\|oidc does not build; "
                    r"its previous spec keeps serving", start=n)
    assert env.who(TEAM, tok)[1] == "oidc:alice"
    # a bad CA: the same
    n = env.fg.nlines()
    env.put_wac(wac("oidc", ORG[1], entry(env.idp, env.pki, certificateAuthority="not a PEM")))
    env.fg.wait_log(r"oidc \(shard root\) spec:\d+:\d+: jwt.issuer.certificateAuthority must hold "
                    r"PEM certificates", start=n)
    assert env.who(TEAM, tok)[1] == "oidc:alice"
    # and a good spec again builds
    env.put_wac(wac("oidc", ORG[1], entry(env.idp, env.pki, prefix="v3:")))
    eventually(lambda: env.who(TEAM, env.idp.mint())[1] == "v3:alice", "the fixed spec applies")


@pytest.mark.parametrize("spec,message", [
    ({"jwt": []}, r"spec.jwt: Required value"),
    ({}, r"spec.jwt: Required value"),
    ({"jwt": [{"issuer": {"url": "https://sso.example.com", "audiences": ["a"],
                          "certificateAuthorityFile": "/etc/shadow"},
               "claimMappings": {"username": {"claim": "sub", "prefix": ""}}}]},
     r"jwt.issuer.certificateAuthorityFile is not allowed here"),
    ({"jwt": [{"issuer": {"url": "https://sso.example.com", "audiences": ["a"]},
               "claimMappings": {"username": {"claim": "sub", "expression": "claims.sub"}}}]},
     r"claim and expression cannot both be specified"),
    ({"jwt": [{"issuer": {"url": "https://sso.example.com", "audiences": ["a"]},
               "claimMappings": {"username": {"expression": "claims.sub", "prefix": "x:"}}}]},
     r"prefix can only be specified when claim is specified"),
    ({"jwt": [{"issuer": {"url": "https://sso.example.com", "audiences": ["a"]},
               "claimMappings": {"username": {"claim": "sub", "prefix": ""}}}], "extra": 1},
     r"unknown key \"extra\""),
])
def test_a_new_wac_that_does_not_build_is_skipped_and_named(env, spec, message):
    obj = wac("broken", ORG[1])
    obj["spec"] = spec
    n = env.fg.nlines()
    env.put_wac(obj)
    env.fg.wait_log(r"WorkspaceAuthenticationConfiguration 15hh88sn7dzq6n6y\|broken \(shard root\) "
                    r"spec(:\d+:\d+)?: .*" + message, start=n)
    env.fg.wait_log(r"15hh88sn7dzq6n6y\|broken does not build; workspace types naming it skip it",
                    start=n)
    # a type naming it and the good one: the good one still admits
    env.kcp.put_obj(TYPES, "with-oidc", wstype("with-oidc", ORG[1], ORG[0], "broken", "oidc"))
    eventually(lambda: env.who(TEAM, env.idp.mint())[1] == "oidc:alice", "the good WAC admits")


def test_deleting_the_wac_or_the_type_takes_its_users_out(env):
    tok = env.idp.mint()
    assert env.who(TEAM, tok)[0] == 200
    env.kcp.delete_obj(WACS, (ORG[1], "oidc"))
    eventually(lambda: env.who(TEAM, tok)[0] == 401, "the deleted WAC no longer admits")
    env.put_wac(wac("oidc", ORG[1], entry(env.idp, env.pki)))
    eventually(lambda: env.who(TEAM, tok)[0] == 200, "the WAC is back")
    env.kcp.delete_obj(TYPES, "with-oidc")
    eventually(lambda: env.who(TEAM, tok)[0] == 401, "the deleted type has no authenticators")


def test_a_type_changing_its_list_takes_effect(env):
    tok = env.idp.mint()
    assert env.who(PLAIN, tok)[0] == 401
    env.kcp.put_obj(TYPES, "plain", wstype("plain", ORG[1], ORG[0], "oidc"))
    eventually(lambda: env.who(PLAIN, tok)[:2] == (200, "oidc:alice"), "plain gets the WAC")
    env.kcp.put_obj(TYPES, "plain", wstype("plain", ORG[1], ORG[0]))
    eventually(lambda: env.who(PLAIN, tok)[0] == 401, "plain loses it again")


def test_kcps_rules_apply_to_wac_identities(env):
    # no prefixes: a WAC user cannot become a system: user or keep system: groups (kcp's
    # ForbidSystemUsernames, GroupFilter), and extras naming kcp.io are dropped
    bare = entry(env.idp, env.pki, prefix="")
    bare["claimMappings"]["extra"] = [
        {"key": "authentication.kcp.io/scopes", "valueExpression": "claims.tenant"},
        {"key": "example.org/tenant", "valueExpression": "claims.tenant"}]
    env.put_wac(wac("oidc", ORG[1], bare))
    tok = env.idp.mint({"groups": ["dev", "system:masters", "system:kcp:admin"]})
    eventually(lambda: env.who(TEAM, tok)[1] == "alice", "the bare WAC applies")
    st, user, groups, scopes, _ = env.who(TEAM, tok)
    assert sorted(groups) == ["dev", "system:authenticated"]
    assert scopes == [f"cluster:{TEAM[1]}"]  # never the claim's value
    assert env.who(TEAM, env.idp.mint({"sub": "system:admin"}))[0] == 401
    env.fg.wait_log(r"status=401 .*reason=\"?system usernames are not admitted")


def test_tokens_never_reach_the_log(env):
    tok = env.idp.mint()
    assert env.who(TEAM, tok)[0] == 200
    assert env.who(PLAIN, tok)[0] == 401
    log = env.fg.log()
    assert tok not in log and tok.split(".")[2] not in log
    assert env.ops_key not in log and "watcher-token" not in log


def test_a_kcp_without_wacs_keeps_readyz_503_and_says_why(alone):
    idp, kcp, start = alone
    kcp.not_served.add(WACS)
    fg = start(fg_config(kcp.url))
    fg.wait_log(r"kcp shard root: workspaceauthenticationconfigurations: list answered HTTP "
                r"404: this kcp does not serve tenancy.kcp.io/v1alpha1 "
                r"workspaceauthenticationconfigurations \(index.fromKcp.workspaceAuthentication"
                r" needs kcp v0.30 or later\)")
    assert request(fg.port, "GET", "/readyz").status == 503
    # once kcp serves them, the next list syncs
    kcp.not_served.clear()
    fg.wait_log(r"kcp: every shard has synced", timeout=10)
    assert request(fg.port, "GET", "/readyz").status == 200


def test_without_the_option_kcp_types_are_not_watched(alone):
    idp, kcp, start = alone
    fg = start(fg_config(kcp.url, wac_on=False))
    fg.wait_log(r"kcp: every shard has synced its logical clusters$")
    assert kcp.lists[WACS] == 0 and kcp.lists[TYPES] == 0
    assert request(fg.port, "GET", f"/clusters/{TEAM[0]}/api",
                   headers=bearer(idp.mint())).status == 401


def test_the_option_is_checked_and_cannot_change_on_reload(alone, tmp_path):
    idp, kcp, start = alone
    bad = fg_config(kcp.url).replace("workspaceAuthentication: true", "workspaceAuthentication: 1")
    (tmp_path / "chk").mkdir()
    (tmp_path / "chk" / "kcp.token").write_text("t\n")
    (tmp_path / "chk" / "keys.txt").write_text(key_line("ops", new_key()) + "\n")
    cpath = tmp_path / "chk" / "frontgate.yaml"
    cpath.write_text(bad)
    out = subprocess.run([FRONTGATE_BIN, "check", "-c", str(cpath)], capture_output=True, text=True)
    assert out.returncode != 0
    assert f"{cpath}:13:30: \"workspaceAuthentication\" must be true or false" in out.stderr, \
        out.stderr
    fg = start(fg_config(kcp.url))
    fg.wait_log(r"kcp: every shard has synced")
    fg.write("frontgate.yaml", fg_config(kcp.url, wac_on=False))
    fg.hup(expect_ok=False)
    assert "index.fromKcp (rootShard, watchTimeout, workspaceAuthentication) cannot be " \
           "added, removed or changed on reload" in fg.log()


def test_a_config_workspace_type_of_the_same_name_wins(alone):
    idp, kcp, start = alone
    team = new_key()
    cfg = fg_config(kcp.url).replace("authentication:\n", """  - name: team-keys
    staticKeys: {file: team.txt}
authentication:
""") + """workspaceTypes:
  - name: root:org:with-oidc
    authenticators: [team-keys]
"""
    fg = start(cfg, files={"team.txt": key_line("carol", team) + "\n"})
    fg.wait_log(r"kcp: every shard has synced")
    path = f"/clusters/{TEAM[0]}/api"
    assert request(fg.port, "GET", path, headers=bearer(team)).status == 200
    assert request(fg.port, "GET", path, headers=bearer(idp.mint())).status == 401


def test_the_wire_objects_are_what_kcp_lists(env):
    # what the fake serves is what frontgate asked for: wildcard lists of both kinds
    assert env.kcp.lists[TYPES] >= 1 and env.kcp.lists[WACS] >= 1
    assert env.kcp.open_watches(TYPES) == 1 and env.kcp.open_watches(WACS) == 1
    doc = json.loads(json.dumps(env.kcp.objs[WACS][(ORG[1], "oidc")]))
    assert doc["kind"] == "WorkspaceAuthenticationConfiguration"


def test_a_workspacetype_resync_publishes_no_new_index(env):
    from test_metrics import scrape, val
    env.kcp.put_lc(lc("mark1cluster", "root:org:mark"))
    eventually(lambda: request(env.fg.port, "GET", "/clusters/root:org:mark/api",
                               headers=bearer(env.ops_key)).status == 200, "settled")
    gen = val(scrape(env.fg)[1], "frontgate_kcp_index_generation")
    same = wstype("with-oidc", ORG[1], ORG[0], "oidc")
    same["metadata"]["labels"] = {"resynced": "yes"}
    env.kcp.put_obj(TYPES, "with-oidc", same)
    # an event after it proves it was read; only that one publishes
    env.kcp.put_lc(lc("mark2cluster", "root:org:mark2"))
    eventually(lambda: request(env.fg.port, "GET", "/clusters/root:org:mark2/api",
                               headers=bearer(env.ops_key)).status == 200, "the later event")
    assert val(scrape(env.fg)[1], "frontgate_kcp_index_generation") == gen + 1
