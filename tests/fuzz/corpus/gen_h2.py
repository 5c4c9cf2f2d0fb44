#!/usr/bin/env python3
"""Writes the seeds of fuzz_h2 into tests/fuzz/corpus/h2/ (committed; rerun after a change here).

A seed is one control byte (see tests/fuzz/fuzz_h2.c: 0 = the harness sends the client preface
and an empty SETTINGS first, the client reads, one piece) and the client's frames after it,
encoded by hand: HPACK literals without Huffman coding, and static-table entries.
"""
import os
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name, value, indexing=False):
    """A literal field with a new name: without indexing, or added to the dynamic table."""
    name, value = name.encode(), value.encode()
    head = b"\x40" if indexing else b"\x00"
    return head + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def indexed(i):
    return hpack_int(i, 7, 0x80)


# static table (RFC 7541 appendix A)
GET, POST, HTTP = indexed(2), indexed(3), indexed(6)


def request(method, path, *extra, authority="gw.example.com"):
    block = method + HTTP + literal(":path", path) + literal(":authority", authority)
    for name, value in extra:
        block += literal(name, value)
    return block


def headers(stream, block, end_stream=True, flags=END_HEADERS):
    return frame(HEADERS, flags | (END_STREAM if end_stream else 0), stream, block)


def rst(stream, code=8):  # CANCEL
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def window_update(stream, inc):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", inc))


def goaway(last, code=0, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + debug)


BEARER = ("authorization", "Bearer fgk_not-a-key-anyone-holds")
SETTINGS_ACK = frame(SETTINGS, ACK, 0)
get_api = request(GET, "/clusters/root/api", BEARER, ("accept", "application/json"))
post_api = request(POST, "/clusters/root/api/v1/namespaces", BEARER,
                   ("content-type", "application/json"), ("content-length", "16"))
form = b"grant_type=client_credentials&client_id=ci&client_secret=fgk_guess"
token = request(POST, "/catalog/v1/oauth/tokens",
                ("content-type", "application/x-www-form-urlencoded"))
big = literal("x-filler", "v" * 200)
cont_block = request(GET, "/clusters/root:gone/api", BEARER) + big + big + big

# the first request fills the dynamic table (:path 64, :authority 63, authorization 62), the
# others are five bytes of HPACK each: more responses than maxBufferBytes holds
indexed_get = GET + HTTP + literal(":path", "/clusters/root/api", indexing=True) + \
    literal(":authority", "gw.example.com", indexing=True) + literal(*BEARER, indexing=True)
reused_get = GET + HTTP + indexed(64) + indexed(63) + indexed(62)


def drain_stalled():
    """The client reads nothing, so frontgate's output is full when the drain comes and its
    GOAWAY waits; the client resets stalled streams (with these pieces 239-243 hold the free
    slots when the output fills) and opens new ones, which come in while the GOAWAY is still
    queued and are refused. Unknown frames (ignored) place the middle."""
    first = headers(1, token, end_stream=False) + headers(3, indexed_get) + \
        b"".join(headers(i, reused_get) for i in range(5, 305, 2))
    gap = frame(0xFA, 0, 0, b"\0" * 100)
    second = b"".join(rst(i) for i in range(233, 247, 2)) + headers(305, reused_get) + \
        headers(307, reused_get) + frame(DATA, END_STREAM, 1, form)
    filler = 2 * (len(PREFACE) + 9 + len(first) + 50) - (len(PREFACE) + 9 + len(first))
    filler -= len(gap) + len(second) + 9
    return first + gap + second + frame(0xFA, 0, 0, b"\0" * max(filler, 0))


SEEDS = {
    "get": headers(1, get_api),
    "get-ack": SETTINGS_ACK + headers(1, get_api),
    "post-data": headers(1, post_api, end_stream=False) +
    frame(DATA, 0, 1, b'{"kind":"Pod"}\n') + frame(DATA, END_STREAM, 1, b"\n"),
    "post-no-length": headers(1, request(POST, "/clusters/root/api", BEARER), end_stream=False) +
    frame(DATA, PADDED | END_STREAM, 1, b"\x03abc\0\0\0"),
    "token-endpoint": headers(1, token, end_stream=False) + frame(DATA, END_STREAM, 1, form),
    "token-trailers": headers(1, token, end_stream=False) + frame(DATA, 0, 1, form) +
    headers(1, literal("x-trailer", "t")),
    "rst-stream": headers(1, post_api, end_stream=False) + frame(DATA, 0, 1, b"{") + rst(1),
    "rapid-reset": b"".join(headers(i, get_api, end_stream=False) + rst(i)
                            for i in range(1, 40, 2)),
    "continuation": frame(HEADERS, END_STREAM, 1, cont_block[:40]) +
    frame(CONTINUATION, 0, 1, cont_block[40:300]) +
    frame(CONTINUATION, END_HEADERS, 1, cont_block[300:]),
    "continuation-flood": frame(HEADERS, END_STREAM, 1, get_api) +
    b"".join(frame(CONTINUATION, 0, 1, literal("x-c", "c")) for _ in range(12)),
    "header-bomb": headers(1, request(GET, "/clusters/root/api", BEARER) +
                           literal("x-bomb", "b" * 100, indexing=True) + indexed(62) * 120),
    "header-431": headers(1, request(GET, "/clusters/root/api", BEARER) +
                          literal("x-big", "b" * 600) + literal("x-bigger", "b" * 600)),
    "many-streams": headers(1, indexed_get) +
    b"".join(headers(i, reused_get) for i in range(3, 240, 2)),
    "ping": frame(PING, 0, 0, b"fuzz-h2!") + frame(PING, ACK, 0, b"\0" * 8),
    "window-update": headers(1, get_api) + window_update(0, 65535) + window_update(1, 1024) +
    window_update(3, 1),
    "goaway": headers(1, get_api) + headers(3, get_api, end_stream=False) + goaway(3),
    "multiplex": headers(1, request(GET, "/healthz")) + headers(3, request(GET, "/readyz")) +
    headers(5, request(GET, "/nowhere")) + headers(7, request(GET, "/api/v1")) +
    headers(9, request(GET, "/clusters/nope/api")),
    "priority": headers(1, b"\x80\x00\x00\x00\x10" + get_api, flags=END_HEADERS | PRIORITY_FLAG) +
    frame(PRIORITY, 0, 3, b"\x00\x00\x00\x01\x20"),
    "bad-heads": headers(1, request(literal(":method", "BREW"), "/clusters/root/api")) +
    headers(3, request(literal(":method", "CONNECT"), "/")) +
    headers(5, request(GET, "/clusters/root/api", ("host", "other.example.com"))) +
    headers(7, request(GET, "relative")) +
    headers(9, request(GET, "/x", (":protocol", "websocket"))),
    "connect": headers(1, literal(":method", "CONNECT") + literal(":authority", "shard:443")),
    # bit 7 with one-byte pieces: the drain comes while the token request waits for its body,
    # so the next stream is refused and the first one still answered
    "drain-midway": headers(1, token, end_stream=False) + frame(DATA, 0, 1, form[:40]) +
    headers(3, get_api) + frame(DATA, END_STREAM, 1, form[40:]),
    "drain-stalled": drain_stalled(),
    "head-request": headers(1, request(literal(":method", "HEAD"), "/clusters/root/api")),
    "settings": frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1) + struct.pack(">HI", 5, 16384)) +
    headers(1, get_api),
    # bit 0: the seed carries its own preface (here, none: an HTTP/1.1 request)
    "raw-no-preface": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "raw-preface": PREFACE + frame(SETTINGS, 0, 0) + headers(1, get_api),
}
CONTROL = {"raw-no-preface": 0x01, "raw-preface": 0x01, "drain-midway": 0x90,
           "drain-stalled": 0xC2}
# the same frames in pieces: of one byte; up to 16 bytes with no loop pass between them; up to 4
# with the client going away at the end; up to 64 with the client not reading (its output fills)
VARIANTS = {"get-bytewise": ("get", 0x10), "post-pieces": ("post-data", 0x38),
            "goaway-stalled": ("goaway", 0x02), "rst-eof": ("rst-stream", 0x24),
            "many-streams-stalled": ("many-streams", 0x42)}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "h2")
    os.makedirs(out, exist_ok=True)
    for name, body in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([CONTROL.get(name, 0)]) + body)
    for name, (seed, control) in VARIANTS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([control]) + SEEDS[seed])


if __name__ == "__main__":
    main()
