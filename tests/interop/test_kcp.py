"""
frontgate as kcp's front proxy, in front of a real kcp (`kcp start`, FG_KCP).

One kcp for the module (kcp_env.kcp), configured as a shard behind a front proxy: it trusts
identity headers only from the request-header CA's `kcp-front-proxy` client certificate, which
frontgate presents (README "Per-workspace authentication", worked example). The module creates two
workspaces under root as kcp's admin, `team` (type root:organization) and `other` (type
root:universal), learns their logical cluster names and writes frontgate's index from them.

- kubectl through frontgate reaches `root:team` by path and by logical cluster name, with RBAC
  that kcp grants to the API key's user and group; what it writes is in that logical cluster.
- `root:other` (indexed, no RBAC for the key) is refused by kcp, naming the key's user; a path
  not in the index is refused by frontgate without reaching kcp.
- `kubectl auth whoami` through frontgate shows the identity frontgate stamped, whatever
  X-Remote-* headers the client sent; without a credential frontgate answers 401.
- A workspace-type key (root:organization's authenticator) is scoped to its workspace: kcp sees
  authentication.kcp.io/scopes=cluster:<team> and cluster-name, its system:masters group never
  reaches kcp, frontgate does not admit it in `other`, and kcp itself refuses the identity
  frontgate stamped when it is presented in `other` (where RBAC would grant that user).
"""
import http.client
import json
import ssl
import subprocess

import pytest

from conftest import KUBECTL, bearer, key_line, new_key, request
from kcp_env import TestCA, kcp  # noqa: F401  (a fixture)

SCOPES = "authentication.kcp.io/scopes"
CLUSTER_NAME = "authentication.kcp.io/cluster-name"

OPS_USER = "ops-bot"
OPS_GROUP = "interop-devs"
TEAM_PREFIX = "team:"
TEAM_USER = "alice"
TEAM_GROUP = "team-devs"


def configmap_role():
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "interop-configmaps"},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]},
            {"nonResourceURLs": ["/"], "verbs": ["access"]},
        ],
    }


def binding(name, kind, subject):
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "interop-configmaps"},
    }


class Setup:
    pass


@pytest.fixture(scope="module")
def ws(kcp):
    """The two workspaces, their RBAC, and the keys."""
    s = Setup()
    s.team, s.team_type = kcp.create_workspace("team", "organization")
    s.other, s.other_type = kcp.create_workspace("other", "universal")
    assert s.team_type == "root:organization" and s.other_type == "root:universal"
    assert s.team != s.other
    for cluster in (s.team, s.other):
        kcp.apply(configmap_role(), cluster=cluster)
    # team: the global key's group and the team key's group; other: the team key's *user*, so
    # only its scope can keep it out there
    kcp.apply(binding("ops-devs", "Group", OPS_GROUP), cluster=s.team)
    kcp.apply(binding("team-devs", "Group", TEAM_GROUP), cluster=s.team)
    kcp.apply(binding("team-user", "User", TEAM_PREFIX + TEAM_USER), cluster=s.other)
    kcp.wait_allowed(s.team, OPS_USER, "list", "configmaps", groups=[OPS_GROUP])
    kcp.wait_allowed(s.team, "nobody", "list", "configmaps", groups=[TEAM_GROUP])
    kcp.wait_allowed(s.other, TEAM_PREFIX + TEAM_USER, "list", "configmaps")
    s.ops_key = new_key()
    s.team_key = new_key()
    return s


def fg_config(kcp):
    return f"""\
workers: 2
listeners:
  - address: 127.0.0.1:0
  - address: 127.0.0.1:0
    tls: {{certFile: tls.crt, keyFile: tls.key}}
shards:
  - name: root
    url: {kcp.url}
    caFile: {kcp.ca_file}
    clientCertFile: {kcp.proxy_crt}
    clientKeyFile: {kcp.proxy_key}
    identity: requestHeader
routes:
  - prefix: /clusters/
    workspace: path
  - prefix: /
    shard: root
indexFile: workspaces.tsv
authenticators:
  - name: ops-keys
    staticKeys: {{file: ops-keys.txt}}
  - name: team-keys
    staticKeys: {{file: team-keys.txt, usernamePrefix: "{TEAM_PREFIX}"}}
authentication:
  global: [ops-keys]
workspaceTypes:
  - name: root:organization
    authenticators: [team-keys]
  - name: root:universal
    authenticators: []
limits:
  shutdownGracePeriod: 3s
"""


@pytest.fixture
def fg(kcp, ws, frontgate_factory):
    index = "cluster\tpath\tshard\ttype\n"
    index += f"{ws.team}\troot:team\troot\t{ws.team_type}\n"
    index += f"{ws.other}\troot:other\troot\t{ws.other_type}\n"
    # kubectl sends a bearer token over TLS only (over http:// it sends none), so kubectl talks
    # to frontgate's TLS listener; the raw requests use the plaintext one
    ca = TestCA("frontgate interop CA")
    crt, key = ca.issue("127.0.0.1")
    fg = frontgate_factory(fg_config(kcp), files={
        "tls.crt": crt, "tls.key": key, "ca.crt": ca.pem,
        "workspaces.tsv": index,
        "ops-keys.txt": key_line(OPS_USER, ws.ops_key, [OPS_GROUP]) + "\n",
        # system:masters: a workspace-type identity must lose it before kcp sees it
        "team-keys.txt": key_line(TEAM_USER, ws.team_key, [TEAM_GROUP, "system:masters"]) + "\n",
    })
    fg.tls_url = "https://127.0.0.1:%d" % next(p for sch, _, p in fg.listeners if sch == "https")
    return fg


def fg_kubectl(fg, tmp_path, path, key, *args, check=True):
    """kubectl through frontgate, as the holder of `key`, in workspace `path`."""
    kubeconfig = tmp_path / "empty.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    argv = [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "kcache"),
            "--server", f"{fg.tls_url}/clusters/{path}", "--certificate-authority", fg.path("ca.crt"),
            "--token", key, *args]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, (f"kubectl {' '.join(args)} in {path}: {p.stderr}\n"
                                   f"frontgate's log ends:\n{fg.log()[-1500:]}")
    return p


def whoami(fg, tmp_path, path, key):
    p = fg_kubectl(fg, tmp_path, path, key, "auth", "whoami", "-o", "json")
    return json.loads(p.stdout)["status"]["userInfo"]


def status_body(r):
    """The Kubernetes Status of an error answer."""
    body = r.json()
    assert body.get("kind") == "Status", r
    return body


def direct(kcp, method, path, headers, cert="front-proxy"):
    """A request straight to kcp (not through frontgate) with one of the request-header CA's
    client certificates; headers: [(name, value)], a name may repeat."""
    ctx = ssl.create_default_context(cafile=kcp.ca_file)
    crt, key = ((kcp.proxy_crt, kcp.proxy_key) if cert == "front-proxy"
                else (kcp.other_crt, kcp.other_key))
    ctx.load_cert_chain(crt, key)
    conn = http.client.HTTPSConnection("127.0.0.1", kcp.port, context=ctx, timeout=30)
    try:
        conn.putrequest(method, path)
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------


def test_kubectl_through_frontgate_works_in_the_workspace(kcp, ws, fg, tmp_path):
    fg_kubectl(fg, tmp_path, "root:team", ws.ops_key,
               "create", "configmap", "via-frontgate", "--from-literal=who=ops")
    # written into team's logical cluster, as kcp's admin sees directly
    got = json.loads(kcp.kubectl("get", "configmap", "via-frontgate", "-o", "json",
                                 cluster=ws.team).stdout)
    assert got["data"] == {"who": "ops"}
    assert kcp.kubectl("get", "configmap", "via-frontgate", cluster=ws.other,
                       check=False).returncode != 0
    # read back by path and by logical cluster name
    p = fg_kubectl(fg, tmp_path, "root:team", ws.ops_key, "get", "configmaps", "-o", "name")
    assert "configmap/via-frontgate" in p.stdout.split()
    p = fg_kubectl(fg, tmp_path, ws.team, ws.ops_key, "get", "--raw",
                   f"/clusters/{ws.team}/api/v1/namespaces/default/configmaps/via-frontgate")
    assert json.loads(p.stdout)["data"] == {"who": "ops"}
    r = request(fg.port, "GET", "/clusters/root:team/api/v1/namespaces/default/configmaps",
                bearer(ws.ops_key))
    assert r.status == 200, r
    assert "via-frontgate" in [i["metadata"]["name"] for i in r.json()["items"]]
    line = fg.wait_log(r"access method=GET path=/clusters/root:team/api/v1/namespaces/default/"
                       r"configmaps status=200 ")
    assert f"cluster={ws.team}" in line.string and f"user={OPS_USER}" in line.string, line.string


def test_another_workspace_is_refused(kcp, ws, fg, tmp_path):
    # indexed, but the key's user has no RBAC there: kcp refuses, naming frontgate's user
    r = request(fg.port, "GET", "/clusters/root:other/api/v1/namespaces/default/configmaps",
                bearer(ws.ops_key))
    assert r.status == 403, r
    body = status_body(r)
    assert f'User "{OPS_USER}"' in body["message"], body
    p = fg_kubectl(fg, tmp_path, "root:other", ws.ops_key, "get", "configmaps", check=False)
    assert p.returncode != 0 and "forbidden" in p.stderr.lower(), p.stderr
    # not in frontgate's index (kcp's root workspace included): frontgate refuses, no user named
    for path in ("root:nope", "root"):
        r = request(fg.port, "GET", f"/clusters/{path}/api/v1/namespaces/default/configmaps",
                    bearer(ws.ops_key))
        assert r.status == 403, r
        body = status_body(r)
        assert "workspace access not permitted" in body["message"], body
        assert OPS_USER not in body["message"], body


def test_whoami_shows_frontgates_identity(ws, fg, tmp_path):
    info = whoami(fg, tmp_path, "root:team", ws.ops_key)
    assert info["username"] == OPS_USER, info
    assert OPS_GROUP in info["groups"] and "system:authenticated" in info["groups"], info
    assert SCOPES not in info.get("extra", {}), info
    # identity headers a client sends never reach kcp: frontgate's stamp replaces them
    forged = {"X-Remote-User": "kcp-admin", "X-Remote-Group": "system:masters",
              "X-Remote-Extra-Authentication.kcp.io%2fscopes": "cluster:root",
              "Content-Type": "application/json"}
    review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    r = request(fg.port, "POST", "/clusters/root:team/apis/authentication.k8s.io/v1/selfsubjectreviews",
                {**bearer(ws.ops_key), **forged}, body=review)
    assert r.status == 201, r
    seen = r.json()["status"]["userInfo"]
    assert seen["username"] == OPS_USER and "system:masters" not in seen["groups"], seen
    assert SCOPES not in seen.get("extra", {}), seen


def test_no_credential_is_401_at_frontgate(kcp, ws, fg):
    r = request(fg.port, "GET", "/clusters/root:team/api/v1/namespaces/default/configmaps",
                {"X-Remote-User": "kcp-admin", "X-Remote-Group": "system:masters"})
    assert r.status == 401, r
    r = request(fg.port, "GET", "/clusters/root:team/api", bearer(new_key()))
    assert r.status == 401, r


def test_kcp_trusts_identity_headers_only_from_the_front_proxy_certificate(kcp, ws):
    """The fixture's premise: the headers frontgate stamps count at kcp because of its client
    certificate; the same headers with another certificate of that CA are not believed."""
    path = f"/clusters/{ws.team}/api/v1/namespaces/default/configmaps"
    hdrs = [("X-Remote-User", OPS_USER), ("X-Remote-Group", OPS_GROUP)]
    status, _ = direct(kcp, "GET", path, hdrs)
    assert status == 200
    status, body = direct(kcp, "GET", path, hdrs, cert="other")
    assert status in (401, 403), (status, body)
    assert OPS_USER.encode() not in body, body


def test_workspace_type_identity_is_scoped_to_its_workspace(kcp, ws, fg, tmp_path):
    info = whoami(fg, tmp_path, "root:team", ws.team_key)
    assert info["username"] == TEAM_PREFIX + TEAM_USER, info
    assert sorted(info["groups"]) == sorted([TEAM_GROUP, "system:authenticated"]), info
    assert info["extra"][SCOPES] == [f"cluster:{ws.team}"], info
    assert info["extra"][CLUSTER_NAME] == [ws.team], info
    # granted in team through its group; the dropped system:masters would have granted secrets
    fg_kubectl(fg, tmp_path, "root:team", ws.team_key, "get", "configmaps")
    p = fg_kubectl(fg, tmp_path, "root:team", ws.team_key, "get", "secrets", check=False)
    assert p.returncode != 0 and "forbidden" in p.stderr.lower(), p.stderr
    # other is not of the key's workspace type: frontgate does not admit the key there
    r = request(fg.port, "GET", "/clusters/root:other/api/v1/namespaces/default/configmaps",
                bearer(ws.team_key))
    assert r.status == 401, r

    # kcp's side of the scope: the identity exactly as frontgate stamped it (whoami above),
    # presented with frontgate's certificate, is good in team and out of scope in other, where
    # RBAC grants that user; without the scope the same user is granted there.
    stamp = ([("X-Remote-User", info["username"])]
             + [("X-Remote-Group", g) for g in info["groups"]]
             + [("X-Remote-Extra-Authentication.kcp.io%2fscopes", f"cluster:{ws.team}"),
                ("X-Remote-Extra-Authentication.kcp.io%2fcluster-name", ws.team)])
    status, body = direct(kcp, "GET", f"/clusters/{ws.team}/api/v1/namespaces/default/configmaps", stamp)
    assert status == 200, body
    status, body = direct(kcp, "GET", f"/clusters/{ws.other}/api/v1/namespaces/default/configmaps", stamp)
    assert status == 403, body
    unscoped = [("X-Remote-User", info["username"])]
    status, body = direct(kcp, "GET", f"/clusters/{ws.other}/api/v1/namespaces/default/configmaps",
                          unscoped)
    assert status == 200, body
