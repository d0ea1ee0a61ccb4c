#!/usr/bin/env python3
"""A real QEMU guest (TCG; the busybox initramfs of build-guest.sh) on
usernet's VDE switch with QEMU's own -netdev vde (libvdeplug): it gets a
DHCP lease, pings a namespace guest bridged onto the same switch by vde2's
vde_plug (un.ping=), and downloads a file through the NAT with a checksum.
When QEMU exits, its port and socket file go; the namespace guest's stay."""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
sys.path.insert(0, HERE)
import netlab  # noqa: E402
from netlab import DNS, GATEWAY, MiB  # noqa: E402

netlab.require_basics()
netlab.require_tools("qemu-system-x86_64", "cpio", "gzip", "vde_plug")

import test_qemu_guest as tq  # noqa: E402  (builds the guest, or skips)


class VdeGuest(tq.Guest):
    """tq.Guest, attached with -netdev vde instead of -netdev stream."""

    def __init__(self, lab, ns, vde_dir, nic, mac, port, fname, pings=(), name="qemu"):
        self.t0 = time.monotonic()
        append = "console=ttyS0 panic=-1 loglevel=4 un.port=%d un.file=%s" % (port, fname)
        if pings:
            append += " un.ping=" + ",".join(pings)
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
                "-nodefaults", "-serial", "stdio", "-monitor", "none",
                "-kernel", tq.KERNEL, "-initrd", tq.INITRD, "-append", append,
                "-netdev", "vde,id=n0,sock=%s" % vde_dir,
                "-device", "%s,netdev=n0,mac=%s,romfile=" % (nic, mac)]
        self.p = ns.popen(argv, name=name)
        self.init_at = None


def port_files(d):
    return [n for n in os.listdir(d) if n[0].isdigit()]


class QemuVdeTest(unittest.TestCase):
    def test_qemu_netdev_vde_guest_gets_lease_pings_a_vde_plug_guest_and_downloads(self):
        with netlab.Lab("qvde") as lab:
            host = lab.netns("host")
            g = lab.netns("g")
            d = lab.path("vde")
            un = lab.usernet(host, ["--vde", d], wait=[("socket", os.path.join(d, "ctl"))])
            plug = g.popen(["vde_plug", "vde://" + d, "tap://tap0"], name="vde_plug")
            netlab.wait_for(lambda: g.has_link("tap0") or plug.poll() is not None, 10, what="vde_plug's tap0")
            lab.assert_alive(plug)
            lease = netlab.dhcp(lab, g)
            size = 4 * MiB
            path, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            vm = VdeGuest(lab, host, d, "virtio-net-pci", "52:54:00:12:34:56", srv.port, "file.bin",
                          pings=[lease["ip"]])
            netlab.wait_for(lambda: len(port_files(d)) == 2, 60, what="QEMU's VDE port")
            out = vm.wait_done().replace("\r", "")
            netlab.log("qemu -netdev vde: /init after %.1fs, done after %.1fs" % (vm.init_at or -1, vm.elapsed))
            vl = tq.marker(out, "UN-LEASE")
            self.assertIsNotNone(vl, "no DHCP lease; console:\n" + out[-3000:])
            vl = tq.kv(vl)
            self.assertNotEqual(vl.get("ip"), lease["ip"])
            self.assertEqual(vl.get("router"), GATEWAY, vl)
            self.assertIn(DNS, vl.get("dns", "").split(), vl)
            self.assertIn("UN-PING-OK", out)
            self.assertIn("UN-PEER-OK %s" % lease["ip"], out, out[-3000:])
            got = tq.marker(out, "UN-SHA256")
            self.assertIsNotNone(got, "no download; console:\n" + out[-3000:])
            dsha, dsize = got.split()[:2]
            self.assertEqual(int(dsize), size, got)
            self.assertEqual(dsha, sha, "downloaded file differs")
            self.assertEqual(tq.kv(tq.marker(out, "UN-DONE")).get("rc"), "0", out[-3000:])
            # QEMU has exited: its port is gone, the plug's is still there
            netlab.wait_for(lambda: len(port_files(d)) == 1, 10, what="QEMU's port socket removed")
            self.assertEqual(sorted(os.listdir(d)), sorted(["ctl"] + port_files(d)))
            netlab.ping(g, GATEWAY, count=1)
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())


if __name__ == "__main__":
    netlab.main()
