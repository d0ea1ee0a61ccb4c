#!/usr/bin/env python3
"""MAC translation (,mac=LANMAC): a guest whose MAC changes underneath it
(v86 restoring a state image; here `ip link set tap0 address NEW` after the
guest got its lease) keeps its address and its network, because the LAN
only ever sees LANMAC; without the option the same guest loses them (the
gateway's source guard binds its lease to the old MAC).  The capture of the
LAN shows neither of the guest's own MACs."""

import os
import re
import struct
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY, GATEWAY6  # noqa: E402

netlab.require_basics()
netlab.require_tools("udhcpc")

LAN_MAC = "52:54:00:aa:bb:01"
OLD_MAC = "02:00:00:00:10:01"
NEW_MAC = "02:00:00:00:10:02"


def pcap_macs(path):
    """Every (destination, source) MAC pair in a pcap file, as text."""
    out = set()
    with open(path, "rb") as f:
        data = f.read()
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack("<IIII", data[off:off + 16])[2]
        fr = data[off + 16:off + 16 + incl]
        if len(fr) >= 12:
            out.add((fr[0:6].hex(":"), fr[6:12].hex(":")))
        off += 16 + incl
    return out


class MacTranslationTest(unittest.TestCase):
    def _guest(self, lab, mac_option):
        host = lab.netns("host")
        guest = lab.netns("guest")
        pcap = lab.path("lan.pcap")
        target = guest.path + (",mac=" + LAN_MAC if mac_option else "")
        un = lab.usernet(host, ["--netns", target, "--pcap", pcap],
                         wait=[("link", guest, "tap0")])
        guest.run(["ip", "link", "set", "tap0", "address", OLD_MAC])
        lease = netlab.dhcp(lab, guest)
        netlab.ping(guest, GATEWAY, count=2)
        # Underneath the guest, its MAC changes (its lease and address stay).
        guest.run(["ip", "link", "set", "tap0", "address", NEW_MAC])
        guest.run(["ip", "neigh", "flush", "dev", "tap0"])
        return host, guest, un, lease, pcap

    def test_guest_keeps_its_network_when_its_mac_changes(self):
        with netlab.Lab("mactr") as lab:
            host, guest, un, lease, pcap = self._guest(lab, True)
            netlab.ping(guest, GATEWAY, count=3)
            # The host's services through the NAT, with the new MAC.
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            path, sha = lab.make_file(2 * netlab.MiB, "f.bin")
            out = lab.path("got.bin")
            netlab.curl(guest, ["--max-time", "60", "-o", out,
                                "http://%s:%d/f.bin" % (GATEWAY, srv.port)], timeout=90)
            self.assertEqual(netlab.sha256_file(out), sha)
            # DHCP again from the new MAC: the same lease (the server saw the
            # same chaddr and client identifier).
            again = netlab.dhcp(lab, guest)
            self.assertEqual(again["ip"], lease["ip"])
            lab.assert_alive(un)
            un.stop()
            err = un.stderr()
            # (The TAP's first MAC may have spoken before the test set OLD_MAC.)
            self.assertRegex(err, "the guest( uses MAC|'s MAC is now) %s" % OLD_MAC)
            self.assertIn("the LAN sees %s" % LAN_MAC, err)
            self.assertIn("the guest's MAC is now %s; the LAN still sees %s" % (NEW_MAC, LAN_MAC),
                          err)
            macs = set()
            for d, s in pcap_macs(pcap):
                macs.update((d, s))
            self.assertIn(LAN_MAC, macs)
            self.assertNotIn(OLD_MAC, macs, "the LAN saw the guest's first MAC")
            self.assertNotIn(NEW_MAC, macs, "the LAN saw the guest's second MAC")

    def test_an_idle_guest_whose_mac_changed_is_reached_through_a_forward(self):
        """A server guest that has not sent a frame since its MAC changed
        is still reached through a port forward: the TAP's own address
        tells usernet the guest's new MAC."""
        with netlab.Lab("mactr") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            p = netlab.free_port()
            lab.usernet(host, ["--netns", guest.path + ",mac=" + LAN_MAC, "--config-net",
                               "-t", str(p)], wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            # No IPv6: its MLD and neighbor discovery would speak for the
            # guest after the change.
            guest.run(["sysctl", "-qw", "net.ipv6.conf.tap0.disable_ipv6=1"])
            guest.run(["ip", "link", "set", "tap0", "address", OLD_MAC])
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", p)
            echo = "import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5); " \
                   "s.sendall(b'hi'); print(s.recv(10).decode())"
            self.assertEqual(host.py(echo, p, timeout=20).stdout.strip(), "hi")
            guest.run(["ip", "link", "set", "tap0", "address", NEW_MAC])
            time.sleep(0.3)
            self.assertEqual(host.py(echo, p, timeout=20).stdout.strip(), "hi")

    def test_ipv6_neighbor_discovery_is_translated(self):
        """The guest's router and neighbor solicitations carry its own MAC in
        their link-layer address options; translated, they say LAN_MAC, so
        the gateway's source guard takes them, SLAAC works, and ping6 keeps
        working after the guest's MAC changes. No byte of the LAN capture
        holds either of the guest's MACs."""
        with netlab.Lab("mactr6") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            pcap = lab.path("lan.pcap")
            un = lab.usernet(host, ["--netns", guest.path + ",mac=" + LAN_MAC, "--pcap", pcap],
                             wait=[("link", guest, "tap0")])
            guest.run(["ip", "link", "set", "tap0", "down"])
            guest.run(["ip", "link", "set", "tap0", "address", OLD_MAC])
            guest.run(["ip", "link", "set", "tap0", "up"])

            def slaac():
                out = guest.run(["ip", "-6", "addr", "show", "dev", "tap0"]).stdout
                return re.search(r"inet6 fec0:[0-9a-f:]+/64 scope site dynamic(?![^\n]*tentative)", out)
            netlab.wait_for(slaac, 20, what="an address from SLAAC through the translation")
            r = netlab.ping(guest, GATEWAY6, count=2)
            self.assertIn("2 packets received", r.stdout)
            guest.run(["ip", "link", "set", "tap0", "address", NEW_MAC])
            guest.run(["ip", "-6", "neigh", "flush", "dev", "tap0"])
            r = netlab.ping(guest, GATEWAY6, count=2)
            self.assertIn("2 packets received", r.stdout)
            lab.assert_alive(un)
            un.stop()
            netlab.check_capture_macs(pcap, [LAN_MAC], [OLD_MAC, NEW_MAC])

    def test_without_translation_the_guest_loses_its_network(self):
        with netlab.Lab("mactr") as lab:
            host, guest, un, lease, pcap = self._guest(lab, False)
            r = netlab.ping(guest, GATEWAY, count=3, check=False)
            self.assertNotEqual(r.returncode, 0, "the source guard let a new MAC use the lease:\n"
                                + r.stdout)
            lab.assert_alive(un)


if __name__ == "__main__":
    netlab.main()
