#!/usr/bin/env python3
"""DHCPv4: busybox udhcpc in a guest namespace gets its lease from usernet."""

import ipaddress
import os
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import DNS, GATEWAY, GUEST  # noqa: E402

netlab.require_basics()


class DhcpTest(unittest.TestCase):
    def test_udhcpc_gets_default_lease_router_and_dns(self):
        with netlab.Lab("dhcp") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            un = lab.usernet(host, ["--netns", guest.path], wait=[("link", guest, "tap0")])
            lease = netlab.dhcp(lab, guest)
            self.assertEqual(lease.get("ip"), GUEST, lease)
            self.assertEqual(lease.get("router", "").split()[0:1], [GATEWAY], lease)
            self.assertIn(DNS, lease.get("dns", "").split(), lease)
            # /24 of the default 10.0.2.0/24
            self.assertIn(lease.get("mask"), ("24", "255.255.255.0"), lease)
            self.assertEqual(lease.get("serverid"), GATEWAY, lease)
            # the lease is usable: the gateway answers
            netlab.ping(guest, GATEWAY, count=1)
            lab.assert_alive(un)

    def test_link_is_up_in_guest_before_dhcp(self):
        with netlab.Lab("dhcp") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            lab.usernet(host, ["--netns", guest.path, "--tap-name", "eth7"], wait=[("link", guest, "eth7")])
            netlab.wait_for(lambda: guest.link_up("eth7"), 5, what="eth7 up")
            self.assertEqual(guest.addrs("eth7"), [], "no address without --config-net")
            lease = netlab.dhcp(lab, guest, "eth7")
            self.assertEqual(lease.get("ip"), GUEST, lease)

    def test_two_guests_get_distinct_addresses_in_the_net(self):
        with netlab.Lab("dhcp2") as lab:
            host = lab.netns("host")
            g1 = lab.netns("g1")
            g2 = lab.netns("g2")
            lab.usernet(host, ["--netns", g1.path, "--netns", g2.path],
                        wait=[("link", g1, "tap0"), ("link", g2, "tap0")])
            l1 = netlab.dhcp(lab, g1)
            l2 = netlab.dhcp(lab, g2)
            self.assertNotEqual(l1["ip"], l2["ip"], (l1, l2))
            net = ipaddress.ip_network(netlab.NET)
            for lease in (l1, l2):
                a = ipaddress.ip_address(lease["ip"])
                self.assertIn(a, net, lease)
                self.assertGreaterEqual(a, ipaddress.ip_address(GUEST), lease)
                self.assertNotIn(lease["ip"], (GATEWAY, DNS), lease)

    def test_renewal_keeps_the_same_address(self):
        with netlab.Lab("dhcp") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            lab.usernet(host, ["--netns", guest.path], wait=[("link", guest, "tap0")])
            first = netlab.dhcp(lab, guest)
            # a second DORA from the same MAC must get the same address back
            second = netlab.dhcp(lab, guest)
            self.assertEqual(first["ip"], second["ip"])

    def test_two_client_identifiers_on_one_mac_share_its_address(self):
        """A MAC leases under one client identifier, then another (firmware,
        then an OS with a DUID; two clients on one interface): both are
        given the MAC's one address, and it works (the gateway lets a MAC
        use one address, so a second lease would be one it drops)."""
        with netlab.Lab("dhcp") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            lab.usernet(host, ["--netns", guest.path], wait=[("link", guest, "tap0")])
            first = netlab.dhcp(lab, guest, extra=("-x", "61:00636c69656e7431"))
            second = netlab.dhcp(lab, guest, extra=("-x", "61:00636c69656e7432"))
            self.assertEqual(first["ip"], second["ip"], (first, second))
            netlab.ping(guest, GATEWAY, count=1)
            again = netlab.dhcp(lab, guest, extra=("-x", "61:00636c69656e7431"))
            self.assertEqual(again["ip"], first["ip"], again)
            netlab.ping(guest, GATEWAY, count=1)

    def test_a_bootp_client_gets_an_address(self):
        """bootpc, a BOOTP client (no DHCP message type), gets its address,
        mask, router and DNS server, and the address works."""
        netlab.require_tools("bootpc")
        with netlab.Lab("bootp") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            un = lab.usernet(host, ["--netns", guest.path], wait=[("link", guest, "tap0")])
            guest.wait_link("tap0")
            guest.run(["ip", "link", "set", "tap0", "up"])
            # bootpc sends to 255.255.255.255: it needs a route out.
            guest.run(["ip", "route", "add", "default", "dev", "tap0"])
            r = guest.run(["bootpc", "--dev", "tap0", "--timeoutwait", "10", "--returniffail"], timeout=30)
            got = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
            got = {k: v.strip("'") for k, v in got.items()}
            self.assertEqual(got.get("IPADDR"), GUEST, r.stdout + r.stderr)
            self.assertEqual(got.get("NETMASK"), "255.255.255.0", r.stdout)
            self.assertEqual(got.get("GATEWAYS"), GATEWAY, r.stdout)
            self.assertEqual(got.get("DNSSRVS"), DNS, r.stdout)
            guest.run(["ip", "route", "del", "default", "dev", "tap0"])
            guest.run(["ip", "addr", "add", GUEST + "/24", "dev", "tap0"])
            netlab.ping(guest, GATEWAY, count=1)
            lab.assert_alive(un)

    def test_dhcp_start_and_mtu_options(self):
        with netlab.Lab("dhcp") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            lab.usernet(host, ["--netns", guest.path, "--dhcp-start", "10.0.2.100", "--mtu", "1400"],
                        wait=[("link", guest, "tap0")])
            lease = netlab.dhcp(lab, guest)
            self.assertEqual(lease.get("ip"), "10.0.2.100", lease)
            self.assertEqual(lease.get("mtu"), "1400", lease)

    def test_options_hostname_search_routes_lease_time_and_a_static_lease(self):
        """udhcpc receives --hostname, --domain, --dns-search (option 119),
        --dhcp-route (option 121, with the default route) and --lease-time;
        a --dhcp-host MAC gets its address and name, which the DNS address
        answers, and gets them again after a reboot."""
        with netlab.Lab("dhcp") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            other = lab.netns("other")
            mac = "52:54:00:ab:cd:01"
            lab.usernet(host, ["--netns", guest.path, "--netns", other.path, "--hostname", "vm",
                               "--domain", "lan.test", "--dns-search", "lan.test,corp.example",
                               "--lease-time", "3600",
                               "--dhcp-route", "192.168.50.0/24,10.0.2.2",
                               "--dhcp-host", mac + "=10.0.2.200,web"],
                        wait=[("link", guest, "tap0"), ("link", other, "tap0")])
            lease = netlab.dhcp(lab, other)
            self.assertEqual(lease.get("hostname"), "vm", lease)
            self.assertEqual(lease.get("domain"), "lan.test", lease)
            self.assertEqual(lease.get("search", "").split(), ["lan.test", "corp.example"], lease)
            self.assertEqual(lease.get("lease"), "3600", lease)
            self.assertEqual(lease.get("staticroutes", "").split(),
                             ["192.168.50.0/24", "10.0.2.2", "0.0.0.0/0", "10.0.2.2"], lease)
            self.assertNotEqual(lease.get("ip"), "10.0.2.200", lease)
            # The static lease's MAC.
            guest.run(["ip", "link", "set", "tap0", "address", mac])
            lease = netlab.dhcp(lab, guest)
            self.assertEqual(lease.get("ip"), "10.0.2.200", lease)
            self.assertEqual(lease.get("hostname"), "web", lease)
            # Its name resolves through the DNS address, from the other guest.
            r = other.run(["dig", "+short", "+time=2", "+tries=2", "@" + DNS, "web.lan.test"], timeout=20)
            self.assertEqual(r.stdout.split(), ["10.0.2.200"])
            # Asked again, after the guest forgot it (a reboot): the same.
            guest.run(["ip", "-4", "addr", "flush", "dev", "tap0"])
            self.assertEqual(netlab.dhcp(lab, guest).get("ip"), "10.0.2.200")

    def test_a_search_list_too_long_for_the_reply_is_left_out_not_the_lease(self):
        """A --dns-search list near its 255-byte limit does not fit a
        576-byte reply beside the other options (udhcpc asks for no more):
        the guest still gets its lease, with everything but the list, and
        usernet warns once which option it left out."""
        # (no common suffix: option 119's compression would fit them)
        search = ",".join("s%d-a-rather-long-domain-name.example%d" % (i, i) for i in range(6))
        with netlab.Lab("dhcp") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            un = lab.usernet(host, ["--netns", guest.path, "--hostname", "vm", "--domain",
                                    "lan.test", "--dns-search", search,
                                    "--dhcp-route", "192.168.50.0/24"],
                             wait=[("link", guest, "tap0")])
            lease = netlab.dhcp(lab, guest)
            self.assertTrue(lease.get("ip", "").startswith("10.0.2."), lease)
            self.assertEqual(lease.get("router"), netlab.GATEWAY, lease)
            self.assertEqual(lease.get("hostname"), "vm", lease)
            self.assertEqual(lease.get("domain"), "lan.test", lease)
            self.assertIn("192.168.50.0/24", lease.get("staticroutes", ""), lease)
            self.assertNotIn("search", lease)
            self.assertIn("goes without: domain search (119)", un.stderr())


if __name__ == "__main__":
    netlab.main()
