"""
JWT claim types as kube-apiserver checks them (Reliability issue, defect 12). go-oidc unmarshals
the claims into typed fields before any claim is read, so a token from the configured issuer,
validly signed, whose `iat` is not a number (RFC 7519 4.1.6) or whose `sub` or `nonce` is not a
string (4.1.2) is refused: here the generic 401, with the reason in the access log. The same
claims with the right types pass.

The IdP is test_oidc.py's (oauth2-mock-server over TLS, idp/idp.mjs); its fixtures are imported
from there. Tokens whose payload the IdP cannot express as claims (a null claim is removed by
`mint`) are signed over the exact payload text with its `sign` operation.
"""
import json
import time

import pytest

from conftest import assert_unauthorized, log_reason
from test_oidc import ALICE, idp_factory, oidc, pki  # noqa: F401 (fixtures used by name)


def claims(idp, **over):
    """A claims set the default jwt entry maps to alice, with over applied (None keeps a null)."""
    now = int(time.time())
    return {**ALICE, "iss": idp.issuer, "iat": now, "nbf": now - 10, "exp": now + 600, **over}


def signed(idp, **over):
    """Signed by the IdP's current key over the exact JSON text of claims(idp, **over)."""
    return idp.call("sign", payload=json.dumps(claims(idp, **over)))["token"]


BAD = {
    "iat-string": ({"iat": "1700000000"}, "token iat is not a number"),
    "iat-null": ({"iat": None}, "token iat is not a number"),
    "iat-bool": ({"iat": True}, "token iat is not a number"),
    "iat-array": ({"iat": [1700000000]}, "token iat is not a number"),
    "nonce-number": ({"nonce": 42}, "token nonce is not a string"),
    "nonce-array": ({"nonce": ["n-0S6_WzA2Mj"]}, "token nonce is not a string"),
    "nonce-object": ({"nonce": {"v": "n"}}, "token nonce is not a string"),
    "sub-number": ({"sub": 42}, "token sub is not a string"),
    "sub-array": ({"sub": ["alice"]}, "token sub is not a string"),
    "sub-bool": ({"sub": False}, "token sub is not a string"),
}

GOOD = {
    "iat-integer": {},
    "iat-fraction": {"iat": int(time.time()) - 5 + 0.25},
    "nonce-string": {"nonce": "n-0S6_WzA2Mj"},
    "nonce-empty": {"nonce": ""},
    "nonce-null": {"nonce": None},
    "sub-string": {"sub": "alice"},
}


@pytest.mark.parametrize("case", list(BAD))
def test_claim_of_wrong_type_is_401(case, oidc):  # noqa: F811
    env = oidc()
    over, reason = BAD[case]
    token = signed(env.idp, **over)
    before = len(env.shard.snapshot())
    path = env.path()
    r = env.get(token, path)
    assert_unauthorized(r)
    line = env.access(path)
    assert " status=401 " in line, line
    assert log_reason(line) == reason, line
    assert token not in env.fg.log(), "the token is in frontgate's log"
    assert len(env.shard.snapshot()) == before, "a refused request reached the shard"
    # the same IdP's well-typed token passes on the same frontgate
    assert env.get(signed(env.idp)).status == 200


@pytest.mark.parametrize("case", list(GOOD))
def test_claim_of_right_type_is_200(case, oidc):  # noqa: F811
    env = oidc()
    token = signed(env.idp, **GOOD[case])
    path = env.path()
    r = env.get(token, path)
    assert r.status == 200, (r, env.fg.log()[-3000:])
    line = env.access(path)
    assert " status=200 " in line and " user=oidc:alice " in line, line
    # and as the IdP itself mints it (its own iat), through the claims interface
    if GOOD[case].get("nonce") is not None:
        assert env.get(env.idp.mint(claims={"nonce": GOOD[case]["nonce"]})).status == 200
