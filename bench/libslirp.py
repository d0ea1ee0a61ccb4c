#!/usr/bin/env python3
"""slirp4netns on usernet's libslirp.so.0 against slirp4netns on Debian's
libslirp, in one netbench run:

  sudo bench/libslirp.py [--reps N] [--mtu 1500,65520] [--quick]
                         [--iperf-secs S] [--rr-n N] [--crr-secs S]

The same slirp4netns binary (Debian's 1.2.0) runs as four netbench plug-ins,
all through bench/slirp4netns-plugin.sh so that they start, forward and stop
identically; only the library differs (LD_LIBRARY_PATH for usernet's):

  deb-1500   s4 + Debian's libslirp,  --mtu 1500     usn-1500   s4 + usernet's, 1500
  deb-65520  s4 + Debian's libslirp,  --mtu 65520    usn-65520  s4 + usernet's, 65520

in that order in every repetition, so that the machine's noise falls on
both. netbench's tests: TCP bulk both ways (iperf3, 1 and 4 streams; host
to guest through add_hostfwd forwards and as iperf3 -R), TCP and UDP
request/response latency both ways, TCP connection rate both ways, and the
slirp4netns process's peak RSS (VmHWM, under that load) and CPU time.

USERNET_LIBSLIRP_DIR (or --libdir) names the directory of usernet's
libslirp.so.0 (default build/libslirp); NETBENCH the netbench script
(default ../shared/bench/netbench). Results: bench/results/<date>/
libslirp-raw.tsv (netbench's raw rows) and libslirp-report.txt (the command
line, versions, netbench's own summary, and the usernet / Debian ratios).
"""

import argparse
import datetime
import os
import shlex
import statistics
import subprocess
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
NETBENCH = os.environ.get("NETBENCH", os.path.join(os.path.dirname(REPO), "shared", "bench", "netbench"))
PLUGIN = os.path.join(HERE, "slirp4netns-plugin.sh")

# (test, metric, label, higher is better)
TESTS = [
    ("tcp_g2h_1", "gbps", "TCP g->h 1 stream Gbit/s", True),
    ("tcp_g2h_4", "gbps", "TCP g->h 4 streams Gbit/s", True),
    ("tcp_h2g_R1", "gbps", "TCP h->g 1 stream (-R) Gbit/s", True),
    ("tcp_h2g_1", "gbps", "TCP h->g 1 stream (fwd) Gbit/s", True),
    ("tcp_h2g_4", "gbps", "TCP h->g 4 streams (fwd) Gbit/s", True),
    ("rr_tcp_g2h", "p50_us", "TCP RR g->h p50 us", False),
    ("rr_tcp_g2h", "p99_us", "TCP RR g->h p99 us", False),
    ("rr_tcp_h2g", "p50_us", "TCP RR h->g (fwd) p50 us", False),
    ("rr_tcp_h2g", "p99_us", "TCP RR h->g (fwd) p99 us", False),
    ("rr_udp_g2h", "p50_us", "UDP RR g->h p50 us", False),
    ("rr_udp_g2h", "p99_us", "UDP RR g->h p99 us", False),
    ("rr_udp_h2g", "p50_us", "UDP RR h->g (fwd) p50 us", False),
    ("rr_udp_h2g", "p99_us", "UDP RR h->g (fwd) p99 us", False),
    ("crr_g2h", "conn_s", "TCP CRR g->h conn/s", True),
    ("crr_h2g", "conn_s", "TCP CRR h->g (fwd) conn/s", True),
    ("total", "peak_rss_kB", "slirp4netns peak RSS (VmHWM) MiB", False),
    ("total", "cpu_s", "slirp4netns CPU s, whole run", False),
]


def sh(cmd, env=None):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env)
    return (r.stdout + r.stderr).strip()


def plugin_cmd(lib, mtu):
    return ("exec %s --lib %s --mtu %d --netns {NETNS} --tap {TAP} --fwd-tcp {FWD_TCP} "
            "--fwd-udp {FWD_UDP} --pidfile {PIDFILE} --rundir {RUNDIR}" % (
                shlex.quote(PLUGIN), shlex.quote(lib), mtu))


def ratios(raw, mtus):
    vals = defaultdict(list)
    with open(raw) as f:
        next(f)
        for line in f:
            rep, b, t, m, v = line.rstrip("\n").split("\t")
            try:
                vals[(b, t, m)].append(float(v))
            except ValueError:
                pass

    def med(b, t, m):
        v = vals.get((b, t, m))
        if not v:
            return None
        x = statistics.median(v)
        return x / 1024 if m == "peak_rss_kB" else x

    def fmt(x):
        if x is None:
            return "n/a"
        return "%.0f" % x if abs(x) >= 1000 else "%.2f" % x

    lines = ["== usernet's libslirp / Debian's libslirp (same slirp4netns 1.2.0), medians ==",
             "ratio > 1 is better for usernet where marked (+), < 1 is better where marked (-)", ""]
    head = "%-34s" % "test"
    for mtu in mtus:
        head += "%10s %10s %8s" % ("deb-%d" % mtu, "usn-%d" % mtu, "ratio")
    lines.append(head)
    for t, m, label, higher in TESTS:
        row = "%-34s" % ("%s (%s)" % (label, "+" if higher else "-"))
        for mtu in mtus:
            d, u = med("deb-%d" % mtu, t, m), med("usn-%d" % mtu, t, m)
            r = u / d if (u is not None and d) else None
            row += "%10s %10s %8s" % (fmt(d), fmt(u), "%.2fx" % r if r is not None else "n/a")
        lines.append(row)
    return lines


def without_loopback_ratios(summary):
    """netbench's summary less its "ratio to loopback" block: this run has
    no loopback backend, so every entry there is n/a."""
    out, skip = [], False
    for line in summary.splitlines(keepends=True):
        if line.startswith("== ratio to loopback"):
            skip = True
            continue
        if skip and line.startswith("=="):
            skip = False
        if not skip:
            out.append(line)
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mtu", default="1500,65520", help="comma list (default 1500,65520)")
    ap.add_argument("--quick", action="store_true", help="netbench --quick (short tests)")
    ap.add_argument("--iperf-secs")
    ap.add_argument("--rr-n")
    ap.add_argument("--crr-secs")
    ap.add_argument("--libdir", default=os.environ.get("USERNET_LIBSLIRP_DIR") or
                    os.path.join(REPO, "build", "libslirp"))
    ap.add_argument("--out", help="results directory (default bench/results/<today>)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (netbench makes namespaces)")
    libdir = os.path.abspath(a.libdir)
    lib = os.path.join(libdir, "libslirp.so.0")
    if not os.path.exists(lib):
        raise SystemExit("bench: no usernet libslirp.so.0 in %s; build usernet_slirp (--libdir)" % libdir)
    if not os.access(NETBENCH, os.X_OK):
        raise SystemExit("bench: netbench not found at %s (set NETBENCH=)" % NETBENCH)
    mtus = [int(x) for x in a.mtu.split(",")]
    out = a.out or os.path.join(REPO, "bench", "results", datetime.date.today().isoformat())
    os.makedirs(out, exist_ok=True)
    raw = os.path.join(out, "libslirp-raw.tsv")
    report = os.path.join(out, "libslirp-report.txt")

    backends, argv = [], [NETBENCH, "--reps", str(a.reps)]
    if a.quick:
        argv.append("--quick")
    for opt in ("iperf_secs", "rr_n", "crr_secs"):
        if getattr(a, opt):
            argv += ["--" + opt.replace("_", "-"), getattr(a, opt)]
    for mtu in mtus:
        for name, which in (("deb", "system"), ("usn", libdir)):
            backends.append("%s-%d" % (name, mtu))
            argv += ["--plugin", "%s-%d=%s" % (name, mtu, plugin_cmd(which, mtu))]
    argv += ["--backends", " ".join(backends), "--raw", raw]

    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)  # only the plug-in sets it, for slirp4netns alone
    build_dir = os.path.dirname(libdir)
    cache = os.path.join(build_dir, "CMakeCache.txt")
    build_type = sh("grep -m1 '^CMAKE_BUILD_TYPE:' %s" % shlex.quote(cache)) if os.path.exists(cache) else "?"
    head = [
        "command: %s" % " ".join(shlex.quote(x) for x in [sys.argv[0]] + sys.argv[1:]),
        "netbench: %s" % " ".join(shlex.quote(x) for x in argv),
        "date: %s" % datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host: %s, %d cores" % (os.uname().release, os.cpu_count()),
        "usernet: %s, libslirp.so.0 from %s (%s)" % (
            sh("git -C %s describe --always --dirty" % shlex.quote(REPO)), lib, build_type),
        "slirp4netns: %s" % sh("slirp4netns --version | head -1"),
        "  Debian's:  %s; package libslirp0 %s" % (
            sh("slirp4netns --version | grep libslirp:", env=env),
            sh("dpkg-query -W -f='${Version}' libslirp0")),
        "  usernet's: %s" % sh("slirp4netns --version | grep libslirp:",
                               env=dict(env, LD_LIBRARY_PATH=libdir)),
        "",
    ]
    print("\n".join(head), flush=True)
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True)
    summary = without_loopback_ratios(r.stdout)
    sys.stdout.write(summary)
    table = ratios(raw, mtus)
    with open(report, "w") as f:
        f.write("\n".join(head) + "\n")
        f.write("\n".join(table) + "\n\n")
        f.write("== netbench's own summary ==\n")
        f.write(summary)
    print("\n".join(table))
    print("results: %s, %s" % (report, raw), file=sys.stderr)
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
