#!/usr/bin/env python3
"""
Inputs of the side-by-side benchmark (tests/bench/run):

  gen.py jwt DIR ISSUER POOL   RSA-2048 key, JWKS + discovery for ISSUER, one reused token,
                               tokens that must be refused, and POOL distinct tokens (one
                               line each). Kept in DIR and reused while the key, issuer and
                               pool size match and the tokens live for another 2 hours:
                               minting is one RSA signature per token (about 1 ms per core).
  gen.py keys FILE PLAIN N     N static API keys: key-file lines to FILE, the keys to PLAIN
  gen.py index FILE N          a workspace index (TSV) of N workspaces root:bench:wNNNNNNN
  gen.py tls DIR               a self-signed ECDSA P-256 certificate for 127.0.0.1 (the TLS
                               listeners of every peer): tls.crt, tls.key and tls.pem (both,
                               for HAProxy)
  gen.py blob FILE SIZE        a Status JSON document of exactly SIZE bytes (padded)
  gen.py ports N               N free loopback TCP ports, space-separated
"""
import base64
import hashlib
import json
import multiprocessing
import os
import secrets
import socket
import sys
import time

AUD = "frontgate"
TOKEN_LIFE = 7 * 24 * 3600  # pool tokens live a week, so a cached pool survives many runs


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj):
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def _load_key(path):
    from cryptography.hazmat.primitives import serialization

    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def _sign(key, header, claims):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signing_input = f"{b64json(header)}.{b64json(claims)}".encode()
    sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return signing_input.decode() + "." + b64(sig)


def _mint_range(args):
    """A worker of the pool: distinct tokens i in [lo, hi)."""
    key_path, kid, issuer, iat, exp, lo, hi = args
    key = _load_key(key_path)
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    out = []
    for i in range(lo, hi):
        claims = {"iss": issuer, "aud": AUD, "sub": f"user-{i}", "groups": ["bench"],
                  "iat": iat, "exp": exp, "jti": f"p{i}"}
        out.append(_sign(key, header, claims))
    return out


def cmd_jwt(directory, issuer, pool):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    os.makedirs(directory, exist_ok=True)
    meta_path = os.path.join(directory, "meta.json")
    now = int(time.time())
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        if (meta["issuer"] == issuer and meta["pool"] == pool and meta["exp"] > now + 7200
                and all(os.path.isfile(os.path.join(directory, n)) for n in meta["files"])):
            print(f"gen jwt: reusing {pool} tokens in {directory} (minted {now - meta['iat']} s ago)")
            return
    except (OSError, ValueError, KeyError):
        pass

    t0 = time.monotonic()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    nums = key.public_key().public_numbers()
    n_bytes = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
    e_bytes = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
    jwk = {"kty": "RSA", "e": b64(e_bytes), "n": b64(n_bytes)}
    # RFC 7638 thumbprint as kid
    kid = b64(hashlib.sha256(json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()).digest())
    jwks = {"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}
    discovery = {"issuer": issuer, "jwks_uri": issuer + "/jwks.json",
                 "id_token_signing_alg_values_supported": ["RS256"]}

    def write(name, data, mode=0o644):
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        os.chmod(path, mode)

    write("key.pem", pem, 0o600)
    write("pub.pem", pub_pem)
    write("jwks.json", json.dumps(jwks))
    os.makedirs(os.path.join(directory, ".well-known"), exist_ok=True)
    write(".well-known/openid-configuration", json.dumps(discovery))

    iat, exp = now, now + TOKEN_LIFE
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    base = {"iss": issuer, "aud": AUD, "sub": "alice", "groups": ["bench"], "iat": iat, "exp": exp}
    write("token.txt", _sign(key, header, base) + "\n")
    # Tokens both proxies must refuse: another key, expired, another audience, another issuer.
    write("wrong-key.txt", _sign(other, header, base) + "\n")
    write("expired.txt", _sign(key, header, {**base, "iat": now - 7200, "exp": now - 3600}) + "\n")
    write("wrong-aud.txt", _sign(key, header, {**base, "aud": "someone-else"}) + "\n")
    write("wrong-iss.txt", _sign(key, header, {**base, "iss": "http://127.0.0.1:1"}) + "\n")

    key_path = os.path.join(directory, "key.pem")
    procs = max(1, os.cpu_count() or 1)
    step = (pool + procs * 8 - 1) // (procs * 8)
    ranges = [(key_path, kid, issuer, iat, exp, lo, min(pool, lo + step)) for lo in range(0, pool, step)]
    with multiprocessing.Pool(procs) as p, open(os.path.join(directory, "pool.txt"), "w") as f:
        for chunk in p.imap(_mint_range, ranges):
            f.write("\n".join(chunk) + "\n")
    files = ["key.pem", "pub.pem", "jwks.json", ".well-known/openid-configuration", "token.txt",
             "wrong-key.txt", "expired.txt", "wrong-aud.txt", "wrong-iss.txt", "pool.txt"]
    with open(meta_path, "w") as f:
        json.dump({"issuer": issuer, "pool": pool, "kid": kid, "iat": iat, "exp": exp, "files": files}, f)
    print(f"gen jwt: minted {pool} RS256 tokens in {time.monotonic() - t0:.1f} s ({procs} processes)")


def cmd_keys(path, plain_path, n):
    lines, keys = [], []
    for i in range(n):
        key = "fgk_" + secrets.token_urlsafe(32)[:43]
        keys.append(key)
        lines.append(f"bench-{i:06d}:{hashlib.sha256(key.encode()).hexdigest()}:bench")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(plain_path, "w") as f:
        f.write("\n".join(keys) + "\n")


def cmd_index(path, n):
    with open(path, "w") as f:
        f.write("cluster\tpath\tshard\n")
        chunk = 100000
        for lo in range(0, n, chunk):
            f.write("".join(f"c{i:07d}\troot:bench:w{i:07d}\tbackend\n" for i in range(lo, min(n, lo + chunk))))


def cmd_tls(directory):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt = cert.public_bytes(serialization.Encoding.PEM)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    for n, data, mode in (("tls.crt", crt, 0o644), ("tls.key", pem, 0o600), ("tls.pem", crt + pem, 0o600)):
        path = os.path.join(directory, n)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)


def cmd_blob(path, size):
    head = '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":200,"pad":"'
    tail = '"}\n'
    with open(path, "w") as f:
        f.write(head + "x" * (size - len(head) - len(tail)) + tail)


def cmd_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))


def main(argv):
    if len(argv) >= 2 and argv[1] == "jwt" and len(argv) == 5:
        cmd_jwt(argv[2], argv[3], int(argv[4]))
    elif len(argv) >= 2 and argv[1] == "keys" and len(argv) == 5:
        cmd_keys(argv[2], argv[3], int(argv[4]))
    elif len(argv) >= 2 and argv[1] == "index" and len(argv) == 4:
        cmd_index(argv[2], int(argv[3]))
    elif len(argv) >= 2 and argv[1] == "tls" and len(argv) == 3:
        cmd_tls(argv[2])
    elif len(argv) >= 2 and argv[1] == "blob" and len(argv) == 4:
        cmd_blob(argv[2], int(argv[3]))
    elif len(argv) >= 2 and argv[1] == "ports" and len(argv) == 3:
        cmd_ports(int(argv[2]))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
