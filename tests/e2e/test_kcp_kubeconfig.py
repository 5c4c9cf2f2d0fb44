"""
index.fromKcp.rootShard.kubeconfig: the root shard's address and frontgate's credential for it
from a kubeconfig, as client-go reads one (what kcp's front proxy takes as --root-kubeconfig):
the context names a cluster and a user; *-data fields are base64 PEM; relative file names
resolve against the kubeconfig's directory; what frontgate cannot honour is refused at the
kubeconfig's file:line:column.

The peer is test_kcp_index.py's fake kcp shard over TLS (a certificate from fake_apiserver's
test CA), asking for a client certificate and recording what each list and watch presented.
"""
import base64
import os
import ssl
import subprocess

import pytest

from conftest import FRONTGATE_BIN, Frontgate, request
from fake_apiserver import TestCA
from test_kcp_index import KcpShard, lc

WATCHER_TOKEN = "kcp-watcher-token-0123456789"


def b64(text):
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def ca():
    return TestCA("frontgate kcp test CA")


@pytest.fixture
def kcp(ca, tmp_path):
    cert, key = ca.issue("127.0.0.1", server=True)
    d = tmp_path / "kcp-pki"
    d.mkdir()
    (d / "s.crt").write_text(cert)
    (d / "s.key").write_text(key)
    (d / "ca.crt").write_text(ca.pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(d / "s.crt"), str(d / "s.key"))
    ctx.load_verify_locations(str(d / "ca.crt"))
    ctx.verify_mode = ssl.CERT_OPTIONAL  # recorded, not required: forwarded requests carry none
    k = KcpShard(tls=ctx)
    k.put_shard("root", k.url, quiet=True)
    k.put_lc(lc("root"), quiet=True)
    k.put_lc(lc("15hh88sn7dzq6n6y", "root:org", "root:organization"), quiet=True)
    yield k
    k.stop()


def kubeconfig(server, cluster, user, context="admin", current="admin", extra_contexts=""):
    def block(fields, pad):
        return "".join(f"{pad}{k}: {v}\n" for k, v in fields.items())
    return ("apiVersion: v1\nkind: Config\n"
            f"current-context: {current}\n"
            "clusters:\n- name: root\n  cluster:\n"
            f"    server: {server}\n" + block(cluster, "    ") +
            "users:\n- name: shard-admin\n  user:\n" + block(user, "    ") +
            "contexts:\n"
            f"- name: {context}\n  context: {{cluster: root, user: shard-admin}}\n" + extra_contexts)


def fg_config(rootshard):
    return f"""
workers: 1
listeners: [{{address: 127.0.0.1:0}}]
routes: [{{prefix: /clusters/, workspace: path}}]
index:
  fromKcp:
    rootShard: {rootshard}
    shards: {{caFile: kube/ca.crt}}
"""


def start(tmp_path, kube_text, rootshard="{kubeconfig: kube/config}", files=None):
    f = Frontgate(tmp_path / "fg", fg_config(rootshard),
                  files={"kube/config": kube_text, **(files or {})})
    f.start()
    f.wait_log(r"kcp: every shard has synced")
    return f


def test_client_certificate_data_and_ca_data(kcp, ca, tmp_path):
    cert, key = ca.issue("frontgate-watcher", server=False, client=True)
    kube = kubeconfig(kcp.url + "/clusters/root",  # kcp kubeconfigs name a workspace: dropped
                      {"certificate-authority-data": b64(ca.pem)},
                      {"client-certificate-data": b64(cert), "client-key-data": b64(key)})
    f = start(tmp_path, kube, files={"kube/ca.crt": ca.pem})
    try:
        r = request(f.port, "GET", "/clusters/root:org/api")
        assert r.status == 200 and r.json()["path"] == "/clusters/15hh88sn7dzq6n6y/api", r
        lists = [h for h in kcp.list_heads if h[0] == "logicalclusters"]
        assert lists and all(cn == "frontgate-watcher" and auth is None for _, auth, cn in lists)
        assert f"listing and watching Shards at {kcp.url}" in f.log()
    finally:
        f.stop()


def test_relative_files_token_file_and_the_current_context(kcp, ca, tmp_path):
    # two contexts: current-context picks the second, whose user reads kube/token
    kube = kubeconfig(kcp.url, {"certificate-authority": "ca.crt"}, {"tokenFile": "token"},
                      context="watcher", current="watcher",
                      extra_contexts="- name: other\n  context: {cluster: nowhere, user: nobody}\n")
    f = start(tmp_path, kube, files={"kube/ca.crt": ca.pem, "kube/token": WATCHER_TOKEN + "\n"})
    try:
        assert request(f.port, "GET", "/clusters/root:org/api").status == 200
        assert {auth for res, auth, _ in kcp.list_heads} == {f"Bearer {WATCHER_TOKEN}"}
        assert WATCHER_TOKEN not in f.log()
    finally:
        f.stop()


def test_an_inline_token_and_a_named_context(kcp, ca, tmp_path):
    kube = kubeconfig(kcp.url, {"certificate-authority-data": b64(ca.pem)},
                      {"token": WATCHER_TOKEN}, context="watcher", current="missing")
    f = start(tmp_path, kube, rootshard="{kubeconfig: kube/config, context: watcher}",
              files={"kube/ca.crt": ca.pem})
    try:
        assert request(f.port, "GET", "/clusters/root:org/api").status == 200
        assert {auth for res, auth, _ in kcp.list_heads} == {f"Bearer {WATCHER_TOKEN}"}
        assert WATCHER_TOKEN not in f.log()
    finally:
        f.stop()


def test_a_ca_that_does_not_sign_kcp_fails_the_list_and_says_so(kcp, tmp_path):
    other = TestCA("another CA")
    kube = kubeconfig(kcp.url, {"certificate-authority-data": b64(other.pem)},
                      {"token": WATCHER_TOKEN})
    f = Frontgate(tmp_path / "fg", fg_config("{kubeconfig: kube/config}"),
                  files={"kube/config": kube, "kube/ca.crt": other.pem})
    f.start()
    try:
        f.wait_log(r"kcp shard root: shards: list failed: .*certificate verify failed")
        assert request(f.port, "GET", "/readyz").status == 503
        assert not [h for h in kcp.list_heads if h[1]], "no token may travel to an unverified peer"
    finally:
        f.stop()


CASES = [
    # (kubeconfig cluster fields, user fields, rootShard, file:line:col, message)
    ({"insecure-skip-tls-verify": "true"}, {"token": "t"}, None, "kube/config:8:5",
     "insecure-skip-tls-verify is not supported: frontgate always verifies kcp"),
    ({"tls-server-name": "kcp"}, {"token": "t"}, None, "kube/config:8:5",
     "tls-server-name is not supported"),
    ({"proxy-url": "http://proxy:3128"}, {"token": "t"}, None, "kube/config:8:5",
     "proxy-url is not supported"),
    ({}, {"exec": "{command: kubelogin}"}, None, "kube/config:11:5",
     "exec is not supported: use a token, a tokenFile or a client certificate"),
    ({}, {"username": "admin", "password": "x"}, None, "kube/config:11:5",
     "username is not supported"),
    ({}, {"client-certificate": "c.crt"}, None, "kube/config:11:5",
     "client-certificate and client-key go together"),
    ({}, {"token": "t", "tokenFile": "tf"}, None, "kube/config:11:5",
     "token and tokenFile are mutually exclusive"),
    ({}, {"client-certificate-data": "not*base64"}, None, "kube/config:11:30",
     "client-certificate-data is not base64 of a PEM text"),
    ({}, {}, None, "kube/config:10:3", "users \"shard-admin\" has an empty user"),
    ({}, {"as-user-extra": "{}"}, None, "kube/config:11:5",
     "the user needs a credential to list and watch kcp"),
    ({"certificate-authority": "a", "certificate-authority-data": b64("x")}, {"token": "t"}, None,
     "kube/config:7:5", "certificate-authority and certificate-authority-data are mutually"),
    ({}, {"token": "t"}, "{kubeconfig: kube/config, context: nope}", "kube/config:1:1",
     "no contexts entry named \"nope\""),
    ({}, {"token": "t"}, "{kubeconfig: kube/config, tokenFile: t}", "frontgate.yaml:7:42",
     "tokenFile cannot be combined with kubeconfig"),
    ({}, {"token": "t"}, "{url: \"https://127.0.0.1:1\", tokenFile: t, context: x}",
     "frontgate.yaml:7:59", "context needs a kubeconfig"),
    ({}, {"token": "t"}, "{kubeconfig: kube/missing}", "frontgate.yaml:7:29",
     "cannot read index.fromKcp.rootShard.kubeconfig: no such file"),
]


@pytest.mark.parametrize("cluster,user,rootshard,where,message", CASES)
def test_what_frontgate_cannot_honour_is_refused_where_it_is_written(tmp_path, cluster, user,
                                                                     rootshard, where, message):
    d = tmp_path / "c"
    (d / "kube").mkdir(parents=True)
    (d / "kube" / "config").write_text(kubeconfig("https://127.0.0.1:1", cluster, user))
    (d / "t").write_text("x\n")
    cfg = d / "frontgate.yaml"
    cfg.write_text(fg_config(rootshard or "{kubeconfig: kube/config}"))
    r = subprocess.run([FRONTGATE_BIN, "check", "-c", str(cfg)], capture_output=True, text=True)
    assert r.returncode != 0
    assert f"{os.path.join(str(d), where)}: " in r.stderr and message in r.stderr, r.stderr


def relist_cn(kcp, f):
    """Makes frontgate list the logical clusters again; the client certificate CN it presented."""
    n = len(kcp.list_heads)
    kcp.wait(lambda: kcp.open_watches("logicalclusters") == 1, "the watch")
    kcp.expire("logicalclusters")
    kcp.wait(lambda: any(h[0] == "logicalclusters" for h in kcp.list_heads[n:]), "a new list")
    return [h for h in kcp.list_heads[n:] if h[0] == "logicalclusters"][-1][2]


def test_a_reload_rotates_the_root_shard_certificate(kcp, ca, tmp_path):
    def kube(cn):
        cert, key = ca.issue(cn, server=False, client=True)
        return kubeconfig(kcp.url, {"certificate-authority-data": b64(ca.pem)},
                          {"client-certificate-data": b64(cert), "client-key-data": b64(key)})
    f = start(tmp_path, kube("watcher-1"), files={"kube/ca.crt": ca.pem})
    try:
        assert relist_cn(kcp, f) == "watcher-1"
        f.write("kube/config", kube("watcher-2"))
        f.hup()
        assert relist_cn(kcp, f) == "watcher-2"
        assert request(f.port, "GET", "/clusters/root:org/api").status == 200
    finally:
        f.stop()


def test_a_reload_with_a_broken_root_shard_key_keeps_the_old_one(kcp, ca, tmp_path):
    cert, key = ca.issue("watcher-1", server=False, client=True)
    other_cert, _ = ca.issue("watcher-2", server=False, client=True)
    root = "{url: \"%s\", caFile: kube/ca.crt, clientCertFile: w.crt, clientKeyFile: w.key}" % kcp.url
    f = Frontgate(tmp_path / "fg", fg_config(root),
                  files={"kube/ca.crt": ca.pem, "w.crt": cert, "w.key": key})
    f.start()
    try:
        f.wait_log(r"kcp: every shard has synced")
        assert relist_cn(kcp, f) == "watcher-1"
        f.write("w.crt", other_cert)  # a certificate that does not match the key
        f.hup(expect_ok=False)
        f.wait_log(r"reload: .*w.key: cannot load shard clientKeyFile: key does not match")
        assert relist_cn(kcp, f) == "watcher-1"
        assert request(f.port, "GET", "/clusters/root:org/api").status == 200
    finally:
        f.stop()
