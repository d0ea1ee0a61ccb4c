#!/usr/bin/env python3
"""usernet as a VDE switch (--vde DIR) with vde2's real plugs: a namespace's
TAP bridged by vde_plug (vdeplug4's tap:// plug) or vde_plug2tap gets a
DHCP lease and downloads through the NAT with a checksum; two plugs share
the LAN; a plug killed with SIGKILL takes its port and its socket file with
it at once; usernet's exit leaves nothing in (or of) the directory; a stale
ctl is replaced and a live one refused; a bad request closes only its
connection; with ,mac= a guest whose MAC changes keeps its network."""

import os
import signal
import socket
import struct
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY, MiB  # noqa: E402

netlab.require_basics()
netlab.require_tools("vde_plug", "vde_plug2tap", "curl")


def entries(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else None


def port_files(d):
    """Our port sockets (NNN.S) in d."""
    return [n for n in entries(d) or [] if n[0].isdigit()]


class VdeTest(unittest.TestCase):
    def _switch(self, lab, host, name="vde", suffix="", extra=()):
        d = lab.path(name)
        un = lab.usernet(host, ["--vde", d + suffix] + list(extra),
                         wait=[("socket", os.path.join(d, "ctl"))])
        return d, un

    def _plug(self, lab, ns, d, kind="vde_plug"):
        if kind == "vde_plug":
            argv = ["vde_plug", "vde://" + d, "tap://tap0"]
        else:
            argv = ["vde_plug2tap", "--sock", d, "tap0"]
        p = ns.popen(argv, name=kind)

        def up():
            if p.poll() is not None:
                raise AssertionError("%s exited:\n%s" % (kind, p.describe()))
            return ns.has_link("tap0")
        netlab.wait_for(up, 10, what="%s's tap0" % kind)
        ns.run(["ip", "link", "set", "tap0", "up"])
        return p

    def _download(self, lab, host, g, size):
        """g fetches a file of `size` bytes from the host's loopback (as the
        gateway) through the NAT; its sha256 must match."""
        _, sha = lab.make_file(size, "file.bin")
        srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
        out = lab.path("got.bin")
        netlab.curl(g, ["--max-time", "100", "-o", out, "http://%s:%d/file.bin" % (GATEWAY, srv.port)],
                    timeout=120)
        self.assertEqual(netlab.sha256_file(out), sha)

    def test_vde_plug_guest_gets_lease_downloads_and_its_death_leaves_nothing(self):
        with netlab.Lab("vde") as lab:
            host = lab.netns("host")
            g = lab.netns("g")
            d, un = self._switch(lab, host)
            self.assertEqual(entries(d), ["ctl"])
            self.assertEqual(os.stat(d).st_mode & 0o777, 0o700)
            plug = self._plug(lab, g, d)
            netlab.wait_for(lambda: len(port_files(d)) == 1, 10, what="the port's socket file")
            lease = netlab.dhcp(lab, g)
            self.assertEqual(lease["router"], GATEWAY)
            self.assertEqual(lease.get("mtu"), "1500")
            netlab.ping(g, GATEWAY, count=2)
            self._download(lab, host, g, 8 * MiB)
            self.assertIn("connected as switch port", un.stderr())
            self.assertRegex(un.stderr(), r"guest MAC [0-9a-f:]{17}")
            # The plug dies: its port and our socket file go at once; its own
            # socket was already unlinked by libvdeplug after the handshake.
            plug.stop(sig=signal.SIGKILL)
            netlab.wait_for(lambda: entries(d) == ["ctl"], 5,
                            what="only ctl left in %s (have %r)" % (d, entries(d)))
            netlab.wait_for(lambda: "left (the client closed its control connection)" in un.stderr(), 5,
                            what="usernet to log the port leaving")
            lab.assert_alive(un)
            un.stop()
            self.assertIsNone(entries(d), "usernet left %r behind" % (entries(d),))

    def test_vde_plug2tap_and_vde_plug_share_the_lan(self):
        with netlab.Lab("vde2") as lab:
            host = lab.netns("host")
            g1 = lab.netns("g1")
            g2 = lab.netns("g2")
            d, un = self._switch(lab, host)
            self._plug(lab, g1, d, "vde_plug")
            self._plug(lab, g2, d, "vde_plug2tap")
            l1 = netlab.dhcp(lab, g1)
            l2 = netlab.dhcp(lab, g2)
            self.assertNotEqual(l1["ip"], l2["ip"])
            netlab.ping(g1, l2["ip"], count=2)
            netlab.ping(g2, l1["ip"], count=2)
            self.assertEqual(len(port_files(d)), 2)
            self._download(lab, host, g2, 4 * MiB)
            # usernet goes first: every file it made goes, and the directory
            un.stop()
            self.assertIsNone(entries(d), "usernet left %r behind" % (entries(d),))

    def test_mac_suffix_a_guest_whose_mac_changes_keeps_its_network(self):
        """--vde DIR,mac=LANMAC: a vde_plug guest whose TAP changes its MAC
        after its lease keeps its address, its pings and its downloads, and
        the LAN's capture never holds either of its own MACs."""
        lan_mac, old_mac, new_mac = "52:54:00:aa:0c:00", "02:00:00:00:0c:01", "02:00:00:00:0c:02"
        with netlab.Lab("vdemac") as lab:
            host = lab.netns("host")
            g = lab.netns("g")
            pcap = lab.path("lan.pcap")
            d, un = self._switch(lab, host, suffix=",mac=" + lan_mac, extra=["--pcap", pcap])
            self._plug(lab, g, d)
            g.run(["ip", "link", "set", "tap0", "address", old_mac])
            lease = netlab.dhcp(lab, g)
            netlab.ping(g, GATEWAY, count=2)
            g.run(["ip", "link", "set", "tap0", "address", new_mac])
            g.run(["ip", "neigh", "flush", "dev", "tap0"])
            netlab.ping(g, GATEWAY, count=2)
            self._download(lab, host, g, 2 * MiB)
            self.assertEqual(netlab.dhcp(lab, g)["ip"], lease["ip"])
            lab.assert_alive(un)
            un.stop()
            err = un.stderr()
            self.assertIn("the LAN sees MAC %s" % lan_mac, err)
            self.assertIn("the guest's MAC is now %s; the LAN still sees %s" % (new_mac, lan_mac), err)
            netlab.check_capture_macs(pcap, [lan_mac], [old_mac, new_mac])

    def test_stale_ctl_replaced_live_refused_bad_request_closed(self):
        with netlab.Lab("vde3") as lab:
            host = lab.netns("host")
            d = lab.path("vde")
            os.mkdir(d, 0o700)
            # what a killed switch leaves behind: ctl and a port socket
            for name, kind in (("ctl", socket.SOCK_STREAM), ("004.9", socket.SOCK_DGRAM)):
                s = socket.socket(socket.AF_UNIX, kind)
                s.bind(os.path.join(d, name))
                s.close()
            un = lab.usernet(host, ["--vde", d], wait=[("socket", os.path.join(d, "ctl"))])
            self.assertEqual(entries(d), ["ctl"])
            # a second usernet on the same directory is refused, says why
            second = lab.usernet(host, ["--vde", d], name="usernet2", expect_exit=1)
            second.wait(10)
            self.assertIn("in use by a running switch", second.stderr())
            # a client that is not VDE: its connection is closed, nothing else
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(5)
            c.connect(os.path.join(d, "ctl"))
            c.sendall(struct.pack("=III", 0xfeedface, 7, 0) + b"\0" * 110)
            self.assertEqual(c.recv(1), b"")
            c.close()
            self.assertIn("bad VDE request", un.stderr())
            lab.assert_alive(un)
            un.stop()
            # the directory was not usernet's: it stays, empty
            self.assertEqual(entries(d), [])


if __name__ == "__main__":
    netlab.main()
