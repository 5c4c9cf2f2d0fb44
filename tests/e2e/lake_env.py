"""
The Iceberg test environment shared by test_iceberg.py and test_tokens.py:
fake_catalog.FakeCatalog (a Lakekeeper-like catalog) behind frontgate with a
`workspace: iceberg` route, warehouses in the index, static keys (alice,
bob in ops-keys, which the route's token endpoint names; carol in
other-keys), a warehouse on a dead shard and one marked Unavailable.
"""
import json

import pytest

from conftest import closed_port, key_line, new_key, request
from fake_catalog import FakeCatalog

# warehouse name -> id (the catalog's prefix), as Lakekeeper hands them out
ANALYTICS = "0195f1c2-8d3e-7a41-9b2c-5e6f7a8b9c0d"
MARKETING = "0195f1c2-8d3e-7a41-9b2c-5e6f7a8b9c0e"
OFFLINE = "0195f1c2-8d3e-7a41-9b2c-5e6f7a8b9c0f"
BROKEN = "0195f1c2-8d3e-7a41-9b2c-5e6f7a8b9c10"
# known to the catalog, NOT in frontgate's index: must never be reachable
HIDDEN = "0195f1c2-8d3e-7a41-9b2c-5e6f7a8b9c99"
UNKNOWN = "0195f1c2-0000-7000-8000-000000000000"
CATALOG_WAREHOUSES = {"analytics": ANALYTICS, "marketing": MARKETING, "hidden": HIDDEN}

ALICE_GROUPS = ("developers", "viewers")
AUTHENTICATED = "system:authenticated"
FORBIDDEN = {"error": {"message": "warehouse access not permitted", "type": "ForbiddenException", "code": 403}}
NOT_AUTHORIZED = {"error": {"message": "Not authorized to make this request", "type": "NotAuthorizedException",
                            "code": 401}}


# ---------------------------------------------------------------------------
# environment


def lake_config(catalog_url, listen="127.0.0.1:0", identity="requestHeader", mint=None,
                forwarded_prefix=None, tls=False, token_endpoint=None):
    """token_endpoint: the route's tokenEndpoint map (default {authenticator: ops-keys})."""
    te = token_endpoint or {"authenticator": "ops-keys"}
    text = f"workers: 2\nlisteners:\n  - address: {listen}\n"
    if tls:
        text += "  - address: 127.0.0.1:0\n    tls: {certFile: tls.crt, keyFile: tls.key}\n"
    text += f"""\
shards:
  - name: lake
    url: {catalog_url}
    identity: {identity}
"""
    if mint:
        text += "    mint: {" + ", ".join(f"{k}: {v}" for k, v in mint.items()) + "}\n"
    text += f"""\
  - name: dead
    url: http://127.0.0.1:{closed_port()}
routes:
  - prefix: /catalog/v1/
    workspace: iceberg
    stripHeaders: [x-project-id, x-assume-role]
"""
    if forwarded_prefix:
        text += f"    forwardedPrefix: {forwarded_prefix}\n"
    text += f"""\
    tokenEndpoint: {{{", ".join(f"{k}: {v}" for k, v in te.items())}}}
workspaces:
  - cluster: {ANALYTICS}
    warehouse: analytics
    shard: lake
  - cluster: {MARKETING}
    warehouse: marketing
    shard: lake
  - cluster: {OFFLINE}
    warehouse: offline
    shard: lake
    phase: Unavailable
  - cluster: {BROKEN}
    warehouse: broken
    shard: dead
authenticators:
  - name: ops-keys
    staticKeys: {{file: keys.txt}}
  - name: other-keys
    staticKeys: {{file: other-keys.txt}}
authentication:
  global: [ops-keys, other-keys]
limits:
  shutdownGracePeriod: 3s
  connectTimeout: 2s
"""
    return text


class Lake:
    def __init__(self, fg, catalog, keys):
        self.fg = fg
        self.catalog = catalog
        self.keys = keys
        self.alice = keys["alice"]
        self.bob = keys["bob"]
        self.carol = keys["carol"]  # other-keys: a valid bearer, not a token-endpoint client

    @property
    def port(self):
        return self.fg.port

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def get(self, path, key=None, headers=None, method="GET", body=None):
        h = dict(headers or {})
        if key:
            h["Authorization"] = f"Bearer {key}"
        return request(self.port, method, path, h, body)


@pytest.fixture
def catalog_factory():
    started = []

    def make(**kw):
        c = FakeCatalog(CATALOG_WAREHOUSES, **kw)
        started.append(c)
        return c

    yield make
    for c in started:
        c.stop()


@pytest.fixture
def lake_factory(catalog_factory, frontgate_factory):
    def start(catalog=None, name="fg", files=None, **cfg):
        catalog = catalog or catalog_factory()
        alice, bob, carol = new_key(), new_key(), new_key()
        keys = key_line("alice", alice, ALICE_GROUPS) + "\n" + key_line("bob", bob) + "\n"
        files = {"keys.txt": keys, "other-keys.txt": key_line("carol", carol) + "\n", **(files or {})}
        fg = frontgate_factory(lake_config(catalog.url, **cfg), files, name=name)
        return Lake(fg, catalog, {"alice": alice, "bob": bob, "carol": carol})

    return start


@pytest.fixture
def lake(lake_factory):
    return lake_factory()


def assert_iceberg_error(r, expected):
    assert r.status == expected["error"]["code"], r
    assert (r.value("Content-Type") or "").startswith("application/json"), r.headers
    assert json.loads(r.body) == expected, r.body


def iceberg_error(code, type_):
    return lambda r: (r.status == code and json.loads(r.body)["error"]["type"] == type_
                      and json.loads(r.body)["error"]["code"] == code)
