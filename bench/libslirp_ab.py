#!/usr/bin/env python3
"""Paired A/B of two libslirp.so.0 under the same slirp4netns: request/
response latency, TCP throughput and connection rate, the rows where one
netbench run per library is at the mercy of this VM's slow and fast phases
(the same configuration reads 49 or 76 us of TCP RR p50 a few minutes
apart).

  sudo bench/libslirp_ab.py --a system --b build/libslirp [--rounds 8]
                            [--mtu 1500] [--crr-secs 4] [--rr-n 10000]
                            [--iperf-secs 4]

Each round runs A and B one after the other (ABBA order from round to
round, so that a drift falls on both), each in a fresh guest namespace
with slirp4netns started by bench/slirp4netns-plugin.sh (--lib system or a
directory), and measures with ../shared/bench/nbrr.c, netbench's client:

  rr_g2h    TCP request/response guest -> host, p50 and p99 (us)
  rr_h2g    the same host -> guest through the forward
  tcp_g2h   iperf3, one stream, guest -> host's 127.0.0.1 via 10.0.2.2
  tcp_h2g_R the same with -R: the host sends (a guest-initiated connection)
  tcp_h2g   iperf3, one stream, host -> guest through a forward
            (the three iperf3 rows only with --iperf-secs > 0, the default)
  crr_h2g   sequential connections through a forward, host -> guest (conn/s)
  crr_g2h   sequential connections guest -> host's 127.0.0.1 via 10.0.2.2

in that order (netbench runs throughput first): libslirp keeps the sockets of closed
connections on its list for a while and answers slower after the
connection tests.
The report gives, per metric, each library's median and the median of the
per-round ratios B / A (each pair ran within a minute of each other).
Results: bench/results/<date>/<tag>-raw.tsv and <tag>-report.txt.
"""

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
NBRR_C = os.environ.get("NBRR_C", os.path.join(os.path.dirname(REPO), "shared", "bench", "nbrr.c"))
PLUGIN = os.path.join(HERE, "slirp4netns-plugin.sh")
GW = "10.0.2.2"
PORT_OUT = 47101   # host server, reached by the guest through 10.0.2.2
PORT_IN = 47102    # guest server, reached by the host through the forward
IPERF_OUT = 47103  # host iperf3 server
IPERF_IN = 47104   # guest iperf3 server, forwarded

# metric, label, higher is better
METRICS = [
    ("crr_h2g", "TCP CRR h->g (fwd) conn/s", True),
    ("crr_g2h", "TCP CRR g->h conn/s", True),
    ("rr_g2h_p50", "TCP RR g->h p50 us", False),
    ("rr_g2h_p99", "TCP RR g->h p99 us", False),
    ("rr_h2g_p50", "TCP RR h->g (fwd) p50 us", False),
    ("rr_h2g_p99", "TCP RR h->g (fwd) p99 us", False),
    ("tcp_g2h", "TCP g->h Gbit/s", True),
    ("tcp_h2g_R", "TCP h->g (-R) Gbit/s", True),
    ("tcp_h2g", "TCP h->g (fwd) Gbit/s", True),
]


def iperf(argv, secs):
    """An iperf3 client's received rate in Gbit/s, or None."""
    r = subprocess.run(argv + ["-t", str(secs), "-J"], capture_output=True, text=True,
                       timeout=secs + 60)
    try:
        return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
    except (ValueError, KeyError):
        return None


def run(argv, timeout=120):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""


def one(lib, mtu, nbrr, a):
    """One library, one fresh namespace: {metric: value}."""
    ns = "lab%d-%d" % (os.getpid(), int(time.monotonic() * 1000) % 100000)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    rundir = tempfile.mkdtemp(prefix="labr")
    procs = []
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        pidfile = os.path.join(rundir, "pid")
        procs.append(subprocess.Popen(
            [PLUGIN, "--lib", lib, "--mtu", str(mtu), "--netns", "/run/netns/" + ns, "--tap", "tap0",
             "--fwd-tcp", "%d,%d" % (PORT_IN, IPERF_IN), "--pidfile", pidfile, "--rundir", rundir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "env", "MAXLIFE=600", nbrr, "srv",
                                       str(PORT_IN)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        if a.iperf_secs > 0:
            procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "iperf3", "-s", "-p",
                                           str(IPERF_IN)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        for _ in range(100):
            ss = subprocess.run(["ss", "-ltnH", "sport = :%d" % PORT_IN], capture_output=True,
                                text=True).stdout
            if ss.strip():
                break
            time.sleep(0.1)
        else:
            raise SystemExit("bench: slirp4netns on %s did not forward port %d" % (lib, PORT_IN))
        nsx = ["ip", "netns", "exec", ns]
        out = {}
        # request/response first, as netbench orders them: libslirp keeps
        # closed connections' sockets on its list for a while, and polls
        # them all, so after the connection tests it answers slower
        v = run(nsx + [nbrr, "rr", "tcp", GW, str(PORT_OUT), str(a.rr_n)]).split()
        out["rr_g2h_p50"], out["rr_g2h_p99"] = (float(v[0]), float(v[1])) if len(v) >= 2 else (None, None)
        v = run([nbrr, "rr", "tcp", "127.0.0.1", str(PORT_IN), str(a.rr_n)]).split()
        out["rr_h2g_p50"], out["rr_h2g_p99"] = (float(v[0]), float(v[1])) if len(v) >= 2 else (None, None)
        if a.iperf_secs > 0:
            cl = ["iperf3", "-c", GW, "-p", str(IPERF_OUT)]
            out["tcp_g2h"] = iperf(nsx + cl, a.iperf_secs)
            out["tcp_h2g_R"] = iperf(nsx + cl + ["-R"], a.iperf_secs)
            out["tcp_h2g"] = iperf(["iperf3", "-c", "127.0.0.1", "-p", str(IPERF_IN)], a.iperf_secs)
        v = run([nbrr, "crr", "127.0.0.1", str(PORT_IN), str(a.crr_secs)]).split()
        out["crr_h2g"] = float(v[0]) if v else None
        v = run(nsx + [nbrr, "crr", GW, str(PORT_OUT), str(a.crr_secs)]).split()
        out["crr_g2h"] = float(v[0]) if v else None
        return out
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["ip", "netns", "del", ns])
        subprocess.run(["rm", "-rf", rundir])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="system, or a directory with libslirp.so.0")
    ap.add_argument("--b", required=True, help="system, or a directory with libslirp.so.0")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--mtu", type=int, default=1500)
    ap.add_argument("--crr-secs", type=float, default=4)
    ap.add_argument("--rr-n", type=int, default=10000)
    ap.add_argument("--iperf-secs", type=float, default=4, help="0: no throughput rows")
    ap.add_argument("--tag", default="libslirp-ab")
    ap.add_argument("--out", help="results directory (default bench/results/<today>)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (namespaces)")
    libs = [os.path.abspath(x) if x != "system" else x for x in (a.a, a.b)]
    for lib in libs:
        if lib != "system" and not os.path.exists(os.path.join(lib, "libslirp.so.0")):
            raise SystemExit("bench: no libslirp.so.0 in %s" % lib)
    out = a.out or os.path.join(HERE, "results", datetime.date.today().isoformat())
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="labn")
    nbrr = os.path.join(work, "nbrr")
    subprocess.run(["gcc", "-O2", "-o", nbrr, NBRR_C], check=True)
    srv = subprocess.Popen(["env", "MAXLIFE=7200", nbrr, "srv", str(PORT_OUT)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if a.iperf_secs > 0:
        iperf_srv = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(IPERF_OUT)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        time.sleep(0.3)
        for r in range(1, a.rounds + 1):
            order = (0, 1) if r % 2 else (1, 0)
            for i in order:
                m = one(libs[i], a.mtu, nbrr, a)
                for k, v in m.items():
                    rows.append((r, "AB"[i], k, v))
                print("round %d %s %s" % (r, "AB"[i], " ".join("%s=%s" % kv for kv in m.items())),
                      flush=True)
    finally:
        srv.terminate()
        srv.wait()
        if a.iperf_secs > 0:
            iperf_srv.terminate()
            iperf_srv.wait()
        subprocess.run(["rm", "-rf", work])
    raw = os.path.join(out, a.tag + "-raw.tsv")
    with open(raw, "w") as f:
        f.write("round\tlib\tmetric\tvalue\n")
        for row in rows:
            f.write("%d\t%s\t%s\t%s\n" % row)
    val = {(r, lib, k): v for r, lib, k, v in rows}
    lines = ["command: " + " ".join(shlex.quote(x) for x in sys.argv),
             "date: %s" % datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
             "host: %s, %d cores" % (os.uname().release, os.cpu_count()),
             "A: %s" % libs[0], "B: %s" % libs[1],
             "usernet tree: %s" % subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                                                 capture_output=True, text=True).stdout.strip(),
             "mtu %d, %d rounds (ABBA order), crr %.0f s, rr %d transactions, iperf3 %.0f s" % (
                 a.mtu, a.rounds, a.crr_secs, a.rr_n, a.iperf_secs), "",
             "%-28s %10s %10s %12s %s" % ("metric", "A median", "B median", "B/A paired", "(per-round B/A range)")]
    for k, label, higher in METRICS:
        av = [val[(r, "A", k)] for r in range(1, a.rounds + 1) if val.get((r, "A", k))]
        bv = [val[(r, "B", k)] for r in range(1, a.rounds + 1) if val.get((r, "B", k))]
        pr = [val[(r, "B", k)] / val[(r, "A", k)] for r in range(1, a.rounds + 1)
              if val.get((r, "A", k)) and val.get((r, "B", k))]
        if not av or not bv or not pr:
            lines.append("%-28s n/a" % label)
            continue
        am, bm = statistics.median(av), statistics.median(bv)
        fmt = "%-28s %10.2f %10.2f" if max(am, bm) < 100 else "%-28s %10.1f %10.1f"
        lines.append((fmt + " %11.2fx  (%.2f-%.2f) %s") % (
            label, am, bm, statistics.median(pr),
            min(pr), max(pr), "higher is better" if higher else "lower is better"))
    report = os.path.join(out, a.tag + "-report.txt")
    with open(report, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("results: %s, %s" % (raw, report))


if __name__ == "__main__":
    main()
