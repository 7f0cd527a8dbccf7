#!/usr/bin/env python3
"""Turns one bench/run directory (meta.env, <target>.<workload>.json, skipped.tsv) into the results page.

Usage: bench/report.py RUN_DIR > bench/results/DATE.md   (stdlib only; bench/run calls it)
"""
import json
import os
import sys

TARGETS = ["rtcserver", "rooms", "ceiling", "matchbox", "peerjs", "rtcserver2c"]
OURS = ["rtcserver", "rooms"]
PEERS = ["matchbox", "peerjs"]
WORKLOADS = ["hold", "relay", "setup", "rate", "relay_p1", "relay_p10"]


SUMMED = {"errors", "failures", "unclean_closes", "lost", "messages", "setups", "sent", "received", "round_trips"}
HEADLINE = {"relay": "msgs_per_sec", "setup": "setups_per_sec", "rate": "sent_per_sec"}


def read_json_line(path):
    with open(path) as f:
        lines = f.read().strip().splitlines()
    if not lines:
        return {"error": "empty output"}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as e:
        return {"error": f"unparsable output: {e}"}


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def merge(runs, path=()):
    """Each server's rounds of one workload as one result: the median of every figure, except counts (summed)
    and maxima (the largest)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: merge([r.get(k) for r in runs if isinstance(r, dict)], path + (k,)) for k in first}
    nums = [x for x in runs if isinstance(x, (int, float)) and not isinstance(x, bool)]
    if not nums:
        return first
    key = path[-1] if path else ""
    if key in SUMMED:
        return sum(nums)
    if key == "max_us":
        return max(nums)
    return median(nums)


def cost_us(r, per_key):
    cpu, rate = r.get("server_cpu_percent"), r.get(per_key)
    return cpu / 100.0 * 1e6 / rate if (cpu is not None and rate) else None


def aggregate(runs, workload):
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": runs[0].get("error", "no round ran") if runs else "no round ran"}
    out = merge(good)
    key = HEADLINE[workload.split("_p")[0]]
    vals = [r[key] for r in good if r.get(key) is not None]
    out["rounds"] = len(runs)
    out["rounds_ok"] = len(good)
    out["range"] = (min(vals), max(vals)) if vals else None
    costs = [c for c in (cost_us(r, key) for r in good) if c is not None]
    out["server_us_per_op"] = median(costs)
    bad = [r for r in runs if "error" in r]
    if bad:
        out["round_error"] = bad[0]["error"]
    return out


def load(run_dir):
    meta = {}
    with open(os.path.join(run_dir, "meta.env")) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    results, raw = {}, []
    files = sorted(os.listdir(run_dir))
    for t in TARGETS:
        path = os.path.join(run_dir, f"{t}.hold.json")
        if os.path.exists(path):
            results[(t, "hold")] = read_json_line(path)
            raw.append((t, results[(t, "hold")]))
        for w in WORKLOADS[1:]:
            prefix = f"{t}.{w}.r"
            names = [f for f in files if f.startswith(prefix) and f.endswith(".json")]
            names.sort(key=lambda f: int(f[len(prefix):-len(".json")]))
            runs = [read_json_line(os.path.join(run_dir, f)) for f in names]
            raw.extend((t, r) for r in runs)
            if runs:
                results[(t, w)] = aggregate(runs, w)
    skipped = {}
    path = os.path.join(run_dir, "skipped.tsv")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "\t" in line:
                    t, why = line.rstrip("\n").split("\t", 1)
                    skipped.setdefault(t, why)
    loadavg = {}
    for t in TARGETS:
        p = os.path.join(run_dir, f"{t}.loadavg.hold")
        if os.path.exists(p):
            with open(p) as f:
                loadavg[t] = f.read().strip()
    meta["run_dir"] = run_dir
    return meta, results, skipped, loadavg, raw


def thread_split(meta, t, workload):
    """The server's CPU by thread name over a workload's rounds: "scheduler-0 52 %, ...", or None."""
    path = os.path.join(meta.get("run_dir", ""), f"{t}.threads")
    if not os.path.exists(path):
        return None
    ticks = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == workload:
                ticks[parts[1]] = ticks.get(parts[1], 0) + int(parts[2])
    total = sum(ticks.values())
    if not total:
        return None
    shown = [(n, c) for n, c in sorted(ticks.items(), key=lambda x: -x[1]) if c * 100 >= total]
    rest = total - sum(c for _, c in shown)
    text = ", ".join(f"{n} {100 * c / total:.0f} %" for n, c in shown)
    return text + (f", others {100 * rest / total:.0f} %" if rest else "")


def label(t, meta):
    return {
        "rtcserver": "**rtcserver** (book, `/`)",
        "rooms": "**rtcserver** (rooms, `/socket/:room`)",
        "ceiling": "ceiling (minimal relay)",
        "matchbox": f"matchbox_server {meta.get('matchbox', '')}",
        "peerjs": f"PeerJS server {meta.get('peerjs', '')}",
        "rtcserver2c": "**rtcserver** (book, both cores)",
    }[t]


def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or d.get(p) is None:
            return None
        d = d[p]
    return d


def num(x, digits=0):
    if x is None:
        return "–"
    if isinstance(x, (int, float)):
        if digits == 0:
            return f"{x:,.0f}"
        return f"{x:,.{digits}f}"
    return str(x)


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.{digits}f}×"


def ms(us):
    return None if us is None else us / 1000.0


def ok(t, w, results):
    r = results.get((t, w))
    return r is not None and "error" not in r


def err_row(t, w, results, skipped, cols, meta):
    """A row for a server whose run of this workload is missing or failed, or None."""
    r = results.get((t, w))
    if r is None:
        why = skipped.get(t)
        if why is None:
            return None
        return f"| {label(t, meta)} | skipped: {why} |" + " |" * (cols - 2)
    if "error" in r:
        return f"| {label(t, meta)} | failed: {r['error'][:160]} |" + " |" * (cols - 2)
    return None


def span(r):
    rng = r.get("range")
    if not rng:
        return "–"
    return f"{num(rng[0])}–{num(rng[1])}"


def verdict(met):
    return "**met**" if met else "**not met**"


def best_peer(results, w, key):
    vals = [(get(results.get((p, w)), *key), p) for p in PEERS if ok(p, w, results)]
    vals = [(v, p) for v, p in vals if v is not None]
    return max(vals) if vals else (None, None)


def main():
    run_dir = sys.argv[1]
    meta, results, skipped, loadavg, raw = load(run_dir)
    out = []
    w = out.append
    quick = meta.get("quick") == "1"
    w(f"# Benchmark results {meta.get('run_id', '')}{' (QUICK run: sizes too small to mean much)' if quick else ''}")
    w("")
    w(
        f"`bench/run` at commit `{meta.get('commit')}` on {meta.get('cpu')} ({meta.get('cores')} cores, shared with "
        f"other builds), Linux {meta.get('kernel')}, {meta.get('rustc')}, node {meta.get('node')}. Loopback only; "
        f"each server started fresh and pinned to CPU {meta.get('server_cpu')} (`taskset`), loadgen pinned to CPU "
        f"{meta.get('loadgen_cpu')}. Load average (1 min) {meta.get('loadavg_start')} at the start, "
        f"{meta.get('loadavg_end')} at the end; whole run {meta.get('seconds')} s. The machine is shared and noisy: "
        "read the ratios, measured minutes apart in one run, rather than the absolute figures."
    )
    w("")
    w(
        "Servers: rtcserver (this repository, `--log-level warn`); ceiling = `tools/loadgen`'s `ceiling --threads 1`, "
        "which pairs sockets and forwards frames without parsing them (the practical upper bound); "
        f"matchbox_server {meta.get('matchbox')} (`cargo install --locked`, `RUST_LOG=warn`, one room per pair); "
        f"the PeerJS server {meta.get('peerjs')} (npm `peer`, `--concurrent_limit 1000000 --alive_timeout 3600000`, "
        "its per-connection log lines to a file). Over `rooms`, `matchbox` and `peerjs` each payload travels as a "
        "JSON string inside the protocol's envelope, addressed to the other peer's id; over `book` it is the frame."
    )
    w("")

    # ---------------------------------------------------------------- summary
    w("## Summary")
    w("")
    w(
        f"| server | RSS per idle connection ({num(int(meta.get('hold_connections') or 0))} held) | idle CPU | "
        f"relay msgs/s, P = {meta.get('relay_pairs')} (÷ ceiling) | relay p99 | relay CPU µs/msg (÷ ceiling) | "
        f"setups/s, C = {meta.get('setup_workers')} (÷ best peer) | rate p99 at {num(float(meta.get('rate', 0)))}/s |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    cr = lambda wl: results.get(("ceiling", wl)) if ok("ceiling", wl, results) else None
    bp_sum, _ = best_peer(results, "setup", ["setups_per_sec"])
    for t in TARGETS:
        if not any(ok(t, wl, results) for wl in WORKLOADS):
            if t in skipped:
                w(f"| {label(t, meta)} | skipped: {skipped[t]} | | | | | | |")
            continue
        h = results.get((t, "hold")) if ok(t, "hold", results) else {}
        r = results.get((t, "relay")) if ok(t, "relay", results) else {}
        su = results.get((t, "setup")) if ok(t, "setup", results) else {}
        ra = results.get((t, "rate")) if ok(t, "rate", results) else {}
        w(
            f"| {label(t, meta)} | {num(h.get('rss_per_conn_kib'), 1)} KiB | {num(h.get('idle_cpu_percent'), 2)} % | "
            f"{num(r.get('msgs_per_sec'))} ({ratio(r.get('msgs_per_sec'), get(cr('relay'), 'msgs_per_sec'))}) | "
            f"{num(ms(get(r, 'rtt', 'p99_us')), 1)} ms | {num(r.get('server_us_per_op'), 1)} "
            f"({ratio(r.get('server_us_per_op'), get(cr('relay'), 'server_us_per_op'))}) | "
            f"{num(su.get('setups_per_sec'))} ({ratio(su.get('setups_per_sec'), bp_sum)}) | "
            f"{num(ms(get(ra, 'latency', 'p99_us')), 1)} ms |"
        )
    w("")

    # ---------------------------------------------------------------- hold
    n = meta.get("hold_connections")
    w(f"## hold — {num(int(n)) if n else '?'} connections joined in pairs, held idle {meta.get('hold_seconds')} s")
    w("")
    w("| server | pairs/s | server RSS per connection | ÷ ceiling | RSS before → held → after close | idle CPU (% of a core) | pairs alive after the hold | loadavg |")
    w("|---|---:|---:|---:|---|---:|---:|---|")
    ceil_rss = get(results.get(("ceiling", "hold")), "rss_per_conn_kib") if ok("ceiling", "hold", results) else None
    for t in TARGETS:
        row = err_row(t, "hold", results, skipped, 8, meta)
        if row:
            w(row)
            continue
        r = results.get((t, "hold"))
        if r is None:
            continue
        mib = lambda k: num((r.get(k) or 0) / 1024, 1) if r.get(k) is not None else "–"
        w(
            f"| {label(t, meta)} | {num(r.get('pairs_per_sec'))} | {num(r.get('rss_per_conn_kib'), 2)} KiB | "
            f"{ratio(r.get('rss_per_conn_kib'), ceil_rss)} | {mib('rss_before_kib')} → {mib('rss_held_kib')} → "
            f"{mib('rss_after_close_kib')} MiB | {num(r.get('idle_cpu_percent'), 2)} | "
            f"{r.get('alive_pairs_after_hold')}/{r.get('pairs')} | {loadavg.get(t, '')} |"
        )
    w("")

    rounds = meta.get("rounds", "1")
    w(
        f"relay, setup and rate ran in {rounds} rounds per server, the servers taking turns; each figure is the "
        "median round (counts are summed), and the range is that of the headline figure over the rounds. "
        "*Server CPU µs per message* (or per setup) is the server's CPU time over what it did: unlike the rates, "
        "it does not depend on how much of its core the machine's other load left to the server."
    )
    w("")

    # ---------------------------------------------------------------- relay
    w(
        f"## relay — P = {meta.get('relay_pairs')} pairs ping-pong a 300-byte SDP-like message in a closed loop "
        f"({meta.get('relay_seconds')} s per server in all)"
    )
    w("")
    w("| server | messages/s (range) | ÷ ceiling | round trip p50 / p99 / p99.9 | p99 ÷ ceiling | server CPU µs per message | ÷ ceiling's (lower = cheaper) | server CPU | loadgen CPU |")
    w("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    c = results.get(("ceiling", "relay")) if ok("ceiling", "relay", results) else None
    for t in TARGETS:
        row = err_row(t, "relay", results, skipped, 10, meta)
        if row:
            w(row)
            continue
        r = results.get((t, "relay"))
        if r is None:
            continue
        mps = r.get("msgs_per_sec")
        errors = f", {r['errors']} errors" if r.get("errors") else ""
        w(
            f"| {label(t, meta)} | {num(mps)} ({span(r)}{errors}) | {ratio(mps, get(c, 'msgs_per_sec'))} | "
            f"{num(ms(get(r, 'rtt', 'p50_us')), 2)} / {num(ms(get(r, 'rtt', 'p99_us')), 2)} / "
            f"{num(ms(get(r, 'rtt', 'p999_us')), 2)} ms | {ratio(get(r, 'rtt', 'p99_us'), get(c, 'rtt', 'p99_us'))} | "
            f"{num(r.get('server_us_per_op'), 1)} | {ratio(r.get('server_us_per_op'), get(c, 'server_us_per_op'))} | "
            f"{num(r.get('server_cpu_percent'), 0)} % | {num(r.get('loadgen_cpu_percent'), 0)} % |"
        )
    w("")

    # ---------------------------------------------------------------- setup
    w(
        f"## setup — C = {meta.get('setup_workers')} workers loop a whole call setup ({meta.get('setup_seconds')} s "
        "per server in all): two connections, room, 1 offer, 1 answer, 6 candidates each way, both close"
    )
    w("")
    w("| server | setups/s (range) | ÷ best peer | ÷ ceiling | setup latency p50 / p99 | server CPU µs per setup | ÷ cheapest peer's (lower = cheaper) | failures | unclean closes | server CPU | loadgen CPU |")
    w("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    bp, bp_name = best_peer(results, "setup", ["setups_per_sec"])
    costs = [(get(results.get((p, "setup")), "server_us_per_op"), p) for p in PEERS if ok(p, "setup", results)]
    costs = [x for x in costs if x[0] is not None]
    bp_cost = min(costs)[0] if costs else None
    c = results.get(("ceiling", "setup")) if ok("ceiling", "setup", results) else None
    for t in TARGETS:
        row = err_row(t, "setup", results, skipped, 12, meta)
        if row:
            w(row)
            continue
        r = results.get((t, "setup"))
        if r is None:
            continue
        sps = r.get("setups_per_sec")
        w(
            f"| {label(t, meta)} | {num(sps)} ({span(r)}) | {ratio(sps, bp)} | {ratio(sps, get(c, 'setups_per_sec'))} | "
            f"{num(ms(get(r, 'latency', 'p50_us')), 1)} / {num(ms(get(r, 'latency', 'p99_us')), 1)} ms | "
            f"{num(r.get('server_us_per_op'), 0)} | {ratio(r.get('server_us_per_op'), bp_cost)} | "
            f"{r.get('failures')} | {r.get('unclean_closes')} | {num(r.get('server_cpu_percent'), 0)} % | "
            f"{num(r.get('loadgen_cpu_percent'), 0)} % |"
        )
    if bp_name:
        w("")
        w(
            f"Best peer in setups/s: {label(bp_name, meta)}; the cheapest peer is the one with the lowest server "
            "CPU per setup."
        )
    w("")

    # ---------------------------------------------------------------- rate
    w(
        f"## rate — open loop, R = {num(float(meta.get('rate', 0)))} messages/s over {meta.get('rate_pairs')} pairs "
        f"({meta.get('rate_seconds')} s per server in all); latency from each message's intended send time"
    )
    w("")
    w("| server | sent/s | lost | latency p50 / p99 / p99.9 / max | p99 ÷ ceiling | server CPU µs per message | server CPU | loadgen CPU |")
    w("|---|---:|---:|---|---:|---:|---:|---:|")
    c = results.get(("ceiling", "rate")) if ok("ceiling", "rate", results) else None
    for t in TARGETS:
        row = err_row(t, "rate", results, skipped, 8, meta)
        if row:
            w(row)
            continue
        r = results.get((t, "rate"))
        if r is None:
            continue
        lat = lambda q: num(ms(get(r, "latency", q)), 2)
        w(
            f"| {label(t, meta)} | {num(r.get('sent_per_sec'))} | {r.get('lost')} | {lat('p50_us')} / {lat('p99_us')} / "
            f"{lat('p999_us')} / {lat('max_us')} ms | {ratio(get(r, 'latency', 'p99_us'), get(c, 'latency', 'p99_us'))} | "
            f"{num(r.get('server_us_per_op'), 1)} | {num(r.get('server_cpu_percent'), 0)} % | "
            f"{num(r.get('loadgen_cpu_percent'), 0)} % |"
        )
    w("")
    w(
        "The rate is offered, not measured: every server that keeps up shows R. Each message counts once (sent by "
        "one peer, received by the other). tokio's timer has a 1 ms resolution, so open-loop latencies have a "
        "floor of about 1 ms on the sending side for every server alike."
    )
    w("")

    # ---------------------------------------------------------------- targets
    w("## Against the targets of issue 8")
    w("")
    w("| target | measured | status |")
    w("|---|---|---|")
    hold_n = int(meta.get("hold_connections") or 0)
    for t in OURS:
        r = results.get((t, "hold"))
        name = "book" if t == "rtcserver" else "rooms"
        if r is None or "error" in r:
            why = skipped.get(t) or (r or {}).get("error", "not run")
            w(f"| memory ≤ 8 KiB/connection ({name}) | {why} | not measured |")
            continue
        per = r.get("rss_per_conn_kib")
        conns = r.get("connections_open") or 0
        at = "" if conns >= 10000 else f" (measured at {num(conns)}, not 10,000)"
        w(
            f"| memory ≤ 8 KiB server RSS per idle connection at 10,000 ({name}) | {num(per, 2)} KiB at {num(conns)} "
            f"(ceiling {num(ceil_rss, 2)} KiB) | {verdict(per is not None and per <= 8)}{at} |"
        )
        before, held, after = r.get("rss_before_kib"), r.get("rss_held_kib"), r.get("rss_after_close_kib")
        if None not in (before, held, after) and held > before:
            kept = (after - before) / (held - before)
            w(
                f"| RSS back near the start after they close ({name}) | {num(before / 1024, 1)} → {num(held / 1024, 1)} → "
                f"{num(after / 1024, 1)} MiB: {kept:.0%} of the growth kept | {verdict(kept <= 0.25)} (≤ 25 % kept){at} |"
            )
        idle = r.get("idle_cpu_percent")
        w(
            f"| idle server with 10,000 idle connections < 1 % of a core ({name}) | {num(idle, 2)} % over "
            f"{r.get('hold_seconds')} s with {num(conns)} | {verdict(idle is not None and idle < 1)}{at} |"
        )
    nofile = meta.get("nofile")
    if hold_n < 50000:
        w(
            f"| memory at 50,000 connections; stretch 100,000 | not measurable here: RLIMIT_NOFILE's hard limit is "
            f"{nofile} per process, so the server holds at most ~{nofile} sockets | not measured |"
        )
    r, c = results.get(("rtcserver", "relay")), results.get(("ceiling", "relay"))
    if r and c and "error" not in r and "error" not in c:
        m = r["msgs_per_sec"] / c["msgs_per_sec"] if c.get("msgs_per_sec") else None
        p = get(r, "rtt", "p99_us") / get(c, "rtt", "p99_us") if get(c, "rtt", "p99_us") else None
        w(
            f"| relay ≥ 0.8 × the ceiling's messages/s at P = {meta.get('relay_pairs')} | "
            f"{num(r['msgs_per_sec'])} vs {num(c['msgs_per_sec'])}: {m:.2f}× | {verdict(m is not None and m >= 0.8)} |"
        )
        w(
            f"| relay p99 ≤ 2 × the ceiling's | {num(ms(get(r, 'rtt', 'p99_us')), 2)} vs {num(ms(get(c, 'rtt', 'p99_us')), 2)} ms: "
            f"{p:.2f}× | {verdict(p is not None and p <= 2)} |"
        )
        a, b = r.get("server_us_per_op"), c.get("server_us_per_op")
        if a and b:
            w(
                f"| (the same, in server CPU per message: the ceiling's cost ÷ ours, read like the rate ratio) | "
                f"{num(a, 1)} vs {num(b, 1)} µs: {b / a:.2f}× | {verdict(b / a >= 0.8)} by this measure |"
            )
    else:
        w("| relay vs the ceiling | a run is missing | not measured |")
    r = results.get(("rtcserver", "setup"))
    if r and "error" not in r and bp:
        s = r["setups_per_sec"] / bp
        w(
            f"| setup ≥ 1.5 × the best of matchbox_server and PeerJS | {num(r['setups_per_sec'])} vs {num(bp)} "
            f"({label(bp_name, meta)}): {s:.2f}× | {verdict(s >= 1.5)} |"
        )
        if r.get("server_us_per_op") and bp_cost:
            k = bp_cost / r["server_us_per_op"]
            w(
                f"| (the same, in server CPU per setup: the cheapest peer's cost ÷ ours) | "
                f"{num(r['server_us_per_op'], 0)} vs {num(bp_cost, 0)} µs: {k:.2f}× | {verdict(k >= 1.5)} by this measure |"
            )
    else:
        w("| setup vs the peers | a run is missing | not measured |")
    w("")

    # ---------------------------------------------------------------- issue 20
    issue20(w, meta, results)

    # ---------------------------------------------------------------- reproduce
    w("## Reproduce")
    w("")
    w("```sh")
    sizes = (
        f"HOLD_CONNECTIONS={meta.get('hold_connections')} HOLD_SECONDS={meta.get('hold_seconds')} "
        f"RELAY_PAIRS={meta.get('relay_pairs')} RELAY_SECONDS={meta.get('relay_seconds')} "
        f"SETUP_WORKERS={meta.get('setup_workers')} SETUP_SECONDS={meta.get('setup_seconds')} "
        f"RATE={meta.get('rate')} RATE_PAIRS={meta.get('rate_pairs')} RATE_SECONDS={meta.get('rate_seconds')}"
    )
    w("bench/run            # these sizes are its defaults:")
    w(f"# {sizes}")
    w("```")
    w("")
    w("<details><summary>loadgen's JSON lines</summary>")
    w("")
    w("```")
    for t, r in raw:
        w(f"{t} {json.dumps(r, separators=(',', ':'), sort_keys=True)}")
    w("```")
    w("")
    w("</details>")
    print("\n".join(out))


def issue20(w, meta, results):
    """The targets of issue 20 ("performance at the limit"), each with its ratio to the ceiling of this run."""
    r = lambda t, wl: results.get((t, wl)) if ok(t, wl, results) else None
    w("## Issue 20: performance at the limit")
    w("")
    w("Every ratio is against the ceiling (or the one-core server) measured in this run; the servers took turns.")
    w("")
    w("| target | measured | ratio | verdict |")
    w("|---|---|---:|---|")
    for t in ["rtcserver", "rooms"]:
        h = r(t, "hold")
        if h:
            kib = h.get("rss_per_conn_kib")
            w(
                f"| memory ≤ 4 KiB per idle joined connection ({label(t, meta)}) | {num(kib, 2)} KiB at "
                f"{num(h.get('connections_open'))} connections; idle CPU {num(h.get('idle_cpu_percent'), 2)} % | – | "
                f"{verdict(kib is not None and kib <= 4 and (h.get('idle_cpu_percent') or 0) < 1)} |"
            )
    c = r("ceiling", "relay")
    for t, rate_goal, cpu_goal in [("rtcserver", 0.95, 1.05), ("rooms", 0.9, 1.15)]:
        x = r(t, "relay")
        if not (x and c):
            w(f"| relay, {label(t, meta)} | a run is missing | – | not measured |")
            continue
        m = x["msgs_per_sec"] / c["msgs_per_sec"] if c.get("msgs_per_sec") else None
        k = (x.get("server_us_per_op") or 0) / c["server_us_per_op"] if c.get("server_us_per_op") else None
        w(
            f"| relay ≥ {rate_goal}× the ceiling's msgs/s at P = {meta.get('relay_pairs')} ({label(t, meta)}) | "
            f"{num(x['msgs_per_sec'])} vs {num(c['msgs_per_sec'])} | {m:.2f}× | {verdict(m >= rate_goal)} |"
        )
        w(
            f"| relay server CPU per message ≤ {cpu_goal}× the ceiling's ({label(t, meta)}) | "
            f"{num(x.get('server_us_per_op'), 2)} vs {num(c.get('server_us_per_op'), 2)} µs | {k:.2f}× | "
            f"{verdict(k is not None and k <= cpu_goal)} |"
        )
    cs = r("ceiling", "setup")
    for t in ["rtcserver", "rooms"]:
        x = r(t, "setup")
        if not (x and cs and x.get("server_us_per_op") and cs.get("server_us_per_op")):
            w(f"| setup CPU ≤ the ceiling's ({label(t, meta)}) | a run is missing | – | not measured |")
            continue
        k = x["server_us_per_op"] / cs["server_us_per_op"]
        w(
            f"| server CPU per call setup ≤ the ceiling's ({label(t, meta)}) | {num(x['server_us_per_op'])} vs "
            f"{num(cs['server_us_per_op'])} µs | {k:.2f}× | {verdict(k <= 1.0)} |"
        )
    pairs = [p for p in (meta.get("relay_low_pairs") or "").split() if p]
    for wl, p in [(f"relay_p{p}", p) for p in pairs] + [("relay", meta.get("relay_pairs"))]:
        cw = r("ceiling", wl)
        for t in ["rtcserver", "rooms"]:
            x = r(t, wl)
            a, b = get(x, "rtt", "p99_us"), get(cw, "rtt", "p99_us")
            if a is None or not b:
                w(f"| relay p99 ≤ 1.2× the ceiling's at P = {p} ({label(t, meta)}) | a run is missing | – | not measured |")
                continue
            w(
                f"| relay p99 ≤ 1.2× the ceiling's at P = {p} ({label(t, meta)}) | {num(ms(a), 2)} vs "
                f"{num(ms(b), 2)} ms | {a / b:.2f}× | {verdict(a / b <= 1.2)} |"
            )
    cr = r("ceiling", "rate")
    for t in ["rtcserver", "rooms"]:
        x = r(t, "rate")
        a, b = get(x, "latency", "p99_us"), get(cr, "latency", "p99_us")
        if a is None or not b:
            w(f"| open-loop p99 ≤ 1.2× the ceiling's ({label(t, meta)}) | a run is missing | – | not measured |")
            continue
        w(
            f"| open-loop p99 at {num(float(meta.get('rate', 0)))}/s ≤ 1.2× the ceiling's ({label(t, meta)}) | "
            f"{num(ms(a), 2)} vs {num(ms(b), 2)} ms | {a / b:.2f}× | {verdict(a / b <= 1.2)} |"
        )
    one, two = r("rtcserver", "relay"), r("rtcserver2c", "relay")
    if one and two:
        w(
            f"| cores: relay on both cores ÷ on one (loadgen shares the second core) | {num(two['msgs_per_sec'])} vs "
            f"{num(one['msgs_per_sec'])} msgs/s; server CPU {num(two.get('server_cpu_percent'))} % vs "
            f"{num(one.get('server_cpu_percent'))} % | {two['msgs_per_sec'] / one['msgs_per_sec']:.2f}× | reported |"
        )
    one, two = r("rtcserver", "setup"), r("rtcserver2c", "setup")
    if one and two:
        w(
            f"| cores: setups on both cores ÷ on one | {num(two['setups_per_sec'])} vs {num(one['setups_per_sec'])} "
            f"setups/s; server CPU {num(two.get('server_cpu_percent'))} % vs {num(one.get('server_cpu_percent'))} % | "
            f"{two['setups_per_sec'] / one['setups_per_sec']:.2f}× | reported |"
        )
    for t, where in [("rtcserver2c", "both cores"), ("rtcserver", "one core")]:
        for workload in ["relay", "setup"]:
            split = thread_split(meta, t, workload)
            if split:
                w(f"| cores: the server's CPU by thread, {where}, {workload} | {split} | – | reported |")
    w("")


if __name__ == "__main__":
    main()
