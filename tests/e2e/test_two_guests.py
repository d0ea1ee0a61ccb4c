#!/usr/bin/env python3
"""Two guest namespaces attached to one usernet share a LAN: they reach each
other through usernet's switch (ARP, ICMP, TCP), and both reach the gateway."""

import os
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY  # noqa: E402

netlab.require_basics()


class TwoGuestsTest(unittest.TestCase):
    def _two(self, lab):
        host = lab.netns("host")
        g1 = lab.netns("g1")
        g2 = lab.netns("g2")
        un = lab.usernet(host, ["--netns", g1.path, "--netns", g2.path],
                         wait=[("link", g1, "tap0"), ("link", g2, "tap0")])
        l1 = netlab.dhcp(lab, g1)
        l2 = netlab.dhcp(lab, g2)
        self.assertNotEqual(l1["ip"], l2["ip"])
        return host, g1, g2, l1["ip"], l2["ip"], un

    def test_two_guests_ping_each_other_via_switch(self):
        with netlab.Lab("two") as lab:
            host, g1, g2, a1, a2, un = self._two(lab)
            netlab.ping(g1, a2, count=3)
            netlab.ping(g2, a1, count=3)
            # the neighbour entries were learned by ARP through the switch
            r = g1.run(["ip", "neigh", "show", a2])
            self.assertRegex(r.stdout, r"lladdr [0-9a-f:]{17}")
            netlab.ping(g1, GATEWAY, count=1)
            netlab.ping(g2, GATEWAY, count=1)
            lab.assert_alive(un)

    def test_two_guests_tcp_transfer_between_them(self):
        with netlab.Lab("two") as lab:
            host, g1, g2, a1, a2, un = self._two(lab)
            path, sha = lab.make_file(16 * netlab.MiB, "g.bin")
            srv = g1.server("http", "--bind", "0.0.0.0", "--dir", lab.dir)
            out = lab.path("g2.bin")
            netlab.curl(g2, ["--max-time", "100", "-o", out, "http://%s:%d/g.bin" % (a1, srv.port)], timeout=120)
            self.assertEqual(netlab.sha256_file(out), sha)

    def test_guest_to_guest_traffic_does_not_disturb_gateway_traffic(self):
        with netlab.Lab("two") as lab:
            host, g1, g2, a1, a2, un = self._two(lab)
            srv = host.server("udp-echo", "--bind", "127.0.0.1")
            # a ping flood between the guests while g2 talks UDP to the host
            flood = g1.popen(["busybox", "ping", "-c", "300", "-i", "0.01", "-s", "1200", a2], name="flood")
            code = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
ok = 0
for i in range(100):
    m = b"m%d" % i
    s.sendto(m, (sys.argv[1], int(sys.argv[2])))
    try:
        ok += s.recv(100) == m
    except socket.timeout:
        pass
print(ok)
"""
            r = g2.py(code, GATEWAY, srv.port, timeout=60)
            self.assertGreaterEqual(int(r.stdout.strip()), 98, r.stdout + r.stderr)
            flood.wait(60)
            self.assertEqual(flood.poll(), 0, flood.describe())


if __name__ == "__main__":
    netlab.main()
