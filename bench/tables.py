#!/usr/bin/env python3
"""Markdown tables for docs/performance.md from bench/netbench.sh's raw data.

    bench/tables.py bench/results/DATE

Reads raw-65520.tsv and raw-1500.tsv (netbench --raw: rep, backend, test,
metric, value) and prints, per MTU, the median of every repetition for each
backend, usernet's ratios to pasta and to the veth pair (with its defaults,
then with --busy-poll 0), peak RSS, and CPU seconds per GB moved (the
backend's CPU share during a bulk test over the bytes it moved, per
repetition, then the median)."""

import csv
import os
import statistics
import sys

TESTS = [
    ("tcp_g2h_1", "gbps", "TCP guest→host, 1 stream, Gbit/s"),
    ("tcp_g2h_4", "gbps", "TCP guest→host, 4 streams, Gbit/s"),
    ("tcp_h2g_R1", "gbps", "TCP host→guest, 1 stream (guest-initiated, -R), Gbit/s"),
    ("tcp_h2g_1", "gbps", "TCP host→guest, 1 stream (forward), Gbit/s"),
    ("tcp_h2g_4", "gbps", "TCP host→guest, 4 streams (forward), Gbit/s"),
    ("rr_tcp_g2h", "p50_us", "TCP RR guest→host p50, µs"),
    ("rr_tcp_h2g", "p50_us", "TCP RR host→guest p50, µs"),
    ("rr_udp_g2h", "p50_us", "UDP RR guest→host p50, µs"),
    ("rr_udp_h2g", "p50_us", "UDP RR host→guest p50, µs"),
    ("crr_g2h", "conn_s", "TCP connections/s guest→host"),
    ("crr_h2g", "conn_s", "TCP connections/s host→guest"),
]
CPU_TESTS = [("tcp_g2h_1", "guest→host 1 stream"), ("tcp_h2g_1", "host→guest 1 stream (forward)")]


def fmt(metric, v):
    if metric == "gbps":
        return "%.2f" % v
    if metric == "p50_us":
        return "%.1f" % v
    return "%d" % round(v)


def table(path, mtu):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    data = {}
    for r in rows:
        data.setdefault((r["backend"], r["test"], r["metric"]), []).append(float(r["value"]))
    backends = []
    for r in rows:
        if r["backend"] not in backends:
            backends.append(r["backend"])
    pasta = next(b for b in backends if b.startswith("pasta"))
    slirp = next(b for b in backends if b.startswith("slirp"))
    cols = ["veth", slirp, pasta, "ours", "ours-nobp"]

    def med(b, t, m):
        v = data.get((b, t, m))
        return statistics.median(v) if v else None

    print("### MTU %s\n" % mtu)
    print("| test | veth | %s | %s | usernet | usernet --busy-poll 0 | usernet / %s | usernet / veth |"
          % (slirp.replace("-65520", ""), pasta.replace("-1500", ""), pasta.replace("-1500", "")))
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t, m, name in TESTS:
        vals = [med(b, t, m) for b in cols]
        cells = [fmt(m, v) if v is not None else "n/a" for v in vals]
        o, on, p, v = vals[3], vals[4], vals[2], vals[0]
        r1 = "%.2fx / %.2fx" % (o / p, on / p) if p else ""
        r2 = "%.2fx / %.2fx" % (o / v, on / v) if v else ""
        print("| %s | %s | %s | %s |" % (name, " | ".join(cells), r1, r2))
    rss = [med(b, "total", "peak_rss_kB") for b in cols]
    print("| peak RSS, MiB | %s | | |" % " | ".join("%.1f" % (x / 1024) if x else "" for x in rss))
    for t, name in CPU_TESTS:
        cells = []
        for b in cols:
            c, g = data.get((b, t, "cpu_pct")), data.get((b, t, "gbps"))
            if b == "veth" or not c or not g:
                cells.append("")
                continue
            per = [(ci / 100) / (gi / 8) for ci, gi in zip(c, g) if gi > 0]
            cells.append("%.2f" % statistics.median(per))
        print("| CPU s per GB, %s | %s | | |" % (name, " | ".join(cells)))
    print()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for mtu in ("65520", "1500"):
        path = os.path.join(sys.argv[1], "raw-%s.tsv" % mtu)
        if os.path.exists(path):
            table(path, mtu)


if __name__ == "__main__":
    main()
