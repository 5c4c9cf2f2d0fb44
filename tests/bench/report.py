#!/usr/bin/env python3
"""
The table of tests/bench/run: reads OUT/runs.jsonl (one JSON line per measurement) and
OUT/meta.json, prints medians over rounds, frontgate's ratios and the targets (PASS/MISS), and
writes everything (raw runs included) to OUT/results.json.

  report.py OUT
"""
import json
import os
import statistics
import sys

out = sys.argv[1]
runs = [json.loads(line) for line in open(os.path.join(out, "runs.jsonl")) if line.strip()]
try:
    meta = json.load(open(os.path.join(out, "meta.json")))
except OSError:
    meta = {}


def med(values):
    return statistics.median(values) if values else None


def stats(set_, peer):
    """Medians over the rounds of one (set, peer)."""
    rs = [r for r in runs if r.get("set") == set_ and r.get("peer") == peer]
    if not rs:
        return None
    w = [r["wrk"] for r in rs]
    rps = [x["requests"] / (x["duration_us"] / 1e6) for x in w]
    return {
        "rounds": len(rs),
        "rps": med(rps),
        "rps_rounds": [round(v) for v in rps],
        "by_round": {r["round"]: v for r, v in zip(rs, rps)},
        "p50_ms": med([x["p50_us"] / 1000 for x in w]),
        "p99_ms": med([x["p99_us"] / 1000 for x in w]),
        "max_ms": max(x["max_us"] / 1000 for x in w),
        "cpu_s_per_100k": med([r["cpu_s"] * 1e5 / max(1, r["wrk"]["requests"]) for r in rs]),
        "errors": sum(x["status"] + x["connect"] + x["read"] + x["write"] + x["timeout"] for x in w),
        "wrapped": any(r.get("wrapped") for r in rs),
        "conns": rs[0]["conns"],
        "bytes_per_req": med([x["bytes"] / max(1, x["requests"]) for x in w]),
    }


def one(set_):
    for r in runs:
        if r.get("set") == set_:
            return r
    return None


def ratio(a, b):
    """Median over rounds of a's req/s over b's in the same round (the runs of one round are
    next to each other, so drift of the shared machine cancels out better than in a ratio of
    medians)."""
    if a is None or b is None:
        return None
    pairs = [a["by_round"][r] / b["by_round"][r] for r in a["by_round"] if r in b["by_round"] and b["by_round"][r]]
    return med(pairs)


S = {k: stats("main", k) for k in
     ("fg-a", "fg-a-log", "fg-a-nom", "fg-b", "fg-c", "nginx", "haproxy", "nginx-c", "haproxy-c")}
R = {k: stats("rate", k) for k in ("nginx", "fg-a", "fg-b", "haproxy")}
E = {k: stats("e", k) for k in ("small", "big")}
F = stats("f", "fg-b")
rate_cfg = one("rate-config")
freloads = one("f-reloads")
D = (one("d") or {}).get("result")
G = (one("g") or {}).get("result")
eload = {r["peer"]: r for r in runs if r.get("set") == "e-load"}
erss_after = one("e-rss-after")
H = {k: stats("h", k) for k in ("fg-h", "nginx-h", "fg-h-big", "nginx-h-big")}
I = {k: stats("i", k) for k in ("fg-i", "nginx-i", "haproxy-i", "fg-i-h2up")}
J = {r["peer"]: r["result"] for r in runs if r.get("set") == "j"}
K = {k: stats("k", k) for k in ("k-idle", "k-churn")}
kcfg, ksync, kdel, kend = one("k-config"), one("k-sync"), one("k-delete"), one("k-end")
kcpu = [r for r in runs if r.get("set") == "k-cpu"]
SKIP = {r["peer"]: r["reason"] for r in runs if r.get("set") == "skip"}
TLS = {r["peer"]: r["tls"] for r in runs if r.get("set") == "h-tls"}
for r in runs:  # h2load says what it negotiated
    if r.get("set") == "i" and r["wrk"].get("tls"):
        TLS.setdefault(r["peer"], r["wrk"]["tls"])

NAMES = {
    "fg-a": "frontgate (staticKeys)", "fg-a-log": "frontgate (staticKeys, access log on)",
    "fg-a-nom": "frontgate (staticKeys, -Dmetrics=false)",
    "fg-b": "frontgate (jwt, cached)", "fg-c": "frontgate (jwt, no cache help)",
    "nginx": "nginx plain proxy", "haproxy": "HAProxy jwt_verify", "nginx-c": "nginx plain proxy",
    "haproxy-c": "HAProxy jwt_verify",
}

lines = []
p = lines.append


def fmt(v, f="{:.0f}"):
    return "-" if v is None else f.format(v)


def row(workload, name, s, rat="", min_bytes=0):
    if s is None:
        p(f"{workload:<24} {name:<38} {'(not run)':>9}")
        return
    flags = ""
    if s["errors"]:
        flags += f"  {s['errors']} ERRORS"
    if s["bytes_per_req"] < min_bytes:
        flags += f"  SHORT RESPONSES ({s['bytes_per_req']:.0f} bytes each)"
    if s["wrapped"] and name.startswith("frontgate"):
        flags += "  (a thread went through its slice of the pool: cache hits possible)"
    p(f"{workload:<24} {name:<38} {fmt(s['rps']):>9} {fmt(s['p50_ms'], '{:.3f}'):>8} "
      f"{fmt(s['p99_ms'], '{:.3f}'):>8} {fmt(s['cpu_s_per_100k'], '{:.2f}'):>10}  {rat}{flags}")


def rtxt(fg, peer):
    r = ratio(fg, peer)
    return "" if r is None else f"frontgate {r:.2f}x"


def skipped(workload, name, peer):
    p(f"{workload:<24} {name:<38} skipped: {SKIP.get(peer, 'not run')}")


m = meta
p("")
p(f"frontgate side by side — {m.get('cpus', '?')} CPUs ({m.get('cpu_model', '?')}), kernel {m.get('kernel', '?')}; "
  f"load average {' '.join(m.get('loadavg_start', []))} at start, {' '.join(m.get('loadavg_end', []))} at end")
p(f"frontgate {m.get('frontgate', '?')} (release build, workers: 1), nginx {m.get('nginx', '?')} (1 worker), "
  f"HAProxy {m.get('haproxy', '?')} (nbthread 1), wrk {m.get('wrk', '?')}: -t{m.get('threads')} -c{m.get('conns')} "
  f"-d{m.get('duration_s')}s, median of {m.get('rounds')} rounds; "
  + ("proxies pinned to CPU 1, backend to CPU 0 (BENCH_PIN=1)" if m.get("pinned") else "nothing pinned")
  + f"; run took {m.get('seconds', '?')} s")
p("ratios: median over rounds of frontgate's req/s / the peer's in the same round (peers run back to back)")
p("")
hdr = f"{'workload':<24} {'peer':<38} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU s/100k':>10}  ratio"
p(hdr)
p("-" * len(hdr))
row("(a) static API key", NAMES["fg-a"], S["fg-a"])
row("", NAMES["fg-a-log"], S["fg-a-log"],
    "" if ratio(S["fg-a-log"], S["fg-a"]) is None else f"{ratio(S['fg-a-log'], S['fg-a']):.2f}x of log off")
row("", NAMES["fg-a-nom"], S["fg-a-nom"],
    "" if ratio(S["fg-a"], S["fg-a-nom"]) is None else f"metrics on {ratio(S['fg-a'], S['fg-a-nom']):.3f}x of off")
row("", NAMES["nginx"], S["nginx"], rtxt(S["fg-a"], S["nginx"]))
row("", NAMES["haproxy"], S["haproxy"], rtxt(S["fg-a"], S["haproxy"]))
row("(b) one JWT reused", NAMES["fg-b"], S["fg-b"])
row("", NAMES["nginx"], S["nginx"], rtxt(S["fg-b"], S["nginx"]))
row("", NAMES["haproxy"], S["haproxy"], rtxt(S["fg-b"], S["haproxy"]))
row("(c) distinct JWT/request", NAMES["fg-c"], S["fg-c"])
row("", NAMES["haproxy-c"], S["haproxy-c"], rtxt(S["fg-c"], S["haproxy-c"]))
row("", NAMES["nginx-c"] + " (same pool)", S["nginx-c"], rtxt(S["fg-c"], S["nginx-c"]))
if rate_cfg:
    p(f"fixed rate ~{rate_cfg['target_rps']} req/s (50% of nginx's {rate_cfg['nginx_peak']}): "
      f"{rate_cfg['conns']} connections, each waiting {rate_cfg['delay_ms']} ms before every request")
    row("p99 at 50% of nginx peak", NAMES["nginx"], R["nginx"])
    row("", NAMES["fg-a"], R["fg-a"])
    row("", NAMES["fg-b"], R["fg-b"])
    row("", NAMES["haproxy"], R["haproxy"])
if E["small"] or E["big"]:
    row("(e) workspace index", "frontgate, 10 workspaces, 10 keys", E["small"])
    row("", "frontgate, 1M workspaces, 100k keys", E["big"],
        "" if ratio(E["big"], E["small"]) is None else f"{ratio(E['big'], E['small']):.3f}x of small")
    for k in ("big", "small"):
        if k in eload:
            p(f"{'':<24} load to ready ({k}): {eload[k]['load_s']:.2f} s, RSS {eload[k]['rss_kib'] / 1024:.0f} MiB")
if F:
    p(f"{'(f) 20 SIGHUPs under (b)':<24} {NAMES['fg-b']:<38} {F['rps']:>9.0f} {F['p50_ms']:>8.3f} "
      f"{F['p99_ms']:>8.3f} {F['cpu_s_per_100k']:>10.2f}  {F['errors']} failed requests, "
      f"{freloads['reloads_logged'] if freloads else '?'} reloads logged, max latency {F['max_ms']:.0f} ms")
if D:
    p(f"{'(d) 10k idle conns':<24} RSS {D['rss_before_kib'] / 1024:.1f} -> {D['rss_after_kib'] / 1024:.1f} MiB: "
      f"{D['per_conn_bytes'] / 1024:.1f} KiB per connection ({D['ok']} answered 200, {D['alive']} still open; "
      f"{D['rss_after_close_kib'] / 1024:.1f} MiB after closing)")
if G:
    p(f"{'(g) 10 MB/s watch':<24} backend wrote {G['backend_sent_mb']} MB, reader got {G['client_read_mb']} MB in "
      f"{G['seconds']} s ({G['client_read_rate_mbps']} MB/s); RSS {G['rss_before_kib'] / 1024:.1f} MiB, "
      f"peak +{G['rss_growth_kib'] / 1024:.2f} MiB")
if any(H.values()):
    row("(h) TLS, small response", "frontgate (TLS, staticKeys)", H["fg-h"])
    row("", "nginx TLS proxy (checks nothing)", H["nginx-h"], rtxt(H["fg-h"], H["nginx-h"]))
    row("(h) TLS, 64 KiB response", "frontgate (TLS, staticKeys)", H["fg-h-big"], min_bytes=65536)
    row("", "nginx TLS proxy (checks nothing)", H["nginx-h-big"], rtxt(H["fg-h-big"], H["nginx-h-big"]),
        min_bytes=65536)
    p(f"{'':<24} HTTP/1.1 over TLS without ALPN, as wrk: frontgate {TLS.get('fg-h', '?')}, "
      f"nginx {TLS.get('nginx-h', '?')}")
if any(I.values()):
    ti = next((r["threads"] for r in runs if r.get("set") == "i"), meta.get("threads"))
    p(f"(i) h2load {meta.get('h2load') or ''} -t{ti} -c{meta.get('h2_conns')} -m{meta.get('h2_streams')} "
      f"-D{meta.get('duration_s')}s, HTTP/2 over TLS (ALPN h2); latencies from h2load's per-request log; "
      "nginx and HAProxy check no credential")
    row("(i) HTTP/2 over TLS", "frontgate (h2; shards HTTP/1.1)", I["fg-i"])
    row("", "nginx h2 -> HTTP/1.1 (checks nothing)", I["nginx-i"], rtxt(I["fg-i"], I["nginx-i"]))
    row("", "HAProxy h2 -> h2c (checks nothing)", I["haproxy-i"], rtxt(I["fg-i"], I["haproxy-i"]))
    if I["fg-i-h2up"]:
        rn, rh = ratio(I["fg-i-h2up"], I["nginx-i"]), ratio(I["fg-i-h2up"], I["haproxy-i"])
        row("", "frontgate (h2; shards protocol: h2)", I["fg-i-h2up"],
            f"{fmt(rn, '{:.2f}')}x nginx, {fmt(rh, '{:.2f}')}x HAProxy")
    else:
        skipped("", "frontgate (h2; shards protocol: h2)", "fg-i-h2up")
    p(f"{'':<24} TLS: " + ", ".join(f"{k} {TLS[k]}" for k in ("fg-i", "nginx-i", "haproxy-i", "fg-i-h2up")
                                     if k in TLS))
J_LABEL = {"fg-j": "shards HTTP/1.1", "fg-j-h2up": "shards protocol: h2"}
if J or "fg-j-h2up" in SKIP:
    for k, label in J_LABEL.items():
        d = J.get(k)
        w = "(j) 1000 idle watches" if k == "fg-j" else ""
        if d is None:
            skipped(w, f"frontgate ({label})", k)
            continue
        short = "" if d["ok"] == d["watches"] else f" ONLY {d['ok']} ANSWERED"
        p(f"{w:<24} {'frontgate (' + label + ')':<38} {d['shard_conns']} shard connections for {d['watches']} "
          f"watches on {d['conns']} h2 connections{short}; RSS {d['rss_before_kib'] / 1024:.1f} -> "
          f"{d['rss_after_kib'] / 1024:.1f} MiB: {d['per_watch_kib']:.2f} KiB per watch; CPU {d['cpu_idle_s']:.2f} s "
          f"over {d['hold_s']:g} s idle, {d['alive']} still open then; after closing: "
          f"{d['shard_conns_after_close']} shard connections, RSS {d['rss_after_close_kib'] / 1024:.1f} MiB")

def metric(rec, key, i, scale=1.0):
    """Field i of a "lag_sum lag_count generation build_s" string the run recorded."""
    try:
        return float(rec[key].split()[i]) * scale
    except (KeyError, IndexError, ValueError, AttributeError):
        return float("nan")


if kcfg or "k" in SKIP:
    if kcfg is None:
        skipped("(k) index from kcp", "frontgate (index.fromKcp)", "k")
    else:
        c = kcfg
        p(f"(k) index.fromKcp: {c['workspaces']} logical clusters on {c['shards']} shards of tests/bench/kcpfake "
          f"({'lean' if c['lean'] else 'full kcp'} objects); forwarded requests answered by {c['backend']}")
    if ksync:
        s_ = ksync["result"]
        p(f"{'':<24} initial sync: /readyz 200 after {s_['ready_s']:.2f} s, {s_['sample']} sampled workspaces "
          f"routing after {s_['routed_s']:.2f} s; RSS {ksync['rss_kib'] / 1024:.0f} MiB "
          f"({ksync['rss_1s_kib'] / 1024:.0f} MiB 1 s later); control thread {ksync['control_cpu_s']:.2f} s CPU, "
          f"fake {ksync['fake_cpu_s']:.2f} s; index build {metric(ksync, 'metrics', 3, 1000):.0f} ms; "
          f"load average {ksync['loadavg']}")
    if kdel:
        d_ = kdel["result"]
        p(f"{'':<24} {d_['n']} deletions: sent in {d_['sent_s']:.3f} s, the sample of {d_['sample']} and the "
          f"last deleted refused (403) after {d_['reflected_s']:.2f} s (the last one: {d_['last_deleted_s']:.2f} s)"
          f"{' TIMED OUT' if d_.get('timed_out') else ''}; {metric(kdel, 'metrics_after', 2) - metric(kdel, 'metrics_before', 2):.0f} "
          f"index generations, last build {metric(kdel, 'metrics_after', 3, 1000):.0f} ms; load average {kdel['loadavg']}")
    if K["k-idle"] or K["k-churn"]:
        def kc(peer, key):
            v = [r[key] for r in kcpu if r["peer"] == peer and r.get(key) is not None]
            return med(v)
        churn = [r["churn"] for r in kcpu if r["peer"] == "k-churn" and r.get("churn")]
        rate = med([x["rate"] for x in churn])
        row("", "frontgate, idle index", K["k-idle"])
        row("", f"frontgate, {kcfg['rate'] if kcfg else '?'} changes/s", K["k-churn"],
            "" if ratio(K["k-churn"], K["k-idle"]) is None else f"{ratio(K['k-churn'], K['k-idle']):.3f}x of idle")
        p(f"{'':<24} under churn: {fmt(kc('k-churn', 'generations'))} index generations per run, the last build "
          f"{fmt(kc('k-churn', 'build_s'), '{:.3f}')} s; each generation served its oldest change after "
          f"{fmt(kc('k-churn', 'lag_mean_ms'), '{:.0f}')} ms on average (frontgate_kcp_index_lag_seconds)")
        p(f"{'':<24} control thread CPU per run: idle {fmt(kc('k-idle', 'control_cpu_s'), '{:.2f}')} s, churn "
          f"{fmt(kc('k-churn', 'control_cpu_s'), '{:.2f}')} s; the fake's: idle {fmt(kc('k-idle', 'fake_cpu_s'), '{:.2f}')} s, "
          f"churn {fmt(kc('k-churn', 'fake_cpu_s'), '{:.2f}')} s; churn sent {fmt(rate)} events/s"
          + (f"; RSS at the end {kend['rss_kib'] / 1024:.0f} MiB" if kend else ""))

# targets
targets = []


def target(name, value, op, limit, unit="", fmtv="{:.2f}", skip=None):
    if value is None and skip:
        targets.append({"target": name, "value": None, "limit": f"{op} {limit}{unit}", "result": "SKIPPED",
                        "why": skip})
        return
    if value is None:
        targets.append({"target": name, "value": None, "limit": f"{op} {limit}{unit}", "result": "NOT RUN"})
        return
    ok = value >= limit if op == ">=" else value <= limit
    targets.append({"target": name, "value": float(f"{value:.4g}"), "limit": f"{op} {limit}{unit}",
                    "result": "PASS" if ok else "MISS", "shown": fmtv.format(value) + unit})


# ratios with three decimals: "1.00x MISS" (0.9985) would read as a contradiction
target("(a) frontgate / nginx plain proxy", ratio(S["fg-a"], S["nginx"]), ">=", 1.0, "x", "{:.3f}")
target("(a) frontgate / HAProxy jwt_verify", ratio(S["fg-a"], S["haproxy"]), ">=", 1.6, "x")
target("(a) metrics on / off (-Dmetrics=false)", ratio(S["fg-a"], S["fg-a-nom"]), ">=", 0.97, "x", "{:.3f}")
target("(b) frontgate / nginx plain proxy", ratio(S["fg-b"], S["nginx"]), ">=", 1.0, "x", "{:.3f}")
target("(b) frontgate / HAProxy jwt_verify", ratio(S["fg-b"], S["haproxy"]), ">=", 1.6, "x")
target("(c) frontgate / HAProxy jwt_verify", ratio(S["fg-c"], S["haproxy-c"]), ">=", 1.0, "x", "{:.3f}")
for k, label in (("fg-a", "(a)"), ("fg-b", "(b)")):
    if R.get(k) and R.get("nginx"):
        lim = R["nginx"]["p99_ms"] + 0.1
        target(f"{label} p99 at 50% rate <= nginx p99 + 0.1 ms ({lim:.3f} ms)", R[k]["p99_ms"], "<=",
               round(lim, 3), " ms", "{:.3f}")
    else:
        target(f"{label} p99 at 50% rate <= nginx p99 + 0.1 ms", None, "<=", "nginx+0.1", " ms")
target("(d) RSS per idle connection", D["per_conn_bytes"] / 1024 if D else None, "<=", 16, " KiB", "{:.1f}")
target("(e) load time, 1M workspaces + 100k keys", eload["big"]["load_s"] if "big" in eload else None,
       "<=", 3, " s")
big_rss = None
if "big" in eload:
    big_rss = max(eload["big"]["rss_kib"], erss_after["rss_kib"] if erss_after else 0) / 1024
target("(e) RSS, 1M workspaces + 100k keys", big_rss, "<=", 400, " MiB", "{:.0f}")
target("(e) throughput, 1M index / 10-workspace index", ratio(E["big"], E["small"]), ">=", 0.95, "x", "{:.3f}")
target("(f) failed requests during 20 SIGHUPs", F["errors"] if F else None, "<=", 0, "", "{:.0f}")
target("(g) RSS growth, 10 MB/s watch to a 1 MB/s reader", G["rss_growth_kib"] / 1024 if G else None,
       "<=", 8, " MiB")
target("(h) TLS, small: frontgate / nginx TLS proxy", ratio(H["fg-h"], H["nginx-h"]), ">=", 1.0, "x", "{:.3f}")
target("(h) TLS, 64 KiB: frontgate / nginx TLS proxy", ratio(H["fg-h-big"], H["nginx-h-big"]), ">=", 1.0, "x",
       "{:.3f}")
target("(i) h2: frontgate / nginx h2 -> HTTP/1.1", ratio(I["fg-i"], I["nginx-i"]), ">=", 1.0, "x", "{:.3f}")
target("(i) h2, shards h2: frontgate / nginx h2 -> HTTP/1.1", ratio(I["fg-i-h2up"], I["nginx-i"]), ">=", 1.3,
       "x", skip=SKIP.get("fg-i-h2up"))
target("(i) h2, shards h2: frontgate / HAProxy h2 -> h2c", ratio(I["fg-i-h2up"], I["haproxy-i"]), ">=", 1.0,
       "x", "{:.3f}", skip=SKIP.get("fg-i-h2up"))
# (j): on the h2-shard frontgate once it runs; until then on today's HTTP/1.1 shard side
jk = "fg-j-h2up" if "fg-j-h2up" in J else "fg-j"
jd = J.get(jk)
target(f"(j) shard connections for 1000 watches ({J_LABEL[jk]})", jd["shard_conns"] if jd else None, "<=", 4,
       "", "{:.0f}")
target(f"(j) RSS per idle watch ({J_LABEL[jk]})", jd["per_watch_kib"] if jd else None, "<=", 8, " KiB")

kskip = SKIP.get("k")
kn = f"{kcfg['workspaces']} workspaces on {kcfg['shards']} shards" if kcfg else "100000 workspaces on 4 shards"
ksync_v = max(ksync["result"]["ready_s"], ksync["result"]["routed_s"]) if ksync else None
target(f"(k) initial sync, {kn}", ksync_v, "<=", 10, " s", skip=kskip)
target(f"(k) RSS after sync, {kn}", max(ksync["rss_kib"], ksync["rss_1s_kib"]) / 1024 if ksync else None, "<=",
       200, " MiB", "{:.0f}", skip=kskip)
target(f"(k) {kcfg['deletes'] if kcfg else 10000} deletions reflected (sample and last 403)",
       kdel["result"]["reflected_s"] if kdel else None, "<=", 5, " s", skip=kskip)
target(f"(k) throughput under {kcfg['rate'] if kcfg else 1000} changes/s / idle", ratio(K["k-churn"], K["k-idle"]),
       ">=", 0.95, "x", "{:.3f}", skip=kskip)

p("")
p("targets (ratios from this run)")
for t in targets:
    p(f"  {t['target']:<62} {t.get('shown', '-'):>12}  {t['limit']:<14} {t['result']}"
      + (f" ({t['why']})" if t.get("why") else ""))
p("")
p("CPU s/100k: utime+stime of the proxy process (nginx: its worker) over the run, per 100k requests.")
if any(I.values()):
    p("(i) req/s counts 2xx/3xx responses (h2load's \"succeeded\"); ERRORS: other statuses and streams lost.")
p(f"raw results: {os.path.join(out, 'results.json')}")
text = "\n".join(lines)
print(text)

json.dump({
    "meta": meta,
    "summary": {"main": S, "rate": R, "rate_config": rate_cfg, "index": E, "index_load": eload,
                "index_rss_after_runs": erss_after, "sighup": F, "sighup_reloads": freloads,
                "idle": D, "stream": G, "tls_h1": H, "h2": I, "watches": J, "skipped": SKIP,
                "kcp": {"config": kcfg, "sync": ksync, "delete": kdel, "throughput": K, "cpu": kcpu, "end": kend},
                "tls": TLS},
    "targets": targets,
    "runs": runs,
}, open(os.path.join(out, "results.json"), "w"), indent=1)
