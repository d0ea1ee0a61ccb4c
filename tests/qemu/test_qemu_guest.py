#!/usr/bin/env python3
"""A real guest under QEMU (TCG; never KVM) attached to usernet over
-netdev stream: a Debian kernel with a busybox initramfs (build-guest.sh)
gets a DHCP lease, downloads a random file from an HTTP server on the host's
loopback (as 10.0.2.2) and prints its sha256 on the serial console.
Run for virtio-net-pci and ne2k_pci (NE2000: tiny receive ring, smaller file),
over IPv6 (SLAAC from usernet's router advertisements, then the file from
the host's ::1 through fec0::2), and without a disk or -kernel: QEMU's iPXE
ROM boots the same kernel and initramfs from usernet's TFTP (--bootfile)."""

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import netlab  # noqa: E402
from netlab import DNS, GATEWAY, GUEST, MiB  # noqa: E402

netlab.require_basics()
netlab.require_tools("qemu-system-x86_64", "cpio", "gzip")

BOOT_TIMEOUT = float(os.environ.get("USERNET_QEMU_TIMEOUT", "120"))


def guest_dir():
    d = os.environ.get("USERNET_QEMU_GUEST_DIR") or os.path.join(netlab.REPO, "build", "qemu-guest")
    os.makedirs(d, exist_ok=True)
    return d


def build_guest():
    """Build (or reuse) the kernel + initramfs; returns (kernel, initrd)."""
    d = guest_dir()
    with open(os.path.join(d, ".lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        r = subprocess.run(["sh", os.path.join(HERE, "build-guest.sh"), d], capture_output=True, text=True,
                           timeout=300)
    if r.returncode == 2:
        # a missing kernel image, busybox or module: a skip outside CI, a
        # failure under CI=true (netlab.skip_file)
        netlab.skip_file("cannot build the test guest: " + r.stderr.strip())
    if r.returncode != 0:
        raise AssertionError("build-guest.sh failed:\n" + r.stdout + r.stderr)
    netlab.log(r.stdout.strip())
    return os.path.join(d, "vmlinuz"), os.path.join(d, "initrd.gz")


KERNEL, INITRD = build_guest()


def cmdline(port, fname, extra=""):
    return "console=ttyS0 panic=-1 loglevel=4 un.port=%d un.file=%s %s" % (port, fname, extra)


class Guest:
    """One QEMU process started in a namespace; parses the serial console."""

    def __init__(self, lab, ns, sock, nic, mac, port, fname, name="qemu", extra="", netboot=False):
        self.t0 = time.monotonic()
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
                "-nodefaults", "-serial", "stdio", "-monitor", "none",
                "-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path=%s" % sock]
        if netboot:
            # No kernel, no disk: the NIC's iPXE option ROM (apt's
            # ipxe-qemu) boots from the network.
            argv += ["-boot", "n", "-device", "%s,netdev=n0,mac=%s" % (nic, mac)]
        else:
            argv += ["-kernel", KERNEL, "-initrd", INITRD, "-append", cmdline(port, fname, extra),
                     "-device", "%s,netdev=n0,mac=%s,romfile=" % (nic, mac)]  # no option ROM: faster boot
        self.p = ns.popen(argv, name=name)
        self.init_at = None

    def console(self):
        return self.p.stdout()

    def wait_done(self, timeout=BOOT_TIMEOUT):
        def done():
            out = self.console()
            if self.init_at is None and "UN-INIT" in out:
                self.init_at = time.monotonic() - self.t0
            if "UN-DONE" in out:
                return True
            if self.p.poll() is not None:
                raise AssertionError("QEMU exited before UN-DONE:\n" + self.p.describe())
        try:
            netlab.wait_for(done, timeout, interval=0.2, what="guest to finish (UN-DONE on the console)")
        except AssertionError:
            raise AssertionError("guest did not finish:\n" + self.p.describe())
        self.elapsed = time.monotonic() - self.t0
        try:
            self.p.wait(20)  # poweroff -f: QEMU exits by itself (-no-reboot)
        except subprocess.TimeoutExpired:
            pass
        finally:
            self.p.stop()
        return self.console()


def marker(out, name):
    m = re.search(r"%s (.*)$" % name, out.replace("\r", ""), re.M)
    return m and m.group(1).strip()


def kv(s):
    return dict(x.split("=", 1) for x in s.split() if "=" in x)


class QemuGuestTest(unittest.TestCase):
    def _run_one(self, nic, size):
        with netlab.Lab("qemu") as lab:
            host = lab.netns("host")
            sock = lab.path("usernet.sock")
            un = lab.usernet(host, ["--socket", sock], wait=[("socket", sock)])
            path, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            g = Guest(lab, host, sock, nic, "52:54:00:12:34:56", srv.port, "file.bin")
            out = g.wait_done()
            netlab.log("%s: /init after %.1fs, done after %.1fs (wall clock)" % (nic, g.init_at or -1, g.elapsed))
            clean = out.replace("\r", "")
            self.assertIsNotNone(marker(clean, "UN-INIT"), clean[-3000:])
            lease = marker(clean, "UN-LEASE")
            self.assertIsNotNone(lease, "no DHCP lease; console:\n" + clean[-3000:])
            lease = kv(lease)
            self.assertEqual(lease.get("ip"), GUEST, lease)
            self.assertEqual(lease.get("router"), GATEWAY, lease)
            self.assertIn(DNS, lease.get("dns", "").split(), lease)
            got = marker(clean, "UN-SHA256")
            self.assertIsNotNone(got, "no download; console:\n" + clean[-3000:])
            dsha, dsize = got.split()[:2]
            self.assertEqual(int(dsize), size, got)
            self.assertEqual(dsha, sha, "downloaded file differs")
            self.assertEqual(kv(marker(clean, "UN-DONE")).get("rc"), "0", clean[-3000:])
            t = kv(got)
            netlab.log("%s: %d KiB in %.1fs guest time" % (nic, size // 1024, float(t["t1"]) - float(t["t0"])))
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())

    def test_virtio_net_guest_gets_lease_and_downloads_4mib(self):
        self._run_one("virtio-net-pci", 4 * MiB)

    def test_ne2k_pci_guest_gets_lease_and_downloads_1mib(self):
        self._run_one("ne2k_pci", 1 * MiB)

    def test_a_guest_gets_ipv6_by_slaac_and_downloads_over_ipv6(self):
        # The guest's kernel configures itself from usernet's router
        # advertisements and fetches the file from the host's ::1 through
        # the IPv6 gateway fec0::2.
        with netlab.Lab("qemu6") as lab:
            host = lab.netns("host")
            sock = lab.path("usernet.sock")
            un = lab.usernet(host, ["--socket", sock], wait=[("socket", sock)])
            size = 2 * MiB
            path, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "::", "--dir", lab.dir)
            g = Guest(lab, host, sock, "virtio-net-pci", "52:54:00:12:34:56", srv.port, "file.bin",
                      extra="un.host6=fec0::2")
            clean = g.wait_done().replace("\r", "")
            slaac = marker(clean, "UN-SLAAC")
            self.assertIsNotNone(slaac, clean[-3000:])
            # EUI-64 of 52:54:00:12:34:56 in fec0::/64, default route via
            # the gateway's link-local address, fe80::2 as in libslirp
            self.assertEqual(slaac.split()[0], "fec0::5054:ff:fe12:3456", clean[-3000:])
            self.assertIn("via_fe80::2", slaac, clean[-3000:])
            got = marker(clean, "UN-SHA256-6")
            self.assertIsNotNone(got, "no IPv6 download; console:\n" + clean[-3000:])
            self.assertEqual(got.split()[:2], [sha, str(size)])
            self.assertEqual(kv(marker(clean, "UN-DONE")).get("rc"), "0", clean[-3000:])
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())

    def test_a_diskless_guest_boots_through_ipxe_from_usernets_tftp(self):
        # QEMU's own iPXE ROM asks DHCP, gets --bootfile (an iPXE script)
        # with usernet as the TFTP server, and loads the kernel and the
        # initramfs it names from --tftp; the booted guest downloads a file
        # as the other guests do.
        with netlab.Lab("qemunb") as lab:
            host = lab.netns("host")
            sock = lab.path("usernet.sock")
            tftp = lab.path("tftp")
            os.mkdir(tftp)
            shutil.copy(KERNEL, os.path.join(tftp, "vmlinuz"))
            shutil.copy(INITRD, os.path.join(tftp, "initrd.gz"))
            size = 1 * MiB
            path, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            with open(os.path.join(tftp, "boot.ipxe"), "w") as f:
                f.write("#!ipxe\nkernel vmlinuz %s\ninitrd initrd.gz\nboot\n" % cmdline(srv.port, "file.bin"))
            un = lab.usernet(host, ["--socket", sock, "--tftp", tftp, "--bootfile", "boot.ipxe"],
                             wait=[("socket", sock)])
            g = Guest(lab, host, sock, "virtio-net-pci", "52:54:00:12:34:56", 0, "", netboot=True)
            clean = g.wait_done(timeout=BOOT_TIMEOUT + 120).replace("\r", "")
            netlab.log("netboot: /init after %.1fs, done after %.1fs (wall clock)" % (g.init_at or -1, g.elapsed))
            self.assertIsNotNone(marker(clean, "UN-INIT"), clean[-3000:])
            got = marker(clean, "UN-SHA256")
            self.assertIsNotNone(got, "no download; console:\n" + clean[-3000:])
            self.assertEqual(got.split()[:2], [sha, str(size)])
            self.assertEqual(kv(marker(clean, "UN-DONE")).get("rc"), "0", clean[-3000:])
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())

    def test_two_guests_share_the_socket_lan(self):
        # two QEMUs on one --socket: distinct leases, both downloads intact
        with netlab.Lab("qemu2") as lab:
            host = lab.netns("host")
            sock = lab.path("usernet.sock")
            un = lab.usernet(host, ["--socket", sock], wait=[("socket", sock)])
            path, sha = lab.make_file(2 * MiB, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            g1 = Guest(lab, host, sock, "virtio-net-pci", "52:54:00:00:00:01", srv.port, "file.bin", "qemu1")
            g2 = Guest(lab, host, sock, "virtio-net-pci", "52:54:00:00:00:02", srv.port, "file.bin", "qemu2")
            o1 = g1.wait_done().replace("\r", "")
            o2 = g2.wait_done(timeout=30).replace("\r", "")
            l1, l2 = marker(o1, "UN-LEASE"), marker(o2, "UN-LEASE")
            self.assertTrue(l1 and l2, "missing lease:\n%s\n%s" % (o1[-2000:], o2[-2000:]))
            self.assertNotEqual(kv(l1)["ip"], kv(l2)["ip"])
            for o in (o1, o2):
                got = marker(o, "UN-SHA256")
                self.assertIsNotNone(got, o[-2000:])
                self.assertEqual(got.split()[0], sha)
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())


if __name__ == "__main__":
    netlab.main()
