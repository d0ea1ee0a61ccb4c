#!/usr/bin/env python3
"""The gateway's services under load, in one run on one namespace guest:

  sudo bench/services.py [--reps N] [--bytes B] [--queries Q] [--conns C]

- bulk g->h: the guest sends B bytes over one TCP connection to a sink on
  the host, through the NAT (10.0.2.2 -> 127.0.0.1), through a guest
  forward to a host TCP address (10.0.2.100), and through a guest forward
  to a unix socket (10.0.2.101); the same Python sink serves all three, so
  only the path differs. Medians of N, in Gbit/s.
- DNS: Q queries one after another for a local name (--dns-host) over UDP
  and over one TCP connection, and for an upstream name (a dnsmasq on the
  host's loopback) over both; p50 and p99 in microseconds.
- commands: C connections one after another to a cmd:cat guest forward
  (spawn, 1 byte each way, close); connections per second (the spawn rate
  limit is 16 at once, then 4 a second per guest, so this runs C=16).

Results: bench/results/<date>/services-{raw.tsv,report.txt}. Needs root,
iproute2, dnsmasq and a built usernet (USERNET_BIN, default build/usernet).
"""

import argparse
import datetime
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.environ.get("USERNET_BIN", os.path.join(REPO, "build", "usernet"))
PY = "/usr/bin/python3"

SINK = r"""
import os, socket, sys, threading
def serve(ls):
    while True:
        c, _ = ls.accept()
        def one(c=c):
            n = 0
            while True:
                b = c.recv(1 << 20)
                if not b:
                    break
                n += len(b)
            c.sendall(b"%d\n" % n)
            c.close()
        threading.Thread(target=one, daemon=True).start()
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", int(sys.argv[1]))); t.listen(16)
u = socket.socket(socket.AF_UNIX); u.bind(sys.argv[2]); u.listen(16)
threading.Thread(target=serve, args=(u,), daemon=True).start()
print("READY", flush=True)
serve(t)
"""

SEND = r"""
import socket, sys, time
addr, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = b"\0" * (1 << 20)
s = socket.create_connection((addr, port))
t0 = time.monotonic()
left = total
while left:
    left -= s.send(buf[:min(left, len(buf))])
s.shutdown(socket.SHUT_WR)
got = s.recv(100)
dt = time.monotonic() - t0
assert int(got) == total, got
print("%.6f" % dt)
"""

DNS = r"""
import socket, struct, sys, time
server, name, proto, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
qn = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
def q(i):
    return struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + qn + struct.pack(">HH", 1, 1)
times = []
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); s.connect((server, 53))
    for i in range(n):
        t0 = time.perf_counter(); s.send(q(i & 0xffff)); b = s.recv(4096)
        times.append(time.perf_counter() - t0)
        assert b[:2] == q(i & 0xffff)[:2] and b[3] & 0xf == 0
else:
    s = socket.create_connection((server, 53)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def read(k):
        b = b""
        while len(b) < k:
            x = s.recv(k - len(b)); assert x; b += x
        return b
    for i in range(n):
        m = q(i & 0xffff)
        t0 = time.perf_counter(); s.sendall(struct.pack(">H", len(m)) + m)
        ln = struct.unpack(">H", read(2))[0]; b = read(ln)
        times.append(time.perf_counter() - t0)
        assert b[:2] == m[:2] and b[3] & 0xf == 0
times.sort()
print("%.1f %.1f" % (times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6))
"""

CONNS = r"""
import socket, sys, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.monotonic()
for i in range(n):
    s = socket.create_connection((addr, port), timeout=10)
    s.sendall(b"x"); assert s.recv(1) == b"x"; s.close()
print("%.1f" % (n / (time.monotonic() - t0)))
"""


def run(ns, *argv, timeout=300):
    r = subprocess.run(["ip", "netns", "exec", ns] + list(argv), capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise SystemExit("bench: %s failed: %s %s" % (" ".join(argv[:3]), r.stdout, r.stderr))
    return r.stdout.strip()


def wait_for(cond, what, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit("bench: timed out waiting for " + what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bytes", type=int, default=4 << 30)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--conns", type=int, default=16)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (namespaces)")
    if not os.access(BIN, os.X_OK):
        raise SystemExit("bench: no usernet binary at %s; build first" % BIN)
    tag = "bs-%d" % os.getpid()
    host, guest = tag + "-h", tag + "-g"
    tmp = tempfile.mkdtemp(prefix="usernet-bench-")
    procs = []
    out_dir = os.path.join(REPO, "bench", "results", datetime.date.today().isoformat())
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    try:
        for ns in (host, guest):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "netns", "exec", host, "ip", "link", "set", "lo", "up"], check=True)
        port = 45000 + os.getpid() % 1000
        sock = os.path.join(tmp, "sink.sock")
        sink = subprocess.Popen(["ip", "netns", "exec", host, PY, "-c", SINK, str(port), sock],
                                stdout=subprocess.PIPE, text=True)
        procs.append(sink)
        assert sink.stdout.readline().strip() == "READY"
        dport = port + 1
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", host, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
             "--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1",
             "--port=%d" % dport, "--pid-file=", "--user=root", "--address=/bench.test/192.0.2.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(dnsmasq)
        un = subprocess.Popen(
            ["ip", "netns", "exec", host, BIN, "--netns", "/run/netns/" + guest, "--config-net",
             "--dns-upstream", "127.0.0.1:%d" % dport, "--dns-host", "db.test=10.0.2.100",
             "--guestfwd", "tcp:10.0.2.100:%d-127.0.0.1:%d" % (port, port),
             "--guestfwd", "tcp:10.0.2.101:%d-unix:%s" % (port, sock),
             "--guestfwd", "tcp:10.0.2.102:7-cmd:exec cat", "-q"],
            stderr=subprocess.PIPE, text=True)
        procs.append(un)
        wait_for(lambda: "10.0.2.15" in run(guest, "ip", "-4", "addr"), "the guest's address")
        time.sleep(0.5)

        for path, addr in (("nat", "10.0.2.2"), ("guestfwd-tcp", "10.0.2.100"),
                           ("guestfwd-unix", "10.0.2.101")):
            for rep in range(a.reps):
                secs = float(run(guest, PY, "-c", SEND, addr, str(port), str(a.bytes)))
                rows.append(("bulk_g2h_gbps", path, rep, a.bytes * 8 / secs / 1e9))
        for name, what in (("db.test", "local"), ("bench.test", "upstream")):
            for proto in ("udp", "tcp"):
                p50, p99 = run(guest, PY, "-c", DNS, "10.0.2.3", name, proto, str(a.queries)).split()
                rows.append(("dns_p50_us", "%s-%s" % (what, proto), 0, float(p50)))
                rows.append(("dns_p99_us", "%s-%s" % (what, proto), 0, float(p99)))
        rate = run(guest, PY, "-c", CONNS, "10.0.2.102", "7", str(a.conns))
        rows.append(("cmd_conns_per_s", "cmd-cat", 0, float(rate)))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in (guest, host):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)

    raw = os.path.join(out_dir, "services-raw.tsv")
    with open(raw, "w") as f:
        f.write("metric\tpath\trep\tvalue\n")
        for r in rows:
            f.write("%s\t%s\t%d\t%.3f\n" % r)
    lines = ["usernet services bench, %s, usernet %s" % (
        datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
        subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.strip()),
        "command: bench/services.py --reps %d --bytes %d --queries %d --conns %d" % (
            a.reps, a.bytes, a.queries, a.conns), ""]
    by = {}
    for m, p, _, v in rows:
        by.setdefault((m, p), []).append(v)
    for (m, p), vs in by.items():
        lines.append("%-16s %-16s %10.2f%s" % (m, p, statistics.median(vs),
                                               "  (median of %d)" % len(vs) if len(vs) > 1 else ""))
    report = os.path.join(out_dir, "services-report.txt")
    with open(report, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
