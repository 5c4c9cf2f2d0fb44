"""
A real kube-apiserver (and its etcd) as frontgate's shard, for test_kube.py.

`KubeCluster` starts etcd (loopback, a data dir under the test's tmp dir) and kube-apiserver
(secure port on 127.0.0.1) with certificates made here:

  serving CA     the apiserver's serving certificate (127.0.0.1); frontgate's shard caFile and the
                 jwt authenticator's issuer CA
  client CA      --client-ca-file: the test's own admin (CN=admin, O=system:masters) for kubectl,
                 and frontgate's tokenReview caller (CN=frontgate-reviewer, bound to
                 system:auth-delegator)
  front-proxy CA --requestheader-client-ca-file: frontgate's shard client certificate
                 (CN=frontgate-proxy, the one name in --requestheader-allowed-names), and one
                 with a CN kube does not allow (CN=frontgate-intruder)

and a service-account key pair whose issuer is the apiserver itself (https://127.0.0.1:PORT),
its discovery document and JWKS readable anonymously (system:service-account-issuer-discovery
bound to system:unauthenticated), so frontgate's jwt authenticator can discover it.

`FrontKube` is one frontgate (TLS listener, certificate from the serving CA) in front of that
apiserver, with kubectl and a raw HTTPS client that talk to frontgate.
"""
import datetime
import http.client
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import conftest

PROXY_CN = "frontgate-proxy"
INTRUDER_CN = "frontgate-intruder"
REVIEWER_CN = "frontgate-reviewer"


# ---------------------------------------------------------------------------
# certificates


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class CA:
    """A throwaway EC P-256 CA that writes its certificate and leaves into a directory."""

    def __init__(self, directory, stem, cn):
        self.dir = str(directory)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()
        self.path = os.path.join(self.dir, stem + ".crt")
        with open(self.path, "w") as f:
            f.write(self.pem)

    def leaf(self, stem, cn, orgs=(), server=False, client=False):
        """Issues a leaf, writes <stem>.crt and <stem>.key; returns (crt_path, key_path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        now = datetime.datetime.now(datetime.timezone.utc)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = (
            x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
        )
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        crt, kp = os.path.join(self.dir, stem + ".crt"), os.path.join(self.dir, stem + ".key")
        with open(crt, "w") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM).decode())
        with open(kp, "w") as f:
            f.write(_pem_key(key))
        os.chmod(kp, 0o600)
        return crt, kp


# ---------------------------------------------------------------------------
# processes


class Proc:
    """A child process whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name, argv, log_path, cwd):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=cwd)

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, grace=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def poll(pred, timeout, what, interval=0.2):
    """pred() until it returns a true value (returned) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s" + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Resp {self.status} {self.body[:400]!r}>"


def https(port, method, path, *, ca, cert=None, headers=None, body=None, timeout=20.0):
    """One HTTPS request to 127.0.0.1:port (verified with ca, optional client cert)."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(*cert)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (hdrs.items() if isinstance(hdrs, dict) else hdrs):
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body.encode() if isinstance(body, str) else body)))
        conn.endheaders(body.encode() if isinstance(body, str) else body)
        r = conn.getresponse()
        return Resp(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def kubeconfig(path, server, ca, token=None, cert=None):
    user = f"token: {token}" if token else f"client-certificate: {cert[0]}\n      client-key: {cert[1]}"
    with open(path, "w") as f:
        f.write(f"""\
apiVersion: v1
kind: Config
clusters:
  - name: c
    cluster:
      server: {server}
      certificate-authority: {ca}
users:
  - name: u
    user:
      {user}
contexts:
  - name: c
    context: {{cluster: c, user: u}}
current-context: c
""")
    os.chmod(path, 0o600)
    return path


def run_kubectl(cfg, home, *args, input=None, check=True, timeout=60):
    p = subprocess.run(
        [conftest.KUBECTL, "--kubeconfig", cfg, "--cache-dir", os.path.join(home, "kube-cache"),
         "--request-timeout", "20s", *args],
        input=input, capture_output=True, text=True, timeout=timeout, env={**os.environ, "HOME": home},
    )
    if check:
        assert p.returncode == 0, f"kubectl {' '.join(args)}: rc={p.returncode}\n{p.stderr}"
    return p


# ---------------------------------------------------------------------------
# the cluster


class KubeCluster:
    def __init__(self, root, apiserver_bin, etcd_bin):
        self.root = str(root)
        self.apiserver_bin = apiserver_bin
        self.etcd_bin = etcd_bin
        self.pki = os.path.join(self.root, "pki")
        os.makedirs(self.pki, exist_ok=True)
        self.etcd = None
        self.apiserver = None
        self.port = None

    # -- certificates and keys

    def _pki(self):
        d = self.pki
        self.serving_ca = CA(d, "serving-ca", "interop kube serving CA")
        self.client_ca = CA(d, "client-ca", "interop kube client CA")
        self.proxy_ca = CA(d, "front-proxy-ca", "interop kube front-proxy CA")
        self.serving = self.serving_ca.leaf("apiserver", "kube-apiserver", server=True)
        self.frontgate_tls = self.serving_ca.leaf("frontgate-tls", "frontgate", server=True)
        self.admin = self.client_ca.leaf("admin", "admin", orgs=("system:masters",), client=True)
        self.reviewer = self.client_ca.leaf("reviewer", REVIEWER_CN, client=True)
        self.proxy = self.proxy_ca.leaf("proxy", PROXY_CN, client=True)
        self.intruder = self.proxy_ca.leaf("intruder", INTRUDER_CN, client=True)
        # a client certificate the apiserver trusts as a user (client CA), not as a front proxy
        self.client_as_proxy = self.client_ca.leaf("client-as-proxy", PROXY_CN, client=True)
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_key = os.path.join(d, "sa.key")
        self.sa_pub = os.path.join(d, "sa.pub")
        with open(self.sa_key, "w") as f:
            f.write(_pem_key(sa))
        with open(self.sa_pub, "w") as f:
            f.write(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode())

    # -- lifecycle

    def start(self):
        self._pki()
        self._start_etcd()
        self._start_apiserver()
        self.admin_cfg = kubeconfig(os.path.join(self.root, "admin.kubeconfig"), self.url,
                                    self.serving_ca.path, cert=self.admin)
        # anonymous OIDC discovery of the service-account issuer, and frontgate's TokenReview caller
        self.kubectl("create", "clusterrolebinding", "interop-sa-issuer-discovery",
                     "--clusterrole=system:service-account-issuer-discovery",
                     "--group=system:unauthenticated")
        self.kubectl("create", "clusterrolebinding", "interop-frontgate-reviewer",
                     "--clusterrole=system:auth-delegator", f"--user={REVIEWER_CN}")
        return self

    def _start_etcd(self, attempts=3):
        for _ in range(attempts):
            client, peer = conftest.free_port(), conftest.free_port()
            data = os.path.join(self.root, "etcd-data")
            argv = [self.etcd_bin, "--name", "interop", "--data-dir", data,
                    "--listen-client-urls", f"http://127.0.0.1:{client}",
                    "--advertise-client-urls", f"http://127.0.0.1:{client}",
                    "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                    "--initial-cluster", f"interop=http://127.0.0.1:{peer}",
                    "--listen-metrics-urls", "", "--log-level", "warn",
                    "--quota-backend-bytes", str(256 << 20)]
            self.etcd = Proc("etcd", argv, os.path.join(self.root, "etcd.log"), self.root)
            try:
                poll(lambda: self._etcd_healthy(client), 30, "etcd /health")
                self.etcd_url = f"http://127.0.0.1:{client}"
                return
            except AssertionError:
                tail = self.etcd.tail()
                self.etcd.stop()
                if "address already in use" not in tail:
                    raise AssertionError("etcd did not become healthy:\n" + tail)
        raise AssertionError("etcd: no free ports after retries")

    def _etcd_healthy(self, port):
        if not self.etcd.alive():
            raise AssertionError(f"etcd exited ({self.etcd.proc.returncode}):\n" + self.etcd.tail())
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            c.request("GET", "/health")
            r = c.getresponse()
            return r.status == 200 and json.loads(r.read()).get("health") == "true"
        finally:
            c.close()

    def _start_apiserver(self, attempts=3):
        for _ in range(attempts):
            self.port = conftest.free_port()
            self.url = f"https://127.0.0.1:{self.port}"
            argv = [
                self.apiserver_bin,
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={os.path.join(self.root, 'cert-dir')}",
                f"--tls-cert-file={self.serving[0]}", f"--tls-private-key-file={self.serving[1]}",
                f"--client-ca-file={self.client_ca.path}",
                f"--requestheader-client-ca-file={self.proxy_ca.path}",
                f"--requestheader-allowed-names={PROXY_CN}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-uid-headers=X-Remote-Uid",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--service-account-key-file={self.sa_pub}",
                f"--service-account-signing-key-file={self.sa_key}",
                f"--service-account-issuer={self.url}",
                "--authorization-mode=RBAC", "--anonymous-auth=true",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--profiling=false", "--v=1",
            ]
            self.apiserver = Proc("kube-apiserver", argv, os.path.join(self.root, "kube-apiserver.log"),
                                  self.root)
            try:
                poll(self._ready, 180, "kube-apiserver /readyz", interval=0.5)
                return
            except AssertionError as e:
                tail = self.apiserver.tail()
                self.apiserver.stop()
                if "address already in use" not in tail:
                    raise AssertionError(f"{e}\nkube-apiserver log ends:\n{tail}")
        raise AssertionError("kube-apiserver: no free port after retries")

    def _ready(self):
        if not self.apiserver.alive():
            raise AssertionError(f"kube-apiserver exited ({self.apiserver.proc.returncode})")
        r = https(self.port, "GET", "/readyz", ca=self.serving_ca.path, cert=self.admin, timeout=5)
        return r.status == 200

    def stop(self):
        for p in (self.apiserver, self.etcd):
            if p is not None:
                p.stop()

    # -- the test's own access (admin)

    def kubectl(self, *args, input=None, check=True):
        return run_kubectl(self.admin_cfg, self.root, *args, input=input, check=check)

    def apply(self, doc):
        return self.kubectl("apply", "-f", "-", input=json.dumps(doc))

    def api(self, method, path, body=None, cert=None, headers=None):
        return https(self.port, method, path, ca=self.serving_ca.path, cert=cert or self.admin,
                     headers=headers, body=body)


# ---------------------------------------------------------------------------
# frontgate in front of it


def frontgate_config(kube, authenticators="", global_names=(), *, client_cert="proxy", limits="",
                     extra="", shard_extra=""):
    """frontgate.yaml: one TLS listener, the apiserver as the one shard (every path routed to it).

    client_cert: which front-proxy certificate frontgate presents ("proxy", "intruder",
    "client-as-proxy" or None); shard_extra: more lines of the shard (e.g. its protocol)."""
    cert = {"proxy": kube.proxy, "intruder": kube.intruder, "client-as-proxy": kube.client_as_proxy,
            None: None}[client_cert]
    text = f"""\
workers: 2
listeners:
  - address: 127.0.0.1:0
    tls: {{certFile: {kube.frontgate_tls[0]}, keyFile: {kube.frontgate_tls[1]}}}
shards:
  - name: kube
    url: {kube.url}
    caFile: {kube.serving_ca.path}
    identity: requestHeader
""" + shard_extra
    if cert:
        text += f"    clientCertFile: {cert[0]}\n    clientKeyFile: {cert[1]}\n"
    text += """\
routes:
  - prefix: /
    shard: kube
"""
    if authenticators:
        text += "authenticators:\n" + authenticators
        text += f"authentication:\n  global: {json.dumps(list(global_names))}\n"
    text += "limits:\n  shutdownGracePeriod: 3s\n  connectTimeout: 5s\n" + limits
    return text + extra


class FrontKube:
    """A started frontgate (TLS) in front of the cluster: kubectl and raw HTTPS through it."""

    def __init__(self, fg, kube, tmp):
        self.fg, self.kube, self.tmp = fg, kube, str(tmp)
        self.port = next(p for s, _, p in fg.listeners if s == "https")
        self.url = f"https://127.0.0.1:{self.port}"
        self.n = 0

    def kubeconfig(self, token):
        self.n += 1
        return kubeconfig(os.path.join(self.tmp, f"fg-{self.n}.kubeconfig"), self.url,
                          self.kube.serving_ca.path, token=token)

    def kubectl(self, token, *args, check=True, input=None):
        return run_kubectl(self.kubeconfig(token), self.tmp, *args, check=check, input=input)

    def whoami(self, token):
        p = self.kubectl(token, "auth", "whoami", "-o", "json")
        doc = json.loads(p.stdout)
        assert doc["kind"] == "SelfSubjectReview", doc
        return doc["status"]["userInfo"]

    def request(self, method, path, token=None, headers=None, body=None, timeout=20.0):
        hdrs = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
        if token:
            hdrs.append(("Authorization", f"Bearer {token}"))
        return https(self.port, method, path, ca=self.kube.serving_ca.path, headers=hdrs, body=body,
                     timeout=timeout)

    def self_subject_review(self, token, headers=None):
        """POST SelfSubjectReview through frontgate (raw): (status, userInfo or the body)."""
        r = self.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", token,
                         headers=headers, body={"apiVersion": "authentication.k8s.io/v1",
                                                "kind": "SelfSubjectReview"})
        if r.status != 201:
            return r.status, r.body
        return r.status, r.json()["status"]["userInfo"]

    def wait_ready(self, timeout=30):
        """frontgate's /readyz (jwt authenticators wait for their keys)."""
        try:
            poll(lambda: self.request("GET", "/readyz").status == 200, timeout, "frontgate /readyz")
        except AssertionError as e:
            raise AssertionError(f"{e}; frontgate's log ends:\n" + "\n".join([ln for ln in self.fg.lines() if " access " not in ln][-15:]))


class LineReader(threading.Thread):
    """Reads a stream's lines in the background, with a timestamp each; wait_for(pred)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        self.start()

    def run(self):
        for ln in iter(self.stream.readline, ""):
            with self.cond:
                self.lines.append((time.monotonic(), ln))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            i = 0
            while True:
                while i < len(self.lines):
                    t, ln = self.lines[i]
                    i += 1
                    if pred(ln):
                        return t, ln
                if self.eof:
                    raise AssertionError(f"{what}: the stream ended; it had: {[l for _, l in self.lines]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{what}: not within {timeout} s; lines: {[l for _, l in self.lines]}")
                self.cond.wait(left)
