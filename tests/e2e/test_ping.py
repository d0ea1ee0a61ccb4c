#!/usr/bin/env python3
"""ICMP echo: the gateway and DNS addresses answer, and echo requests to a
routed address go out through usernet's NAT (ping socket or raw socket)."""

import os
import re
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import DNS, GATEWAY, REMOTE_ADDR  # noqa: E402

netlab.require_basics()


def received(r):
    m = re.search(r"(\d+) packets transmitted, (\d+) (packets )?received", r.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class PingTest(unittest.TestCase):
    def _lab(self, lab, extra=(), ping_sockets=False, dhcp=True):
        host = lab.netns("host")
        guest = lab.netns("guest")
        remote = lab.remote(host)
        if ping_sockets:
            # allow unprivileged ICMP sockets in the host namespace (new
            # namespaces start with "1 0", which forbids them even to root)
            host.run(["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
        args = ["--netns", guest.path] + ([] if dhcp else ["--config-net"]) + list(extra)
        un = lab.usernet(host, args, wait=[("link", guest, "tap0")])
        if dhcp:
            netlab.dhcp(lab, guest)
        else:
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
        return host, guest, remote, un

    def test_ping_gateway_and_dns_addresses(self):
        with netlab.Lab("ping") as lab:
            host, guest, remote, un = self._lab(lab)
            for addr in (GATEWAY, DNS):
                r = netlab.ping(guest, addr, count=3)
                self.assertEqual(received(r), (3, 3), r.stdout)
            lab.assert_alive(un)

    def test_ping_remote_through_nat_with_raw_socket_fallback(self):
        # ping_group_range is "1 0" in the host namespace: usernet (root)
        # must fall back to a raw ICMP socket
        with netlab.Lab("ping") as lab:
            host, guest, remote, un = self._lab(lab, dhcp=False)
            self.assertIn("1\t0", host.run(["sysctl", "-n", "net.ipv4.ping_group_range"]).stdout)
            r = netlab.ping(guest, REMOTE_ADDR, count=3)
            self.assertEqual(received(r), (3, 3), r.stdout)
            lab.assert_alive(un)

    def test_ping_remote_through_nat_with_ping_socket(self):
        with netlab.Lab("ping") as lab:
            host, guest, remote, un = self._lab(lab, ping_sockets=True)
            r = netlab.ping(guest, REMOTE_ADDR, count=3)
            self.assertEqual(received(r), (3, 3), r.stdout)

    def test_ping_large_payload_to_gateway_and_remote(self):
        with netlab.Lab("ping") as lab:
            host, guest, remote, un = self._lab(lab, dhcp=False)
            for addr in (GATEWAY, REMOTE_ADDR):
                r = guest.run(["busybox", "ping", "-c", "2", "-W", "3", "-s", "1400", addr], timeout=20)
                self.assertEqual(received(r), (2, 2), r.stdout)

    def test_ping_unreachable_address_gets_no_reply(self):
        # 203.0.113.0/24 (TEST-NET-3) has no route in the host namespace
        with netlab.Lab("ping") as lab:
            host, guest, remote, un = self._lab(lab, dhcp=False)
            r = guest.run(["busybox", "ping", "-c", "2", "-W", "2", "203.0.113.9"], timeout=20, check=False)
            self.assertNotEqual(r.returncode, 0, r.stdout)
            self.assertEqual(received(r)[1], 0, r.stdout)
            lab.assert_alive(un)
            # and the gateway still answers afterwards
            netlab.ping(guest, GATEWAY, count=1)


if __name__ == "__main__":
    netlab.main()
