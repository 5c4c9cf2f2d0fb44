"""
frontgate in front of a real kube-apiserver (FG_KUBE_APISERVER) backed by a real etcd (FG_ETCD).

One cluster for the module (kube_env.KubeCluster): kube trusts X-Remote-* only from the
front-proxy CA's `frontgate-proxy` client certificate (--requestheader-allowed-names), which
frontgate presents as its shard identity (`identity: requestHeader`). Every assertion is on what
kube itself read or decided: `kubectl auth whoami` (SelfSubjectReview) shows the user kube
authenticated, RBAC answers come from kube's authorizer, TokenReviews from kube's authenticator.

- whoami through frontgate: a static key (its groups + system:authenticated), a service-account
  token admitted by frontgate's jwt authenticator (kube's own issuer: discovery + JWKS) with an
  extra whose key needs percent-encoding in the X-Remote-Extra- name, and one admitted by
  tokenReview (user, uid, groups, extra exactly as kube's TokenReview reported them).
- RBAC: a Role in namespace a bound to a key's user: 200 there, 403 in b, kube naming that user.
  A key file's system:masters never reaches kube (dropGroups); Impersonate-* headers pass and
  kube authorizes them against frontgate's identity.
- A watch streams events through frontgate and outlives frontgate's header/idle timeouts.
- HTTP/2 on both sides (`protocol: h2`): kubectl negotiates h2 with frontgate, frontgate speaks
  h2 to kube (ALPN), many requests and watches share one connection per worker, and kube still
  reads frontgate's identity headers.
- tokenReview: audiences honoured; a deleted service account's token is refused once the cache
  entry expires; kube's 403 to frontgate's own review request is a 401, not cached.
- Forged X-Remote-* headers (several spellings) never reach kube; kube honours frontgate's headers
  only because of its client certificate (a CN not allowed, or a certificate from the client CA,
  and kube ignores them).
"""
import base64
import http.client
import json
import os
import ssl
import subprocess
import time

import pytest

from conftest import KUBECTL, key_line, new_key, peer_path
from kube_env import FrontKube, KubeCluster, LineReader, frontgate_config, poll

KEY_USER = "ci-bot"
KEY_GROUPS = ("interop-devs", "deployers")
RBAC_USER = "rbac-bot"
MASTERS_USER = "masters-bot"
JWT_AUD = "frontgate-jwt"
TR_AUD = "frontgate-tr"
EXTRA_KEY = "interop.example.com/token:id;(jti)=%x"


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    c = KubeCluster(tmp_path_factory.mktemp("kube"), peer_path("FG_KUBE_APISERVER"),
                    peer_path("FG_ETCD"))
    try:
        c.start()
        for ns in ("a", "b", "sa"):
            c.kubectl("create", "namespace", ns)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def keys():
    return {KEY_USER: new_key(), RBAC_USER: new_key(), MASTERS_USER: new_key()}


def keys_file(keys):
    return "\n".join([key_line(KEY_USER, keys[KEY_USER], KEY_GROUPS),
                      key_line(RBAC_USER, keys[RBAC_USER]),
                      key_line(MASTERS_USER, keys[MASTERS_USER], ("system:masters", "masters-team"))]) + "\n"


def jwt_authenticator(kube):
    return f"""\
  - name: sa-jwt
    jwt:
      issuer:
        url: {kube.url}
        certificateAuthorityFile: {kube.serving_ca.path}
        audiences: [{JWT_AUD}]
      claimMappings:
        username: {{claim: sub, prefix: "jwt:"}}
        extra:
          - key: "{EXTRA_KEY}"
            valueExpression: claims.jti
"""


def tr_authenticator(kube, cache="1s", caller=None):
    caller = caller or kube.reviewer
    return f"""\
  - name: sa-review
    tokenReview:
      url: {kube.url}
      caFile: {kube.serving_ca.path}
      clientCertFile: {caller[0]}
      clientKeyFile: {caller[1]}
      audiences: [{TR_AUD}]
      cacheTTL: {cache}
      negativeCacheTTL: {cache}
"""


KEYS_AUTH = "  - name: keys\n    staticKeys: {file: keys.txt}\n"


@pytest.fixture
def front(kube, keys, frontgate_factory, tmp_path):
    """start(authenticators text, global names, **frontgate_config kwargs) -> FrontKube."""

    def start(auth=KEYS_AUTH, names=("keys",), **kw):
        fg = frontgate_factory(frontgate_config(kube, auth, names, **kw),
                               files={"keys.txt": keys_file(keys)})
        fk = FrontKube(fg, kube, tmp_path)
        fk.wait_ready()
        return fk

    return start


def sa_token(kube, name, audience, ns="sa"):
    kube.kubectl("create", "serviceaccount", name, "-n", ns)
    return kube.kubectl("create", "token", name, "-n", ns, "--audience", audience,
                        "--duration", "1h").stdout.strip()


def claims(token):
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def review(kube, token, audiences):
    """A TokenReview by the test's admin, directly at kube: kube's own answer."""
    r = kube.api("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                 body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                       "spec": {"token": token, "audiences": audiences}})
    assert r.status == 201, r
    return r.json()["status"]


def until(fn, ok, timeout, what):
    """fn() again until ok(its result) (kube's RBAC caches take a moment); returns that result."""
    box = []

    def attempt():
        box[:] = [fn()]
        return ok(box[0])

    poll(attempt, timeout, what)
    return box[0]


def norm(info):
    return {"username": info.get("username"), "uid": info.get("uid", ""),
            "groups": sorted(info.get("groups") or []),
            "extra": {k: sorted(v) for k, v in (info.get("extra") or {}).items()}}


# ---------------------------------------------------------------------------
# identity as kube reads it


def test_whoami_static_key_is_the_key_id_with_its_groups(front, keys):
    fk = front()
    info = fk.whoami(keys[KEY_USER])
    assert norm(info) == {"username": KEY_USER, "uid": "",
                          "groups": sorted([*KEY_GROUPS, "system:authenticated"]), "extra": {}}


def test_whoami_without_credentials_is_frontgates_401(front):
    fk = front()
    r = fk.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                   body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert r.status == 401, r
    bad = fk.request("GET", "/api/v1/namespaces", token=new_key())
    assert bad.status == 401, bad


def test_jwt_against_kubes_own_service_account_issuer(kube, front):
    """Discovery + JWKS from the real apiserver; sub mapped with a prefix; an extra from jti whose
    key needs percent-encoding in the header name arrives at kube as the same key."""
    fk = front(KEYS_AUTH + jwt_authenticator(kube), ("keys", "sa-jwt"))
    token = sa_token(kube, "jwt-sa", JWT_AUD)
    c = claims(token)
    assert c["iss"] == kube.url and c["aud"] == [JWT_AUD]
    info = norm(fk.whoami(token))
    assert info["username"] == "jwt:system:serviceaccount:sa:jwt-sa"
    assert info["groups"] == ["system:authenticated"]
    assert info["extra"][EXTRA_KEY] == [c["jti"]]
    assert info["extra"]["authentication.kubernetes.io/credential-id"] == ["JTI=" + c["jti"]]
    assert set(info["extra"]) == {EXTRA_KEY, "authentication.kubernetes.io/credential-id"}
    # a token for another audience is not admitted by frontgate
    other = kube.kubectl("create", "token", "jwt-sa", "-n", "sa", "--audience", "elsewhere").stdout.strip()
    st, body = fk.self_subject_review(other)
    assert st == 401, body


def test_whoami_token_review_identity_is_what_kube_reviewed(kube, front):
    fk = front(KEYS_AUTH + tr_authenticator(kube, "30s"), ("keys", "sa-review"))
    token = sa_token(kube, "tr-whoami", TR_AUD)
    want = review(kube, token, [TR_AUD])
    assert want["authenticated"] is True and want["audiences"] == [TR_AUD], want
    info = norm(fk.whoami(token))
    expect = norm(want["user"])
    expect["groups"] = sorted(set(expect["groups"]) | {"system:authenticated"})
    assert info == expect
    assert info["username"] == "system:serviceaccount:sa:tr-whoami"
    assert info["uid"] and "system:serviceaccounts:sa" in info["groups"]


# ---------------------------------------------------------------------------
# kube's authorizer deciding on frontgate's identity


def test_rbac_role_in_a_allows_the_key_user_there_only(kube, front, keys):
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "pod-reader", "namespace": "a"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "pod-reader", "namespace": "a"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": RBAC_USER}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": "pod-reader"}})
    fk = front()
    tok = keys[RBAC_USER]
    ok = until(lambda: fk.request("GET", "/api/v1/namespaces/a/pods", tok),
               lambda r: r.status == 200, 20, "list pods in a")
    assert ok.json()["kind"] == "PodList"
    denied = fk.request("GET", "/api/v1/namespaces/b/pods", tok)
    assert denied.status == 403, denied
    st = denied.json()
    assert st["kind"] == "Status" and st["reason"] == "Forbidden"
    assert f'User "{RBAC_USER}"' in st["message"] and 'namespace "b"' in st["message"], st
    p = fk.kubectl(tok, "get", "pods", "-n", "a")
    assert p.returncode == 0
    p = fk.kubectl(tok, "get", "pods", "-n", "b", check=False)
    assert p.returncode != 0 and "forbidden" in p.stderr.lower() and RBAC_USER in p.stderr
    # the other key's user has no binding: kube refuses it in a too
    other = fk.request("GET", "/api/v1/namespaces/a/pods", keys[KEY_USER])
    assert other.status == 403 and KEY_USER in other.json()["message"], other


def test_system_masters_from_a_key_file_never_reaches_kube(front, keys):
    """dropGroups (default: kcp's list, system:masters first): kube sees the key's other group
    only, and its authorizer treats the user as an ordinary one."""
    fk = front()
    tok = keys[MASTERS_USER]
    info = norm(fk.whoami(tok))
    assert info["username"] == MASTERS_USER
    assert info["groups"] == ["masters-team", "system:authenticated"]
    r = fk.request("GET", "/api/v1/secrets", tok)
    assert r.status == 403 and f'User "{MASTERS_USER}"' in r.json()["message"], r


def test_impersonation_headers_are_kubes_to_authorize(kube, front, keys):
    """Impersonate-* pass through frontgate; kube decides on them with frontgate's identity as
    the impersonator: refused without the verb, honoured once RBAC grants it."""
    fk = front()
    tok = keys[KEY_USER]
    imp = {"Impersonate-User": "someone-else", "Impersonate-Group": "system:masters"}
    st, body = fk.self_subject_review(tok, headers=imp)
    assert st == 403, body
    msg = json.loads(body)["message"]
    assert f'User "{KEY_USER}" cannot impersonate' in msg, msg
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "impersonate-someone"},
                "rules": [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"],
                           "resourceNames": ["someone-else"]}]})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "impersonate-someone"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": KEY_USER}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "impersonate-someone"}})
    only_user = {"Impersonate-User": "someone-else"}
    st, info = until(lambda: fk.self_subject_review(tok, headers=only_user),
                     lambda r: r[0] == 201, 20, "impersonation allowed by RBAC")
    assert info["username"] == "someone-else"
    assert sorted(info["groups"]) == ["system:authenticated"]
    # the group kube was not told it may impersonate stays refused
    st, body = fk.self_subject_review(tok, headers=imp)
    assert st == 403, body


# ---------------------------------------------------------------------------
# watches


def test_watch_streams_events_and_outlives_frontgates_timeouts(kube, front, keys):
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "cm-watcher"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                           "verbs": ["get", "list", "watch"]}]})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "cm-watcher", "namespace": "a"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                              "name": KEY_GROUPS[0]}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "cm-watcher"}})
    fk = front(limits="  headerTimeout: 2s\n  idleTimeout: 2s\n")
    tok = keys[KEY_USER]
    poll(lambda: fk.request("GET", "/api/v1/namespaces/a/configmaps", tok).status == 200, 20,
         "list configmaps in a")
    rv = fk.request("GET", "/api/v1/namespaces/a/configmaps", tok).json()["metadata"]["resourceVersion"]
    ctx = ssl.create_default_context(cafile=kube.serving_ca.path)
    conn = http.client.HTTPSConnection("127.0.0.1", fk.port, context=ctx, timeout=30)
    try:
        conn.request("GET", f"/api/v1/namespaces/a/configmaps?watch=1&resourceVersion={rv}"
                     "&timeoutSeconds=60", headers={"Authorization": f"Bearer {tok}"})
        r = conn.getresponse()
        assert r.status == 200, r.read()
        start = time.monotonic()
        names = []
        for i, pause in enumerate((0, 3, 3)):  # silent stretches longer than both timeouts
            time.sleep(pause)
            name = f"watched-{i}"
            kube.kubectl("create", "configmap", name, "-n", "a", f"--from-literal=i={i}")
            ev = json.loads(r.readline())
            assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == name, ev
            names.append(name)
        assert time.monotonic() - start > 6
        assert names == ["watched-0", "watched-1", "watched-2"]
    finally:
        conn.close()
    # kubectl's own watch through frontgate sees a change made after it started
    cfg = fk.kubeconfig(tok)
    w = subprocess.Popen([KUBECTL, "--kubeconfig", cfg, "get", "configmaps", "-n", "a",
                          "--watch-only", "-o", "name"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, env={**os.environ, "HOME": fk.tmp})
    try:
        lines = LineReader(w.stdout)

        # the watch starts when kubectl has listed: create until one shows up
        def seen():
            kube.kubectl("create", "configmap", f"kubectl-{time.monotonic_ns()}", "-n", "a")
            try:
                lines.wait_for(lambda ln: "configmap/kubectl-" in ln, 3, "kubectl watch event")
                return True
            except AssertionError:
                return False
        poll(seen, 30, "kubectl get --watch-only shows a created configmap", interval=0)
    finally:
        w.terminate()
        w.wait(10)


def shard_connections(pid, port):
    """frontgate's established TCP connections to 127.0.0.1:port (its shard)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    n = 0
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                cols = line.split()
                rport = int(cols[2].split(":")[1], 16)
                if cols[3] == "01" and rport == port and cols[9] in inodes:  # ESTABLISHED
                    n += 1
    return n


def test_h2_both_ways_kubectl_to_frontgate_and_frontgate_to_kube(kube, front, keys):
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "ns-watcher"},
                "rules": [{"apiGroups": [""], "resources": ["namespaces"],
                           "verbs": ["get", "list", "watch"]}]})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "ns-watcher"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                              "name": KEY_GROUPS[0]}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "ns-watcher"}})
    fk = front(shard_extra="    protocol: h2\n")
    tok = keys[KEY_USER]
    poll(lambda: fk.request("GET", "/api/v1/namespaces", tok).status == 200, 20, "list namespaces")
    # kubectl offers h2 and frontgate's TLS listener takes it; kube reads frontgate's headers
    assert fk.whoami(tok)["username"] == KEY_USER
    assert fk.fg.wait_log(r"access method=POST path=/apis/authentication.k8s.io/\S+ status=201 .*proto=h2 ")
    # six watches from six client connections, and kubectl's own: over HTTP/1.1 each would hold
    # a shard connection of its own; over h2 they share one per worker
    kport = int(kube.url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=kube.serving_ca.path)
    rv = fk.request("GET", "/api/v1/namespaces", tok).json()["metadata"]["resourceVersion"]
    watches = []
    for _ in range(6):
        conn = http.client.HTTPSConnection("127.0.0.1", fk.port, context=ctx, timeout=30)
        conn.request("GET", f"/api/v1/namespaces?watch=1&resourceVersion={rv}&timeoutSeconds=60",
                     headers={"Authorization": f"Bearer {tok}"})
        watches.append(conn)
    responses = [conn.getresponse() for conn in watches]
    assert [r.status for r in responses] == [200] * 6
    kube.kubectl("create", "namespace", "h2-raw")
    for r in responses:  # every watch sees it
        while True:
            ev = json.loads(r.readline())
            if ev["object"]["metadata"]["name"] == "h2-raw":
                assert ev["type"] == "ADDED", ev
                break
    cfg = fk.kubeconfig(tok)
    w = subprocess.Popen([KUBECTL, "--kubeconfig", cfg, "get", "namespaces", "--watch", "-o", "name"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={**os.environ, "HOME": fk.tmp})
    try:
        lines = LineReader(w.stdout)
        lines.wait_for(lambda ln: ln.strip() == "namespace/a", 30, "kubectl watch lists namespace a")
        kube.kubectl("create", "namespace", "h2-watched")
        lines.wait_for(lambda ln: "namespace/h2-watched" in ln, 30, "the watch sees the new namespace")
        n = shard_connections(fk.fg.proc.pid, kport)
        assert 1 <= n <= 2, n  # workers: 2, and every request above went through them
        assert fk.fg.wait_log(r"access method=GET path=/api/v1/namespaces status=200 .*proto=h2 ")
    finally:
        w.terminate()
        w.wait(10)
        for conn in watches:
            conn.close()
        for ns in ("h2-watched", "h2-raw"):
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ---------------------------------------------------------------------------
# tokenReview against the real apiserver


def test_token_review_honours_audiences_and_forgets_deleted_accounts(kube, front):
    fk = front(tr_authenticator(kube, "1s"), ("sa-review",))
    token = sa_token(kube, "reviewed", TR_AUD)
    st, info = fk.self_subject_review(token)
    assert st == 201 and info["username"] == "system:serviceaccount:sa:reviewed", info
    wrong = kube.kubectl("create", "token", "reviewed", "-n", "sa", "--audience", "another").stdout.strip()
    assert not review(kube, wrong, [TR_AUD]).get("authenticated")
    st, body = fk.self_subject_review(wrong)
    assert st == 401, body
    kube.kubectl("delete", "serviceaccount", "reviewed", "-n", "sa")
    poll(lambda: not review(kube, token, [TR_AUD]).get("authenticated"), 30,
         "kube refuses the deleted account's token")
    poll(lambda: fk.self_subject_review(token)[0] == 401, 20,
         "frontgate refuses the deleted account's token after cacheTTL")


def test_token_review_caller_kube_forbids_is_401_and_not_cached(kube, front):
    """frontgate's TokenReview credential without create tokenreviews: kube answers 403 to the
    review itself; the client gets frontgate's 401, and once RBAC grants the verb the same token
    is admitted (the refusal of frontgate's request was not cached as the token's)."""
    caller = kube.client_ca.leaf("reviewer-late", "frontgate-reviewer-late", client=True)
    fk = front(tr_authenticator(kube, "30s", caller=caller), ("sa-review",))
    token = sa_token(kube, "reviewed-late", TR_AUD)
    st, body = fk.self_subject_review(token)
    assert st == 401, body
    fk.fg.wait_log(r"tokenReview sa-review: the API server answered HTTP 403", timeout=5)
    kube.kubectl("create", "clusterrolebinding", "interop-reviewer-late",
                 "--clusterrole=system:auth-delegator", "--user=frontgate-reviewer-late")
    st, info = until(lambda: fk.self_subject_review(token), lambda r: r[0] == 201, 20,
                     "admitted once kube lets frontgate review")
    assert info["username"] == "system:serviceaccount:sa:reviewed-late"


# ---------------------------------------------------------------------------
# the trust between frontgate and kube


FORGED = [
    ("X-Remote-User", "admin"), ("x-remote-user", "admin"), ("X-REMOTE-USER", "admin"),
    ("X_Remote_User", "admin"), ("X-Remote-Group", "system:masters"),
    ("x-remote-group", "system:masters"), ("X-Remote_Group", "system:masters"),
    ("X-Remote-Uid", "forged-uid"), ("X-Remote-Extra-Scopes", "cluster:*"),
    ("x-remote-extra-interop.example.com%2fforged", "yes"), ("X_Remote_Extra_Forged", "yes"),
]


def test_forged_identity_headers_never_reach_kube(front, keys):
    fk = front()
    st, info = fk.self_subject_review(keys[KEY_USER], headers=FORGED)
    assert st == 201, info
    assert norm(info) == {"username": KEY_USER, "uid": "",
                          "groups": sorted([*KEY_GROUPS, "system:authenticated"]), "extra": {}}
    # and without a credential the forged headers do not make an identity either
    st, _ = fk.self_subject_review(None, headers=FORGED)
    assert st == 401


@pytest.mark.parametrize("cert", ["intruder", "client-as-proxy", None])
def test_kube_ignores_frontgates_headers_without_the_allowed_proxy_cert(front, keys, cert):
    """The front-proxy CA's certificate with a CN kube does not allow, a client-CA certificate
    with the allowed CN, or none: kube does not read X-Remote-* from such a connection."""
    fk = front(client_cert=cert)
    st, info = fk.self_subject_review(keys[KEY_USER])
    if cert == "client-as-proxy":
        # kube authenticates the certificate itself as a user, not as a front proxy
        assert st == 201 and info["username"] == "frontgate-proxy", info
        assert KEY_USER not in json.dumps(info)
    else:
        assert st in (401, 403), info
        assert KEY_USER not in info.decode(), info
    # the same frontgate with the allowed certificate works: the certificate made the difference
    good = front()
    st, info = good.self_subject_review(keys[KEY_USER])
    assert st == 201 and info["username"] == KEY_USER


# ---------------------------------------------------------------------------
# The Helm chart (charts/frontgate): every object it renders, for the default values, both worked
# examples and every optional object switched on, is accepted by this apiserver's server-side
# dry run with strict field validation (an unknown or misspelt field is an error, not a
# warning). The ServiceMonitor is the one kind skipped: its CRD (Prometheus operator) is not
# installed here.

import sys  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "chart"))
import chartlib  # noqa: E402
import yaml  # noqa: E402

CHART_CASES = {
    "default": ([], []),
    "kcp": (chartlib.VALUE_SETS["kcp"], []),
    "iceberg": (chartlib.VALUE_SETS["iceberg"], []),
    "all-on": ([], chartlib.ALL_ON),
    "kcp-all-on": (chartlib.VALUE_SETS["kcp"], chartlib.ALL_ON),
}
NOT_INSTALLED_KINDS = {"ServiceMonitor"}  # monitoring.coreos.com/v1: no CRD in this cluster


def chart_dry_run(kube, docs, path):
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f)
    return kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-o", "name", "-f", path,
                        check=False)


@pytest.fixture(scope="module")
def chart_namespace(kube):
    kube.kubectl("create", "namespace", chartlib.NAMESPACE)
    return chartlib.NAMESPACE


@pytest.mark.parametrize("case", list(CHART_CASES))
def test_chart_manifests_pass_the_apiservers_server_side_dry_run(kube, chart_namespace, case, tmp_path):
    values, sets = CHART_CASES[case]
    docs = chartlib.render(values, sets)
    skipped = [d for d in docs if d["kind"] in NOT_INSTALLED_KINDS]
    docs = [d for d in docs if d["kind"] not in NOT_INSTALLED_KINDS]
    if any("serviceMonitor.enabled=true" in s for s in sets) or case == "kcp":
        assert [d["kind"] for d in skipped] == ["ServiceMonitor"], "the skip is of that one object"
    else:
        assert not skipped
    p = chart_dry_run(kube, docs, str(tmp_path / f"{case}.yaml"))
    assert p.returncode == 0, f"kubectl apply --dry-run=server ({case}):\n{p.stderr}"
    # one line per object, kind[.group]/name: every object was sent and accepted
    got = sorted((n.split("/")[0].split(".")[0], n.split("/")[1]) for n in p.stdout.split())
    assert got == sorted((d["kind"].lower(), d["metadata"]["name"]) for d in docs), p.stdout
    # a dry run leaves nothing behind
    left = kube.kubectl("get", "deployments,configmaps,services", "-n", chart_namespace, "-o", "name")
    assert "frontgate" not in left.stdout.replace("kube-root-ca.crt", ""), left.stdout


def test_chart_dry_run_refuses_a_misspelt_field(kube, chart_namespace, tmp_path):
    """The control: the same dry run refuses a Deployment whose container securityContext has a
    misspelt field, so a chart object that passes was validated field by field."""
    docs = chartlib.render()
    dep = chartlib.one(docs, "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    p = chart_dry_run(kube, [dep], str(tmp_path / "typo.yaml"))
    assert p.returncode != 0
    assert "readOnlyRootFilesytem" in p.stderr, p.stderr
