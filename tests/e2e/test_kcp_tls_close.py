"""
index.fromKcp over TLS against a shard that closes the way kcp (Go's net/http) does: the
request says `Connection: close`, so the answer's last bytes and the TLS close_notify leave in
one write, and frontgate reads them in one pass.

libevent 2.1's bufferevent_openssl (do_read) reports that close_notify as EOF to the bufferevent's
event callback before it commits the application data it decrypted in the same pass: evhttp,
called at once, fails a complete answer as "connection closed" (EVREQ_HTTP_EOF), and every retry
of the same page fails alike. Whether it happens depends on where the last record lands in the
read buffer (and, with a real server, on close_notify having arrived by the time that record is
read), so the shard here serves the list in pages whose sizes walk across a read buffer's worth,
each page's last bytes in a record of their own, sent in one write with close_notify.
"""
import json
import socket
import ssl
import threading

import pytest

from conftest import Frontgate, request
from fake_apiserver import TestCA

LC_PATH = "/clusters/*/apis/core.kcp.io/v1alpha1/logicalclusters"
SHARD_PATH = "/clusters/root/apis/core.kcp.io/v1alpha1/shards"

# Page n's answer is FIRST + n * STEP bytes, sent as one record of all but its last TAIL bytes,
# one record of those, and close_notify. The sizes cover 1 KiB to past 16 KiB: every place the
# end of the first record can fall in the read buffers libevent reserves (4 KiB reads into
# chains of up to 8 KiB).
FIRST, STEP, PAGES, TAIL = 1024, 384, 42, 64


class ClosingTlsShard:
    """A kcp shard over TLS (Shards, paged LogicalClusters, watches that stay open) whose list
    answers end as described above. Each request is a connection of its own."""

    def __init__(self, directory):
        ca = TestCA("kcp tls-close shard CA")
        self.ca_file = ca.write_ca(directory, "shard-ca.crt")
        crt, key = ca.write_leaf(directory, "shard", cn="127.0.0.1")
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(crt, key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.ctx.num_tickets = 0  # no session tickets in between: the records are the answer's
        self.lock = threading.Lock()
        self.lists = {}  # (resource, continue) -> how many times it was asked for
        self.conns = []
        self.stopping = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.stopping.set()
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    # -- TLS over memory BIOs, so the test decides which bytes go out in which write

    def _serve(self, c):
        inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.ctx.wrap_bio(inb, outb, server_side=True)
        try:
            self._pump(c, inb, outb, tls.do_handshake)
            req = b""
            while b"\r\n\r\n" not in req:
                req += self._pump(c, inb, outb, lambda: tls.read(65536))
            target = req.split(b" ", 2)[1].decode()
            path, _, query = target.partition("?")
            if "watch=true" in query:
                tls.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
                c.sendall(outb.read())
                while c.recv(65536):  # open until frontgate ends the watch
                    pass
                return
            answer = self._list(path, query)
            tls.write(answer[:-TAIL])
            tls.write(answer[-TAIL:])
            try:
                tls.unwrap()  # close_notify; frontgate's own is not waited for
            except ssl.SSLWantReadError:
                pass
            c.sendall(outb.read())  # the whole answer and close_notify in one write
            c.recv(65536)  # then as Go does: wait for the client to go, and close
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()

    @staticmethod
    def _pump(c, inb, outb, op):
        """Runs op until it no longer wants to read, moving bytes between socket and BIOs."""
        while True:
            try:
                r = op()
                if outb.pending:
                    c.sendall(outb.read())
                return r
            except ssl.SSLWantReadError:
                if outb.pending:
                    c.sendall(outb.read())
                data = c.recv(65536)
                if not data:
                    raise OSError("client closed")
                inb.write(data)

    def _list(self, path, query):
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        cont = params.get("continue", "")
        if path == SHARD_PATH:
            resource, size = "shards", FIRST
            items = [{"apiVersion": "core.kcp.io/v1alpha1", "kind": "Shard",
                      "metadata": {"name": "root", "resourceVersion": "10"},
                      "spec": {"baseURL": self.url}}]
            nxt = ""
        elif path == LC_PATH:
            resource = "logicalclusters"
            n = int(cont[1:]) if cont else 0
            size = FIRST + n * STEP
            cluster = "tlsclose%08d" % n
            items = [{"apiVersion": "core.kcp.io/v1alpha1", "kind": "LogicalCluster",
                      "metadata": {"name": "cluster", "resourceVersion": "10",
                                   "annotations": {"kcp.io/cluster": cluster,
                                                   "kcp.io/path": "root:page%d" % n}},
                      "status": {"phase": "Ready"}}]
            nxt = "p%d" % (n + 1) if n + 1 < PAGES else ""
        else:
            body = b'{"kind":"Status","code":404}'
            return (b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                    % len(body)) + body
        with self.lock:
            self.lists[(resource, cont)] = self.lists.get((resource, cont), 0) + 1
        doc = json.dumps({"apiVersion": "core.kcp.io/v1alpha1", "kind": "List", "items": items,
                          "metadata": {"continue": nxt, "resourceVersion": "10"}}).encode()

        def head(n):
            return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % n)
        pad = size - len(head(len(doc))) - len(doc)
        assert pad >= 0, (size, len(doc))
        body = doc + b" " * pad
        while len(head(len(body))) + len(body) > size:  # Content-Length grew a digit
            body = body[:-1]
        return head(len(body)) + body


@pytest.fixture
def shard(tmp_path):
    s = ClosingTlsShard(tmp_path)
    yield s
    s.stop()


def test_a_tls_shard_closing_right_after_its_answer_is_listed(shard, tmp_path):
    cfg = f"""
workers: 1
listeners: [{{address: 127.0.0.1:0}}]
routes: [{{prefix: /clusters/, workspace: path}}]
index:
  fromKcp:
    rootShard: {{url: "{shard.url}", caFile: "{shard.ca_file}", tokenFile: kcp.token}}
"""
    fg = Frontgate(tmp_path / "fg", cfg, files={"kcp.token": "watcher-token\n"}).start()
    try:
        # every page of the list arrives whole the first time: no page is asked for twice
        fg.wait_log(r"kcp shard root: %d logical clusters listed" % PAGES, timeout=20)
        fg.wait_log(r"kcp: every shard has synced")
        assert request(fg.port, "GET", "/readyz").status == 200
        with shard.lock:
            lists = dict(shard.lists)
        assert lists[("shards", "")] == 1, lists
        for n in range(PAGES):
            assert lists[("logicalclusters", "p%d" % n if n else "")] == 1, (n, lists)
        assert "connection closed" not in fg.log()
    finally:
        fg.stop()
