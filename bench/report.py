#!/usr/bin/python3
"""Prints the table of bench/run.sh from its results file (one row of
tab-separated fields per measurement; see run.sh). Medians throughout;
a ratio is the median of the ratios of each run, whose two measurements
were taken next to each other."""
import statistics
import sys
from collections import defaultdict

MIB = 1048576


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec=".1f", none="-"):
    return none if v is None else format(v, spec)


def pct(v):
    return "-" if v is None else f"{100 * v:.0f}%"


def load(path):
    rows = defaultdict(list)
    info = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[0] == "info":
                info[p[1]] = p[2] if len(p) > 2 else ""
            else:
                rows[p[0]].append(p[1:])
    return rows, info


def num(x, conv=float):
    try:
        return conv(x)
    except (TypeError, ValueError):
        return None


def throughput(rows):
    """{(client, dir): {run: (mibs, rss_kib, cpu_s, relay_cpu_s)}}"""
    t = defaultdict(dict)
    for p in rows["tput"]:
        p = p + ["-"] * (10 - len(p))
        client, d, run, mibs, rss, user, sys_, _st, relay = p[:9]
        if mibs == "FAILED":
            t[(client, d)][run] = None
            continue
        cpu = (num(user) + num(sys_) if num(user) is not None
               and num(sys_) is not None else None)
        t[(client, d)][run] = (float(mibs), num(rss, int), cpu, num(relay))
    return t


def ratio(t, a, b, d):
    """Median over runs of a/b for direction d."""
    out = []
    for run, va in t.get((a, d), {}).items():
        vb = t.get((b, d), {}).get(run)
        if va and vb:
            out.append(va[0] / vb[0])
    return med(out)


NAMES = [("direct", "direct TCP, no ProxyCommand (the limit)"),
         ("bastion-stdio", "ProxyCommand bastion-stdio"),
         ("reference", "ProxyCommand reference relay (Python)"),
         ("lean", "ProxyCommand probe tunnel (lean C client)"),
         ("baseline", "ProxyCommand BENCH_BASELINE bastion-stdio"),
         ("bastion-stdio-emu", "bastion-stdio, emulator's data plane"),
         ("reference-emu", "reference, emulator's data plane")]


def section_throughput(w, t, rows, bytes_):
    """1. Throughput through ssh, and the data plane's ceiling."""
    size = (f"{bytes_ / (1 << 30):g} GiB" if bytes_ >= 1 << 30
            else f"{bytes_ / MIB:g} MiB")
    w(f"1. Throughput, {size} through ssh (MiB/s)       down      up"
      "  down/limit  up/limit")
    for key, label in NAMES:
        if (key, "down") not in t:
            continue
        v = {d: med([x[0] if x else None for x in t[(key, d)].values()])
             for d in ("down", "up")}
        fails = sum(1 for d in ("down", "up")
                    for x in t[(key, d)].values() if x is None)
        r = {d: ratio(t, key, "direct", d) for d in ("down", "up")}
        w(f"   {label:<42} {fmt(v['down']):>7} {fmt(v['up']):>7}"
          f"  {pct(r['down']):>10}  {pct(r['up']):>8}"
          + (f"  ({fails} failed)" if fails else ""))
    for other, label in (("reference", "bastion-stdio / reference"),
                         ("lean", "bastion-stdio / lean C client"),
                         ("baseline", "bastion-stdio / BENCH_BASELINE")):
        r = {d: ratio(t, "bastion-stdio", other, d) for d in ("down", "up")}
        if r["down"] is not None or r["up"] is not None:
            w(f"   {label:<42} {'':>7} {'':>7}"
              f"  {fmt(r['down'], '.2f') + 'x':>10}"
              f"  {fmt(r['up'], '.2f') + 'x':>8}")
    ceil = defaultdict(list)
    for server, d, _run, mibs in rows["ceiling"]:
        ceil[(server, d)].append(float(mibs))
    for server, label in (("relay", "data-plane ceiling: bench/relay (C)"),
                          ("emulator", "data-plane ceiling: Python emulator")):
        w(f"   {label:<42} {fmt(med(ceil[(server, 'down')])):>7}"
          f" {fmt(med(ceil[(server, 'up')])):>7}   (probe blast, 4 KiB "
          "frames up)")
    w("")


def section_process(w, t, gib):
    """3. Peak RSS and CPU of each ProxyCommand, and the relay's CPU;
    returns {client: (peak RSS KiB, {dir: CPU s/GiB})}."""
    w("3. Per ProxyCommand process, in the runs of section 1")
    short = {"bastion-stdio": "bastion-stdio", "reference": "reference relay",
             "lean": "probe tunnel (lean C client)",
             "baseline": "BENCH_BASELINE bastion-stdio",
             "bastion-stdio-emu": "bastion-stdio, emulator's data plane",
             "reference-emu": "reference, emulator's data plane"}
    w(f"   {'':<42} {'peak RSS':>8}  {'CPU s/GiB':>9} {'':>5}"
      f"  {'relay CPU s/GiB':>15}")
    w(f"   {'':<42} {'':>8}  {'down':>9} {'up':>5}  {'down':>9} {'up':>5}")
    res = {}
    for key, label in NAMES[1:]:
        label = short[key]
        if (key, "down") not in t:
            continue
        rss = med([x[1] for d in ("down", "up")
                   for x in t[(key, d)].values() if x and x[1]])
        cpu = {d: med([x[2] / gib for x in t[(key, d)].values()
                       if x and x[2] is not None]) for d in ("down", "up")}
        rel = {d: med([x[3] / gib for x in t[(key, d)].values()
                       if x and x[3] is not None]) for d in ("down", "up")}
        res[key] = (rss, cpu)
        w(f"   {label:<42} {fmt(rss and rss / 1024):>6} MiB"
          f"  {fmt(cpu['down'], '.2f'):>9} {fmt(cpu['up'], '.2f'):>5}"
          f"  {fmt(rel['down'], '.2f'):>9} {fmt(rel['up'], '.2f'):>5}")
    w("")
    return res


def diff(before, after):
    """The counters' change between two "name=value" strings, less what
    the reading of them cost: one connection to each server."""
    b = dict(x.split("=") for x in before.split())
    a = dict(x.split("=") for x in after.split())
    d = {k: int(a[k]) - int(b.get(k, 0)) for k in a}
    d["arm_get"] = d["arm"] - d.get("graph", 0) - d.get("vm_start", 0)
    # the DELETE after the tunnel, on its own connection, is left out
    conns = d["emu_conn"] - 1 + d["relay_conn"] - 1 - d["deletes"]
    reqs = d["entra"] + d["arm"] + d["tokens"] + d["upgrades"]
    d["rts"] = 2 * conns + reqs
    return d


def spread(values):
    """The median of counts, or "low-high" when the runs differed."""
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{med(values):g}" if lo == hi else f"{lo}-{hi}"


CONFIGS = (("set", "Bastion + TargetResourceGroup"),
           ("bastion", "Bastion alone"),
           ("zero", "none: discovery"))
CACHES = (("cold", "cold"), ("token", "warm token"), ("warm", "warm"))
KINDS = ("entra", "arm_get", "graph", "tokens", "upgrades")


def paired(runs, a, b):
    """Median over the runs of a's milliseconds less b's, in the same
    run: what a costs beside b, with the noise of the run cancelled."""
    bms = {run: ms for run, ms, _ in runs.get(b, [])}
    return med([ms - bms[run] for run, ms, _ in runs.get(a, [])
                if ms is not None and bms.get(run) is not None])


def by_config(rows, rtt):
    """Set-up by settings and cache, with the requests of each kind."""
    runs = defaultdict(list)
    for p in rows["config"]:
        if len(p) >= 7:
            runs[(p[0], p[1], p[2])].append((p[3], num(p[4]),
                                             diff(p[5], p[6])))
    if not runs:
        return []
    rtts = sorted({k[2] for k in runs}, key=float)
    other = [x for x in rtts if x != "0"]
    out = ["", "   By settings, for the VM web in a network peered with "
           "its Bastion's (requests per connection)",
           f"   {'settings, cache':<44} {'0 ms RTT':>8} {'vs set':>6} "
           f"{'Entra':>5} {'ARM GET':>7} {'Graph':>5} {'tokens':>6} "
           f"{'upgrade':>7} {'client RTs':>10} "
           + (" ".join(f"{x + ' ms':>8}" for x in other) or
              f"{'at ' + rtt + ' ms':>8}")]
    for cfg, clabel in CONFIGS:
        for cache, klabel in CACHES:
            r0 = runs.get((cfg, cache, "0"))
            if not r0:
                continue
            m0 = med([ms for _, ms, _ in r0])
            fails = sum(1 for _, ms, _ in r0 if ms is None)
            vs = ("" if cfg == "set" else fmt(paired(
                runs, (cfg, cache, "0"), ("set", cache, "0")), "+.1f"))
            counts = [spread([d[k] for _, _, d in r0]) for k in KINDS]
            nrts = med([d["rts"] for _, _, d in r0])
            cells = " ".join(
                f"{fmt(med([ms for _, ms, _ in runs[(cfg, cache, x)]])):>8}"
                for x in other)
            if not other:
                cells = (f"{'~' + fmt(m0 + nrts * float(rtt), '.0f'):>8}"
                         if m0 is not None else f"{'-':>8}")
            out.append(f"   {clabel + ', ' + klabel:<44} {fmt(m0):>8} "
                       f"{vs:>6} {counts[0]:>5} {counts[1]:>7} "
                       f"{counts[2]:>5} {counts[3]:>6} {counts[4]:>7} "
                       f"{nrts:>10g} {cells}"
                       + (f"  ({fails} failed)" if fails else ""))
    out += ["   cold: an empty cache; warm token: the ARM token alone in it; "
            "warm: all an earlier run kept",
            "   (ARM answers for ArmCacheTime, 600 s). vs set: the median "
            "of each run's difference from",
            "   Bastion + TargetResourceGroup with the same cache. Requests: "
            "Entra, ARM GET and Resource",
            "   Graph POST as the emulator counted them, POST /api/tokens "
            "and upgrade as the relay did;",
            "   median of the runs, or the least and the most when they "
            "differed"]
    return out


def main(path):
    rows, info = load(path)
    bytes_ = int(info.get("bytes", 1 << 30))
    gib = bytes_ / (1 << 30)
    t = throughput(rows)
    out = []
    w = out.append
    runs = info.get("runs") if t else info.get("setup_runs")
    w(f"bastion-stdio benchmarks: medians of {runs} runs, "
      "each figure measured side by side with the others in this run"
      + ("" if t else " (the set-up part alone)"))
    w(f"  date: {info.get('date')}   commit: {info.get('git')}")
    w(f"  machine: {info.get('machine')}")
    w(f"  {info.get('versions')}"
      + (f"; ssh cipher {info['cipher']}" if "cipher" in info else ""))
    w(f"  load average before/after: {info.get('load_before')} / "
      f"{info.get('load_after')}; {info.get('seconds')} s in all")
    w("")
    if t:
        section_throughput(w, t, rows, bytes_)
    setup = defaultdict(list)
    for client, cache, rtt, _run, ms in rows["setup"]:
        setup[(client, cache, rtt)].append(float(ms))
    rts = {(p[0], p[1]): (int(p[2]), int(p[3]), int(p[4]))
           for p in rows["rts"]}
    rtt = info.get("rtt_ms", "20")
    rtts = sorted({k[2] for k in setup}, key=float)
    other = [x for x in rtts if x != "0"]
    w("2. Set-up: process start to first byte from the target (ms), "
      f"median of {info.get('setup_runs', '?')} runs")
    w(f"   {'':<50} {'0 ms RTT':>9} {'client RTs':>10} "
      + (" ".join(f"{x + ' ms RTT':>10}" for x in other) or
         f"{'at ' + rtt + ' ms':>10}"))
    labels = [("floor", "warm", "floor: POST /api/tokens + upgrade only",
               "floor"),
              ("bastion-stdio", "cold", "bastion-stdio, cold cache",
               "bastion-stdio-cold"),
              ("bastion-stdio", "warm", "bastion-stdio, warm cache",
               "bastion-stdio-warm"),
              ("bastion-stdio-bundle", "cold",
               "bastion-stdio, cold, CAFile = Debian's bundle",
               "bastion-stdio-cold"),
              ("reference", "cold", "reference relay (Python)", "reference")]
    for client, cache, label, rkey in labels:
        m0 = med(setup[(client, cache, "0")])
        n = rts.get((rkey, "0"))
        cells = " ".join(f"{fmt(med(setup[(client, cache, x)])):>10}"
                         for x in other)
        if not other:
            cells = (f"{'~' + fmt(m0 + n[0] * float(rtt), '.0f'):>10}"
                     if m0 is not None and n else f"{'-':>10}")
        w(f"   {label:<50} {fmt(m0):>9} {n[0] if n else '-':>10} {cells}")
    if not other:
        w(f"   ({rtt} ms RTT not measured: {info.get('rtt_na', '?')}; "
          "'~' is the 0 ms figure plus the counted round trips x RTT)")
    w("   client RTs: 2 per new TLS connection (TCP, TLS 1.3) + 1 per "
      "request, counted by the servers")
    steps = [[num(x) for x in p[2:5]] for p in rows["steps"]
             if p[0] == "0" and len(p) >= 5]
    if steps:
        s = [med([x[i] for x in steps]) for i in range(3)]
        w(f"   bastion-stdio's own -v timings, cold (median, ms from after "
          f"reading its settings): ARM token {fmt(s[1], '.0f')}, Bastion "
          f"from ARM {fmt(s[2], '.0f')}; first byte at {fmt(s[0], '.0f')} "
          "from process start")
    for line in by_config(rows, rtt):
        w(line)
    w("")
    res = section_process(w, t, gib) if t else {}
    fan = []
    for p in rows["fanout"]:
        if len(p) < 7:
            continue
        b = dict(x.split("=") for x in p[5].split())
        a = dict(x.split("=") for x in p[6].split())
        d = {k: int(a[k]) - int(b[k]) for k in a if k in b}
        if "entra" not in d:
            continue
        fan.append((float(p[1]), int(p[2]), int(p[3]), d))
    if fan:
        n = fan[0][1] + fan[0][2]
        w(f"4. Fan-out: {n} sessions started together (median of "
          f"{len(fan)})")
        w(f"   all established in {fmt(med([f[0] for f in fan]), '.0f')} ms;"
          f" established {med([f[1] for f in fan]):.0f}, failed "
          f"{med([f[2] for f in fan]):.0f}; requests to Entra "
          f"{med([f[3]['entra'] for f in fan]):.0f}, to ARM "
          f"{med([f[3]['arm'] for f in fan]):.0f}, sessions "
          f"{med([f[3]['tokens'] for f in fan]):.0f}")
        w("")
    w("Targets")
    if t:
        r = {d: ratio(t, "bastion-stdio", "direct", d)
             for d in ("down", "up")}
        ok = all(x is not None and x >= 0.9 for x in r.values())
        w(f"   throughput >= 90% of direct TCP both ways: "
          f"{'met' if ok else 'MISSED'} ({pct(r['down'])} down, "
          f"{pct(r['up'])} up)")
    floor = med(setup[("floor", "warm", "0")])
    warm = med(setup[("bastion-stdio", "warm", "0")])
    if floor is not None and warm is not None:
        w(f"   warm-cache set-up <= floor + 10 ms: "
          f"{'met' if warm <= floor + 10 else 'MISSED'} at 0 ms RTT "
          f"({warm:.1f} vs {floor:.1f} + 10)")
        fr = rts.get(("floor", "0"))
        br = rts.get(("bastion-stdio-warm", "0"))
        f20 = med(setup[("floor", "warm", rtt)])
        b20 = med(setup[("bastion-stdio", "warm", rtt)])
        how = "measured"
        if (f20 is None or b20 is None) and fr and br:
            f20 = floor + fr[0] * float(rtt)
            b20 = warm + br[0] * float(rtt)
            how = "predicted from the counted round trips"
        if f20 is not None and b20 is not None:
            w(f"   warm-cache set-up <= floor + 10 ms at {rtt} ms RTT: "
              f"{'met' if b20 <= f20 + 10 else 'MISSED'} "
              f"({b20:.0f} vs {f20:.0f} + 10, {how})")
    if "bastion-stdio" in res and res["bastion-stdio"][0]:
        rss = res["bastion-stdio"][0] / 1024
        w(f"   peak RSS <= 8 MiB: {'met' if rss <= 8 else 'MISSED'} "
          f"({rss:.1f} MiB)")
    if fan:
        e = med([f[3]["entra"] for f in fan])
        a = med([f[3]["arm"] for f in fan])
        w(f"   fan-out with 1 Entra and 1 ARM request: "
          f"{'met' if e == 1 and a == 1 else 'MISSED'} "
          f"({e:.0f} and {a:.0f})")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
