"""
The access log: `log: {accessLog: text | json | off}` (true and false stay text and off), with
a request id per request (the client's X-Request-Id when it is a short token, else frontgate's),
sent to the shard as exactly one X-Request-Id.
"""
import json
import re
import subprocess

from conftest import (
    FRONTGATE_BIN,
    WS_PATH,
    Frontgate,
    bearer,
    key_line,
    new_key,
    raw_request,
    request,
    std_config,
)

JSON_KEYS = {"time", "level", "msg", "request_id", "client", "method", "path", "status",
             "bytes_in", "bytes_out", "duration_ms", "protocol"}


def start(shard, tmp_path, mode):
    key = new_key()
    extra = f"log: {{accessLog: {mode}}}\n" if mode is not None else ""
    fg = Frontgate(tmp_path / "fg", std_config(shard.url, extra=extra),
                   files={"keys.txt": key_line("ops", key, ["dev"]) + "\n"})
    return fg.start(), key


def json_lines(fg, n):
    fg.wait_log(r'"msg":"access"')
    lines = []
    for ln in fg.lines():
        if '"msg":"access"' in ln:
            lines.append(json.loads(ln))  # the whole line is one JSON object
    return lines[-n:]


def test_json_lines_carry_the_request_and_its_timings(shard, tmp_path):
    fg, key = start(shard, tmp_path, "json")
    try:
        r = request(fg.port, "POST", f"/clusters/{WS_PATH}/api/v1/x?secret=q", body=b"12345",
                    headers={**bearer(key), "X-Request-Id": "req-42.a:b"})
        assert r.status == 200
        fg.wait_log(r'"request_id":"req-42.a:b"')
        (line,) = [x for x in json_lines(fg, 5) if x.get("request_id") == "req-42.a:b"]
        assert JSON_KEYS <= set(line), line
        assert line["method"] == "POST" and line["path"] == f"/clusters/{WS_PATH}/api/v1/x"
        assert line["status"] == 200 and line["bytes_in"] == 5 and line["bytes_out"] > 0
        assert line["workspace"] == WS_PATH and line["shard"] == "shard-1"
        assert line["user"] == "ops" and line["authenticator"] == "ops-keys"
        assert line["protocol"] == "http/1.1" and line["client"].startswith("127.0.0.1")
        assert line["duration_ms"] >= line["upstream_ms"] >= 0 and line["auth_ms"] >= 0
        assert "secret=q" not in json.dumps(line) and key not in json.dumps(line)
        # the shard got the same id, once
        got = shard.requests[-1]
        assert got.values("X-Request-Id") == ["req-42.a:b"]
        # a failure: the reason, no user
        assert request(fg.port, "GET", f"/clusters/{WS_PATH}/api",
                       headers=bearer("fgk_" + "z" * 43)).status == 401
        fg.wait_log(r'"status":401')
        fail = [x for x in json_lines(fg, 5) if x["status"] == 401][-1]
        assert "user" not in fail and fail["reason"]
    finally:
        fg.stop()


def test_a_request_id_that_is_not_a_short_token_is_replaced(shard, tmp_path):
    fg, key = start(shard, tmp_path, "json")
    try:
        for bad in ("x" * 65, "has space", "quote\"d", "é"):
            hdrs = {**bearer(key), "X-Request-Id": bad}
            raw = ("GET /clusters/%s/api HTTP/1.1\r\nHost: a\r\n%s\r\n\r\n" % (
                WS_PATH, "\r\n".join(f"{k}: {v}" for k, v in hdrs.items()))).encode("utf-8")
            resp, c = raw_request(fg.port, raw)
            c.close()
            assert resp.status == 200, resp
            got = shard.requests[-1].values("X-Request-Id")
            assert len(got) == 1 and re.fullmatch(r"[0-9a-f]{24}", got[0]), (bad, got)
        # two of them, or a spelling with underscores: only frontgate's one reaches the shard
        raw = (f"GET /clusters/{WS_PATH}/api HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {key}\r\n"
               "X-Request-Id: first\r\nX-Request-Id: second\r\nX_Request_Id: spoof\r\n\r\n").encode()
        resp, c = raw_request(fg.port, raw)
        c.close()
        assert resp.status == 200, resp
        got = shard.requests[-1]
        assert got.values("X-Request-Id") == ["first"] and got.values("X_Request_Id") == []
        # none: frontgate makes one
        request(fg.port, "GET", f"/clusters/{WS_PATH}/api", headers=bearer(key))
        assert re.fullmatch(r"[0-9a-f]{24}", shard.requests[-1].value("X-Request-Id"))
    finally:
        fg.stop()


def test_text_lines_name_the_shard_and_the_id(shard, tmp_path):
    for mode in ("text", "true", None):
        fg, key = start(shard, tmp_path / str(mode), mode)
        try:
            request(fg.port, "GET", f"/clusters/{WS_PATH}/api",
                    headers={**bearer(key), "X-Request-Id": "t-1"})
            fg.wait_log(r"info access method=GET path=/clusters/\S+ status=200 .* shard=shard-1 "
                        r"id=t-1 dur_ms=")
        finally:
            fg.stop()


def test_off_writes_no_access_line(shard, tmp_path):
    for mode in ("off", "false"):
        fg, key = start(shard, tmp_path / mode, mode)
        try:
            assert request(fg.port, "GET", f"/clusters/{WS_PATH}/api",
                           headers=bearer(key)).status == 200
            fg.hup()  # a later line proves the request's line would have been written by now
            assert not [ln for ln in fg.lines() if " access " in ln or '"access"' in ln]
        finally:
            fg.stop()


def test_a_bad_access_log_value_names_the_choices(shard, tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(std_config(shard.url, keys=False, extra="log: {accessLog: yes}\n"))
    r = subprocess.run([FRONTGATE_BIN, "check", "-c", str(p)], capture_output=True, text=True)
    assert r.returncode != 0
    assert re.search(r"c\.yaml:\d+:\d+: log.accessLog must be text, json or off", r.stderr), r.stderr
