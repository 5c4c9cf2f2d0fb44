#!/usr/bin/env python3
"""
Runs h2load and prints its result the way the wrk scripts do (tests/bench/wrk/common.lua): one
line "BENCHJSON {...}" with the same fields, so tests/bench/run and report.py treat both alike.

  h2load.py LOGFILE h2load ARGS...     (ARGS without --log-file: this adds it)

requests: responses with a 2xx or 3xx status (h2load's "succeeded"); duration_us: h2load's
"finished in"; latencies: percentiles of the per-request times in h2load's --log-file (the
succeeded ones); status: responses that were not 2xx/3xx; read: requests lost to a stream or
connection error (h2load's "errored"); timeout: h2load's "timeout". Also "tls" (protocol and
cipher) and "alpn" as h2load printed them. The whole h2load output goes to stderr on failure.
"""
import json
import re
import subprocess
import sys


def pct(sorted_us, p):
    if not sorted_us:
        return 0
    i = min(len(sorted_us) - 1, max(0, int(round(p / 100 * len(sorted_us) + 0.5)) - 1))
    return sorted_us[i]


def main():
    log, cmd = sys.argv[1], sys.argv[2:]
    p = subprocess.run(cmd + ["--log-file=" + log], capture_output=True, text=True)
    out = p.stdout + p.stderr

    def grab(rx, cast=str):
        m = re.search(rx, out, re.M)
        return cast(m.group(1)) if m else None

    fin = re.search(r"^finished in ([0-9.]+)(ms|s|us)?,", out, re.M)
    req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", out, re.M)
    if p.returncode != 0 or not fin or not req:
        sys.stderr.write(out)
        sys.exit(f"h2load.py: h2load failed (exit {p.returncode})")
    scale = {"s": 1e6, "ms": 1e3, "us": 1, None: 1e6}[fin.group(2)]
    duration_us = int(float(fin.group(1)) * scale)
    total, started, done, ok, failed, errored, timeout = map(int, req.groups())
    times = []
    with open(log) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1][:1] in "23":
                times.append(int(parts[2]))
    times.sort()
    traffic = grab(r"^traffic: .*?\((\d+)\) total", int) or 0
    print("BENCHJSON " + json.dumps({
        "requests": ok, "duration_us": duration_us, "bytes": traffic, "connect": 0,
        "read": errored, "write": 0, "status": max(0, failed - errored), "timeout": timeout,
        "p50_us": pct(times, 50), "p90_us": pct(times, 90), "p99_us": pct(times, 99),
        "mean_us": round(sum(times) / len(times), 1) if times else 0,
        "max_us": times[-1] if times else 0,
        "tls": " ".join(x for x in (grab(r"^TLS Protocol: (\S+)"), grab(r"^Cipher: (\S+)")) if x),
        "alpn": grab(r"^Application protocol: (\S+)") or "",
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
