#!/usr/bin/env python3
"""v86 itself (the npm package, under Node with `ws` as its WebSocket, and
SeaBIOS from Debian) attached to usernet --websocket through
network_relay_url, as a browser tab would be: two v86 machines at once, one
with an NE2000 (ne2k-pci) and one with virtio-net, boot Debian's i386
kernel with the busybox initramfs (build-guest-i386.sh), each get their own
DHCP lease, ping the gateway, download a file and upload it back (base64,
see build-guest.sh); checked by sha256 on both sides.

v86 runs with boot_v86.mjs --repair-pic: v86's 8259 emulation can leave
IRQ 2 in service on the master after acknowledging a cascade interrupt that
the slave no longer requests, and from then on the guest hears nothing from
its PCI NIC (examples/v86/pic-repair.mjs explains it; docs/performance.md
has the measurements). Without the repair, about one NE2000 upload in three stalls
that way.

v86 opens its WebSocket only when the guest sends its first frame; a boot
takes 13-30 s on an idle machine here, several times that under load."""

import base64
import fcntl
import hashlib
import os
import re
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import netlab  # noqa: E402
from netlab import DNS, GATEWAY, MiB  # noqa: E402

netlab.require_root()
netlab.require_tools("ip", "ss", "node", "busybox", "cpio", "gzip", "dpkg", "depmod")
if not os.path.isdir(os.path.join(HERE, "node_modules", "v86")) or \
        not os.path.isdir(os.path.join(HERE, "node_modules", "ws")):
    netlab.skip_file("the npm packages v86 and ws are not installed in tests/v86 "
                     "(scripts/install-deps.sh runs npm ci there)")
if not os.path.exists("/usr/share/seabios/bios.bin"):
    netlab.skip_file("no /usr/share/seabios/bios.bin (apt-get install seabios)")

BOOT_TIMEOUT = float(os.environ.get("USERNET_V86_TIMEOUT", "600"))


def build_guest():
    d = os.environ.get("USERNET_V86_GUEST_DIR") or os.path.join(netlab.REPO, "build", "v86-guest")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, ".lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        r = subprocess.run(["sh", os.path.join(HERE, "build-guest-i386.sh"), d], capture_output=True,
                           text=True, timeout=600)
    if r.returncode == 2:
        netlab.skip_file("cannot build the i386 guest: " + r.stderr.strip())
    if r.returncode != 0:
        raise AssertionError("build-guest-i386.sh failed:\n" + r.stdout + r.stderr)
    netlab.log(r.stdout.strip().splitlines()[-1])
    return os.path.join(d, "vmlinuz"), os.path.join(d, "initrd.gz")


KERNEL, INITRD = build_guest()


def marker(out, name):
    m = re.search(r"%s (.*)$" % name, out.replace("\r", ""), re.M)
    return m and m.group(1).strip()


def kv(s):
    return dict(x.split("=", 1) for x in s.split() if "=" in x)


class V86Test(unittest.TestCase):
    def test_two_v86_machines_ne2k_and_virtio(self):
        with netlab.Lab("v86") as lab:
            host = lab.netns("host")
            port = netlab.free_port()
            un = lab.usernet(host, ["--websocket", "127.0.0.1:%d" % port],
                             wait=[lambda: host.run(["ss", "-ltnH", "sport = :%d" % port]).stdout.strip() != ""])
            url = "ws://127.0.0.1:%d/" % port
            netlab.wait_for(lambda: 'network_relay_url: "%s"' % url in un.stdout(), 10, what="the banner")
            size = 1 * MiB
            path, sha = lab.make_file(size, "file.bin")
            with open(path, "rb") as f:
                b64_sha = hashlib.sha256(base64.encodebytes(f.read())).hexdigest()
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            cmdline = "console=ttyS0 panic=-1 loglevel=4 un.port=%d un.file=file.bin" % srv.port
            t0 = time.monotonic()
            vms = {nic: host.popen(["node", os.path.join(HERE, "boot_v86.mjs"), "--repair-pic", url,
                                    KERNEL, INITRD, cmdline + " un.upload", str(int(BOOT_TIMEOUT)), nic],
                                   name="v86-" + nic)
                   for nic in ("ne2k", "virtio")}
            netlab.wait_for(lambda: all(p.poll() is not None for p in vms.values()), BOOT_TIMEOUT + 30,
                            interval=1, what="both v86 machines to finish")
            leases = {}
            for nic, p in vms.items():
                out = p.stdout().replace("\r", "")
                self.assertEqual(p.poll(), 0, "%s: v86 did not finish:\n%s" % (nic, p.describe()))
                netlab.log("%s: %s" % (nic, " ".join(l for l in p.stderr().splitlines() if "[boot_v86]" in l)))
                want_driver = "ne2k-pci" if nic == "ne2k" else "virtio_net"
                self.assertIn(want_driver, marker(out, "UN-NIC") or "", out[-3000:])
                lease = kv(marker(out, "UN-LEASE") or "")
                self.assertTrue(lease.get("ip", "").startswith("10.0.2."), "%s: no lease:\n%s" % (nic, out[-3000:]))
                self.assertEqual(lease.get("router"), GATEWAY)
                self.assertIn(DNS, lease.get("dns", "").split())
                leases[nic] = lease["ip"]
                self.assertIn("UN-PING-OK", out, out[-3000:])
                got = marker(out, "UN-SHA256")
                self.assertIsNotNone(got, "%s: no download:\n%s" % (nic, out[-3000:]))
                self.assertEqual(got.split()[:2], [sha, str(size)], "%s: downloaded file differs" % nic)
                self.assertEqual(kv(marker(out, "UN-DONE")).get("rc"), "0", out[-3000:])
                d = kv(got)
                netlab.log("%s: download %d KiB in %.1f s (guest time)" % (
                    nic, size // 1024, float(d["t1"]) - float(d["t0"])))
                up = marker(out, "UN-UPLOAD")
                self.assertIsNotNone(up, "%s: no upload:\n%s" % (nic, out[-3000:]))
                self.assertEqual(up.split()[0], b64_sha, "%s: uploaded file differs" % nic)
                u = kv(up)
                netlab.log("%s: upload in %.1f s (guest time)" % (nic, float(u["t1"]) - float(u["t0"])))
            netlab.log("both done after %.0f s (wall clock)" % (time.monotonic() - t0))
            self.assertNotEqual(leases["ne2k"], leases["virtio"], "two tabs, two leases")
            log = un.stderr()
            self.assertEqual(log.count("connected as switch port"), 2, log)
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())


if __name__ == "__main__":
    netlab.main()
