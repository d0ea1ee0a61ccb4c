#!/usr/bin/env python3
"""What a guest may reach (--restrict, --no-tcp/--no-udp/--no-icmp, --allow,
--deny), with real clients in a namespace guest: each refusal comes at once
(curl's "Failed to connect" from a RST, ICMP administratively prohibited
for UDP and ping), and what the policy allows still works beside it: the
gateway's DNS, port forwards into the guest, the allowed destinations."""

import os
import re
import socket
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import DNS, GATEWAY, GATEWAY6, GATEWAY6_LL, REMOTE_ADDR, REMOTE_ADDR6  # noqa: E402

netlab.require_basics()
netlab.require_tools("curl", "dig", "dnsmasq")

# One UDP request on a connected socket; prints ECHO, REFUSED and the errno
# the ICMP error became (administratively prohibited is EHOSTUNREACH), or
# NO ANSWER.
UDP_PROBE = r"""
import errno, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
fam, _, _, _, sa = socket.getaddrinfo(addr, port, type=socket.SOCK_DGRAM)[0]  # with a %scope
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect(sa)
for attempt in range(3):
    try:
        s.send(b"hello")
        print("ECHO" if s.recv(100) == b"hello" else "OTHER")
        break
    except socket.timeout:
        continue
    except OSError as e:
        print("REFUSED", errno.errorcode.get(e.errno, e.errno))
        break
else:
    print("NO ANSWER")
"""

# Remote side of a hole-punching exchange: answers the guest's datagram
# with the address and port it came from, then sends to that mapping from
# another of its ports (as a peer-to-peer partner would), and prints the
# port.
RENDEZVOUS = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
print("READY", s.getsockname()[1], flush=True)
data, peer = s.recvfrom(100)
s.sendto(b"seen", peer)
other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
other.bind((sys.argv[1], 0))
other.sendto(b"from-remote", peer)
print("MAPPED", peer[1], flush=True)
"""
# Guest: one datagram to the rendezvous, then prints every datagram that
# comes to its socket within argv[3] seconds.
GUEST_PUNCH = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
end = time.monotonic() + float(sys.argv[3])
while True:
    s.settimeout(max(0.01, end - time.monotonic()))
    try:
        print(s.recv(100).decode(), flush=True)
    except socket.timeout:
        break
"""


class PolicyLab:
    def __init__(self, lab, extra):
        self.lab = lab
        self.host = lab.netns("host")
        self.guest = lab.netns("guest")
        self.remote = lab.remote(self.host)
        self.host.run(["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
        self.web = self.remote.server("http", "--bind", "::", "--dir", lab.dir)
        self.echo = self.remote.server("udp-echo", "--bind", REMOTE_ADDR, "--port", "0")
        self.local = self.host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
        self.dns_port = netlab.free_port(socket.SOCK_DGRAM)
        self.dnsmasq = self.host.popen(
            ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
             "--bind-interfaces", "--listen-address=127.0.0.1", "--port=%d" % self.dns_port,
             "--pid-file=", "--user=root", "--address=/policy.test/192.0.2.53"], name="dnsmasq")
        netlab.wait_for(lambda: "127.0.0.1" in self.host.run(
            ["ss", "-lunH", "sport = :%d" % self.dns_port], check=False).stdout, 10, what="dnsmasq")
        with open(lab.path("f.txt"), "w") as f:
            f.write("payload\n")
        self.un = lab.usernet(self.host, ["--netns", self.guest.path, "--config-net",
                                          "--dns-upstream", "127.0.0.1:%d" % self.dns_port] + list(extra),
                              wait=[("link", self.guest, "tap0")])
        netlab.wait_for(lambda: self.guest.addrs("tap0"), 10, what="address from --config-net")

    def curl(self, url):
        """(ok, seconds, error text) of one GET."""
        t0 = time.monotonic()
        r = netlab.curl(self.guest, ["-g", "--max-time", "8", "-o", "/dev/null", url], timeout=20, check=False)
        return r.returncode == 0, time.monotonic() - t0, r.stderr.strip()

    def assert_refused_at_once(self, tc, url):
        ok, secs, err = self.curl(url)
        tc.assertFalse(ok, url)
        # curl 7.88: "Failed to connect ... after 0 ms: Couldn't connect to
        # server" for the RST (ECONNREFUSED); a timeout would say so.
        tc.assertIn("Failed to connect", err, url)
        tc.assertNotIn("timed out", err, url)
        tc.assertLess(secs, 3, url)

    def udp(self, addr, port):
        return self.guest.py(UDP_PROBE, addr, port, timeout=20).stdout.strip()

    def ping(self, addr):
        r = self.guest.run(["busybox", "ping", "-c", "1", "-W", "3", addr], timeout=20, check=False)
        return r.returncode == 0, r.stdout + r.stderr


class PolicyTest(unittest.TestCase):
    def test_restrict_leaves_only_the_gateways_services_and_forwards(self):
        with netlab.Lab("policy") as lab:
            port = netlab.free_port()
            t = PolicyLab(lab, ["--restrict", "-t", "%d:8000" % port])
            t.assert_refused_at_once(self, "http://%s:%d/f.txt" % (REMOTE_ADDR, t.web.port))
            t.assert_refused_at_once(self, "http://%s:%d/f.txt" % (GATEWAY, t.local.port))
            self.assertTrue(t.udp(REMOTE_ADDR, t.echo.port).startswith("REFUSED"))
            ok, out = t.ping(REMOTE_ADDR)
            self.assertFalse(ok, out)
            # The gateway's services: ping of the gateway, DNS (UDP and TCP).
            self.assertTrue(t.ping(GATEWAY)[0])
            for proto in ("+notcp", "+tcp"):
                r = t.guest.run(["dig", "+short", "+time=2", "+tries=2", proto, "@" + DNS, "policy.test"],
                                timeout=20)
                self.assertEqual(r.stdout.split(), ["192.0.2.53"], proto)
            # A forward into the guest still works.
            srv = t.guest.server("http", "--bind", "0.0.0.0", "--port", "8000", "--dir", lab.dir)
            self.assertEqual(srv.port, 8000)
            r = netlab.curl(t.host, ["--max-time", "10", "http://127.0.0.1:%d/f.txt" % port], timeout=20)
            self.assertEqual(r.stdout, "payload\n")
            lab.assert_alive(t.un)

    def test_no_tcp_no_udp_no_icmp(self):
        with netlab.Lab("policy") as lab:
            t = PolicyLab(lab, ["--no-tcp", "--no-icmp"])
            t.assert_refused_at_once(self, "http://%s:%d/f.txt" % (REMOTE_ADDR, t.web.port))
            self.assertFalse(t.ping(REMOTE_ADDR)[0])
            self.assertEqual(t.udp(REMOTE_ADDR, t.echo.port), "ECHO")  # UDP still goes
        with netlab.Lab("policy") as lab:
            t = PolicyLab(lab, ["--no-udp"])
            self.assertTrue(t.udp(REMOTE_ADDR, t.echo.port).startswith("REFUSED"))
            self.assertTrue(t.curl("http://%s:%d/f.txt" % (REMOTE_ADDR, t.web.port))[0])
            self.assertTrue(t.ping(REMOTE_ADDR)[0])
            # DNS is the gateway's: it still answers.
            r = t.guest.run(["dig", "+short", "+time=2", "+tries=2", "@" + DNS, "policy.test"], timeout=20)
            self.assertEqual(r.stdout.split(), ["192.0.2.53"])

    def test_allow_and_deny(self):
        with netlab.Lab("policy") as lab:
            # An allow list: the remote's web port over IPv4 and IPv6, and
            # the host's loopback (10.0.2.2) on its web port; but the deny
            # for the remote's IPv6 address wins.
            t = PolicyLab(lab, ["--allow", "%s/24" % REMOTE_ADDR,
                                "--allow", "[%s/64]:1-65535" % REMOTE_ADDR6, "--deny", REMOTE_ADDR6,
                                "--allow", "%s:1" % GATEWAY, "--deny", "%s:9" % REMOTE_ADDR])
            ok, _, err = t.curl("http://%s:%d/f.txt" % (REMOTE_ADDR, t.web.port))
            self.assertTrue(ok, err)
            self.assertEqual(t.udp(REMOTE_ADDR, t.echo.port), "ECHO")
            self.assertTrue(t.ping(REMOTE_ADDR)[0])  # a rule without ports covers ping
            # Denied outright, or by not being allowed.
            t.assert_refused_at_once(self, "http://[%s]:%d/f.txt" % (REMOTE_ADDR6, t.web.port))
            t.assert_refused_at_once(self, "http://%s:%d/f.txt" % (GATEWAY, t.local.port))
            t.assert_refused_at_once(self, "http://%s:9/" % REMOTE_ADDR)
            lab.assert_alive(t.un)

    def test_a_denied_peer_reaches_no_guest_through_an_open_mapping(self):
        """A guest's UDP socket takes datagrams from anyone once it has
        sent (endpoint-independent, as STUN and peer-to-peer need), but
        not from a peer the policy keeps the guest from: here the host's
        loopback, denied as the gateway address."""
        with netlab.Lab("policy") as lab:
            t = PolicyLab(lab, ["--deny", GATEWAY])
            rdv = t.remote.popen([netlab.PY, "-c", RENDEZVOUS, REMOTE_ADDR], name="rendezvous")
            rport = int(netlab.wait_for(lambda: (lambda m: m and m.group(1))(
                re.search(r"READY (\d+)", rdv.stdout())), 10, what="rendezvous"))
            cli = t.guest.popen([netlab.PY, "-c", GUEST_PUNCH, REMOTE_ADDR, str(rport), "4"], name="punch")
            mapped = int(netlab.wait_for(lambda: (lambda m: m and m.group(1))(
                re.search(r"MAPPED (\d+)", rdv.stdout())), 10, what="the guest's mapping"))
            # The host's loopback (10.0.2.2 to the guest, denied) at the
            # mapping usernet's socket has.
            t.host.py("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                      "[s.sendto(b'from-loopback', ('127.0.0.1', %d)) for _ in range(3)]" % mapped)
            netlab.wait_for(lambda: cli.poll() is not None, 15, what="the guest's receiver")
            got = cli.stdout().split()
            self.assertIn("seen", got)
            self.assertIn("from-remote", got)  # an allowed peer still gets through
            self.assertNotIn("from-loopback", got)
            lab.assert_alive(t.un)

    def test_deny_of_the_ipv6_gateway_covers_its_link_local_address(self):
        """The gateway's link-local address (every guest's default router)
        reaches the host's ::1 as fec0::2 does; a --deny of fec0::2 once
        left it open, TCP and UDP."""
        with netlab.Lab("policy") as lab:
            t = PolicyLab(lab, ["--deny", "[%s]" % GATEWAY6])
            local6 = t.host.server("http", "--bind", "::1", "--dir", lab.dir)
            echo6 = t.host.server("udp-echo", "--bind", "::1", "--port", "0")
            for addr in (GATEWAY6, "%s%%tap0" % GATEWAY6_LL):
                t.assert_refused_at_once(self, "http://[%s]:%d/f.txt" % (addr, local6.port))
                self.assertIn("REFUSED", t.udp(addr, echo6.port), addr)
            # the IPv4 gateway, not denied, still reaches the host
            ok, _, err = t.curl("http://%s:%d/f.txt" % (GATEWAY, t.local.port))
            self.assertTrue(ok, err)
            lab.assert_alive(t.un)


if __name__ == "__main__":
    netlab.main()
