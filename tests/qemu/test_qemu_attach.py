#!/usr/bin/env python3
"""Real QEMU guests (TCG; never KVM) attached to ONE usernet in every way
QEMU can, each a port of the same LAN: -netdev stream over a unix socket
(--socket), -netdev stream inet and -netdev socket,connect= (--listen), and
-netdev socket,listen= that usernet connects out to (--connect).  Each
guest (build-guest.sh's kernel + busybox initramfs) gets a distinct lease,
pings all the others, and downloads a file from an HTTP server on the
host's loopback (as 10.0.2.2) through the NAT, checking its sha256.  Then
reconnects: a QEMU that exits or is killed, and comes back, gets a new port
and a lease again, on --listen and on --connect.

Other attachments (dgram, multicast, vde, ...) may add their guests here:
AttachGuest takes any -netdev value."""

import os
import re
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import netlab  # noqa: E402
from netlab import GATEWAY, MiB  # noqa: E402

netlab.require_basics()
netlab.require_tools("qemu-system-x86_64", "cpio", "gzip")

from test_qemu_guest import BOOT_TIMEOUT, KERNEL, INITRD, kv, marker  # noqa: E402

NET_PREFIX = "10.0.2."


class AttachGuest:
    """One QEMU whose NIC uses the -netdev value `netdev` (id n0); parses
    the serial console (markers of build-guest.sh's /init)."""

    def __init__(self, ns, netdev, mac, append, name, nic="virtio-net-pci", mem=128):
        self.name = name
        self.mac = mac
        self.t0 = time.monotonic()
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(mem), "-nographic", "-no-reboot",
                "-nodefaults", "-serial", "stdio", "-monitor", "none",
                "-kernel", KERNEL, "-initrd", INITRD,
                "-append", "console=ttyS0 panic=-1 loglevel=4 " + append,
                "-netdev", netdev,
                "-device", "%s,netdev=n0,mac=%s,romfile=" % (nic, mac)]
        self.p = ns.popen(argv, name=name)

    def console(self):
        return self.p.stdout().replace("\r", "")

    def wait_for(self, pattern, timeout=BOOT_TIMEOUT):
        """Waits until the console matches pattern (a regex); fails early if
        QEMU exits or the guest reports the end of /init without it."""
        def seen():
            out = self.console()
            if re.search(pattern, out, re.M):
                return True
            if "UN-DONE" in out or self.p.poll() is not None:
                raise AssertionError("%s ended without %r:\n%s" % (self.name, pattern, self.p.describe()))
        try:
            netlab.wait_for(seen, timeout, interval=0.25, what="%s: %s" % (self.name, pattern))
        except netlab.Timeout:
            raise AssertionError("%s: no %r in %ds:\n%s" % (self.name, pattern, timeout, self.p.describe()))
        return self.console()

    def lease_ip(self):
        m = marker(self.console(), "UN-LEASE")
        return m and kv(m).get("ip")


def guest_args(port, pings=(), linger=0):
    a = "un.port=%d un.file=file.bin" % port
    if pings:
        a += " un.ping=" + ",".join(pings)
    if linger:
        a += " un.linger=%d" % linger
    return a


def stream_unix(sock):
    return "stream,id=n0,server=off,addr.type=unix,addr.path=%s" % sock


def stream_inet_client(port):
    return "stream,id=n0,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port=%d" % port


def socket_connect(port):
    return "socket,id=n0,connect=127.0.0.1:%d" % port


def socket_listen(port):
    return "socket,id=n0,listen=127.0.0.1:%d" % port


class QemuAttachTest(unittest.TestCase):
    def check_download(self, g, sha, size):
        out = g.console()
        got = marker(out, "UN-SHA256")
        self.assertIsNotNone(got, "%s: no download:\n%s" % (g.name, out[-3000:]))
        dsha, dsize = got.split()[:2]
        self.assertEqual((dsha, int(dsize)), (sha, size), "%s: downloaded file differs" % g.name)
        t = kv(got)
        netlab.log("%s: %d KiB in %.1fs guest time" % (g.name, size // 1024, float(t["t1"]) - float(t["t0"])))

    def test_four_guests_over_unix_stream_inet_socket_connect_and_socket_listen(self):
        with netlab.Lab("qattach") as lab:
            host = lab.netns("host")
            sock = lab.path("usernet.sock")
            p_listen = netlab.free_port()
            p_connect = netlab.free_port(exclude=(p_listen,))
            size = 2 * MiB
            path, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            # usernet first: --connect finds nobody listening yet and retries.
            # --listen is bound before --socket (command-line order), so a
            # connectable socket means both are ready.
            un = lab.usernet(host, ["--listen", str(p_listen), "--connect", "127.0.0.1:%d" % p_connect,
                                    "--socket", sock], wait=[("socket", sock)])
            # The banner follows the listeners (main() prints it once the
            # daemon is built): wait for its last line.
            netlab.wait_for(lambda: "listen=127.0.0.1:%d -device" % p_connect in un.stdout(), 10,
                            what="the start-up banner")
            banner = un.stdout()
            self.assertIn("-netdev stream,id=net0,server=off,addr.type=inet,addr.host=127.0.0.1,"
                          "addr.port=%d" % p_listen, banner)
            self.assertIn("-netdev socket,id=net0,connect=127.0.0.1:%d" % p_listen, banner)
            self.assertIn("-netdev socket,id=net0,listen=127.0.0.1:%d" % p_connect, banner)
            self.assertIn("-netdev stream,id=net0,server=on,addr.type=inet,addr.host=127.0.0.1,"
                          "addr.port=%d" % p_connect, banner)

            peers = [NET_PREFIX + str(15 + i) for i in range(4)]
            # Each lingers until every guest has pinged it; the test stops
            # them all once they have.
            args = guest_args(srv.port, peers, linger=300)
            specs = [("unix", stream_unix(sock)), ("inet", stream_inet_client(p_listen)),
                     ("sockconn", socket_connect(p_listen)), ("socklisten", socket_listen(p_connect))]
            guests = [AttachGuest(host, nd, "52:54:00:00:08:%02x" % (i + 1), args, "qemu-" + n)
                      for i, (n, nd) in enumerate(specs)]
            for g in guests:
                g.wait_for(r"^UN-LINGER")
            leases = [g.lease_ip() for g in guests]
            netlab.log("leases: %s" % dict(zip([g.name for g in guests], leases)))
            self.assertEqual(sorted(leases), peers, "each guest a distinct lease")
            for g in guests:
                out = g.console()
                lease = kv(marker(out, "UN-LEASE"))
                self.assertEqual(lease.get("router"), GATEWAY, lease)
                self.assertIn("UN-PING-OK", out, "%s: gateway ping:\n%s" % (g.name, out[-3000:]))
                for p in peers:
                    self.assertRegex(out, r"(?m)^UN-PEER-OK %s$" % re.escape(p),
                                     "%s could not ping %s:\n%s" % (g.name, p, out[-3000:]))
                self.check_download(g, sha, size)
            log = un.stderr()  # before the guests stop (and --connect retries again)
            for g in guests:
                g.p.stop()
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())
            # Visibility: each connection with its port and peer, each MAC.
            self.assertRegex(log, r"tcp client \d+ from 127\.0\.0\.1:\d+ on 127\.0\.0\.1:%d connected as port \d+"
                             % p_listen)
            self.assertEqual(len(re.findall(r"tcp client \d+ from .* connected as port", log)), 2, log)
            self.assertRegex(log, r"tcp connection 1 to QEMU at 127\.0\.0\.1:%d connected as port \d+" % p_connect)
            self.assertRegex(log, r"cannot connect to QEMU at TCP 127\.0\.0\.1:%d \(Connection refused\)" % p_connect)
            # logged once per state change, not per attempt
            self.assertLessEqual(log.count("(Connection refused)"), 1, log)
            for g in guests:
                self.assertRegex(log, r"\(port \d+\): guest MAC %s" % g.mac)

    @staticmethod
    def _listen_connect_and_a_file(lab, host, size):
        """Two free TCP ports (for --listen and --connect), a file of
        `size` bytes and an HTTP server on the host's loopback for it."""
        p_listen = netlab.free_port()
        p_connect = netlab.free_port(exclude=(p_listen,))
        _, sha = lab.make_file(size, "file.bin")
        srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
        return p_listen, p_connect, sha, srv

    def test_a_restarted_or_killed_qemu_gets_a_new_port_and_a_lease_again(self):
        with netlab.Lab("qreconn") as lab:
            host = lab.netns("host")
            size = 1 * MiB
            p_listen, p_connect, sha, srv = self._listen_connect_and_a_file(lab, host, size)
            sock = lab.path("usernet.sock")
            # (--socket only to know when usernet is ready)
            un = lab.usernet(host, ["--listen", "127.0.0.1:%d" % p_listen,
                                    "--connect", "127.0.0.1:%d" % p_connect, "--socket", sock],
                             wait=[("socket", sock)])
            mac_a, mac_b = "52:54:00:00:09:01", "52:54:00:00:09:02"
            # Round 1: A connects (stream inet), finishes and exits; B listens
            # (socket,listen=), usernet connects to it, and B is killed.
            a1 = AttachGuest(host, stream_inet_client(p_listen), mac_a, guest_args(srv.port), "qemu-a1")
            b1 = AttachGuest(host, socket_listen(p_connect), mac_b, guest_args(srv.port, linger=300), "qemu-b1")
            a1.wait_for(r"^UN-DONE")
            b1.wait_for(r"^UN-LINGER")
            for g in (a1, b1):
                self.check_download(g, sha, size)
            lease_a, lease_b = a1.lease_ip(), b1.lease_ip()
            self.assertNotEqual(lease_a, lease_b)
            b1.p.stop(signal.SIGKILL, timeout=0.1)
            a1.p.wait(30)  # poweroff -f: QEMU exits by itself
            netlab.wait_for(lambda: re.search(r"tcp client 1 from .*\(port \d+\) closed", un.stderr()), 20,
                            what="usernet to see A's connection close")
            netlab.wait_for(lambda: "connection to QEMU at TCP 127.0.0.1:%d lost; reconnecting" % p_connect
                            in un.stderr(), 20, what="usernet to see B's connection drop")

            # Round 2: both come back; each is a new connection, a port of its
            # own, and gets its lease again.
            a2 = AttachGuest(host, stream_inet_client(p_listen), mac_a, guest_args(srv.port), "qemu-a2")
            b2 = AttachGuest(host, socket_listen(p_connect), mac_b, guest_args(srv.port), "qemu-b2")
            a2.wait_for(r"^UN-DONE")
            b2.wait_for(r"^UN-DONE")
            for g in (a2, b2):
                self.check_download(g, sha, size)
                self.assertEqual(kv(marker(g.console(), "UN-DONE")).get("rc"), "0", g.console()[-3000:])
            self.assertEqual((a2.lease_ip(), b2.lease_ip()), (lease_a, lease_b),
                             "the same MACs keep their leases")
            log = un.stderr()
            self.assertRegex(log, r"tcp client 2 from 127\.0\.0\.1:\d+ on 127\.0\.0\.1:%d connected as port \d+"
                             % p_listen)
            self.assertRegex(log, r"tcp connection 2 to QEMU at 127\.0\.0\.1:%d connected as port \d+" % p_connect)
            for g in (a2, b2):
                g.p.stop()
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())

    def test_mac_suffix_a_qemu_back_with_another_mac_keeps_its_lease(self):
        """--listen and --connect with ,mac=LANMAC (a VM restored with a new
        NIC MAC, as v86's state images): QEMUs that come back with other
        MACs get the same leases as before, and the LAN's capture holds
        only the two LAN MACs, never a guest's own."""
        lan_a, lan_b = "52:54:00:aa:0a:00", "52:54:00:aa:0b:00"
        with netlab.Lab("qmacx") as lab:
            host = lab.netns("host")
            size = 1 * MiB
            p_listen, p_connect, sha, srv = self._listen_connect_and_a_file(lab, host, size)
            sock = lab.path("usernet.sock")
            pcap = lab.path("lan.pcap")
            un = lab.usernet(host, ["--listen", "127.0.0.1:%d,mac=%s" % (p_listen, lan_a),
                                    "--connect", "127.0.0.1:%d,mac=%s" % (p_connect, lan_b),
                                    "--socket", sock, "--pcap", pcap],
                             wait=[("socket", sock)])
            leases = []
            guest_macs = []
            for rnd in (1, 2):
                mac_a, mac_b = "52:54:00:00:0a:%02x" % rnd, "52:54:00:00:0b:%02x" % rnd
                guest_macs += [mac_a, mac_b]
                a = AttachGuest(host, stream_inet_client(p_listen), mac_a, guest_args(srv.port),
                                "qemu-a%d" % rnd)
                b = AttachGuest(host, socket_listen(p_connect), mac_b, guest_args(srv.port),
                                "qemu-b%d" % rnd)
                for g in (a, b):
                    g.wait_for(r"^UN-DONE")
                    self.check_download(g, sha, size)
                    g.p.wait(30)  # poweroff -f: QEMU exits by itself
                leases.append((a.lease_ip(), b.lease_ip()))
                netlab.wait_for(lambda: un.stderr().count("connection to QEMU at TCP 127.0.0.1:%d lost"
                                                          % p_connect) == rnd, 20,
                                what="usernet to see B's connection drop")
            netlab.log("leases by round: %s" % leases)
            self.assertNotEqual(leases[0][0], leases[0][1])
            self.assertEqual(leases[1], leases[0], "a new guest MAC behind ,mac= keeps the lease")
            log = un.stderr()
            self.assertEqual(log.count("the LAN sees MAC %s" % lan_a), 2, log)
            self.assertEqual(log.count("the LAN sees MAC %s" % lan_b), 2, log)
            un.stop()
            netlab.check_capture_macs(pcap, [lan_a, lan_b], guest_macs)


if __name__ == "__main__":
    netlab.main()
