"""
Helpers of the chart tests (tests/chart/test_chart.py) and of the interop test that applies the
rendered manifests to a real kube-apiserver (tests/interop/test_kube.py).

render() runs `helm template` on charts/frontgate; pod_root() lays out, under a directory, the
files a pod of the rendered Deployment would see (the ConfigMap and the Secrets the chart
renders, written as the kubelet writes them), makes stand-ins for what comes from outside the
chart (Secrets named by existingSecret or extraSecretMounts, the projected token, the cluster's
CA) and rewrites the mount paths in the config to that directory, so that `frontgate check`
reads exactly the files the pod would.
"""
import base64
import datetime
import os
import subprocess

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(REPO, "charts", "frontgate")
HELM = os.environ.get("FG_HELM") or os.path.join(REPO, ".tools", "bin", "helm")
FRONTGATE_BIN = os.environ.get("FRONTGATE_BIN") or os.path.join(REPO, "build", "frontgate")
RELEASE = "fg"
NAMESPACE = "frontgate"

# the value sets every test runs on: the defaults and the two worked examples
VALUE_SETS = {
    "default": [],
    "kcp": [os.path.join(CHART, "examples", "kcp-front-proxy.yaml")],
    "iceberg": [os.path.join(CHART, "examples", "iceberg.yaml")],
}
# every optional object on, for the server-side validation
ALL_ON = ["metrics.serviceMonitor.enabled=true", "dashboard.enabled=true", "networkPolicy.enabled=true",
          "networkPolicy.egress.enabled=true", "autoscaling.enabled=true", "rbac.authDelegator=true",
          "serviceAccountToken.enabled=true", "serviceAccountToken.audience=frontgate"]


def helm(*args, check=True):
    p = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}: rc={p.returncode}\n{p.stderr}")
    return p


def template_args(values=(), sets=()):
    args = ["template", RELEASE, CHART, "--namespace", NAMESPACE]
    for f in values:
        args += ["-f", f]
    for s in sets:
        args += ["--set", s]
    return args


def render_text(values=(), sets=()):
    return helm(*template_args(values, sets)).stdout


def render(values=(), sets=()):
    """The rendered objects (dicts), in helm's order."""
    return [d for d in yaml.safe_load_all(render_text(values, sets)) if d]


def kinds(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name=None):
    found = [d for d in kinds(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} objects{f' named {name}' if name else ''}: " \
                            f"{[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_spec(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def container(docs):
    (c,) = [c for c in pod_spec(docs)["containers"] if c["name"] == "frontgate"]
    return c


def config_map(docs):
    return one(docs, "ConfigMap", f"{RELEASE}-frontgate-config")


def frontgate_config(docs):
    return yaml.safe_load(config_map(docs)["data"]["frontgate.yaml"])


# ---------------------------------------------------------------------------
# stand-in credentials


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class CA:
    """A throwaway EC P-256 CA; leaf() issues a certificate and its key (PEM text)."""

    def __init__(self, cn="chart test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def leaf(self, cn, server=True):
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(self.cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                 critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key)


def ec_key_pem():
    return _pem_key(ec.generate_private_key(ec.SECP256R1()))


def key_file_text():
    """A key file with one key, made by `frontgate hash-key` (the key itself is dropped)."""
    p = subprocess.run([FRONTGATE_BIN, "hash-key", "--id", "chart-test", "--groups", "testers"],
                       capture_output=True, text=True, timeout=30, check=True)
    (line,) = [ln[len("line: "):] for ln in p.stdout.splitlines() if ln.startswith("line: ")]
    return f"# made by the chart test\n{line}\n"


# ---------------------------------------------------------------------------
# the pod's files


class PodRoot:
    """The files a pod of the rendered Deployment sees, laid out under root.

    mounts: mountPath -> (kind, detail) for each volumeMount of the frontgate container;
    given: paths written from what the chart rendered; made: paths made up as stand-ins for
    what comes from outside the chart (a missing one is made when the config names it)."""

    def __init__(self, docs, root):
        self.docs, self.root = docs, str(root)
        self.ca = CA()
        self.given, self.made = set(), set()
        self.mounts = {}
        volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
        for m in container(docs)["volumeMounts"]:
            self.mounts[m["mountPath"].rstrip("/")] = volumes[m["name"]]
        for path, vol in sorted(self.mounts.items()):
            self._lay(path, vol)

    def host(self, pod_path):
        return self.root + pod_path

    def _write(self, pod_path, text, given):
        h = self.host(pod_path)
        os.makedirs(os.path.dirname(h), exist_ok=True)
        with open(h, "w") as f:
            f.write(text)
        (self.given if given else self.made).add(pod_path)

    def _object(self, kind, name):
        found = [d for d in kinds(self.docs, kind) if d["metadata"]["name"] == name]
        return found[0] if found else None

    def _lay(self, path, vol):
        os.makedirs(self.host(path), exist_ok=True)
        if "configMap" in vol:
            cm = self._object("ConfigMap", vol["configMap"]["name"])
            for k, text in (cm or {}).get("data", {}).items():
                self._write(f"{path}/{k}", text, True)
        elif "secret" in vol:
            s = self._object("Secret", vol["secret"]["secretName"])
            for k, b64 in (s or {}).get("data", {}).items():
                self._write(f"{path}/{k}", base64.b64decode(b64).decode(), True)
        elif "projected" in vol:
            for src in vol["projected"]["sources"]:
                if "serviceAccountToken" in src:
                    self._write(f"{path}/{src['serviceAccountToken']['path']}",
                                "a-projected-service-account-token-stand-in\n", False)
                elif "configMap" in src and src["configMap"]["name"] == "kube-root-ca.crt":
                    self._write(f"{path}/ca.crt", self.ca.pem, False)
        else:
            raise AssertionError(f"volume {vol['name']} is neither a ConfigMap, a Secret nor projected")

    def mount_of(self, pod_path):
        """The volume a pod path is under (the deepest mount), or None."""
        best = None
        for m, vol in self.mounts.items():
            if pod_path.startswith(m + "/") and (best is None or len(m) > len(best[0])):
                best = (m, vol)
        return best

    def external(self, pod_path):
        """A file under a mount whose content the chart does not render (existing Secrets,
        extraSecretMounts, the projected token and CA): stand-ins may be made there."""
        m = self.mount_of(pod_path)
        if m is None:
            return False
        vol = m[1]
        if "secret" in vol:
            if self._object("Secret", vol["secret"]["secretName"]):
                return False
            items = vol["secret"].get("items")
            return not items or os.path.relpath(pod_path, m[0]) in [i["path"] for i in items]
        return "projected" in vol

    def rehome(self, value):
        """A pod path as the path of its copy here (other strings unchanged)."""
        if isinstance(value, str) and value.startswith("/") and self.mount_of(value):
            return self.host(value)
        return value


# Config keys naming files, by what they hold (README's configuration reference).
CA_KEYS = {"caFile", "clientCAFile", "certificateAuthorityFile", "backend_server_ca"}
PAIRS = [("certFile", "keyFile", True), ("clientCertFile", "clientKeyFile", False),
         ("proxy_client_cert", "proxy_client_key", False)]


class Missing(AssertionError):
    pass


def _need(pr, pod_path, make):
    """pod_path must be a file the pod has: rendered by the chart, or a stand-in under a mount
    whose content comes from outside the chart (made now). Anything else is an error."""
    if not pod_path.startswith("/"):
        raise Missing(f"{pod_path}: not absolute (relative names resolve against the pod's /etc/frontgate)")
    if os.path.exists(pr.host(pod_path)):
        return
    if pr.mount_of(pod_path) is None:
        raise Missing(f"the config names {pod_path}, which no volume of the pod mounts")
    if not pr.external(pod_path):
        raise Missing(f"the config names {pod_path}, which the chart's volume there does not hold")
    pr._write(pod_path, make(), False)


def _walk(pr, node, base_dir, kind_hint=None):
    """Every file the config node names: made when missing, rewritten to its copy here."""
    if isinstance(node, list):
        for v in node:
            _walk(pr, v, base_dir)
        return
    if not isinstance(node, dict):
        return
    abspath = lambda p: p if p.startswith("/") else os.path.normpath(os.path.join(base_dir, p))
    for cert_k, key_k, server in PAIRS:
        if cert_k in node:  # (a keyFile alone is mint's signing key)
            assert key_k in node, f"{cert_k} without {key_k}: {node}"
            c, k = abspath(node[cert_k]), abspath(node[key_k])
            if not os.path.exists(pr.host(c)) or not os.path.exists(pr.host(k)):
                crt, key = pr.ca.leaf("frontgate.test", server=server)
                _need(pr, c, lambda: crt)
                _need(pr, k, lambda: key)
            node[cert_k], node[key_k] = pr.host(c), pr.host(k)
    for k, v in list(node.items()):
        if not isinstance(v, str):
            _walk(pr, v, base_dir, k)
            continue
        p = abspath(v)
        if k in CA_KEYS:
            _need(pr, p, lambda: pr.ca.pem)
        elif k == "tokenFile":
            _need(pr, p, lambda: "a-token-stand-in\n")
        elif k == "keyFile" and kind_hint == "mint":
            _need(pr, p, ec_key_pem)
        elif k == "file" and kind_hint == "staticKeys":
            _need(pr, p, key_file_text)
        elif k == "indexFile":
            _need(pr, p, lambda: "cluster\tpath\tshard\n")
        elif k == "kubeconfig":
            _need(pr, p, lambda: _kubeconfig(pr))
            _rehome_kubeconfig(pr, p)
        elif k == "mappingFile":
            _need(pr, p, lambda: "- path: /\n  backend: https://backend.invalid\n")
            _rehome_yaml_file(pr, p)
        elif k == "authenticationConfigurationFile":
            _need(pr, p, lambda: "")
            _rehome_yaml_file(pr, p)
        else:
            continue
        node[k] = pr.host(p)


def _kubeconfig(pr):
    crt, key = pr.ca.leaf("shard-admin", server=False)
    b64 = lambda s: base64.b64encode(s.encode()).decode()
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "root",
        "clusters": [{"name": "root", "cluster": {"server": "https://root.kcp.invalid:6443",
                                                  "certificate-authority-data": b64(pr.ca.pem)}}],
        "users": [{"name": "admin", "user": {"client-certificate-data": b64(crt),
                                             "client-key-data": b64(key)}}],
        "contexts": [{"name": "root", "context": {"cluster": "root", "user": "admin"}}],
    })


def _rehome_kubeconfig(pr, pod_path):
    h = pr.host(pod_path)
    doc = yaml.safe_load(open(h))
    base = os.path.dirname(pod_path)
    at = lambda v: v if v.startswith("/") else os.path.normpath(os.path.join(base, v))
    for entry in doc.get("clusters", []):
        body = entry.get("cluster") or {}
        if "certificate-authority" in body:
            p = at(body["certificate-authority"])
            _need(pr, p, lambda: pr.ca.pem)
            body["certificate-authority"] = pr.host(p)
    for entry in doc.get("users", []):
        body = entry.get("user") or {}
        if "client-certificate" in body:
            c, k = at(body["client-certificate"]), at(body["client-key"])
            crt, key = pr.ca.leaf("shard-admin", server=False)
            _need(pr, c, lambda: crt)
            _need(pr, k, lambda: key)
            body["client-certificate"], body["client-key"] = pr.host(c), pr.host(k)
        if "tokenFile" in body:
            p = at(body["tokenFile"])
            _need(pr, p, lambda: "a-token-stand-in\n")
            body["tokenFile"] = pr.host(p)
    with open(h, "w") as f:
        yaml.safe_dump(doc, f)


def _rehome_yaml_file(pr, pod_path):
    h = pr.host(pod_path)
    doc = yaml.safe_load(open(h))
    _walk(pr, doc, os.path.dirname(pod_path))
    with open(h, "w") as f:
        yaml.safe_dump(doc, f)


def pod_root(docs, root):
    """Lays the pod's files out under root and returns (PodRoot, the host path of the
    frontgate.yaml to check). Raises Missing when the config names a file the pod lacks."""
    pr = PodRoot(docs, root)
    args = container(docs)["args"]
    assert args[:2] == ["run", "-c"], args
    cfg_path = args[2]
    assert cfg_path in pr.given, f"{cfg_path} (the container's -c) is not a file the chart renders"
    cfg = yaml.safe_load(open(pr.host(cfg_path)))
    _walk(pr, cfg, os.path.dirname(cfg_path))
    with open(pr.host(cfg_path), "w") as f:
        yaml.safe_dump(cfg, f)
    return pr, pr.host(cfg_path)
