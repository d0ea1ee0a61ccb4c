#!/usr/bin/env python3
"""A download over usernet's serial line: a QEMU guest with no NIC (TCG,
tests/qemu/build-guest.sh with USERNET_GUEST_SERIAL=1) runs pppd on ttyS1,
which QEMU connects to `usernet --serial unix:SOCK`, and wgets a random
file from an HTTP server on the host's loopback as http://10.0.2.2:PORT/.
The line is slow (QEMU's UART, about 50 KiB/s here), so what is measured
is what a long download costs the line: the packets usernet sent the peer,
how many its output ring dropped (each one a retransmission, and a NewReno
recovery for the TCP translator), and the rate as the guest's clock tells
it. usernet reports the first two when the peer leaves:
"... N packets in, M out, D dropped with the output ring full".

    bench/serial_ppp.py [--size MiB] [--reps N] [--bin NAME=PATH ...]

Several --bin run one after the other within each repetition (an A/B).
Results: bench/results/<date>/serial-ppp.tsv (one row per download) and
the medians on stdout. Needs qemu-system-x86_64 and the serial guest's
packages (ppp, net-tools), as tests/qemu/test_serial.py does.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import guestbench  # noqa: E402


def one(binary, tmp, kernel, initrd, port, size, sha, dltime):
    sock = os.path.join(tmp, "serial.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    err = open(os.path.join(tmp, "usernet.log"), "w+")
    un = subprocess.Popen([binary, "--serial", "unix:" + sock], stdout=subprocess.DEVNULL,
                          stderr=err)
    qemu = None
    try:
        for _ in range(200):
            if os.path.exists(sock) and re.search(r"leased \S+ for the peer", open(err.name).read()):
                break
            if un.poll() is not None:
                raise RuntimeError("usernet exited:\n" + open(err.name).read())
            time.sleep(0.05)
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
             "-nodefaults", "-monitor", "none", "-serial", "stdio", "-serial", "unix:" + sock,
             "-kernel", kernel, "-initrd", initrd,
             "-append", "console=ttyS0 panic=-1 loglevel=4 un.ppp un.port=%d un.file=f un.dltime=%d"
             % (port, dltime)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace")
        out, _ = qemu.communicate(timeout=dltime + 120)
        out = out.replace("\r", "")
        left = None
        for _ in range(100):  # the "left" line follows QEMU's exit
            left = re.search(r"left \(.*\): (\d+) packets in, (\d+) out, (\d+) dropped",
                             open(err.name).read())
            if left:
                break
            time.sleep(0.05)
        m = re.search(r"^UN-SHA256 (\S+) (\d+) .*t0=([\d.]+) .*t1=([\d.]+)", out, re.M)
        ok = bool(m) and m.group(1) == sha and int(m.group(2)) == size
        rate = size / 1024 / max(float(m.group(4)) - float(m.group(3)), 0.01) if ok else 0.0
        return {"ok": ok, "kib_s": rate,
                "pkts_out": int(left.group(2)) if left else -1,
                "ring_drops": int(left.group(3)) if left else -1}
    finally:
        if qemu and qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        un.terminate()
        try:
            un.wait(10)
        except subprocess.TimeoutExpired:
            un.kill()
            un.wait()
        err.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=float, default=2.0, help="MiB to download (default 2)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bin", action="append", default=[],
                    help="NAME=PATH of a usernet binary (repeatable; default usernet=build/usernet)")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", time.strftime("%Y-%m-%d"),
                                                   "serial-ppp.tsv"))
    a = ap.parse_args()
    bins = [b.split("=", 1) for b in a.bin] or [["usernet", os.path.join(REPO, "build", "usernet")]]
    for tool in ("qemu-system-x86_64",):
        if not shutil.which(tool):
            sys.exit("serial_ppp: %s is missing (apt install qemu-system-x86)" % tool)
    os.environ["USERNET_GUEST_SERIAL"] = "1"
    tmp, kernel, initrd, www, data, sha = guestbench.prepare(
        os.path.join(REPO, "tests", "qemu", "build-guest.sh"), a.size, "usernet-serial-")
    srv = guestbench.serve(www)
    # The guest's wget gets 20 s per MiB (the line moves about 50 KiB/s).
    dltime = max(100, int(a.size * 20))
    rows = []
    try:
        for rep in range(a.reps):
            for name, path in bins:
                r = one(path, tmp, kernel, initrd, srv.server_address[1], len(data), sha, dltime)
                r.update(binary=name, rep=rep)
                rows.append(r)
                print("%s rep %d: %s %.1f KiB/s, %d packets out, %d dropped (ring full)"
                      % (name, rep, "ok" if r["ok"] else "FAILED", r["kib_s"], r["pkts_out"],
                         r["ring_drops"]), flush=True)
    finally:
        srv.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    cols = ["binary", "rep", "ok", "kib_s", "pkts_out", "ring_drops"]
    guestbench.write_tsv(a.out, "bench/serial_ppp.py --size %g --reps %d %s" %
                         (a.size, a.reps, " ".join("--bin " + "=".join(b) for b in bins)),
                         cols, [[("%.1f" % r[c]) if c == "kib_s" else r[c] for c in cols]
                                for r in rows])
    for name, _ in bins:
        mine = [r for r in rows if r["binary"] == name]
        good = [r["kib_s"] for r in mine if r["ok"]]
        print("%s: %d/%d downloads, median %.1f KiB/s, packets out %s, ring drops %s"
              % (name, len(good), len(mine), statistics.median(good) if good else 0.0,
                 [r["pkts_out"] for r in mine], [r["ring_drops"] for r in mine]))


if __name__ == "__main__":
    main()
