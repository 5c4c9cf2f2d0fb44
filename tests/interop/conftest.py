"""
Shared fixtures of the interop suite: frontgate in front of real peers.

The helpers of tests/e2e/conftest.py (Frontgate, request, new_key, key_line, ...) are loaded
from there under the name `fg_e2e`, so both suites start frontgate the same way. Peer paths come
from the environment that tests/interop/run exports (each peer script prints them); a test whose
peer is missing fails with the variable's name, it is never skipped.
"""
import importlib.util
import os
import re
import socket

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

_spec = importlib.util.spec_from_file_location("fg_e2e", os.path.join(REPO, "tests", "e2e", "conftest.py"))
fg_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fg_e2e)

# Re-exported: plain helpers and the frontgate fixture (pytest finds fixtures by attribute).
Frontgate = fg_e2e.Frontgate
request = fg_e2e.request
bearer = fg_e2e.bearer
new_key = fg_e2e.new_key
key_line = fg_e2e.key_line
FRONTGATE_BIN = fg_e2e.FRONTGATE_BIN
KUBECTL = fg_e2e.KUBECTL
frontgate_factory = fg_e2e.frontgate_factory
pytest_configure = fg_e2e.pytest_configure


def _versions():
    out = {}
    with open(os.path.join(HERE, "versions")) as f:
        for line in f:
            m = re.match(r"([A-Z][A-Z0-9_]*)=(\S*)", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


VERSIONS = _versions()


def peer_path(var):
    """The path a peer script exported as `var`; fails the test (never skips) when it is unset."""
    p = os.environ.get(var)
    if not p or not os.path.exists(p):
        pytest.fail(f"{var} is not set or does not exist ({p!r}): run the interop suite with "
                    "tests/interop/run (or make test-interop), which builds the peers and sets it")
    return p


def free_port():
    """A loopback port that was free a moment ago (for peers that cannot take port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=60.0, what="peer"):
    """Waits until 127.0.0.1:port accepts; fails early if proc has exited."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what} exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")
