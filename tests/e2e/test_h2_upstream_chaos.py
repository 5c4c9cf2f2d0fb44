"""
A shard that answers frontgate's HTTP/2 streams with seeded random misbehaviour, in raw frames
(so it can say what no HTTP/2 library would): resets, truncated bodies, GOAWAYs with any last
stream id, SETTINGS that shrink the stream limit to 0 or 1, oversized window updates, frames
on streams that do not exist, PUSH_PROMISE (push is off), uppercase or duplicate pseudo
fields, and plain garbage. frontgate must answer every client request (200 or 502, or a cut
response after a 200 head), never crash (the suite also runs under ASan and UBSan), and serve a
well-behaved request afterwards with its descriptors back where they were.
"""

import http.client
import os
import random
import socket
import struct
import threading
import time

import hpack
import pytest

from conftest import WS_PATH, bearer, key_line, new_key, request, std_config

API = f"/clusters/{WS_PATH}/api/v1"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW = 0, 1, 3, 4, 5, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


class ChaosShard:
    BEHAVIOURS = ["ok", "ok", "ok", "rst", "cut", "goaway", "settings0", "settings1",
                  "window", "ghost", "push", "upper", "dup_status", "garbage", "no_status",
                  "close", "ping", "trailers"]

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stopping = False
        self.behaviours = []
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.acceptor = t

    def stop(self):
        self.stopping = True
        self.sock.close()
        for t in self.threads:
            t.join(3)

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)

    def _pick(self):
        with self.lock:
            b = self.rng.choice(self.BEHAVIOURS)
            self.behaviours.append(b)
            return b

    def _serve(self, s):
        s.settimeout(5)
        enc = hpack.Encoder()
        buf = b""
        try:
            s.sendall(frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100)))
            while len(buf) < len(PREFACE):
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            if not buf.startswith(PREFACE):
                return
            buf = buf[len(PREFACE):]
            while not self.stopping:
                while len(buf) < 9:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                n = int.from_bytes(buf[:3], "big")
                while len(buf) < 9 + n:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                ftype, flags = buf[3], buf[4]
                sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                buf = buf[9 + n:]
                if ftype == SETTINGS and not flags & ACK:
                    s.sendall(frame(SETTINGS, ACK, 0))
                elif ftype == HEADERS:
                    if not self._answer(s, enc, sid):
                        return
        except OSError:
            pass
        finally:
            s.close()

    def _answer(self, s, enc, sid):
        """Answers stream sid; False when the connection is to end."""
        b = self._pick()
        ok = enc.encode([(":status", "200"), ("content-length", "2")])
        if b == "ok":
            s.sendall(frame(HEADERS, END_HEADERS, sid, ok) + frame(DATA, END_STREAM, sid, b"ok"))
        elif b == "rst":
            s.sendall(frame(RST, 0, sid, struct.pack(">I", 2)))
        elif b == "cut":
            s.sendall(frame(HEADERS, END_HEADERS, sid, ok) + frame(DATA, 0, sid, b"o"))
            return False
        elif b == "goaway":
            last = self.rng.choice([0, sid - 2 if sid > 2 else 0, sid, sid + 100])
            s.sendall(frame(GOAWAY, 0, 0, struct.pack(">II", last, self.rng.choice([0, 1, 2]))))
            if last >= sid:
                s.sendall(frame(HEADERS, END_HEADERS, sid, ok) + frame(DATA, END_STREAM, sid, b"ok"))
            return False
        elif b in ("settings0", "settings1"):
            s.sendall(frame(SETTINGS, 0, 0, struct.pack(">HI", 3, int(b[-1]))))
            s.sendall(frame(HEADERS, END_HEADERS, sid, ok) + frame(DATA, END_STREAM, sid, b"ok"))
        elif b == "window":
            s.sendall(frame(WINDOW, 0, 0, struct.pack(">I", 0x7FFFFFFF)))
            s.sendall(frame(WINDOW, 0, sid, struct.pack(">I", 0x7FFFFFFF)))
        elif b == "ghost":
            s.sendall(frame(DATA, 0, sid + 1000, b"boo"))
            s.sendall(frame(HEADERS, END_HEADERS, sid, ok) + frame(DATA, END_STREAM, sid, b"ok"))
        elif b == "push":
            s.sendall(frame(PUSH, END_HEADERS, sid, struct.pack(">I", 2) + enc.encode(
                [(":method", "GET"), (":path", "/p"), (":scheme", "http"), (":authority", "x")])))
        elif b == "upper":
            s.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                            enc.encode([(":status", "200"), ("X-Upper", "1")])))
        elif b == "dup_status":
            s.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                            enc.encode([(":status", "200"), (":status", "204")])))
        elif b == "no_status":
            s.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid, enc.encode([("x-a", "1")])))
        elif b == "garbage":
            s.sendall(os.urandom(64))
            return False
        elif b == "close":
            return False
        elif b == "ping":
            s.sendall(frame(PING, 0, 0, b"12345678") + frame(HEADERS, END_HEADERS, sid, ok) +
                      frame(DATA, END_STREAM, sid, b"ok"))
        elif b == "trailers":
            s.sendall(frame(HEADERS, END_HEADERS, sid, ok) + frame(DATA, 0, sid, b"ok") +
                      frame(HEADERS, END_HEADERS | END_STREAM, sid, enc.encode([("x-t", "1")])))
        return True


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_misbehaviour_of_an_h2_shard_never_hurts_frontgate(frontgate_factory, seed):
    chaos = ChaosShard(seed)
    try:
        key = new_key()
        text = std_config(chaos.url).replace("workers: 2\n", "workers: 1\n").replace(
            "    identity: requestHeader\n", "    identity: requestHeader\n    protocol: h2\n", 1)
        fg = frontgate_factory(text, {"keys.txt": key_line("alice", key) + "\n"})
        base = fds(fg.proc.pid)
        codes = []
        lock = threading.Lock()

        def client(i):
            for j in range(15):
                try:
                    r = request(fg.port, "GET", f"{API}/pods?c={i}&j={j}", headers=bearer(key),
                                timeout=15)
                    code = r.status
                    assert code in (200, 502), r
                    if code == 200:
                        assert r.body in (b"ok", b""), r
                except (ConnectionError, OSError, http.client.HTTPException) as e:
                    code = type(e).__name__  # a cut body after a 200 head
                except AssertionError as e:
                    code = f"bad: {e}"
                with lock:
                    codes.append(code)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(codes) == 90, codes
        assert not [c for c in codes if str(c).startswith("bad")], codes
        assert 200 in codes and 502 in codes
        assert fg.proc.poll() is None
        # frontgate is whole: the descriptors come back, a plain shard is served
        deadline = time.monotonic() + 10
        while fds(fg.proc.pid) > base + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fds(fg.proc.pid) <= base + 1
        assert request(fg.port, "GET", "/healthz").status == 200
    finally:
        chaos.stop()
