#!/usr/bin/env python3
"""QEMU's -netdev user on Debian's libslirp and on usernet's libslirp.so.0,
in one run, with the same guest and the same command line:

  bench/qemu_user.py [--reps N] [--mib M] [--nic virtio-net-pci|ne2k_pci]

The busybox guest of tests/qemu/build-guest.sh (TCG) downloads M MiB from
an HTTP server on the host's loopback through 10.0.2.2 and uploads it back
(base64, so 4/3 of the bytes). Each transfer is timed twice: by the
guest's own clock (wget's start to its end, which includes starting wget
and reading the file; under TCG the guest's clock also runs behind during
heavy I/O) and from a capture QEMU takes on the netdev (filter-dump, host
time): the guest's SYN to the guest's FIN, which wget sends once it has
read everything (the server's FIN would be early for a download: it
passes the filter when the library sends it, and QEMU may queue
thousands of frames for a guest that is still reading). The capture's
figure is the one to quote. Reported per library: download and
upload MB/s by both clocks (medians of N, the runs interleaved), and
QEMU's peak RSS (VmHWM). Under TCG the emulated CPU is
often the bottleneck, so this shows where the library still matters; the
namespace comparison through slirp4netns (bench/libslirp.py) isolates the
library.

Results: bench/results/<date>/qemu-user-{raw.tsv,report.txt}. Needs
qemu-system-x86_64, a built usernet_slirp (USERNET_LIBSLIRP_DIR, default
build/libslirp) and Debian's libslirp0.
"""

import argparse
import datetime
import http.server
import os
import re
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import guestbench  # noqa: E402

LIBDIR = os.environ.get("USERNET_LIBSLIRP_DIR", os.path.join(REPO, "build", "libslirp"))


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        left = n
        while left:
            b = self.rfile.read(min(left, 1 << 20))
            if not b:
                break
            left -= len(b)
        body = b"%d\n" % n
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def capture_spans(path, port):
    """From a pcap of Ethernet frames: for each connection to port, in the
    order of the guest's SYNs, the guest's SYN to the guest's FIN in
    seconds (frames the guest sends pass the filter when it sends them)."""
    syn, fin = {}, {}
    for t, sport, dport, flags in guestbench.tcp_frames(path):
        if dport == port and flags & 0x02 and sport not in syn:
            syn[sport] = t
        if dport == port and flags & 0x01 and sport not in fin:
            fin[sport] = t
    return [fin[p] - syn[p] if p in fin else None for p in syn]


def run_once(lib, kernel, initrd, port, nic, dump):
    env = dict(os.environ)
    if lib == "usernet":
        env["LD_LIBRARY_PATH"] = LIBDIR
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot", "-nodefaults",
            "-serial", "stdio", "-monitor", "none", "-netdev", "user,id=n0",
            "-device", "%s,netdev=n0,romfile=" % nic,
            "-object", "filter-dump,id=d0,netdev=n0,file=%s,maxlen=128" % dump, "-kernel", kernel, "-initrd", initrd,
            "-append", "console=ttyS0 panic=-1 loglevel=4 un.port=%d un.file=f un.upload" % port]
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    hwm = 0
    out = b""
    maps_ok = None
    deadline = time.monotonic() + 600
    os.set_blocking(p.stdout.fileno(), False)
    while p.poll() is None and time.monotonic() < deadline:
        try:
            with open("/proc/%d/status" % p.pid) as f:
                m = re.search(r"VmHWM:\s+(\d+)", f.read())
                hwm = max(hwm, int(m.group(1))) if m else hwm
            if maps_ok is None:
                with open("/proc/%d/maps" % p.pid) as f:
                    maps = f.read()
                if "libslirp" in maps:
                    maps_ok = (os.path.realpath(LIBDIR) in maps) == (lib == "usernet")
        except OSError:
            pass
        chunk = p.stdout.read()
        if chunk:
            out += chunk
        time.sleep(0.1)
    if p.poll() is None:
        p.kill()
    rest = p.stdout.read()
    if rest:
        out += rest
    text = out.decode(errors="replace").replace("\r", "")
    if not maps_ok:
        raise SystemExit("%s: QEMU did not map the expected libslirp" % lib)
    dl = re.search(r"^UN-SHA256 (\S+) (\d+) t0=([\d.]+) t1=([\d.]+)", text, re.M)
    up = re.search(r"^UN-UPLOAD (\d+) t0=([\d.]+) t1=([\d.]+)", text, re.M)
    if not dl or not up:
        raise SystemExit("%s: the guest did not finish:\n%s" % (lib, text[-2000:]))
    spans = capture_spans(dump, port)
    if len(spans) != 2 or None in spans:
        raise SystemExit("%s: the capture does not hold both transfers: %s" % (lib, spans))
    return (dl.group(1), int(dl.group(2)), float(dl.group(4)) - float(dl.group(3)),
            int(up.group(1)), float(up.group(3)) - float(up.group(2)), hwm, spans)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mib", type=float, default=32)
    ap.add_argument("--nic", default="virtio-net-pci")
    a = ap.parse_args()
    tmp, kernel, initrd, www, data, sha = guestbench.prepare(
        os.path.join(REPO, "tests", "qemu", "build-guest.sh"), a.mib, "un-qemu-user-")
    handler = lambda *x, **kw: Handler(*x, directory=www, **kw)  # noqa: E731
    srv = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    rows = []
    for rep in range(a.reps):
        for lib in ("debian", "usernet"):
            dump = os.path.join(tmp, "%s-%d.pcap" % (lib, rep))
            got_sha, n, dt, up_n, up_dt, hwm, spans = run_once(lib, kernel, initrd, port, a.nic, dump)
            if got_sha != sha or n != len(data):
                raise SystemExit("%s: the download differs" % lib)
            rows.append((rep, lib, n / spans[0] / 1e6, up_n / spans[1] / 1e6, n / dt / 1e6,
                         up_n / up_dt / 1e6, hwm / 1024))
            print("rep %d %-8s download %.2f MB/s upload %.2f MB/s (capture; guest clock %.2f, %.2f)"
                  " RSS %.0f MiB" % rows[-1], flush=True)
    day = datetime.date.today().isoformat()
    out = os.path.join(REPO, "bench", "results", day)
    os.makedirs(out, exist_ok=True)
    tag = "qemu-user" + ("" if a.nic == "virtio-net-pci" else "-" + a.nic)
    with open(os.path.join(out, tag + "-raw.tsv"), "w") as f:
        f.write("rep\tlibrary\tdownload_MBps\tupload_MBps\tguest_clock_download_MBps\t"
                "guest_clock_upload_MBps\trss_MiB\n")
        for r in rows:
            f.write("%d\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\n" % r)
    med = {lib: [statistics.median(r[i] for r in rows if r[1] == lib) for i in (2, 3, 4, 5, 6)]
           for lib in ("debian", "usernet")}
    lines = ["# " + " ".join(["bench/qemu_user.py"] + sys.argv[1:]),
             "# %s, QEMU %s TCG, %s, %g MiB, medians of %d (interleaved)" % (
                 day, subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                                     text=True).stdout.split("\n")[0].split()[-1], a.nic, a.mib, a.reps),
             "%-24s %10s %12s %8s" % ("", "Debian 4.7", "usernet", "ratio")]
    for i, name in enumerate(("download MB/s (h->g)", "upload MB/s (g->h)",
                              "  guest clock: download", "  guest clock: upload", "QEMU peak RSS MiB")):
        d, u = med["debian"][i], med["usernet"][i]
        lines.append("%-24s %10.2f %12.2f %7.2fx" % (name, d, u, u / d))
    report = "\n".join(lines) + "\n"
    with open(os.path.join(out, tag + "-report.txt"), "w") as f:
        f.write(report)
    print(report)
    srv.shutdown()


if __name__ == "__main__":
    main()
