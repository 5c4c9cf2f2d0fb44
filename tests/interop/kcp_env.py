"""
A real kcp for tests/interop/test_kcp.py: `kcp start` (FG_KCP, built by tests/interop/peers/kcp)
with its embedded etcd, everything under one temporary directory, on loopback ports.

kcp is configured as a shard behind a front proxy (as cmd/sharded-test-server does for kcp's own
front proxy): it trusts X-Remote-User / X-Remote-Group / X-Remote-Extra-* only from a client
certificate signed by the request-header CA with the CN frontgate presents (kcp-front-proxy).
The test's own setup talks to kcp directly with the admin.kubeconfig kcp writes at start.
"""
import importlib.util
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import KUBECTL, REPO, free_port

_spec = importlib.util.spec_from_file_location(
    "fg_e2e_fake_apiserver", os.path.join(REPO, "tests", "e2e", "fake_apiserver.py"))
_fake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fake)
TestCA = _fake.TestCA

FRONT_PROXY_CN = "kcp-front-proxy"


class Kcp:
    """One `kcp start`; setup helpers run kubectl as kcp's admin."""

    def __init__(self, binary, directory):
        self.binary = binary
        self.dir = str(directory)
        self.root = os.path.join(self.dir, "kcp")
        os.makedirs(self.root)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.proc = None
        self.log_path = os.path.join(self.dir, "kcp.log")

        # kcp's serving certificate, and the request-header CA with frontgate's client certificate
        server_ca = TestCA("kcp interop serving CA")
        self.ca_file = server_ca.write_ca(self.dir, "kcp-ca.crt")
        self.tls_crt, self.tls_key = server_ca.write_leaf(self.dir, "kcp-serving", cn="127.0.0.1")
        rh_ca = TestCA("kcp interop requestheader CA")
        self.rh_ca_file = rh_ca.write_ca(self.dir, "requestheader-ca.crt")
        self.proxy_crt, self.proxy_key = rh_ca.write_leaf(
            self.dir, "front-proxy", cn=FRONT_PROXY_CN, server=False, client=True)
        # a client certificate from the right CA with another name: kcp must not trust its headers
        self.other_crt, self.other_key = rh_ca.write_leaf(
            self.dir, "not-front-proxy", cn="someone-else", server=False, client=True)

    def start(self, timeout=240.0):
        argv = [
            self.binary, "start",
            f"--root-directory={self.root}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--embedded-etcd-client-port={free_port()}",
            f"--embedded-etcd-peer-port={free_port()}",
            f"--tls-cert-file={self.tls_crt}",
            f"--tls-private-key-file={self.tls_key}",
            f"--requestheader-client-ca-file={self.rh_ca_file}",
            f"--requestheader-allowed-names={FRONT_PROXY_CN}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        ]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        self.kubeconfig = os.path.join(self.root, "admin.kubeconfig")
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"kcp exited with status {self.proc.returncode} while starting; "
                            f"its log ends:\n{self.log_tail()}")
            if os.path.exists(self.kubeconfig):
                # ready: /readyz as admin, and the root workspace serves tenancy.kcp.io
                p = self.kubectl("get", "--raw", "/readyz", check=False, timeout=10)
                if p.returncode == 0:
                    p = self.kubectl("get", "workspaces", check=False, timeout=10)
                    if p.returncode == 0:
                        return self
                last = p.stderr.strip()
            if time.monotonic() > deadline:
                pytest.fail(f"kcp not ready within {timeout:.0f} s (last: {last}); "
                            f"its log ends:\n{self.log_tail()}")
            time.sleep(0.5)

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            self._log.close()

    # -- the test's own setup, as kcp's admin

    def kubectl(self, *args, cluster="root", stdin=None, check=True, timeout=60):
        """kubectl as kcp's admin, directly on kcp, in logical cluster (or path) `cluster`."""
        argv = [KUBECTL, "--kubeconfig", self.kubeconfig,
                "--cache-dir", os.path.join(self.dir, "kubectl-cache"),
                "--server", f"{self.url}/clusters/{cluster}", *args]
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} (cluster {cluster}) failed: "
                        f"{p.stderr.strip()}\n{p.stdout.strip()}")
        return p

    def apply(self, manifest, cluster="root"):
        return self.kubectl("apply", "-f", "-", cluster=cluster, stdin=json.dumps(manifest))

    def create_workspace(self, name, type_name, type_path="root", timeout=120.0):
        """Creates Workspace `name` in root and waits for Ready; returns its logical cluster name
        and its type as kcp writes it (`root:organization`)."""
        self.apply({
            "apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
            "metadata": {"name": name},
            "spec": {"type": {"name": type_name, "path": type_path}},
        })
        deadline = time.monotonic() + timeout
        while True:
            ws = json.loads(self.kubectl("get", "workspace", name, "-o", "json").stdout)
            status = ws.get("status", {})
            cluster = ws.get("spec", {}).get("cluster")
            if status.get("phase") == "Ready" and cluster:
                t = ws["spec"]["type"]
                return cluster, f"{t['path']}:{t['name']}"
            if time.monotonic() > deadline:
                pytest.fail(f"workspace {name} not Ready within {timeout:.0f} s: {status}")
            time.sleep(0.3)

    def wait_allowed(self, cluster, user, verb, resource, groups=(), timeout=30.0):
        """Waits until kcp's authorizer grants (RBAC is cached in informers: a binding
        just created takes a moment to count), asked with impersonation as admin."""
        extra = [f"--as={user}"] + [f"--as-group={g}" for g in groups]
        deadline = time.monotonic() + timeout
        while True:
            p = self.kubectl("auth", "can-i", verb, resource, *extra, cluster=cluster, check=False)
            if p.stdout.strip() == "yes":
                return
            if time.monotonic() > deadline:
                pytest.fail(f"{user} still may not {verb} {resource} in {cluster}: "
                            f"{p.stdout.strip()} {p.stderr.strip()}")
            time.sleep(0.3)


@pytest.fixture(scope="module")
def kcp(tmp_path_factory):
    from conftest import peer_path
    k = Kcp(peer_path("FG_KCP"), tmp_path_factory.mktemp("kcp"))
    try:
        yield k.start()
    finally:
        k.stop()
