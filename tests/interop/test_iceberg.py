"""
The iceberg group: frontgate in front of Apache Iceberg's own REST catalog server (the test
fixture that apache/iceberg-rest-fixture runs: JdbcCatalog on SQLite, a file:// warehouse), with
the real clients, PyIceberg (writes with pyarrow) and DuckDB's iceberg extension (reads).

The fixture checks no credentials, so what frontgate sent it is read off a recording relay
between the two (iceberg_env.RecordingRelay): the identity headers, the bearer (passthrough,
mint), and what the protocol carries besides identity. How a catalog without a warehouse prefix
maps onto frontgate's warehouse routing: see iceberg_env's docstring.
"""
import json
import secrets
import uuid
import warnings

import duckdb
import pyarrow as pa
import pytest

with warnings.catch_warnings():  # PyIceberg's and pydantic's deprecation warnings at import
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyiceberg.catalog import load_catalog
    from pyiceberg.exceptions import ForbiddenError, OAuthError, UnauthorizedError

from conftest import fg_e2e, free_port, key_line, new_key, request
from iceberg_env import (WAREHOUSE, IcebergRest, RecordingRelay, duckdb_connect, fake_apiserver, fake_catalog,
                         iceberg_config, sql_quote)

ALICE_GROUPS = ("analysts", "writers")
AUTHENTICATED = "system:authenticated"
# what the catalog hands out in every loadTable `config` (CATALOG_INCLUDE__CREDENTIALS): made-up
# values, random per run, that must reach the client byte for byte
VENDED = {"s3.access-key-id": "interop-" + secrets.token_hex(8),
          "s3.secret-access-key": "interop-" + secrets.token_hex(16)}
SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("city", pa.string())])
ROWS = {"id": [1, 2, 3], "city": ["Lisbon", "Oslo", "Quito"]}
NOT_AUTHORIZED = "NotAuthorizedException: Not authorized to make this request"
FORBIDDEN = "ForbiddenException: warehouse access not permitted"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    cat = IcebergRest(tmp_path_factory.mktemp("iceberg-rest"), env={
        "CATALOG_INCLUDE__CREDENTIALS": "true",
        "CATALOG_S3_ACCESS__KEY__ID": VENDED["s3.access-key-id"],
        "CATALOG_S3_SECRET__ACCESS__KEY": VENDED["s3.secret-access-key"],
    })
    try:
        cat.config = cat.wait_ready()
        yield cat
    finally:
        cat.stop()


@pytest.fixture(scope="module")
def relay(catalog):
    r = RecordingRelay(catalog.port)
    yield r
    r.stop()
    assert not r.errors, r.errors


class Lake:
    def __init__(self, fg, keys):
        self.fg = fg
        self.keys = keys
        self.alice = keys["alice"]
        self.bob = keys["bob"]

    @property
    def url(self):
        return self.fg.url

    @property
    def token_url(self):
        return self.fg.url + "/v1/oauth/tokens"


@pytest.fixture
def lake_factory(frontgate_factory, relay):
    def start(name="fg", files=None, **cfg):
        alice, bob = new_key(), new_key()
        keys = key_line("alice", alice, ALICE_GROUPS) + "\n" + key_line("bob", bob) + "\n"
        fg = frontgate_factory(iceberg_config(relay.url, **cfg), {"keys.txt": keys, **(files or {})}, name=name)
        return Lake(fg, {"alice": alice, "bob": bob})

    return start


@pytest.fixture
def lake(lake_factory):
    return lake_factory()


def pyiceberg(uri, **props):
    return load_catalog("fg", type="rest", uri=uri, warehouse=WAREHOUSE, **props)


def new_namespace():
    return "ns_" + uuid.uuid4().hex[:10]


def write_table(cat, ns):
    """PyIceberg: a namespace, a table in it, three rows appended; returns the table."""
    cat.create_namespace(ns, {"owner-team": "interop"})
    tbl = cat.create_table(f"{ns}.cities", schema=SCHEMA)
    tbl.append(pa.Table.from_pydict(ROWS, schema=SCHEMA))
    return tbl


def read_back(cat, ns):
    tbl = cat.load_table(f"{ns}.cities")
    return tbl, tbl.scan().to_arrow().sort_by("id").to_pydict()


def assert_identity(rec, user, groups):
    """The catalog got frontgate's identity headers for user and groups, and no credential."""
    assert rec.values("X-Remote-User") == [user], rec.headers
    assert sorted(rec.values("X-Remote-Group")) == sorted([*groups, AUTHENTICATED]), rec.headers
    assert rec.values("Authorization") == [], "a validated credential reached the catalog"


def duckdb_attach(tmp_path, oauth2_server_uri, client_id, client_secret, endpoint, warehouse=WAREHOUSE):
    con = duckdb_connect(tmp_path)
    con.execute(f"CREATE SECRET fg (TYPE ICEBERG, CLIENT_ID {sql_quote(client_id)}, "
                f"CLIENT_SECRET {sql_quote(client_secret)}, OAUTH2_SERVER_URI {sql_quote(oauth2_server_uri)})")
    con.execute(f"ATTACH {sql_quote(warehouse)} AS lake (TYPE ICEBERG, ENDPOINT {sql_quote(endpoint)}, SECRET fg)")
    return con


# ---------------------------------------------------------------------------
# 1. /v1/config and the warehouse


def test_config_through_frontgate_is_the_catalogs_own_answer(lake, catalog, relay):
    mark = relay.mark()
    r = request(lake.fg.port, "GET", f"/v1/config?warehouse={WAREHOUSE}", {"Authorization": f"Bearer {lake.alice}"})
    assert r.status == 200, r
    cfg = r.json()
    # the real fixture: no prefix, no overrides; exactly what it answers directly
    assert cfg == catalog.config, cfg
    assert cfg["defaults"] == {} and cfg["overrides"] == {}, cfg
    assert "GET /v1/{prefix}/namespaces" in cfg["endpoints"], cfg
    (rec,) = relay.since(mark)
    assert (rec.method, rec.target) == ("GET", f"/v1/config?warehouse={WAREHOUSE}")  # forwarded unchanged
    assert_identity(rec, "alice", ALICE_GROUPS)
    assert rec.values("X-Forwarded-Host") == [f"127.0.0.1:{lake.fg.port}"], rec.headers


# ---------------------------------------------------------------------------
# 2. PyIceberg


def test_pyiceberg_with_a_static_key_creates_appends_and_reads_back(lake, relay):
    mark = relay.mark()
    cat = pyiceberg(lake.url, token=lake.alice)
    ns = new_namespace()
    write_table(cat, ns)
    assert (ns,) in cat.list_namespaces()
    assert cat.load_namespace_properties(ns)["owner-team"] == "interop"
    assert cat.list_tables(ns) == [(ns, "cities")]
    _, rows = read_back(cat, ns)
    assert rows == ROWS

    seen = relay.since(mark)
    paths = {(r.method, r.path) for r in seen}
    for want in (("GET", "/v1/config"), ("POST", "/v1/namespaces"), ("POST", f"/v1/namespaces/{ns}/tables"),
                 ("POST", f"/v1/namespaces/{ns}/tables/cities"), ("GET", f"/v1/namespaces/{ns}/tables/cities")):
        assert want in paths, (want, seen)
    for rec in seen:
        assert_identity(rec, "alice", ALICE_GROUPS)
    assert lake.alice not in lake.fg.log()


def test_pyiceberg_with_client_credentials_through_frontgates_token_endpoint(lake, relay):
    mark = relay.mark()
    cat = pyiceberg(lake.url, credential=f"bob:{lake.bob}", **{"oauth2-server-uri": lake.token_url})
    ns = new_namespace()
    write_table(cat, ns)
    _, rows = read_back(cat, ns)
    assert rows == ROWS
    # frontgate answered the token request itself; the catalog saw bob's identity only
    seen = relay.since(mark)
    assert seen and not [r for r in seen if "oauth" in r.path], seen
    for rec in seen:
        assert_identity(rec, "bob", ())
    lake.fg.wait_log(r'method=POST path=/v1/oauth/tokens status=200 ')
    assert lake.bob not in lake.fg.log()


# ---------------------------------------------------------------------------
# 3. DuckDB reads what PyIceberg wrote


def test_duckdb_reads_what_pyiceberg_wrote_with_client_credentials(lake, relay, tmp_path):
    ns = new_namespace()
    write_table(pyiceberg(lake.url, token=lake.alice), ns)
    mark = relay.mark()
    con = duckdb_attach(tmp_path, lake.token_url, "bob", lake.bob, lake.url)
    rows = con.execute(f"SELECT id, city FROM lake.{ns}.cities ORDER BY id").fetchall()
    assert rows == list(zip(ROWS["id"], ROWS["city"]))
    seen = relay.since(mark)
    assert ("GET", "/v1/config") in {(r.method, r.path) for r in seen}, seen
    load = [r for r in seen if r.method == "GET" and r.path == f"/v1/namespaces/{ns}/tables/cities"]
    assert load, seen
    # DuckDB asks for vended credentials on loadTable; the header reaches the catalog unchanged
    assert load[-1].values("X-Iceberg-Access-Delegation") == ["vended-credentials"], load[-1].headers
    for rec in seen:
        assert_identity(rec, "bob", ())
    lake.fg.wait_log(r'method=POST path=/v1/oauth/tokens status=200 ')


def test_duckdb_with_frontgate_broker_and_a_service_account_token(lake_factory, relay, tmp_path):
    """
    The duckgres flow: DuckDB's secret points OAUTH2_SERVER_URI at `frontgate broker`, which
    serves the pod's projected service-account token; frontgate checks it with TokenReview
    (tests/e2e/fake_apiserver.py stands in for the API server) and the catalog sees the service
    account.
    """
    ca = fake_apiserver.TestCA()
    caller = "caller-" + secrets.token_urlsafe(16)
    apiserver = fake_apiserver.FakeAPIServer(ca, callers=[caller]).start()
    broker = None
    try:
        audience = "https://frontgate.interop"
        sa = fake_apiserver.sa_token(ns="analytics", sa="duckling", aud=(audience,))
        apiserver.allow(sa, fake_apiserver.sa_user(ns="analytics", sa="duckling", pod="duckling-0"))
        files = {"apiserver-ca.crt": ca.pem, "caller-token": caller + "\n"}
        tr = fake_apiserver.tokenreview_yaml("cluster-sa", apiserver.url, audiences=(audience,))
        lake = lake_factory(files=files, tokenreview=tr)
        ns = new_namespace()
        write_table(pyiceberg(lake.url, token=lake.alice), ns)

        token_file = tmp_path / "sa-token"
        token_file.write_text(sa + "\n")
        broker = fg_e2e.Broker(token_file).started()
        mark = relay.mark()
        con = duckdb_attach(tmp_path, f"http://{broker.listen}/token", "duckling", "unused", lake.url)
        rows = con.execute(f"SELECT id, city FROM lake.{ns}.cities ORDER BY id").fetchall()
        assert rows == list(zip(ROWS["id"], ROWS["city"]))

        reviews = [rv for rv in apiserver.snapshot() if rv.token == sa]
        assert reviews and all(rv.audiences == [audience] and rv.caller == caller for rv in reviews), reviews
        seen = relay.since(mark)
        assert seen, "DuckDB's requests never reached the catalog"
        for rec in seen:
            assert rec.values("X-Remote-User") == ["system:serviceaccount:analytics:duckling"], rec.headers
            assert "system:serviceaccounts:analytics" in rec.values("X-Remote-Group"), rec.headers
            assert rec.values("Authorization") == [], "the service-account token reached the catalog"
        assert sa not in lake.fg.log()
    finally:
        if broker:
            broker.stop()
        apiserver.stop()


# ---------------------------------------------------------------------------
# 4. refusals, in the Iceberg error model, as the clients' own exceptions


def test_clients_without_credentials_or_for_another_warehouse_are_refused(lake, relay, tmp_path):
    mark = relay.mark()
    with pytest.raises(UnauthorizedError) as e:
        pyiceberg(lake.url)  # no credentials: GET /v1/config is refused
    assert str(e.value) == NOT_AUTHORIZED, e.value
    with pytest.raises(UnauthorizedError) as e:
        pyiceberg(lake.url, token=new_key())  # a key frontgate does not know
    assert str(e.value) == NOT_AUTHORIZED, e.value
    with pytest.raises(ForbiddenError) as e:
        load_catalog("fg", type="rest", uri=lake.url, warehouse="marketing", token=lake.alice)
    assert str(e.value) == FORBIDDEN, e.value
    with pytest.raises(OAuthError) as e:  # the token endpoint's own (OAuth2) error
        pyiceberg(lake.url, credential=f"alice:{new_key()}", **{"oauth2-server-uri": lake.token_url})
    assert str(e.value).startswith("invalid_client"), e.value

    # an authenticated client that sets the prefix itself is checked on every request
    cat = load_catalog("fg", type="rest", uri=lake.url, warehouse=WAREHOUSE, token=lake.alice, prefix="marketing")
    with pytest.raises(ForbiddenError) as e:
        cat.list_namespaces()
    assert str(e.value) == FORBIDDEN, e.value
    n_config = len(relay.since(mark))  # only that client's /v1/config got through

    # DuckDB: the same answers, as its errors
    con = duckdb_connect(tmp_path)
    with pytest.raises(duckdb.Error) as e:
        con.execute(f"ATTACH {sql_quote(WAREHOUSE)} AS lake (TYPE ICEBERG, ENDPOINT {sql_quote(lake.url)}, "
                    "AUTHORIZATION_TYPE 'none')")
    # DuckDB 1.4 names the status, not the body
    assert "returned a non-200 status code (Unauthorized_401)" in str(e.value), e.value
    with pytest.raises(duckdb.Error) as e:
        duckdb_attach(tmp_path / "other", lake.token_url, "alice", lake.alice, lake.url, warehouse="marketing")
    assert "returned a non-200 status code (Forbidden_403)" in str(e.value), e.value

    seen = relay.since(mark)
    assert len(seen) == n_config == 1 and seen[0].path == "/v1/config", seen
    assert lake.alice not in lake.fg.log()


# ---------------------------------------------------------------------------
# 5. what the protocol carries besides identity reaches both ends unchanged


def test_access_delegation_header_and_table_config_pass_unchanged(lake, catalog, relay):
    ns = new_namespace()
    mark = relay.mark()
    cat = pyiceberg(lake.url, token=lake.alice)
    write_table(cat, ns)
    tbl, rows = read_back(cat, ns)
    assert rows == ROWS
    # PyIceberg sends X-Iceberg-Access-Delegation on every request: the catalog got it as sent
    seen = relay.since(mark)
    assert seen
    for rec in seen:
        assert rec.values("X-Iceberg-Access-Delegation") == ["vended-credentials"], rec.headers
    # loadTable's `config` (the catalog's vended credentials) reached PyIceberg's FileIO
    for k, v in VENDED.items():
        assert tbl.io.properties.get(k) == v, k
    # and the whole loadTable answer through frontgate is the catalog's, byte for byte in JSON
    path = f"/v1/namespaces/{ns}/tables/cities"
    via = request(lake.fg.port, "GET", path, {"Authorization": f"Bearer {lake.alice}",
                                              "X-Iceberg-Access-Delegation": "vended-credentials"})
    direct = request(catalog.port, "GET", path, {"X-Iceberg-Access-Delegation": "vended-credentials"})
    assert via.status == direct.status == 200, (via, direct)
    assert json.loads(via.body) == json.loads(direct.body)
    assert json.loads(via.body)["config"] == VENDED
    assert tbl.metadata_location == json.loads(direct.body)["metadata-location"]


# ---------------------------------------------------------------------------
# 6. identity modes: what the catalog receives


def mint_key_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize("identity", ["requestHeader", "passthrough", "none", "mint"])
def test_identity_mode_decides_what_the_catalog_receives(lake_factory, relay, identity):
    kw = {}
    if identity == "mint":
        port = free_port()
        issuer = f"http://127.0.0.1:{port}/mint"
        kw = {"listen": f"127.0.0.1:{port}", "files": {"mint.pem": mint_key_pem()},
              "mint": {"issuer": issuer, "keyFile": "mint.pem", "audience": "iceberg-rest", "ttl": "5m"}}
    lake = lake_factory(identity=identity, **kw)
    mark = relay.mark()
    cat = pyiceberg(lake.url, token=lake.alice, **{"header.X-Remote-User": "admin"})
    ns = new_namespace()
    cat.create_namespace(ns)
    assert (ns,) in cat.list_namespaces()
    seen = relay.since(mark)
    assert len(seen) >= 3, seen
    for rec in seen:
        # never the client's own identity header, whatever the mode
        assert "admin" not in rec.values("X-Remote-User"), rec.headers
        if identity == "requestHeader":
            assert_identity(rec, "alice", ALICE_GROUPS)
        elif identity == "passthrough":
            assert rec.values("Authorization") == [f"Bearer {lake.alice}"], "the client's bearer was not passed"
            assert rec.values("X-Remote-User") == [] and rec.values("X-Remote-Group") == [], rec.headers
        elif identity == "none":
            assert rec.values("Authorization") == [], "a credential reached the catalog"
            assert rec.values("X-Remote-User") == [] and rec.values("X-Remote-Group") == [], rec.headers
        else:
            (auth,) = rec.values("Authorization")
            assert auth.startswith("Bearer ") and lake.alice not in auth, "the API key itself reached the catalog"
            claims = fake_catalog.OidcVerifier(issuer, "iceberg-rest").verify(auth[7:])["claims"]
            assert claims["sub"] == "alice" and sorted(claims["groups"]) == sorted([*ALICE_GROUPS, AUTHENTICATED])
            assert rec.values("X-Remote-User") == [], rec.headers
    if identity == "mint":
        assert len({r.value("Authorization") for r in seen}) == 1, "frontgate did not reuse the minted token"
