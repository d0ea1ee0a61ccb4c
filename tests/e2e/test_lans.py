#!/usr/bin/env python3
"""Isolated LANs in one usernet (--lan): each LAN has its own switch,
gateway, DHCP pool, DNS and NAT. Guests of one LAN share it; a guest of the
other LAN is not on it: a capture of each LAN holds no frame of the other,
and neither guest reaches the other's address."""

import os
import struct
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY  # noqa: E402

netlab.require_basics()


def pcap_macs(path):
    """The source MACs of every frame in a pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    e = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    macs, off = set(), 24
    while off + 16 <= len(data):
        incl = struct.unpack(e + "I", data[off + 8:off + 12])[0]
        fr = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(fr) >= 12:
            macs.add(fr[6:12].hex(":"))
    return macs


class LansTest(unittest.TestCase):
    def test_two_lans_are_apart(self):
        with netlab.Lab("lans") as lab:
            host = lab.netns("host")
            a1, a2, b1 = lab.netns("a1"), lab.netns("a2"), lab.netns("b1")
            pa, pb = lab.path("a.pcap"), lab.path("b.pcap")
            # A static lease and a route of the default network, whose MAC
            # b1 takes: LAN b (a network of its own) ignores both.
            b1_mac = "02:00:00:00:0b:01"
            un = lab.usernet(host, ["--pcap", pa, "--dhcp-host", b1_mac + "=10.0.2.20,web",
                                    "--dhcp-route", "192.168.50.0/24",
                                    "--netns", a1.path, "--netns", a2.path,
                                    "--lan", "b,net=10.0.3.0/24,pcap=" + pb, "--netns", b1.path],
                             wait=[("link", a1, "tap0"), ("link", a2, "tap0"), ("link", b1, "tap0")])
            b1.run(["ip", "link", "set", "tap0", "address", b1_mac])
            la1 = netlab.dhcp(lab, a1)
            la2 = netlab.dhcp(lab, a2)
            lb1 = netlab.dhcp(lab, b1)
            self.assertNotIn("10.0.2.", lb1.get("staticroutes", ""), lb1)
            # each LAN's own pool and gateway
            self.assertTrue(la1["ip"].startswith("10.0.2."), la1)
            self.assertTrue(la2["ip"].startswith("10.0.2."), la2)
            self.assertNotEqual(la1["ip"], la2["ip"])
            self.assertEqual(lb1["ip"], "10.0.3.15", lb1)
            self.assertEqual(lb1["router"], "10.0.3.2", lb1)
            # on a LAN: guests reach each other and the gateway
            netlab.ping(a1, la2["ip"], count=2)
            netlab.ping(a1, GATEWAY, count=1)
            netlab.ping(b1, "10.0.3.2", count=1)
            # NAT on LAN b: a TCP server on the host's loopback via its gateway
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            path, sha = lab.make_file(1 * netlab.MiB, "f.bin")
            out = lab.path("b1.bin")
            netlab.curl(b1, ["--max-time", "60", "-o", out, "http://10.0.3.2:%d/f.bin" % srv.port])
            self.assertEqual(netlab.sha256_file(out), sha)
            # across LANs: nothing (the addresses are as unreachable as any
            # the host cannot route)
            self.assertNotEqual(netlab.ping(a1, lb1["ip"], count=2, timeout=10, check=False).returncode, 0)
            self.assertNotEqual(netlab.ping(b1, la1["ip"], count=2, timeout=10, check=False).returncode, 0)
            # a broadcast on LAN a (ARP for b1's address) is not seen on LAN b
            a1.run(["ip", "neigh", "flush", "all"])
            a1.run(["busybox", "arping", "-c", "2", "-w", "3", "-I", "tap0", lb1["ip"]], check=False)
            mac = lambda ns: ns.run(["cat", "/sys/class/net/tap0/address"]).stdout.strip()
            ma1, ma2, mb1 = mac(a1), mac(a2), mac(b1)
            un.stop()  # flushes both captures
            on_a, on_b = pcap_macs(pa), pcap_macs(pb)
            self.assertIn(ma1, on_a)
            self.assertIn(ma2, on_a)
            self.assertIn(mb1, on_b)
            self.assertNotIn(mb1, on_a)
            self.assertNotIn(ma1, on_b)
            self.assertNotIn(ma2, on_b)


if __name__ == "__main__":
    netlab.main()
