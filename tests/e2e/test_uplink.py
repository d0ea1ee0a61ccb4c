#!/usr/bin/env python3
"""--uplink IFACE bridges usernet's LAN onto a host interface.

The "real network" is a namespace ("lan") joined by a veth pair to the
namespace usernet runs in; the guest is another namespace attached with
--netns.  With --no-gateway the guest gets its lease from the dnsmasq on
the lan side (its server id and range) and reaches it; with the gateway on,
a host on the lan side is one more client of usernet's DHCP server and
gateway, and reaches the guest.  The interface is promiscuous exactly while
usernet runs; an interface that goes away and comes back is taken up
again; without CAP_NET_RAW usernet says so and exits 1."""

import json
import os
import re
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY  # noqa: E402

netlab.require_basics()
netlab.require_tools("dnsmasq", "udhcpc", "setpriv")

LAN_ADDR = "192.168.77.1"
RANGE = ("192.168.77.50", "192.168.77.60")


def promiscuity(ns, ifname):
    r = ns.run(["ip", "-d", "link", "show", "dev", ifname])
    m = re.search(r"promiscuity (\d+)", r.stdout)
    return int(m.group(1)) if m else None


def start_dnsmasq(lab, ns, ifname):
    leases = lab.path("dnsmasq.leases")
    argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--port=0", "--interface=" + ifname, "--bind-interfaces", "--pid-file=",
            "--user=root", "--log-dhcp", "--log-facility=-",
            "--dhcp-leasefile=" + leases,
            "--dhcp-range=%s,%s,255.255.255.0,1h" % RANGE,
            "--dhcp-option=option:router,%s" % LAN_ADDR]
    p = ns.popen(argv, name="dnsmasq")

    def up():
        if p.poll() is not None:
            raise AssertionError("dnsmasq died:\n" + p.describe())
        r = ns.run(["ss", "-lunH", "sport = :67"], check=False)
        return ":67" in r.stdout
    netlab.wait_for(up, 10, what="dnsmasq serving DHCP")
    return p, leases


def mac_of(ns, ifname):
    r = ns.run(["cat", "/sys/class/net/%s/address" % ifname])
    return r.stdout.strip()


class UplinkTest(unittest.TestCase):
    def _lan(self, lab, lan_addr=LAN_ADDR + "/24"):
        host = lab.netns("host")
        lan = lab.netns("lan")
        guest = lab.netns("guest")
        up_if, lan_if = lab.veth(host, lan, None, lan_addr)
        return host, lan, guest, up_if, lan_if

    def test_no_gateway_guest_leases_from_the_networks_dhcp_server(self):
        with netlab.Lab("uplink") as lab:
            host, lan, guest, up_if, lan_if = self._lan(lab)
            _, leases = start_dnsmasq(lab, lan, lan_if)
            self.assertEqual(promiscuity(host, up_if), 0)
            un = lab.usernet(host, ["--uplink", up_if, "--no-gateway", "--netns", guest.path],
                             wait=[("link", guest, "tap0")])
            self.assertEqual(promiscuity(host, up_if), 1, "usernet's socket holds it promiscuous")
            lease = netlab.dhcp(lab, guest)
            # The lease is dnsmasq's, from its range, and nobody else answered.
            self.assertEqual(lease.get("serverid"), LAN_ADDR, lease)
            self.assertEqual(lease.get("router"), LAN_ADDR, lease)
            n = int(lease["ip"].rsplit(".", 1)[1])
            self.assertTrue(lease["ip"].startswith("192.168.77.") and 50 <= n <= 60, lease)
            with open(leases) as f:
                self.assertIn(mac_of(guest, "tap0"), f.read())
            netlab.ping(guest, LAN_ADDR, count=3)
            netlab.ping(lan, lease["ip"], count=2)
            # A TCP transfer across the bridge in both directions' segments:
            # the lan side's kernel sends 64 KiB GSO segments over the veth.
            path, sha = lab.make_file(4 * netlab.MiB, "f.bin")
            srv = lan.server("http", "--bind", LAN_ADDR, "--dir", lab.dir)
            out = lab.path("got.bin")
            netlab.curl(guest, ["--max-time", "60", "-o", out,
                                "http://%s:%d/f.bin" % (LAN_ADDR, srv.port)], timeout=90)
            self.assertEqual(netlab.sha256_file(out), sha)
            # No gateway: nothing answers for 10.0.2.2 on the LAN.
            guest.run(["ip", "route", "add", "10.0.2.0/24", "dev", "tap0"])
            r = netlab.ping(guest, GATEWAY, count=1, check=False)
            self.assertNotEqual(r.returncode, 0, r.stdout)
            lab.assert_alive(un)
            un.stop()
            self.assertIn("no gateway", un.stderr())
            self.assertEqual(promiscuity(host, up_if), 0, "promiscuous mode ends with usernet")

    def test_gateway_on_a_host_of_the_uplink_is_one_more_client(self):
        with netlab.Lab("uplink") as lab:
            host, lan, guest, up_if, lan_if = self._lan(lab, lan_addr=None)
            un = lab.usernet(host, ["--uplink", up_if, "--netns", guest.path],
                             wait=[("link", guest, "tap0")])
            g = netlab.dhcp(lab, guest)
            self.assertEqual(g.get("serverid"), GATEWAY, g)
            # The lan side's host gets its lease from usernet through the uplink.
            h = netlab.dhcp(lab, lan, ifname=lan_if)
            self.assertEqual(h.get("serverid"), GATEWAY, h)
            self.assertNotEqual(h["ip"], g["ip"])
            # The uplink port's MTU is the interface's (1500), and so is the
            # guest's with an uplink on the LAN.
            self.assertEqual(h.get("mtu"), "1500", h)
            self.assertEqual(g.get("mtu"), "1500", g)
            netlab.ping(lan, g["ip"], count=3)
            netlab.ping(guest, h["ip"], count=3)
            netlab.ping(lan, GATEWAY, count=1)
            self.assertIn("answers ARP, DHCP and DNS on %s's network too" % up_if, un.stderr())
            lab.assert_alive(un)

    def test_gateway_leases_to_every_host_of_the_uplinks_network(self):
        # The uplink is one attachment with a network behind it: more hosts
        # than a guest's attachment may hold leases for (4) all get one.
        with netlab.Lab("uplink") as lab:
            host, lan, guest, up_if, lan_if = self._lan(lab, lan_addr=None)
            lan.run(["ip", "link", "add", "br0", "type", "bridge"])
            lan.run(["ip", "link", "set", lan_if, "master", "br0"])
            lan.run(["ip", "link", "set", "br0", "up"])
            hosts = []
            for i in range(6):
                h = lab.netns("h%d" % i)
                br_if, h_if = lab.veth(lan, h)
                lan.run(["ip", "link", "set", br_if, "master", "br0"])
                hosts.append((h, h_if))
            un = lab.usernet(host, ["--uplink", up_if], wait=[])
            got = [netlab.dhcp(lab, h, ifname=h_if) for h, h_if in hosts]
            ips = [g["ip"] for g in got]
            self.assertEqual(len(set(ips)), len(ips), ips)
            for g in got:
                self.assertEqual(g.get("serverid"), GATEWAY, g)
            for (h, _), ip in zip(hosts, ips):
                netlab.ping(h, GATEWAY, count=1)
            netlab.ping(hosts[0][0], ips[-1], count=1)  # across the bridge, not through usernet
            lab.assert_alive(un)

    def test_tagged_frames_from_the_network_are_dropped(self):
        # The LAN is untagged: an 802.1Q-tagged frame from the uplink's
        # network (the kernel hands its tag over as PACKET_AUXDATA) goes
        # nowhere, so the gateway does not answer a tagged ARP request;
        # the same request untagged is answered.
        with netlab.Lab("uplink") as lab:
            host, lan, guest, up_if, lan_if = self._lan(lab, lan_addr=None)
            lab.usernet(host, ["--uplink", up_if], wait=[])
            raw = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rawframes.py")

            def arp(**extra):
                req = dict(kind="arp", spa="10.0.2.99", tpa=GATEWAY, **extra)
                spec = {"ifname": lan_if, "frames": [req], "repeat": 3, "gap": 0.1, "listen": 1.0}
                r = lan.run([netlab.PY, raw, json.dumps(spec)], timeout=30)
                got = json.loads(r.stdout.strip().splitlines()[-1])["got"]
                return [g for g in got if g.get("arp") == 2 and g.get("spa") == GATEWAY]

            self.assertEqual(arp(vlan=100), [], "the gateway answered a tagged request")
            self.assertTrue(arp(), "the gateway did not answer the untagged request")

    def test_interface_that_goes_away_is_taken_up_again(self):
        with netlab.Lab("uplink") as lab:
            host, lan, guest, up_if, lan_if = self._lan(lab, lan_addr="10.0.2.100/24")
            un = lab.usernet(host, ["--uplink", up_if, "--netns", guest.path],
                             wait=[("link", guest, "tap0")])
            g = netlab.dhcp(lab, guest)
            netlab.ping(lan, g["ip"], count=2)
            # Down and up again: the same socket resumes.
            host.run(["ip", "link", "set", up_if, "down"])
            netlab.wait_for(lambda: "is down or gone" in un.stderr(), 10, what="down logged")
            r = netlab.ping(lan, g["ip"], count=1, check=False)
            self.assertNotEqual(r.returncode, 0)
            host.run(["ip", "link", "set", up_if, "up"])
            netlab.wait_for(lambda: netlab.ping(lan, g["ip"], count=1, check=False).returncode == 0,
                            20, what="traffic after the link came up")
            # Deleted and made again under the same name: a new socket. The
            # host on the far side keeps its MAC (the source guard holds
            # 10.0.2.100 for that MAC, as it would for a guest).
            lan_mac = mac_of(lan, lan_if)
            lan.run(["ip", "link", "del", lan_if])
            netlab.wait_for(lambda: "the interface is gone" in un.stderr(), 10, what="gone logged")
            lab.veth(host, lan, None, "10.0.2.100/24", a_name=up_if, b_name=lan_if)
            lan.run(["ip", "link", "set", lan_if, "down"])
            lan.run(["ip", "link", "set", lan_if, "address", lan_mac])
            lan.run(["ip", "link", "set", lan_if, "up"])
            netlab.wait_for(lambda: "a new interface of that name" in un.stderr(), 10,
                            what="re-created interface taken")
            self.assertEqual(promiscuity(host, up_if), 1)
            netlab.wait_for(lambda: netlab.ping(lan, g["ip"], count=1, check=False).returncode == 0,
                            20, what="traffic over the new interface")
            lab.assert_alive(un)

    def test_errors_say_what_to_do(self):
        with netlab.Lab("uplink") as lab:
            host, lan, guest, up_if, lan_if = self._lan(lab)
            usernet = netlab.usernet_bin()
            # Without CAP_NET_RAW.
            r = host.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "--inh-caps=-all", "--bounding-set=-all", usernet, "--uplink", up_if,
                          "--no-gateway", "--socket", lab.path("s.sock")], check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("CAP_NET_RAW", r.stderr)
            self.assertIn("setcap cap_net_raw+ep", r.stderr)
            # No such interface.
            r = host.run([usernet, "--uplink", "nosuch0", "--no-gateway"], check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("'nosuch0' does not exist", r.stderr)
            # Not Ethernet.
            r = host.run([usernet, "--uplink", "lo", "--no-gateway"], check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("not an Ethernet interface", r.stderr)
            # What only the gateway can do: one line, exit status 2, never
            # a crash (a serial line's fixed address once was one).
            for extra in (["-t", "8080:80"], ["--serial", "pty,addr=10.0.2.20"],
                          ["--tftp", lab.dir], ["--dns-upstream", "192.0.2.53"]):
                r = host.run([usernet, "--uplink", up_if, "--no-gateway"] + extra, check=False)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("%s needs usernet's gateway, which --no-gateway turns off" % extra[0],
                              r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    netlab.main()
