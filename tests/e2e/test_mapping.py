"""
kcp's front-proxy mapping file as frontgate's routes (`mappingFile:`), and virtual-workspace
routes: a `{cluster}` placeholder, or the first `/clusters/<x>/` in the path, is looked up for
authentication only (the workspace type's authenticators, the scope) and the request goes to the
mapping's backend with its path unchanged; `*` and no cluster pass without a lookup
(../shared/reference/kcp-front-proxy.md §1.1, §1.3).

Two recording shards: `ws` serves the workspaces (static index), `vw` is the mappings' backend
(virtual workspaces and the default `/`).
"""
import subprocess
import textwrap

import pytest

from conftest import (
    FRONTGATE_BIN,
    assert_not_logged,
    assert_unauthorized,
    bearer,
    key_line,
    new_key,
    request,
)

TEAM = ("root:org:team", "team1cluster")  # type root:org:with-keys
OTHER = ("root:org:other", "other2cluster")  # no type
DOWN = ("root:org:down", "down3cluster")
SCOPES_HDR = "X-Remote-Extra-Authentication.kcp.io%2fscopes"
CLUSTER_NAME_HDR = "X-Remote-Extra-Authentication.kcp.io%2fcluster-Name"
EXPORT = "/services/apiexport"


def mapping(vw_url, extra=""):
    return f"""\
# kcp front-proxy --mapping-file
- path: /clusters/
  backend: https://ignored.invalid:6443
- path: /
  backend: {vw_url}/default
- path: {EXPORT}/{{cluster}}/{{export}}/
  backend: {vw_url}
- path: /services/initializingworkspaces/
  backend: {vw_url}
{extra}"""


def config(ws_url):
    return f"""\
workers: 2
listeners:
  - address: 127.0.0.1:0
shards:
  - name: ws
    url: {ws_url}
mappingFile: maps/mapping.yaml
workspaces:
  - {{cluster: {TEAM[1]}, path: "{TEAM[0]}", shard: ws, type: "root:org:with-keys"}}
  - {{cluster: {OTHER[1]}, path: "{OTHER[0]}", shard: ws}}
  - {{cluster: {DOWN[1]}, path: "{DOWN[0]}", shard: ws, phase: Unavailable}}
authenticators:
  - name: global-keys
    staticKeys: {{file: global.txt}}
  - name: team-keys
    staticKeys: {{file: team.txt}}
authentication:
  global: [global-keys]
workspaceTypes:
  - name: root:org:with-keys
    authenticators: [team-keys]
limits:
  shutdownGracePeriod: 3s
"""


class Env:
    pass


@pytest.fixture
def menv(shard_factory, frontgate_factory):
    e = Env()
    e.ws, e.vw = shard_factory(), shard_factory()
    e.ops, e.carol = new_key(), new_key()
    e.fg = frontgate_factory(config(e.ws.url), {
        "maps/mapping.yaml": mapping(e.vw.url),
        "global.txt": key_line("ops", e.ops, ["ops-team"]) + "\n",
        "team.txt": key_line("carol", e.carol, ["dev", "system:masters"]) + "\n",
    })
    return e


def scoped(cluster):
    return [(SCOPES_HDR, f"cluster:{cluster}"), (CLUSTER_NAME_HDR, cluster)]


def extras(rec):
    return sorted((k, v) for k, v in rec.headers if k.lower().startswith("x-remote-extra-"))


def last(shard, path):
    return shard.wait_for(lambda x: x.complete and x.path == path)


@pytest.mark.parametrize("cluster", [TEAM[0], TEAM[1]], ids=["path", "cluster-name"])
def test_a_workspace_key_is_admitted_on_a_virtual_workspace_of_its_workspace_scoped_to_it(
        menv, cluster):
    path = f"{EXPORT}/{cluster}/my-export/clusters/*/apis/example.io/v1/widgets"
    r = request(menv.fg.port, "GET", path + "?watch=1",
                {**bearer(menv.carol), "X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    assert r.status == 200, r
    rec = last(menv.vw, path)  # to the mapping's backend, the path as sent
    assert rec.query == "watch=1"
    assert rec.values("X-Remote-User") == ["carol"]
    assert sorted(rec.values("X-Remote-Group")) == ["dev", "system:authenticated"]
    assert extras(rec) == sorted(scoped(TEAM[1])), rec.headers
    assert rec.values("Authorization") == []
    assert menv.ws.snapshot() == []
    line = menv.fg.wait_log(r"access method=GET path=/services/apiexport/\S+ status=200 ")
    assert f"cluster={TEAM[1]}" in line.string and "user=carol" in line.string, line.string
    assert_not_logged(menv.fg, menv.carol)


def test_without_a_cluster_or_with_star_only_the_global_authenticators_apply(menv):
    # `*` in {cluster}: no lookup, so no workspace type: carol's key is not known there
    path = f"{EXPORT}/*/my-export/clusters/*/apis"
    assert_unauthorized(request(menv.fg.port, "GET", path, bearer(menv.carol)))
    r = request(menv.fg.port, "GET", path, bearer(menv.ops))
    assert r.status == 200, r
    rec = last(menv.vw, path)
    assert rec.values("X-Remote-User") == ["ops"] and extras(rec) == []
    # no /clusters/ in an initializingworkspaces path: no lookup either
    path = "/services/initializingworkspaces/root:org:init/apis/x"
    assert request(menv.fg.port, "GET", path, bearer(menv.ops)).status == 200
    assert_unauthorized(request(menv.fg.port, "GET", path, bearer(menv.carol)))


def test_the_first_clusters_segment_of_the_path_is_the_cluster_when_the_mapping_has_no_placeholder(
        menv):
    path = f"/services/initializingworkspaces/root:org:init/clusters/{TEAM[0]}/apis/x"
    r = request(menv.fg.port, "GET", path, bearer(menv.carol))
    assert r.status == 200, r
    rec = last(menv.vw, path)
    assert rec.values("X-Remote-User") == ["carol"] and extras(rec) == sorted(scoped(TEAM[1]))
    # another workspace: carol's type authenticators do not apply there
    path = f"/services/initializingworkspaces/x/clusters/{OTHER[0]}/apis/x"
    assert_unauthorized(request(menv.fg.port, "GET", path, bearer(menv.carol)))
    assert request(menv.fg.port, "GET", path, bearer(menv.ops)).status == 200


def test_an_unknown_or_system_cluster_in_a_virtual_workspace_path_is_403_without_reaching_it(menv):
    for cluster in ("root:org:nope", "system:admin", "Root"):
        r = request(menv.fg.port, "GET", f"{EXPORT}/{cluster}/e/clusters/*/apis", bearer(menv.ops))
        assert r.status == 403, (cluster, r)
        assert "workspace access not permitted" in r.json()["message"], r
    # an unauthenticated caller learns nothing: 401 as for a known workspace
    assert_unauthorized(request(menv.fg.port, "GET", f"{EXPORT}/root:org:nope/e/apis"))
    r = request(menv.fg.port, "GET", f"{EXPORT}/{DOWN[0]}/e/apis", bearer(menv.ops))
    assert r.status == 503, r
    assert menv.vw.snapshot() == []


def test_the_default_mapping_and_the_clusters_mapping(menv):
    # "/": to its backend (with the backend's base path), no cluster lookup even for /clusters/
    r = request(menv.fg.port, "GET", "/version", bearer(menv.ops))
    assert r.status == 200, r
    assert last(menv.vw, "/default/version").values("X-Remote-User") == ["ops"]
    # /clusters/: each workspace to its shard, rewritten to the logical cluster; the entry's
    # backend is not used (kcp ignores it too)
    r = request(menv.fg.port, "GET", f"/clusters/{TEAM[0]}/api", bearer(menv.carol))
    assert r.status == 200, r
    assert extras(last(menv.ws, f"/clusters/{TEAM[1]}/api")) == sorted(scoped(TEAM[1]))
    r = request(menv.fg.port, "GET", "/clusters/root:org:nope/api", bearer(menv.ops))
    assert r.status == 403, r


def test_mapping_edits_apply_on_sighup_and_a_bad_edit_keeps_the_previous_routes(menv):
    path = "/services/extra/x"
    assert request(menv.fg.port, "GET", path, bearer(menv.ops)).status == 200
    assert last(menv.vw, "/default" + path)  # the default mapping had it
    menv.fg.write("maps/mapping.yaml", mapping(menv.vw.url, f"- path: /services/extra\n"
                                                       f"  backend: {menv.ws.url}/x\n"))
    menv.fg.hup()
    assert request(menv.fg.port, "GET", path, bearer(menv.ops)).status == 200
    assert last(menv.ws, "/x" + path)
    menv.fg.write("maps/mapping.yaml", mapping(menv.vw.url, "- path: /services/bad\n"
                                                       "  user_header: X-Other-User\n"))
    line = menv.fg.hup(expect_ok=False)
    assert "still serving" in line
    assert menv.fg.wait_log(r"mapping\.yaml:\d+:\d+: user_header \"X-Other-User\" is not supported")
    n = len(menv.ws.snapshot())
    assert request(menv.fg.port, "GET", path, bearer(menv.ops)).status == 200
    assert menv.ws.wait_count(n + 1)


# ---------------------------------------------------------------------------
# the mapping file's errors, each at its file:line:column


def check(tmp_path, mapping_text, extra_config=""):
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "mapping.yaml").write_text(textwrap.dedent(mapping_text))
    (tmp_path / "fg.yaml").write_text(
        "listeners: [{address: '127.0.0.1:0'}]\nmappingFile: m/mapping.yaml\n" + extra_config)
    p = subprocess.run([FRONTGATE_BIN, "check", "-c", str(tmp_path / "fg.yaml")],
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr


MAPPING_ERRORS = [
    ("- path: /x\n  backend: http://b\n  user_header: X-Foo\n", "m/mapping.yaml:3:16: user_header \"X-Foo\" is not supported"),
    ("- path: /x\n  backend: http://b\n  group_header: X-Foo\n", "m/mapping.yaml:3:17: group_header"),
    ("- path: /x\n  backend: http://b\n  extra_header_prefix: X-E-\n", "m/mapping.yaml:3:24: extra_header_prefix"),
    ("- path: /x\n  backend: http://b\n  bakend: x\n", "m/mapping.yaml:3:3: unknown key \"bakend\""),
    ("- path: /x\n", "m/mapping.yaml:1:3: mapping entry \"/x\" needs a backend"),
    ("- path: x\n  backend: http://b\n", "m/mapping.yaml:1:9: mapping path \"x\" must be a path"),
    ("- path: /x\n  backend: ftp://b\n", "m/mapping.yaml:2:12: backend \"ftp://b\""),
    ("- path: /x\n  backend: http://b\n  backend_server_ca: ca.pem\n",
     "backend_server_ca and proxy_client_cert need an https:// backend"),
    ("- path: /x\n  backend: https://b\n  proxy_client_cert: c.pem\n",
     "proxy_client_cert and proxy_client_key go together"),
    ("- path: '/s/{cluster}x'\n  backend: http://b\n", "m/mapping.yaml:1:9: route prefix \"/s/{cluster}x\": a placeholder"),
    ("- path: /x\n  backend: http://b\n- path: /x/\n  backend: http://c\n", "m/mapping.yaml:3:9: mapping path \"/x\" is there twice"),
    ("- path: /clusters/\n- path: /clusters\n", "m/mapping.yaml:2:9: a second /clusters/ mapping"),
    ("[]\n", "m/mapping.yaml:1:1: the mapping file has no entries"),
    ("path: /x\n", "the mapping file (a list of entries)"),
]


@pytest.mark.parametrize("text,want", MAPPING_ERRORS, ids=[w.split(": ", 1)[-1][:40] for _, w in MAPPING_ERRORS])
def test_mapping_file_errors_name_their_place(tmp_path, text, want):
    rc, err = check(tmp_path, text)
    assert rc != 0 and want in err, err


def test_a_missing_mapping_file_and_routes_beside_it_are_config_errors(tmp_path):
    p = tmp_path / "fg.yaml"
    p.write_text("listeners: [{address: '127.0.0.1:0'}]\nmappingFile: nope.yaml\n")
    r = subprocess.run([FRONTGATE_BIN, "check", "-c", str(p)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "fg.yaml:2:14:" in r.stderr and "no such file" in r.stderr, r.stderr
    rc, err = check(tmp_path, "- path: /\n  backend: http://b\n",
                    "routes: [{prefix: /, shard: x}]\n")
    assert rc != 0 and "fg.yaml:2:1: mappingFile and routes are two ways" in err, err


def test_mapping_tls_files_resolve_against_the_mapping_files_directory(tmp_path):
    rc, err = check(tmp_path, "- path: /x\n  backend: https://b\n  backend_server_ca: ca.pem\n")
    # the CA is looked for beside the mapping file, and its absence named there
    assert rc != 0 and "m/ca.pem" in err and "m/mapping.yaml:3:22" in err, err
