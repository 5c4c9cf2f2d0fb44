"""
Shared fixtures of the interop suite: frontgate in front of real peers.

The helpers of tests/e2e/conftest.py (Frontgate, request, new_key, key_line, ...) are loaded
from there under the name `fg_e2e`, so both suites start frontgate the same way. Peer paths come
from the environment that tests/interop/run exports (each peer script prints them); a test whose
peer is missing fails with the variable's name, it is never skipped.
"""
import importlib.util
import os
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
