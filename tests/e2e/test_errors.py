"""Operator-facing errors: every message names its place (file:line:column) and its cause.

File errors carry the config position of the key that named the file and the OS reason or
OpenSSL's reason in words; command-line mistakes get their own sentence; an IdP that is down
is "connection refused to <url>"; the ready line says what /readyz waits for; durations need a
unit; every subcommand has --help; the examples in config/examples pass `frontgate check`.
"""
import http.client
import os
import re
import shutil
import subprocess
import textwrap

import pytest

from conftest import FRONTGATE_BIN, closed_port, std_config

from faults import FaultIdp

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "config", "examples")
EXAMPLE_CONFIGS = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".yaml"))


def run(*args, cwd=None, env=None):
    return subprocess.run([FRONTGATE_BIN, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=30)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A directory with every file the examples name, made by config/examples/gen-files."""
    d = tmp_path_factory.mktemp("examples")
    env = dict(os.environ, FRONTGATE=FRONTGATE_BIN)
    p = subprocess.run([os.path.join(EXAMPLES, "gen-files"), str(d)], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    for name in EXAMPLE_CONFIGS:
        shutil.copy(os.path.join(EXAMPLES, name), d / name)
    return d


def check(d, yaml, name="frontgate.yaml"):
    """Writes yaml as d/name and runs `frontgate check -c` on it; (rc, stderr lines)."""
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(yaml))
    p = run("check", "-c", path)
    return p.returncode, p.stderr.splitlines()


def where(yaml, name):
    """line:column of the first `name` written as a value in yaml (dedented), as in errors."""
    for i, ln in enumerate(textwrap.dedent(yaml).splitlines(), 1):
        m = re.search(r"[:\[{,] *(" + re.escape(name) + r")(?=[,}\] ]|$)", ln)
        if m:
            return f"{i}:{m.start(1) + 1}"
    raise AssertionError(f"{name} not in the config")


# ---------------------------------------------------------------------------
# the examples


@pytest.mark.parametrize("example", EXAMPLE_CONFIGS)
def test_example_passes_check(files, example):
    # `check` contacts no peer (shards, IdPs and API servers are not dialled), so every
    # example passes with only the files gen-files makes.
    p = run("check", "-c", str(files / example))
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.fullmatch(re.escape(str(files / example)) + r": ok \(\d+ listeners, \d+ shards, "
                        r"\d+ routes, \d+ workspaces, \d+ authenticators\)\n", p.stdout), p.stdout


def test_examples_are_the_readme_ones():
    assert EXAMPLE_CONFIGS == ["iceberg-ingress.yaml", "kcp-front-proxy.yaml", "reference.yaml"]


def test_gen_files_prints_each_key_once_and_stores_its_hash(tmp_path):
    env = dict(os.environ, FRONTGATE=FRONTGATE_BIN)
    p = subprocess.run([os.path.join(EXAMPLES, "gen-files"), str(tmp_path)], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    keys = re.findall(r"^(\S+) \((\S+)\): (fgk_\S+)$", p.stdout, re.M)
    assert [(f, i) for f, i, _ in keys] == [("keys.txt", "ci-bot"), ("admin-keys.txt", "admin")]
    for f, _, key in keys:
        assert key not in (tmp_path / f).read_text(), "a key file holds a key, not its hash"
    assert not [n for n in os.listdir(tmp_path) if n.endswith("ca.key")], "CA keys left behind"


# ---------------------------------------------------------------------------
# files the config names: position of the name, and the cause


TLS = """\
listeners:
  - address: 127.0.0.1:0
    tls: {{certFile: {cert}, keyFile: {key}{ca}}}
routes:
  - prefix: /
    shard: s
shards:
  - name: s
    url: http://127.0.0.1:1
"""


def test_listener_files(files):
    d = str(files)
    cfg = "tls-case.yaml"  # run from its directory: files resolve to "./" + the name written
    os.makedirs(files / "a-directory", exist_ok=True)
    cases = [
        (("missing.crt", "tls.key"),
         f"{cfg}:3:21: ./missing.crt: cannot load listener certFile: no such file or directory"),
        (("token", "tls.key"),
         f"{cfg}:3:21: ./token: cannot load listener certFile: not a PEM certificate"),
        (("a-directory", "tls.key"),
         f"{cfg}:3:21: ./a-directory: cannot load listener certFile: is a directory"),
        (("tls.crt", "missing.key"),
         f"{cfg}:3:39: ./missing.key: cannot load listener keyFile: no such file or directory"),
        (("tls.crt", "tls.crt"),
         f"{cfg}:3:39: ./tls.crt: cannot load listener keyFile: not a PEM private key"),
        (("tls.crt", "front-proxy.key"),
         f'{cfg}:3:39: ./front-proxy.key: cannot load listener keyFile: key does not match '
         f'certificate "./tls.crt"'),
        (("tls.crt", "tls.key", "token"),
         f"{cfg}:3:62: ./token: cannot load listener clientCAFile: not a PEM certificate"),
        (("tls.crt", "tls.key", "nope-ca.crt"),
         f"{cfg}:3:62: ./nope-ca.crt: cannot load listener clientCAFile: no such file or "
         f"directory"),
    ]
    for args, want in cases:
        with open(f"{d}/tls-case.yaml", "w") as f:
            f.write(TLS.format(cert=args[0], key=args[1],
                               ca=f", clientCAFile: {args[2]}" if len(args) > 2 else ""))
        p = run("check", "-c", "tls-case.yaml", cwd=d)
        lines = p.stderr.splitlines()
        assert p.returncode == 1 and lines == [want, "tls-case.yaml: 1 error(s)"], (args, lines)


def test_shard_and_authenticator_files(files):
    d = str(files)
    rc, lines = check(files, f"""\
        listeners:
          - address: 127.0.0.1:0
        shards:
          - name: s
            url: https://127.0.0.1:1
            caFile: {d}/missing-ca.crt
        routes:
          - prefix: /
            shard: s
        authenticators:
          - name: keys
            staticKeys: {{file: {d}/missing-keys.txt}}
          - name: tr
            tokenReview: {{url: http://127.0.0.1:1, tokenFile: {d}/missing-token}}
        """)
    cfg = f"{d}/frontgate.yaml"
    assert rc == 1
    assert lines == [
        f"{cfg}:6:13: {d}/missing-ca.crt: cannot load shard caFile: no such file or directory",
        f"{cfg}:12:24: {d}/missing-keys.txt: cannot read key file: no such file or directory",
        f"{cfg}:14:55: {d}/missing-token: cannot read tokenReview tokenFile: no such file or "
        f"directory",
        f"{cfg}: 3 error(s)",
    ], lines


def test_shard_client_key_mismatch(files):
    d = str(files)
    rc, lines = check(files, f"""\
        listeners:
          - address: 127.0.0.1:0
        shards:
          - name: s
            url: https://127.0.0.1:1
            caFile: {d}/shard-ca.crt
            clientCertFile: {d}/front-proxy.crt
            clientKeyFile: {d}/tls.key
        routes:
          - prefix: /
            shard: s
        """)
    assert rc == 1
    assert lines[0] == (f"{d}/frontgate.yaml:8:20: {d}/tls.key: cannot load shard clientKeyFile: "
                        f'key does not match certificate "{d}/front-proxy.crt"'), lines


def test_index_file_errors(files):
    d = str(files)
    base = """\
        listeners:
          - address: 127.0.0.1:0
        shards:
          - name: s
            url: http://127.0.0.1:1
        routes:
          - prefix: /clusters/
            workspace: path
        indexFile: {}
        """
    rc, lines = check(files, base.format("missing.tsv"))
    assert rc == 1
    assert lines[0] == (f"{d}/frontgate.yaml:9:12: {d}/missing.tsv: cannot read index file: "
                        f"no such file or directory"), lines
    # an editor that turned the tabs into spaces
    (files / "spaces.tsv").write_text("cluster path shard\nc1 root:a s\n")
    rc, lines = check(files, base.format("spaces.tsv"))
    assert rc == 1
    assert lines[0] == (f"{d}/spaces.tsv:1:8: columns are separated by tabs, not spaces (the "
                        f"index file is tab-separated)"), lines


def test_jwt_files(files):
    d = str(files)
    yaml = f"""\
        listeners:
          - address: 127.0.0.1:0
        shards:
          - name: s
            url: http://127.0.0.1:1
        routes:
          - prefix: /
            shard: s
        authenticators:
          - name: sso
            jwt:
              issuer: {{url: https://sso.example.com, audiences: [a],
                       certificateAuthorityFile: token}}
              claimMappings:
                username: {{claim: sub, prefix: ""}}
          - name: sso2
            jwt:
              issuer: {{url: https://sso2.example.com, audiences: [a],
                       certificateAuthorityFile: missing-idp-ca.crt}}
              claimMappings:
                username: {{claim: sub, prefix: ""}}
          - name: more
            authenticationConfigurationFile: missing-authn.yaml
        """
    rc, lines = check(files, yaml)
    cfg = f"{d}/frontgate.yaml"
    assert rc == 1
    assert lines == [
        f"{cfg}:{where(yaml, 'token')}: {d}/token: jwt.issuer.certificateAuthorityFile: not a PEM certificate",
        f"{cfg}:{where(yaml, 'missing-idp-ca.crt')}: {d}/missing-idp-ca.crt: cannot read jwt.issuer.certificateAuthorityFile: "
        f"no such file or directory",
        f"{cfg}:{where(yaml, 'missing-authn.yaml')}: {d}/missing-authn.yaml: cannot read authenticationConfigurationFile: "
        f"no such file or directory",
        f"{cfg}: 3 error(s)",
    ], lines


def test_mint_and_tokenreview_files(files):
    d = str(files)
    yaml = f"""\
        listeners:
          - address: 127.0.0.1:0
        shards:
          - name: lake
            url: http://127.0.0.1:1
            identity: mint
            mint: {{issuer: https://gw.example.com/mint, keyFile: tls.crt, audience: lake}}
        routes:
          - prefix: /
            shard: lake
        authenticators:
          - name: tr
            tokenReview: {{url: https://127.0.0.1:1, caFile: token}}
          - name: tr2
            tokenReview: {{url: https://127.0.0.1:1, clientCertFile: tls.crt,
                          clientKeyFile: front-proxy.key}}
        """
    rc, lines = check(files, yaml)
    cfg = f"{d}/frontgate.yaml"
    assert rc == 1
    assert lines == [
        f"{cfg}:{where(yaml, 'tls.crt')}: {d}/tls.crt: cannot load mint.keyFile: not a PEM private key",
        f"{cfg}:{where(yaml, 'token')}: {d}/token: cannot load tokenReview caFile: not a PEM certificate",
        f"{cfg}:{where(yaml, 'front-proxy.key')}: {d}/front-proxy.key: cannot load tokenReview clientKeyFile: not a PEM "
        f"private key matching clientCertFile",
        f"{cfg}: 3 error(s)",
    ], lines


def test_empty_key_file(files):
    d = str(files)
    (files / "empty-keys.txt").write_text("")
    rc, lines = check(files, f"""\
        listeners:
          - address: 127.0.0.1:0
        routes:
          - prefix: /
            shard: s
        shards:
          - name: s
            url: http://127.0.0.1:1
        authenticators:
          - name: keys
            staticKeys: {{file: empty-keys.txt}}
        """)
    assert lines[0] == (f"{d}/frontgate.yaml:11:24: {d}/empty-keys.txt: key file is empty: a file "
                        f"being rewritten is; to admit no key, keep a comment line in it"), lines


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: no 'permission denied'")
def test_unreadable_key_file(files):
    d = str(files)
    (files / "locked.txt").write_text("# nothing\n")
    os.chmod(files / "locked.txt", 0)
    rc, lines = check(files, f"""\
        listeners:
          - address: 127.0.0.1:0
        routes:
          - prefix: /
            shard: s
        shards:
          - name: s
            url: http://127.0.0.1:1
        authenticators:
          - name: keys
            staticKeys: {{file: locked.txt}}
        """)
    assert lines[0] == (f"{d}/frontgate.yaml:11:24: {d}/locked.txt: cannot read key file: "
                        f"permission denied"), lines


# ---------------------------------------------------------------------------
# the config file itself and the command line


def test_directory_as_config(tmp_path):
    p = run("check", "-c", str(tmp_path))
    assert p.returncode == 1
    assert p.stderr.splitlines() == [
        f"{tmp_path}: cannot read config: is a directory (-c takes the config file itself, "
        f"such as {tmp_path}/frontgate.yaml)",
        f"{tmp_path}: 1 error(s)",
    ]


def test_check_without_a_file():
    p = run("check")
    assert p.returncode == 2
    assert p.stderr == ("frontgate check: which config? give it with -c FILE, for example: "
                        "frontgate check -c frontgate.yaml\n")
    p = run("check", "frontgate.yaml")
    assert p.returncode == 2
    assert p.stderr == ('frontgate check: unexpected argument "frontgate.yaml"; the config is '
                        "given with -c: frontgate check -c frontgate.yaml\n")
    p = run("check", "-c")
    assert (p.returncode, p.stderr) == (2, "frontgate check: -c needs a file name: -c FILE\n")
    p = run("run", "--bogus")
    assert (p.returncode, p.stderr) == (
        2, 'frontgate run: unknown flag "--bogus" (try frontgate run --help)\n')


def test_tab_in_yaml_indentation(tmp_path):
    rc, lines = check(tmp_path, "listeners:\n  - address: 127.0.0.1:0\nlimits:\n\theaderTimeout: 5s\n")
    assert rc == 1
    assert lines[0] == (f"{tmp_path}/frontgate.yaml:4:1: tabs are not allowed for indentation "
                        f"in YAML (use spaces)"), lines


def test_duration_without_a_unit(tmp_path):
    rc, lines = check(tmp_path, std_config("http://127.0.0.1:1", keys=False).replace(
        "connectTimeout: 2s", "connectTimeout: 5"))
    assert rc == 1
    m = [ln for ln in lines if "connectTimeout" in ln]
    assert len(m) == 1 and re.fullmatch(
        re.escape(f"{tmp_path}/frontgate.yaml") + r":\d+:19: \"connectTimeout\": duration needs "
        r"a unit \(ms, s, m, h\), such as 5s", m[0]), lines


def test_hash_key_id_with_a_colon():
    p = run("hash-key", "--id", "ci:bot")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == ('frontgate hash-key: --id "ci:bot" cannot contain \':\' (it separates the '
                        "fields of a key-file line, NAME:<sha256>:GROUPS); use letters, digits "
                        "and . _ - @ + /\n")


# ---------------------------------------------------------------------------
# --help


RUN_FLAGS = ["-c, --config FILE", "-h, --help"]


@pytest.mark.parametrize("argv", [["run", "--help"], ["-c", "x", "--help"], ["--help"]],
                         ids=["run", "plain", "top"])
def test_run_help_explains_flags_and_signals(argv):
    p = run(*argv)
    assert p.returncode == 0 and p.stderr == ""
    if argv != ["--help"]:
        assert p.stdout.startswith("Usage: frontgate [run] -c FILE\n")
        for flag in RUN_FLAGS:
            assert flag in p.stdout
        for word in ["SIGHUP", "SIGTERM, SIGINT", "limits.shutdownGracePeriod",
                     "Needs a restart: listeners (address, TLS on or off) and workers",
                     "/readyz"]:
            assert word in p.stdout, word
    else:
        assert "Every command takes --help" in p.stdout


def test_check_help():
    p = run("check", "--help")
    assert p.returncode == 0
    assert p.stdout.startswith("Usage: frontgate check -c FILE\n")
    assert "-c, --config FILE" in p.stdout and "Exit status: 0 valid, 1 invalid, 2 bad usage." \
        in p.stdout


@pytest.mark.parametrize("cmd", ["demo", "hash-key", "broker", "token", "echo-shard"])
def test_every_subcommand_has_help(cmd):
    p = run(cmd, "--help")
    assert p.returncode == 0 and p.stdout.startswith(f"Usage: frontgate {cmd}"), p.stdout


# ---------------------------------------------------------------------------
# an IdP that is down, and the ready line


def jwt_config(issuer):
    return std_config("http://127.0.0.1:1", keys=False) + f"""\
authenticators:
  - name: sso
    jwt:
      issuer: {{url: "{issuer}", audiences: [frontgate]}}
      claimMappings:
        username: {{claim: sub, prefix: ""}}
authentication:
  global: [sso]
"""


def readyz(fg):
    c = http.client.HTTPConnection("127.0.0.1", fg.port, timeout=5)
    c.request("GET", "/readyz")
    return c.getresponse().status


def test_idp_down_is_connection_refused_and_the_ready_line_says_what_it_waits_for(
        frontgate_factory):
    issuer = f"http://127.0.0.1:{closed_port()}/realms/x"
    fg = frontgate_factory(jwt_config(issuer))
    fg.wait_log(re.escape(
        "info frontgate ready: 2 workers, 1 workspaces, 2 routes, 1 shards; /readyz answers 503, "
        f'waiting for the signing keys of issuer {issuer} (authenticator "sso")') + "$")
    fg.wait_log(re.escape(
        f"warn jwt sso: discovery failed: connection refused to {issuer}/.well-known/"
        "openid-configuration; no keys yet, retrying in 500ms"))
    assert readyz(fg) == 503
    assert not [ln for ln in fg.lines() if "TLS handshake failed" in ln]


def test_ready_line_when_the_keys_arrive(frontgate_factory):
    idp = FaultIdp()
    try:
        fg = frontgate_factory(jwt_config(idp.issuer))
        start = fg.wait_log(r"info frontgate ready: .*; /readyz answers 503, waiting for the "
                            r"signing keys of issuer ")
        assert start
        fg.wait_log(r"info jwt sso: 1 signing keys")
        fg.wait_log(r"info frontgate ready: /readyz answers 200$")
        assert readyz(fg) == 200
    finally:
        idp.stop()


def test_ready_line_without_anything_to_wait_for(frontgate_factory, tmp_path):
    fg = frontgate_factory(std_config("http://127.0.0.1:1", keys=False))
    fg.wait_log(r"info frontgate ready: 2 workers, 1 workspaces, 2 routes, 1 shards$")
    assert readyz(fg) == 200
    assert not [ln for ln in fg.lines() if "/readyz answers" in ln]


def test_demo_port_clash_says_how_to_pick_another():
    """A port in use (even by a socket without SO_REUSEPORT, which frontgate's listeners would
    otherwise share) stops the demo with the flags that choose other ports."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    busy = f"127.0.0.1:{s.getsockname()[1]}"
    try:
        for args in (["--listen", busy, "--tls-listen", f"127.0.0.1:{closed_port()}"],
                     ["--listen", f"127.0.0.1:{closed_port()}", "--tls-listen", busy]):
            p = subprocess.run([FRONTGATE_BIN, "demo", *args], capture_output=True, text=True, timeout=20)
            assert p.returncode == 1, p.stdout + p.stderr
            assert f"frontgate demo: {busy} is in use" in p.stderr, p.stderr
            assert "--listen 127.0.0.1:18080 --tls-listen 127.0.0.1:18443" in p.stderr, p.stderr
            assert 'make demo ARGS="--listen' in p.stderr, p.stderr
    finally:
        s.close()
