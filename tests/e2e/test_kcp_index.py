"""
index.fromKcp: frontgate lists and watches kcp's Shards and LogicalClusters and routes by them.

The peer here is a small in-process kcp shard that speaks what a real kcp v0.28.1 sends
(tests/e2e/kcp/ has the captured wire samples): paged lists with metadata.resourceVersion,
newline-delimited chunked watch events, BOOKMARKs, and an expired resourceVersion as HTTP 200
with an ERROR event carrying a 410 Status. Any other path is answered as a shard would be, with
the path it got, so a test sees where frontgate forwarded.
"""
import json
import queue
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import Frontgate, request

LC_PATH = "/clusters/*/apis/core.kcp.io/v1alpha1/logicalclusters"
SHARD_PATH = "/clusters/root/apis/core.kcp.io/v1alpha1/shards"
# index.fromKcp.workspaceAuthentication (test_kcp_wac.py): kept by name in KcpShard.objs
OBJ_PATHS = {
    "/clusters/*/apis/tenancy.kcp.io/v1alpha1/workspacetypes": "workspacetypes",
    "/clusters/*/apis/tenancy.kcp.io/v1alpha1/workspaceauthenticationconfigurations":
        "workspaceauthenticationconfigurations",
}


def lc(cluster, path=None, type_=None, phase="Ready", deleting=False):
    ann = {"kcp.io/cluster": cluster}
    if path:
        ann["kcp.io/path"] = path
    if type_:
        ann["internal.tenancy.kcp.io/type"] = type_
    meta = {"name": "cluster", "annotations": ann}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-04T20:00:00Z"
    return {"apiVersion": "core.kcp.io/v1alpha1", "kind": "LogicalCluster", "metadata": meta,
            "status": {"phase": phase}}


def reply(h, status, doc):
    """A JSON answer with its length."""
    body = json.dumps(doc).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def closed(sock):
    r, _, _ = select.select([sock], [], [], 0)
    if not r:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class KcpShard:
    """One kcp shard: Shards (when it is the root), LogicalClusters, and a shard's answers."""

    def __init__(self, tls=None):
        """tls: an ssl.SSLContext (server side) to serve https with; its client certificate,
        when one is asked for and sent, is recorded per list and watch (list_heads)."""
        self.rv = 100
        self.lock = threading.Condition()
        self.lcs = {}        # cluster -> object
        self.shards = {}     # name -> baseURL
        self.watches = []    # (resource, queue)
        self.objs = {res: {} for res in OBJ_PATHS.values()}  # resource -> key -> object
        self.lists = {"logicalclusters": 0, "shards": 0, **{res: 0 for res in self.objs}}
        self.fail_lists = 0  # the next N lists answer 500
        self.not_served = set()  # resources answered 404 (a kcp without them)
        self.forwarded = []
        self.heads = []  # (path, [(name, value)]) of what was forwarded, in wire order
        self.list_heads = []  # (resource, Authorization header, client certificate CN or None)
        self.watch_queries = []  # (resource, query string) of every watch opened
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                outer._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        with self.lock:
            for _, q in self.watches:
                q.put(None)
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the test's side

    def _obj(self, resource, obj):
        o = json.loads(json.dumps(obj))
        o["metadata"]["resourceVersion"] = str(self.rv)
        return o

    def _event(self, resource, type_, obj):
        with self.lock:
            self.rv += 1
            o = self._obj(resource, obj)
            for res, q in self.watches:
                if res == resource:
                    q.put(json.dumps({"type": type_, "object": o}).encode() + b"\n")

    def put_lc(self, obj, quiet=False):
        cluster = obj["metadata"]["annotations"]["kcp.io/cluster"]
        with self.lock:
            new = cluster not in self.lcs
            self.lcs[cluster] = obj
        if not quiet:
            self._event("logicalclusters", "ADDED" if new else "MODIFIED", obj)

    def delete_lc(self, cluster):
        with self.lock:
            obj = self.lcs.pop(cluster)
        self._event("logicalclusters", "DELETED", obj)

    def put_shard(self, name, url, quiet=False):
        with self.lock:
            new = name not in self.shards
            self.shards[name] = url
        obj = {"apiVersion": "core.kcp.io/v1alpha1", "kind": "Shard",
               "metadata": {"name": name}, "spec": {"baseURL": url}}
        if not quiet:
            self._event("shards", "ADDED" if new else "MODIFIED", obj)

    def put_obj(self, resource, key, obj, quiet=False):
        with self.lock:
            new = key not in self.objs[resource]
            self.objs[resource][key] = obj
        if not quiet:
            self._event(resource, "ADDED" if new else "MODIFIED", obj)

    def delete_obj(self, resource, key):
        with self.lock:
            obj = self.objs[resource].pop(key)
        self._event(resource, "DELETED", obj)

    def send_raw(self, resource, data):
        with self.lock:
            for res, q in self.watches:
                if res == resource:
                    q.put(data)

    def expire(self, resource):
        """What kcp sends on a watch whose resourceVersion was compacted away."""
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": "too old resource version: 1 (100)", "reason": "Expired", "code": 410}
        self.send_raw(resource, json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")

    def drop_watches(self, resource):
        """Ends every open watch of resource, as a kcp shard restarting or its LB would."""
        with self.lock:
            for res, q in self.watches:
                if res == resource:
                    q.put(None)

    def open_watches(self, resource):
        with self.lock:
            return sum(1 for r, _ in self.watches if r == resource)

    def wait(self, pred, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.02)

    # -- the wire

    def _serve(self, h):
        path, _, query = h.path.partition("?")
        resource = ("logicalclusters" if path == LC_PATH else "shards" if path == SHARD_PATH
                    else OBJ_PATHS.get(path))
        if resource in self.not_served:
            reply(h, 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404})
            return
        if resource is not None:
            cn = None
            getpeercert = getattr(h.connection, "getpeercert", None)
            cert = getpeercert() if getpeercert else None
            for rdn in (cert or {}).get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
            self.list_heads.append((resource, h.headers.get("Authorization"), cn))
        if resource is None:
            self.forwarded.append(h.path)
            self.heads.append((h.path, list(h.headers.items())))
            reply(h, 200, {"path": h.path})
            return
        if "watch=true" in query:
            self.watch_queries.append((resource, query))
            q = queue.Queue()
            with self.lock:
                self.watches.append((resource, q))
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            try:
                while True:
                    try:
                        data = q.get(timeout=0.05)
                    except queue.Empty:
                        if closed(h.connection):
                            break  # frontgate ended the watch
                        continue
                    if data is None:
                        break
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    h.wfile.flush()
            except OSError:
                pass
            finally:
                with self.lock:
                    self.watches.remove((resource, q))
            h.close_connection = True
            return
        with self.lock:
            self.lists[resource] += 1
            if self.fail_lists:
                self.fail_lists -= 1
                status = 500
                doc = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500}
            else:
                status = 200
                if resource == "logicalclusters":
                    items = [self._obj(resource, o) for o in self.lcs.values()]
                elif resource in self.objs:
                    items = [self._obj(resource, o) for o in self.objs[resource].values()]
                else:
                    items = [self._obj(resource, {"apiVersion": "core.kcp.io/v1alpha1",
                                                  "kind": "Shard", "metadata": {"name": n},
                                                  "spec": {"baseURL": u}})
                             for n, u in self.shards.items()]
                doc = {"apiVersion": "core.kcp.io/v1alpha1", "kind": "List", "items": items,
                       "metadata": {"continue": "", "resourceVersion": str(self.rv)}}
        reply(h, status, doc)


@pytest.fixture
def kcp():
    k = KcpShard()
    k.put_shard("root", k.url, quiet=True)
    k.put_lc(lc("root"), quiet=True)
    k.put_lc(lc("15hh88sn7dzq6n6y", "root:org", "root:organization"), quiet=True)
    yield k
    k.stop()


def config(kcp_url, extra=""):
    return f"""
workers: 1
listeners: [{{address: 127.0.0.1:0}}]
routes: [{{prefix: /clusters/, workspace: path}}]
index:
  fromKcp:
    rootShard: {{url: "{kcp_url}", tokenFile: kcp.token}}
{extra}"""


@pytest.fixture
def fg(kcp, tmp_path):
    f = Frontgate(tmp_path / "fg", config(kcp.url), files={"kcp.token": "watcher-token\n"})
    f.start()
    f.wait_log(r"kcp: every shard has synced")
    yield f
    f.stop()


def status(fg, path):
    return request(fg.port, "GET", path).status


def eventually(pred, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)


def test_listed_workspaces_route_by_path_and_cluster(kcp, fg):
    r = request(fg.port, "GET", "/clusters/root:org/api/v1/namespaces?limit=1")
    assert r.status == 200, r
    assert r.json()["path"] == "/clusters/15hh88sn7dzq6n6y/api/v1/namespaces?limit=1"
    assert status(fg, "/clusters/root/api") == 200
    assert status(fg, "/clusters/15hh88sn7dzq6n6y/api") == 200
    assert status(fg, "/clusters/root:nope/api") == 403
    assert request(fg.port, "GET", "/readyz").status == 200


@pytest.mark.concurrency  # generations swapped on the control loop while workers resolve
def test_watched_changes_take_effect_without_reload(kcp, fg):
    kcp.wait(lambda: kcp.open_watches("logicalclusters") == 1, "the logical-cluster watch")
    reloads = fg.log().count("reloaded configuration")
    assert status(fg, "/clusters/root:team/api") == 403
    kcp.put_lc(lc("my6vsk10b0o3nuxg", "root:team", "root:team"))
    eventually(lambda: status(fg, "/clusters/root:team/api") == 200, "an added workspace routes")
    kcp.put_lc(lc("my6vsk10b0o3nuxg", "root:team", "root:team", phase="Unavailable"))
    eventually(lambda: status(fg, "/clusters/root:team/api") == 503, "Unavailable answers 503")
    kcp.put_lc(lc("my6vsk10b0o3nuxg", "root:team", "root:team", deleting=True))
    eventually(lambda: status(fg, "/clusters/root:team/api") == 403, "a deleting workspace is 403")
    kcp.put_lc(lc("my6vsk10b0o3nuxg", "root:team", "root:team"))
    eventually(lambda: status(fg, "/clusters/root:team/api") == 200, "it came back")
    kcp.delete_lc("my6vsk10b0o3nuxg")
    eventually(lambda: status(fg, "/clusters/root:team/api") == 403, "a deleted workspace is 403")
    assert fg.log().count("reloaded configuration") == reloads  # workspaces need no reload


def test_expired_resource_version_lists_again(kcp, fg):
    kcp.wait(lambda: kcp.open_watches("logicalclusters") == 1, "the logical-cluster watch")
    lists = kcp.lists["logicalclusters"]
    kcp.put_lc(lc("2e3272qk7rd2kxfs", "root:tmp"), quiet=True)  # only a new list shows it
    kcp.expire("logicalclusters")
    kcp.wait(lambda: kcp.lists["logicalclusters"] == lists + 1, "a new list")
    eventually(lambda: status(fg, "/clusters/root:tmp/api") == 200, "the relisted workspace routes")
    fg.wait_log(r"kcp shard root: logicalclusters: resourceVersion \d+ expired; listing again")


def test_garbage_on_the_watch_relists_and_old_data_keeps_serving(kcp, fg):
    kcp.wait(lambda: kcp.open_watches("logicalclusters") == 1, "the logical-cluster watch")
    lists = kcp.lists["logicalclusters"]
    kcp.fail_lists = 1  # the first list again fails too
    kcp.send_raw("logicalclusters", b"<html>not json</html>\n")
    fg.wait_log(r"kcp shard root: logicalclusters: watch sent something that is not a watch event")
    assert status(fg, "/clusters/root:org/api") == 200  # the last good data
    kcp.wait(lambda: kcp.lists["logicalclusters"] >= lists + 2, "a failed and a good list", 15)
    fg.wait_log(r"kcp shard root: logicalclusters: list answered HTTP 500")
    kcp.wait(lambda: kcp.open_watches("logicalclusters") == 1, "watching again")
    kcp.put_lc(lc("9aaaaaaaaaaaaaaa", "root:after"))
    eventually(lambda: status(fg, "/clusters/root:after/api") == 200, "events apply again")


def test_readyz_waits_for_every_shard_and_says_which(kcp, tmp_path):
    kcp.fail_lists = 3  # the Shards list fails, then the shard's own list twice
    f = Frontgate(tmp_path / "fg", config(kcp.url), files={"kcp.token": "t\n"}).start()
    try:
        assert request(f.port, "GET", "/readyz").status == 503
        assert f.wait_log(r"waiting for kcp: the Shards at the root shard have not been listed")
        f.wait_log(r"kcp: every shard has synced", timeout=15)
        eventually(lambda: request(f.port, "GET", "/readyz").status == 200, "ready")
        assert status(f, "/clusters/root:org/api") == 200
    finally:
        f.stop()


@pytest.mark.concurrency  # a reload from the control loop while workers route
def test_a_new_shard_and_a_moved_base_url_route_without_restart(kcp, fg):
    other = KcpShard()
    try:
        other.put_lc(lc("5bbbbbbbbbbbbbbb", "root:elsewhere"), quiet=True)
        kcp.wait(lambda: kcp.open_watches("shards") == 1, "the Shards watch")
        kcp.put_shard("beta", other.url)
        eventually(lambda: status(fg, "/clusters/root:elsewhere/api") == 200, "the new shard routes")
        assert other.forwarded[-1] == "/clusters/5bbbbbbbbbbbbbbb/api"
        # the root shard moves to another URL, which serves its data from now on
        other.put_lc(lc("15hh88sn7dzq6n6y", "root:org", "root:organization"), quiet=True)
        kcp.delete_lc("15hh88sn7dzq6n6y")  # not on the old URL any more
        eventually(lambda: status(fg, "/clusters/root:org/api") in (200, 403), "settled")
        before = len(other.forwarded)
        kcp.put_shard("root", other.url)
        fg.wait_log(r"kcp shard root: baseURL is now ")

        def moved():
            request(fg.port, "GET", "/clusters/root:org/api")
            return (len(other.forwarded) > before and
                    other.forwarded[-1] == "/clusters/15hh88sn7dzq6n6y/api")
        eventually(moved, "the root shard's workspaces go to its new baseURL")
    finally:
        other.stop()


def test_reload_cannot_change_the_kcp_source(kcp, fg):
    text = open(fg.config_path).read()
    fg.write("frontgate.yaml", text.replace(kcp.url, "http://127.0.0.1:9"))
    fg.hup(expect_ok=False)
    fg.wait_log(r"index.fromKcp \(rootShard, watchTimeout, workspaceAuthentication\) cannot be "
                r"added, removed or changed")
    assert status(fg, "/clusters/root:org/api") == 200


def test_config_errors_name_the_key(tmp_path):
    import subprocess
    from conftest import FRONTGATE_BIN
    cases = [
        ("index:\n  fromKcp:\n    rootShard: {url: \"http://127.0.0.1:1\"}\n",
         "index.fromKcp.rootShard: needs a credential to list and watch kcp"),
        ("index:\n  fromKcp: {}\n", "index.fromKcp: rootShard is required"),
        ("index:\n  fromKcp:\n    rootShard: {url: \"ftp://x\", tokenFile: t}\n",
         "index.fromKcp.rootShard.url \"ftp://x\" must start with http:// or https://"),
        ("index:\n  fromKcp:\n    rootShard: {url: \"http://x\", tokenFile: t}\n    shards: {serverName: a}\n",
         "serverName cannot be shared by every shard"),
        ("index:\n  fromKcp:\n    rootShard: {url: \"http://x\", tokenFile: t}\n    shards: {url: http://y}\n",
         "unknown key"),
        ("index:\n  nope: 1\n", "unknown key"),
    ]
    for body, want in cases:
        p = tmp_path / "c.yaml"
        p.write_text("listeners: [{address: 127.0.0.1:0}]\nroutes: [{prefix: /clusters/, workspace: path}]\n" + body)
        (tmp_path / "t").write_text("x\n")
        r = subprocess.run([FRONTGATE_BIN, "check", "-c", str(p)], capture_output=True, text=True)
        assert r.returncode != 0, body
        assert want in r.stderr, (want, r.stderr)
        assert "c.yaml:" in r.stderr, r.stderr


def test_static_workspaces_are_looked_up_first(kcp, tmp_path):
    extra = f"""shards: [{{name: static, url: "{kcp.url}"}}]
workspaces: [{{cluster: staticid, path: "root:org", shard: static}}]
"""
    f = Frontgate(tmp_path / "fg", config(kcp.url, extra), files={"kcp.token": "t\n"}).start()
    try:
        f.wait_log(r"kcp: every shard has synced")
        r = request(f.port, "GET", "/clusters/root:org/api")
        assert r.status == 200 and r.json()["path"] == "/clusters/staticid/api", r
        # kcp's own workspaces still route
        assert request(f.port, "GET", "/clusters/15hh88sn7dzq6n6y/api").json()["path"] == \
            "/clusters/15hh88sn7dzq6n6y/api"
    finally:
        f.stop()


def test_a_dropped_watch_resumes_from_its_resource_version(kcp, fg):
    kcp.wait(lambda: kcp.open_watches("logicalclusters") == 1, "the logical-cluster watch")
    kcp.put_lc(lc("3ccccccccccccccc", "root:one"))
    eventually(lambda: status(fg, "/clusters/root:one/api") == 200, "the event applied")
    rv = str(kcp.rv)
    lists, watches = kcp.lists["logicalclusters"], len(kcp.watch_queries)
    kcp.drop_watches("logicalclusters")
    kcp.wait(lambda: kcp.open_watches("logicalclusters") == 1 and
             len(kcp.watch_queries) > watches, "watching again", 15)
    resumed = [q for r, q in kcp.watch_queries[watches:] if r == "logicalclusters"]
    assert f"resourceVersion={rv}&" in resumed[-1], resumed  # from the last event, not from 0
    assert kcp.lists["logicalclusters"] == lists  # no relist
    assert status(fg, "/clusters/root:one/api") == 200
    kcp.put_lc(lc("4ddddddddddddddd", "root:two"))
    eventually(lambda: status(fg, "/clusters/root:two/api") == 200, "events apply again")


def test_a_shard_that_disappears_keeps_its_index_then_leaves_with_its_shard(kcp, fg):
    beta = KcpShard()
    beta.put_lc(lc("6eeeeeeeeeeeeeee", "root:beta"), quiet=True)
    try:
        kcp.wait(lambda: kcp.open_watches("shards") == 1, "the Shards watch")
        kcp.put_shard("beta", beta.url)
        eventually(lambda: status(fg, "/clusters/root:beta/api") == 200, "beta routes")
        n = fg.nlines()
        beta.stop()  # the shard is gone: its watch breaks, lists are refused
        fg.wait_log(r"kcp shard beta: logicalclusters: (watch|list) failed", start=n, timeout=10)
        # the index keeps beta's workspace: requests still resolve (a pooled connection may
        # still reach beta's last handler thread; a new one is refused: 502), never 403
        assert status(fg, "/clusters/root:beta/api") in (200, 502)
        assert status(fg, "/clusters/root:org/api") == 200
        with kcp.lock:
            del kcp.shards["beta"]
        kcp._event("shards", "DELETED", {"apiVersion": "core.kcp.io/v1alpha1", "kind": "Shard",
                                         "metadata": {"name": "beta"},
                                         "spec": {"baseURL": beta.url}})
        fg.wait_log(r"kcp shard beta: gone; its 1 workspaces leave the index", start=n)
        eventually(lambda: status(fg, "/clusters/root:beta/api") == 403, "beta's workspace left")
    finally:
        try:
            beta.stop()
        except OSError:
            pass


def test_a_workspace_not_yet_placed_is_403_until_it_is(kcp, fg):
    kcp.wait(lambda: kcp.open_watches("logicalclusters") == 1, "the logical-cluster watch")
    kcp.put_lc(lc("7fffffffffffffff", "root:new", phase="Scheduling"))
    kcp.put_lc(lc("8aaaaaaaaaaaaaab", "root:marker"))
    eventually(lambda: status(fg, "/clusters/root:marker/api") == 200, "later events applied")
    assert status(fg, "/clusters/root:new/api") == 403
    kcp.put_lc(lc("7fffffffffffffff", "root:new", phase="Initializing"))
    eventually(lambda: status(fg, "/clusters/root:new/api") == 200, "placed: it routes")


def test_per_shard_state_is_in_the_metrics(kcp, fg):
    from test_metrics import scrape, val
    kcp.wait(lambda: kcp.open_watches("logicalclusters") == 1, "the logical-cluster watch")
    _, s = scrape(fg)
    shard = {"shard": "root", "resource": "logicalclusters"}
    assert val(s, "frontgate_kcp_synced", **shard) == 1
    assert val(s, "frontgate_kcp_synced", shard="root", resource="shards") == 1
    assert val(s, "frontgate_kcp_lists_total", **shard) == 1
    assert val(s, "frontgate_kcp_logical_clusters", shard="root") == 2
    assert val(s, "frontgate_kcp_index_workspaces") == 2
    lag_before = val(s, "frontgate_kcp_index_lag_seconds_count")
    kcp.put_lc(lc("5eeeeeeeeeeeeeee", "root:metered"))
    eventually(lambda: status(fg, "/clusters/root:metered/api") == 200, "the event applied")
    kcp.expire("logicalclusters")
    kcp.wait(lambda: kcp.lists["logicalclusters"] == 2, "a relist")
    eventually(lambda: val(scrape(fg)[1], "frontgate_kcp_lists_total", **shard) == 2, "counted")
    _, s = scrape(fg)
    assert val(s, "frontgate_kcp_logical_clusters", shard="root") == 3
    assert val(s, "frontgate_kcp_index_lag_seconds_count") > lag_before
    assert val(s, "frontgate_kcp_last_seen_timestamp_seconds", **shard) > 1.7e9


def test_a_configured_shard_of_a_kcp_shards_name_keeps_kcps_workspaces_out(kcp, tmp_path):
    other = KcpShard()
    extra = f"""shards: [{{name: root, url: "{other.url}"}}]
workspaces: [{{cluster: static1, path: "root:static", shard: root}}]
"""
    f = Frontgate(tmp_path / "fg", config(kcp.url, extra), files={"kcp.token": "t\n"}).start()
    try:
        f.wait_log(r"kcp shard root: baseURL \S+ a shard of that name is configured; its "
                   r"workspaces answer 403 until that changes")
        f.wait_log(r"kcp: every shard has synced")
        assert status(f, "/clusters/root:org/api") == 403  # kcp's, on kcp's Shard "root"
        r = request(f.port, "GET", "/clusters/root:static/api")  # the file's, on its own "root"
        assert r.status == 200 and r.json()["path"] == "/clusters/static1/api"
        assert other.forwarded == ["/clusters/static1/api"] and kcp.forwarded == []
    finally:
        f.stop()
        other.stop()
