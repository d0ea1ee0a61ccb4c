#!/usr/bin/env python3
"""Real QEMU guests (TCG) attached to usernet over datagrams: -netdev dgram
over UDP and over unix datagram sockets, the older -netdev socket,udp=, and
a multicast LAN (-netdev socket,mcast= and dgram's multicast form) that two
QEMUs and usernet's gateway share.  Each guest (the busybox initramfs of
build-guest.sh) gets a lease, pings the gateway (and, on the multicast LAN,
the other guest) and downloads a file through the NAT, checked by sha256."""

import base64
import hashlib
import os
import random
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import netlab  # noqa: E402
from netlab import DNS, GATEWAY, MiB  # noqa: E402
import test_qemu_guest as tq  # noqa: E402  (builds the guest, or skips/fails)
from test_qemu_guest import kv, marker  # noqa: E402


class Guest(tq.Guest):
    """A guest whose NIC is attached by the given -netdev options."""

    def __init__(self, lab, ns, netdev, nic, mac, port, fname, name="qemu", extra=""):
        self.t0 = tq.time.monotonic()
        append = "console=ttyS0 panic=-1 loglevel=4 un.port=%d un.file=%s %s" % (port, fname, extra)
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
                "-nodefaults", "-serial", "stdio", "-monitor", "none",
                "-kernel", tq.KERNEL, "-initrd", tq.INITRD, "-append", append.strip(),
                "-netdev", netdev,
                "-device", "%s,netdev=n0,mac=%s,romfile=" % (nic, mac)]
        self.p = ns.popen(argv, name=name)
        self.init_at = None


def logged(un, text):
    """A readiness condition: usernet has logged text."""
    return lambda: text in un.stderr() or text in un.stdout()


def qemu_line(un):
    """The QEMU options usernet's banner printed for its attachment (the
    first command line)."""
    m = re.search(r"^Attach QEMU to .*? with:\n +qemu-system-x86_64 \.\.\. (.*)$", un.stdout(), re.M)
    return m and m.group(1).strip()


class QemuDgramTest(unittest.TestCase):
    def check_guest(self, out, size, sha, ip=None):
        clean = out.replace("\r", "")
        lease = marker(clean, "UN-LEASE")
        self.assertIsNotNone(lease, "no DHCP lease; console:\n" + clean[-3000:])
        lease = kv(lease)
        if ip:
            self.assertEqual(lease.get("ip"), ip, lease)
        self.assertEqual(lease.get("router"), GATEWAY, lease)
        self.assertIn(DNS, lease.get("dns", "").split(), lease)
        self.assertIn("UN-PING-OK", clean, "the guest could not ping the gateway:\n" + clean[-3000:])
        got = marker(clean, "UN-SHA256")
        self.assertIsNotNone(got, "no download; console:\n" + clean[-3000:])
        dsha, dsize = got.split()[:2]
        self.assertEqual(int(dsize), size, got)
        self.assertEqual(dsha, sha, "downloaded file differs")
        self.assertEqual(kv(marker(clean, "UN-DONE")).get("rc"), "0", clean[-3000:])
        t = kv(got)
        netlab.log("%s: %d KiB in %.1fs guest time" % (lease.get("ip"), size // 1024,
                                                        float(t["t1"]) - float(t["t0"])))
        return lease

    def one_guest(self, tag, usernet_args, netdev, ready_text, nic="virtio-net-pci", size=2 * MiB,
                  printed=None):
        with netlab.Lab(tag) as lab:
            host = lab.netns("host")
            un = lab.usernet(host, usernet_args(lab))
            netlab.wait_for(logged(un, ready_text), 10, what="usernet to attach: " + ready_text)
            if printed:
                # The options usernet prints are the ones this test uses.
                self.assertEqual(qemu_line(un), printed(lab) + " -device virtio-net-pci,netdev=n0",
                                 un.stdout())
            path, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            g = Guest(lab, host, netdev(lab), nic, "52:54:00:12:34:56", srv.port, "file.bin")
            out = g.wait_done()
            netlab.log("%s: /init after %.1fs, done after %.1fs" % (tag, g.init_at or -1, g.elapsed))
            self.check_guest(out, size, sha, ip=netlab.GUEST)
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())
            return un

    def test_dgram_udp_guest_gets_lease_pings_and_downloads(self):
        up = netlab.free_port(netlab.socket.SOCK_DGRAM)
        qp = netlab.free_port(netlab.socket.SOCK_DGRAM, exclude=(up,))
        netdev = ("dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=%d,"
                  "remote.type=inet,remote.host=127.0.0.1,remote.port=%d" % (qp, up))
        self.one_guest("qdgudp", lambda lab: ["--dgram", "udp:127.0.0.1:%d,127.0.0.1:%d" % (up, qp)],
                       lambda lab: netdev, "Attach QEMU to --dgram",
                       printed=lambda lab: "-netdev " + netdev)

    def test_dgram_unix_guest_gets_lease_pings_and_downloads(self):
        def mine(lab):
            return lab.path("un.dgram")

        def theirs(lab):
            return lab.path("qemu.dgram")

        def netdev(lab):
            return ("dgram,id=n0,local.type=unix,local.path=%s,remote.type=unix,remote.path=%s"
                    % (theirs(lab), mine(lab)))
        self.one_guest("qdgunix", lambda lab: ["--dgram", "unix:%s,%s" % (mine(lab), theirs(lab))],
                       netdev, "Attach QEMU to --dgram", printed=lambda lab: "-netdev " + netdev(lab))

    def test_socket_udp_ne2k_guest_gets_lease_pings_and_downloads(self):
        # QEMU's older -netdev socket,udp= (localaddr= is QEMU's own end),
        # with an NE2000: 60-byte padding and a small receive ring.
        up = netlab.free_port(netlab.socket.SOCK_DGRAM)
        qp = netlab.free_port(netlab.socket.SOCK_DGRAM, exclude=(up,))
        self.one_guest("qsockudp", lambda lab: ["--dgram", "udp:127.0.0.1:%d,127.0.0.1:%d" % (up, qp)],
                       lambda lab: "socket,id=n0,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d" % (up, qp),
                       "Attach QEMU to --dgram", nic="ne2k_pci", size=1 * MiB)

    def test_i82559er_guest_uploads_without_a_dropped_frame(self):
        # QEMU's i82559er (eepro100) sends some 1514-byte frames as
        # 2600-byte datagrams, the rest junk: they are cut to their IP
        # packet. Dropped as too long, the guest's upload stalled 15-25 s
        # on TCP retransmissions.
        with netlab.Lab("qdg559") as lab:
            host = lab.netns("host")
            mine, theirs = lab.path("un.dgram"), lab.path("qemu.dgram")
            un = lab.usernet(host, ["--dgram", "unix:%s,%s" % (mine, theirs)])
            netlab.wait_for(logged(un, "Attach QEMU to --dgram"), 10, what="usernet to attach")
            size = 2 * MiB
            path, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            netdev = ("dgram,id=n0,local.type=unix,local.path=%s,remote.type=unix,remote.path=%s"
                      % (theirs, mine))
            g = Guest(lab, host, netdev, "i82559er", "52:54:00:12:34:56", srv.port, "file.bin",
                      extra="un.upload")
            out = g.wait_done()
            self.check_guest(out, size, sha, ip=netlab.GUEST)
            with open(path, "rb") as f:
                posted = hashlib.sha256(base64.encodebytes(f.read())).hexdigest()
            self.assertEqual(marker(out.replace("\r", ""), "UN-UPLOAD").split()[0], posted)
            un.stop()
            m = re.search(r"dropped in: \d+ short, (\d+) too long", un.stderr())
            self.assertTrue(m, un.stderr()[-2000:])
            self.assertEqual(m.group(1), "0", un.stderr()[-2000:])

    def test_unix_dgram_socket_file_is_removed_and_a_live_one_refused(self):
        with netlab.Lab("qdgfile") as lab:
            host = lab.netns("host")
            mine = lab.path("un.dgram")
            un = lab.usernet(host, ["--dgram", "unix:%s,%s" % (mine, lab.path("q.dgram"))])
            netlab.wait_for(logged(un, "Attach QEMU to --dgram"), 10, what="usernet to attach")
            self.assertTrue(os.path.exists(mine))
            # A second usernet on the same path is refused (exit 1), and
            # leaves the first one's socket alone.
            un2 = lab.usernet(host, ["--dgram", "unix:%s" % mine], name="usernet2", expect_exit=1)
            un2.wait(10)
            self.assertIn("in use", un2.stderr())
            self.assertTrue(os.path.exists(mine))
            un.stop()
            self.assertFalse(os.path.exists(mine), "the socket file is left behind")

    def test_two_guests_on_a_multicast_lan_with_the_gateway(self):
        # One QEMU with -netdev socket,mcast=, one with dgram's multicast
        # form, and usernet on the group: distinct leases, each pings the
        # gateway and both leases, and both downloads are intact.
        group = "239.%d.%d.%d" % (random.randint(0, 255), random.randint(0, 255), random.randint(1, 254))
        port = netlab.free_port(netlab.socket.SOCK_DGRAM)
        with netlab.Lab("qmcast") as lab:
            host = lab.netns("host")
            # A namespace with only lo has no route for multicast: give it
            # one, as a host without a default route would need.
            host.run(["ip", "route", "add", "224.0.0.0/4", "dev", "lo"])
            # And an interface with an address of its own, which lo lacks
            # (127.0.0.1 is host scope): the kernel takes it as the source
            # for the group. usernet must still send where the route says,
            # on lo with the QEMUs, not out of that interface.
            host.run(["ip", "link", "add", "mcv0", "type", "veth", "peer", "name", "mcv1"])
            host.run(["ip", "addr", "add", "192.168.77.1/24", "dev", "mcv0"])
            host.run(["ip", "link", "set", "mcv0", "up"])
            host.run(["ip", "link", "set", "mcv1", "up"])
            un = lab.usernet(host, ["--mcast", "%s:%d" % (group, port)])
            netlab.wait_for(logged(un, "Attach QEMU to --mcast"), 10, what="usernet to join the group")
            self.assertIn("-netdev socket,id=n0,mcast=%s:%d -device" % (group, port), un.stdout())
            size = 2 * MiB
            path, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            peers = "un.ping=10.0.2.15,10.0.2.16 un.linger=20"
            g1 = Guest(lab, host, "socket,id=n0,mcast=%s:%d" % (group, port), "virtio-net-pci",
                       "52:54:00:00:00:01", srv.port, "file.bin", name="qemu1", extra=peers)
            g2 = Guest(lab, host, "dgram,id=n0,remote.type=inet,remote.host=%s,remote.port=%d" % (group, port),
                       "virtio-net-pci", "52:54:00:00:00:02", srv.port, "file.bin", name="qemu2",
                       extra=peers)
            o1 = g1.wait_done(timeout=tq.BOOT_TIMEOUT + 120).replace("\r", "")
            o2 = g2.wait_done(timeout=60).replace("\r", "")
            l1 = self.check_guest(o1, size, sha)
            l2 = self.check_guest(o2, size, sha)
            self.assertNotEqual(l1["ip"], l2["ip"])
            self.assertEqual({l1["ip"], l2["ip"]}, {"10.0.2.15", "10.0.2.16"})
            for o in (o1, o2):
                for ip in ("10.0.2.15", "10.0.2.16"):
                    self.assertIn("UN-PEER-OK " + ip, o, o[-2000:])
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())
            err = un.stderr()
            # Each guest on the group is a switch port of its own.
            p1 = re.search(r"guest MAC 52:54:00:00:00:01 on the group is port (\d+)", err)
            p2 = re.search(r"guest MAC 52:54:00:00:00:02 on the group is port (\d+)", err)
            self.assertTrue(p1 and p2, err[-3000:])
            self.assertNotEqual(p1.group(1), p2.group(1))
            un.stop()
            m = re.search(r"(\d+) own echoes", un.stderr())
            self.assertTrue(m and int(m.group(1)) > 0, "no own echo was dropped:\n" + un.stderr()[-2000:])


if __name__ == "__main__":
    netlab.main()
