#!/usr/bin/env python3
"""Download (and upload) rate of a v86 guest (the npm package under Node,
as tests/v86 runs it) attached to usernet --websocket, with v86's emulated
NE2000 and with its virtio-net.

    sudo bench/v86.py [--size MiB] [--reps N] [--nics ne2k,virtio] [--upload] [--repair-pic]

The guest is tests/v86/build-guest-i386.sh's Debian i386 kernel with the
busybox initramfs: it takes a DHCP lease and wgets a random file from an
HTTP server on the host's loopback as http://10.0.2.2:PORT/, and with
--upload POSTs it back (base64) to the same server, which answers with the
sha256 of what it received. Rates are from usernet's own capture (--pcap,
host time): bytes / (the guest's SYN to the server's FIN) for the download,
bytes / (the guest's SYN to the guest's FIN) for the upload; the guest's
clock is printed beside them. A transfer whose checksum is wrong, or that
does not finish, counts as a failure.
--repair-pic boots v86 with examples/v86/pic-repair.mjs's repair of v86's
PIC (see there: a cascade acknowledge without a slave request leaves IRQ 2 in
service on the master, and every PCI NIC interrupt after it is lost); the
pic_repairs column counts the repairs of each boot.
Results: bench/results/<date>/v86.tsv (one row per transfer) and the
medians on stdout.
"""

import argparse
import base64
import hashlib
import os
import re
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import guestbench  # noqa: E402

V86 = os.path.join(REPO, "tests", "v86")


def flows(path, port):
    """Per TCP connection to `port` in a capture: [SYN time, server FIN
    time, client FIN time], in the order of the SYNs."""
    conns, order = {}, []
    for t, sport, dport, flags in guestbench.tcp_frames(path):
        if dport == port and flags & 0x02 and not flags & 0x10 and sport not in conns:
            conns[sport] = [t, None, None]
            order.append(sport)
        elif sport == port and dport in conns and flags & 0x01 and conns[dport][1] is None:
            conns[dport][1] = t
        elif dport == port and sport in conns and flags & 0x01 and conns[sport][2] is None:
            conns[sport][2] = t
    return [conns[p] for p in order]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=float, default=2, help="MiB per transfer (default 2)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--nics", default="ne2k,virtio")
    ap.add_argument("--upload", action="store_true", help="also POST the file back")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per boot")
    ap.add_argument("--append", default="", help="more guest kernel parameters (e.g. noapic)")
    ap.add_argument("--tag", default="", help="write v86-TAG.tsv instead of v86.tsv")
    ap.add_argument("--repair-pic", action="store_true",
                    help="work around v86's PIC cascade bug (tests/v86/boot_v86.mjs --repair-pic)")
    ap.add_argument("--usernet", default=os.environ.get("USERNET_BIN", os.path.join(REPO, "build", "usernet")))
    args = ap.parse_args()

    tmp, kernel, initrd, www, data, want = guestbench.prepare(
        os.path.join(V86, "build-guest-i386.sh"), args.size, "un-v86-")
    b64 = base64.encodebytes(data)
    want_up = hashlib.sha256(b64).hexdigest()
    srv = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "e2e", "servers.py"), "http",
                            "--bind", "127.0.0.1", "--dir", www],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(srv.stdout.readline().split()[1])

    out = os.path.join(REPO, "bench", "results", time.strftime("%Y-%m-%d", time.gmtime()))
    os.makedirs(out, exist_ok=True)
    tsv = os.path.join(out, f"v86-{args.tag}.tsv" if args.tag else "v86.tsv")
    rows = []
    v86_v = "v86 " + subprocess.run(["node", "-p", "require('./node_modules/v86/package.json').version"],
                                    cwd=V86, capture_output=True, text=True).stdout.strip()
    for nic in args.nics.split(","):
        for rep in range(args.reps):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            wsport = s.getsockname()[1]
            s.close()
            pcap = os.path.join(tmp, f"{nic}-{rep}.pcap")
            un = subprocess.Popen([args.usernet, "--quiet", "--websocket", f"127.0.0.1:{wsport}",
                                   "--pcap", pcap], stdout=subprocess.DEVNULL)
            for _ in range(200):
                with socket.socket() as c:
                    if c.connect_ex(("127.0.0.1", wsport)) == 0:
                        break
                time.sleep(0.05)
            cmdline = f"console=ttyS0 panic=-1 loglevel=4 {args.append} un.port={port} un.file=f" + \
                (" un.upload" if args.upload else "")
            try:
                r = subprocess.run(["node", os.path.join(V86, "boot_v86.mjs")] +
                                   (["--repair-pic"] if args.repair_pic else []) +
                                   [f"ws://127.0.0.1:{wsport}/", kernel, initrd, cmdline, str(args.timeout), nic],
                                   capture_output=True, text=True, errors="replace",
                                   timeout=args.timeout + 60)
                console, diag = r.stdout.replace("\r", ""), r.stderr
            except subprocess.TimeoutExpired as ex:
                console = (ex.stdout or b"").decode(errors="replace") if isinstance(ex.stdout, bytes) \
                    else (ex.stdout or "")
                diag = ""
            finally:
                un.terminate()
                un.wait(10)
            conns = flows(pcap, port)
            repairs = diag.count("repaired the PIC") if args.repair_pic else "-"
            for line in diag.splitlines():
                if "repaired the PIC" in line:
                    print(f"{nic} rep {rep}: {line}", flush=True)
            m = re.search(r"UN-SHA256 ([0-9a-f]+) (\d+) t0=([\d.]+) t1=([\d.]+)", console)
            def row(direction, nbytes, mark, secs):
                if mark and secs:
                    g = float(mark.group(4)) - float(mark.group(3))
                    rows.append((nic, direction, rep, nbytes, f"{nbytes / secs / 1e6:.3f}",
                                 f"{nbytes / max(g, 0.01) / 1e6:.3f}", "ok", repairs))
                    return
                rows.append((nic, direction, rep, nbytes, "nan", "nan", "failed", repairs))
                err = re.search(r"UN-ERROR.*", console)
                print(f"{nic} {direction}: FAILED: {err.group(0) if err else console[-1500:]}",
                      file=sys.stderr)

            d = conns[0] if conns else None
            row("download", len(data), m if m and m.group(1) == want else None,
                d[1] - d[0] if d and d[1] else None)
            if args.upload:
                u = re.search(r"UN-UPLOAD ([0-9a-f]+) (\d+) t0=([\d.]+) t1=([\d.]+)", console)
                d = conns[1] if len(conns) > 1 else None
                row("upload", len(b64), u if u and u.group(1) == want_up else None,
                    d[2] - d[0] if d and d[2] else None)
            for r in rows[-2 if args.upload else -1:]:
                print(f"{r[0]:7} {r[1]:8} rep {r[2]}: {r[4]:>7} MB/s by the capture "
                      f"({r[5]} by the guest's clock) {r[6]}, PIC repairs {r[7]}", flush=True)
    srv.terminate()
    node_v = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    guestbench.write_tsv(
        tsv, f"{v86_v}, node {node_v}; {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; "
        f"command: sudo bench/v86.py --size {args.size} --reps {args.reps} --nics {args.nics} "
        f"--timeout {args.timeout}{(' --append ' + repr(args.append)) if args.append else ''}"
        f"{(' --tag ' + args.tag) if args.tag else ''}"
        f"{' --upload' if args.upload else ''}{' --repair-pic' if args.repair_pic else ''}",
        ["nic", "direction", "rep", "bytes", "MB_per_s_capture", "MB_per_s_guest_clock", "status",
         "pic_repairs"], rows)
    print("\nmedian MB/s (from the capture):")
    for nic in args.nics.split(","):
        for d in ("download", "upload") if args.upload else ("download",):
            v = [float(r[4]) for r in rows if r[0] == nic and r[1] == d and r[6] == "ok"]
            n = sum(1 for r in rows if r[0] == nic and r[1] == d)
            print(f"  {nic:7} {d:8} {statistics.median(v) if v else float('nan'):7.2f}  ({len(v)}/{n} ok)")
    print(f"results in {tsv}")


if __name__ == "__main__":
    main()
