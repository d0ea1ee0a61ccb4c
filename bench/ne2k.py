#!/usr/bin/env python3
"""Host-to-guest download rate into a QEMU guest with a small-ring NIC
(ne2k_pci: an NE2000, 16 KiB of receive ring) and, for scale, virtio-net,
through usernet and through QEMU's own libslirp (-netdev user), in one run.

    sudo bench/ne2k.py [--size MiB] [--reps N] [--nics ne2k_pci,virtio-net-pci]

The guest is tests/qemu/build-guest.sh's kernel + busybox initramfs under
TCG: it takes a DHCP lease and wgets a random file from an HTTP server on
the host's loopback, as http://10.0.2.2:PORT/ (both backends map 10.0.2.2
to the host's loopback), and prints the file's sha256 and the guest's
uptime before and after. The rate is bytes / (t1 - t0) as the guest's own
clock tells it, and, from a capture QEMU takes on the NIC's netdev
(filter-dump, host time), bytes / (the guest's FIN - the guest's SYN): the
guest's clock under TCG runs behind during heavy I/O, so the capture's
figure is the one to quote. (Until 2026-12-03 the capture's end was the
server's FIN, which passes the filter when the backend sends it: QEMU
queues up to 10,000 frames for a NIC that cannot take them yet, so that
end could come while the guest was still reading. wget's FIN comes after
its last read.) A download whose checksum is wrong counts as
a failure.
Results: bench/results/<date>/ne2k.tsv (one row per download) and the
medians on stdout.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import guestbench  # noqa: E402


def capture_seconds(path, port):
    """From a pcap of Ethernet frames: the guest's SYN to port -> the
    guest's FIN, in seconds (None if either is missing)."""
    syn = fin = None
    for t, sport, dport, flags in guestbench.tcp_frames(path):
        if dport == port and flags & 0x02 and syn is None:
            syn = t
        if dport == port and flags & 0x01 and fin is None:
            fin = t
    return fin - syn if syn is not None and fin is not None else None


def boot(kernel, initrd, netdev, nic, port, fname, timeout, dump):
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
            "-nodefaults", "-serial", "stdio", "-monitor", "none",
            "-netdev", netdev, "-device", f"{nic},netdev=n0",
            "-object", f"filter-dump,id=d0,netdev=n0,file={dump},maxlen=128",
            "-kernel", kernel, "-initrd", initrd,
            "-append", f"console=ttyS0 quiet un.port={port} un.file={fname}"]
    r = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout)
    m = re.search(r"UN-SHA256 ([0-9a-f]+) (\d+) t0=([\d.]+) t1=([\d.]+)", r.stdout)
    return m, r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=float, default=2, help="MiB per download (default 2)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--nics", default="ne2k_pci,virtio-net-pci")
    ap.add_argument("--usernet", default=os.environ.get("USERNET_BIN", os.path.join(REPO, "build", "usernet")))
    args = ap.parse_args()

    tmp, kernel, initrd, www, data, want = guestbench.prepare(
        os.path.join(REPO, "tests", "qemu", "build-guest.sh"), args.size, "un-ne2k-")
    srv = guestbench.serve(www)
    port = srv.server_address[1]

    out = os.path.join(REPO, "bench", "results", time.strftime("%Y-%m-%d", time.gmtime()))
    os.makedirs(out, exist_ok=True)
    tsv = os.path.join(out, "ne2k.tsv")
    rows = []
    qemu_v = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                            text=True).stdout.splitlines()[0]
    for nic in args.nics.split(","):
        for rep in range(args.reps):
            for backend in ("usernet", "libslirp"):
                un = None
                if backend == "usernet":
                    sock = os.path.join(tmp, f"u{rep}.sock")
                    un = subprocess.Popen([args.usernet, "--quiet", "--socket", sock])
                    for _ in range(200):
                        if os.path.exists(sock):
                            break
                        time.sleep(0.05)
                    netdev = f"stream,id=n0,server=off,addr.type=unix,addr.path={sock}"
                else:
                    netdev = "user,id=n0"
                dump = os.path.join(tmp, f"{nic}-{backend}-{rep}.pcap")
                try:
                    m, console = boot(kernel, initrd, netdev, nic, port, "f", 600, dump)
                finally:
                    if un:
                        un.terminate()
                        un.wait(10)
                if not m or m.group(1) != want:
                    print(f"{nic} {backend}: FAILED\n{console[-2000:]}", file=sys.stderr)
                    rows.append((nic, backend, rep, len(data), "nan", "nan", "failed"))
                    continue
                gsecs = float(m.group(4)) - float(m.group(3))
                grate = len(data) / max(gsecs, 0.01) / 1e6
                csecs = capture_seconds(dump, port)
                crate = len(data) / max(csecs, 1e-3) / 1e6 if csecs else float("nan")
                print(f"{nic:15} {backend:9} rep {rep}: {crate:7.2f} MB/s by the capture "
                      f"({grate:.2f} by the guest's clock)", flush=True)
                rows.append((nic, backend, rep, len(data), f"{crate:.3f}", f"{grate:.3f}", "ok"))
    srv.shutdown()
    guestbench.write_tsv(
        tsv, f"{qemu_v}; {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; "
        f"command: sudo bench/ne2k.py --size {args.size} --reps {args.reps}",
        ["nic", "backend", "rep", "bytes", "MB_per_s_capture", "MB_per_s_guest_clock", "status"], rows)
    print("\nmedian MB/s (from the capture):")
    for nic in args.nics.split(","):
        med = {}
        for b in ("usernet", "libslirp"):
            v = [float(r[4]) for r in rows if r[0] == nic and r[1] == b and r[6] == "ok"]
            med[b] = statistics.median(v) if v else float("nan")
        ratio = med["usernet"] / med["libslirp"] if med["libslirp"] else float("nan")
        print(f"  {nic:15} usernet {med['usernet']:7.2f}  libslirp {med['libslirp']:7.2f}  "
              f"ratio {ratio:.1f}x")
    print(f"results in {tsv}")


if __name__ == "__main__":
    main()
