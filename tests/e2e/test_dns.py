#!/usr/bin/env python3
"""DNS: the guest's resolver address 10.0.2.3 forwards to the upstream
resolver (--dns-upstream, or the host's /etc/resolv.conf, loopback included).
The upstream is dnsmasq in the host namespace answering a made-up name."""

import os
import re
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import DNS  # noqa: E402

netlab.require_basics()
netlab.require_tools("dnsmasq", "dig")  # dnsmasq-base, dnsutils

NAME = "example.test"
ADDR = "198.51.100.7"
NAME2 = "big.example.test"


def start_dnsmasq(lab, host, listen, port):
    argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--listen-address=" + listen, "--port=%d" % port,
            "--pid-file=", "--user=root", "--log-queries", "--log-facility=-",
            "--address=/%s/%s" % (NAME, ADDR)]
    # many A records for a name: a response bigger than 512 bytes (TC over UDP)
    for i in range(1, 60):
        argv.append("--host-record=%s,203.0.113.%d" % (NAME2, i))
    p = host.popen(argv, name="dnsmasq")

    def up():
        if p.poll() is not None:
            raise AssertionError("dnsmasq died:\n" + p.describe())
        r = host.run(["ss", "-lunH", "sport = :%d" % port], check=False)
        return listen in r.stdout
    netlab.wait_for(up, 10, what="dnsmasq listening")
    return p


def lookup(guest, name, server=DNS, tcp=False):
    """Resolve name with dig if present (else busybox nslookup); return the A records."""
    if netlab.have("dig"):
        r = guest.run(["dig", "+short", "+time=2", "+tries=3"] + (["+tcp"] if tcp else []) +
                      ["@" + server, name, "A"], timeout=30, check=False)
        return re.findall(r"^(\d+\.\d+\.\d+\.\d+)$", r.stdout, re.M), r
    r = guest.run(["busybox", "nslookup", name, server], timeout=30, check=False)
    # busybox prints the server's address first, then "Name: ... Address: ..."
    body = r.stdout.split("Name:", 1)[-1] if "Name:" in r.stdout else ""
    return re.findall(r"Address(?: \d+)?:\s*(\d+\.\d+\.\d+\.\d+)", body), r


# On one TCP connection to ADDR:53: queries 1 (db.test, local), 2 (NAME,
# upstream), 3 (db.test), 4 (NAME), sent back to back; prints
# "ANSWERS id:rcode:ancount ..." sorted by id, then "SECONDS s".
PIPELINED_TCP = r"""
import socket, struct, sys, time
addr, name = sys.argv[1], sys.argv[2]
def q(i, n):
    hdr = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0)
    qn = b"".join(bytes([len(p)]) + p.encode() for p in n.split(".")) + b"\0"
    m = hdr + qn + struct.pack(">HH", 1, 1)
    return struct.pack(">H", len(m)) + m
t0 = time.monotonic()
s = socket.create_connection((addr, 53), timeout=10)
s.sendall(q(1, "db.test") + q(2, name) + q(3, "db.test") + q(4, name))
buf, got = b"", {}
while len(got) < 4:
    b = s.recv(4096)
    if not b:
        break
    buf += b
    while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
        n = struct.unpack(">H", buf[:2])[0]
        m, buf = buf[2:2 + n], buf[2 + n:]
        i, flags, qd, an = struct.unpack(">HHHH", m[:8])
        got[i] = "%d:%d:%d" % (i, flags & 0xf, an)
print("ANSWERS", " ".join(got[i] for i in sorted(got)))
print("SECONDS %.2f" % (time.monotonic() - t0))
"""


class DnsTest(unittest.TestCase):
    def test_lookup_via_dns_upstream_with_dhcp(self):
        with netlab.Lab("dns") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            port = netlab.free_port(netlab.socket.SOCK_DGRAM)
            start_dnsmasq(lab, host, "127.0.0.1", port)
            lab.usernet(host, ["--netns", guest.path, "--dns-upstream", "127.0.0.1:%d" % port],
                        wait=[("link", guest, "tap0")])
            lease = netlab.dhcp(lab, guest)
            self.assertIn(DNS, lease.get("dns", "").split())
            addrs, r = lookup(guest, NAME)
            self.assertEqual(addrs, [ADDR], r.stdout + r.stderr)

    def test_lookup_via_dns_upstream_with_config_net(self):
        with netlab.Lab("dns") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            port = netlab.free_port(netlab.socket.SOCK_DGRAM)
            start_dnsmasq(lab, host, "127.0.0.1", port)
            lab.usernet(host, ["--netns", guest.path, "--config-net", "--dns-upstream", "127.0.0.1:%d" % port],
                        wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            addrs, r = lookup(guest, NAME)
            self.assertEqual(addrs, [ADDR], r.stdout + r.stderr)
            # busybox nslookup too (what a busybox guest would use)
            r = guest.run(["busybox", "nslookup", NAME, DNS], timeout=30, check=False)
            self.assertIn(ADDR, r.stdout, r.stdout + r.stderr)

    def test_local_names_are_answered_before_the_upstream(self):
        """The host's alias, --dns-host entries and the guests' DHCP host
        names, bare and under --domain, from the DNS address itself; other
        names still go upstream."""
        with netlab.Lab("dns") as lab:
            host = lab.netns("host")
            g1 = lab.netns("g1")
            g2 = lab.netns("g2")
            port = netlab.free_port(netlab.socket.SOCK_DGRAM)
            dnsmasq = start_dnsmasq(lab, host, "127.0.0.1", port)
            lab.usernet(host, ["--netns", g1.path, "--netns", g2.path, "--domain", "lan.test",
                               "--dns-upstream", "127.0.0.1:%d" % port,
                               "--dns-host", "db.test=10.0.2.100", "--dns-host", "DB.test=fec0::64"],
                        wait=[("link", g1, "tap0"), ("link", g2, "tap0")])
            l1 = netlab.dhcp(lab, g1, hostname="alpha")
            netlab.dhcp(lab, g2, hostname="beta")

            def dig(ns, name, qtype="A", tcp=False):
                r = ns.run(["dig", "+short", "+time=2", "+tries=2", "+tcp" if tcp else "+notcp",
                            "@" + DNS, name, qtype], timeout=20)
                return sorted(r.stdout.split())
            # The same over DNS over TCP.
            self.assertEqual(dig(g2, "alpha.lan.test", tcp=True), [l1["ip"]])
            self.assertEqual(dig(g1, "db.test", "AAAA", tcp=True), ["fec0::64"])
            self.assertEqual(dig(g1, "host.usernet.internal", tcp=True), [netlab.GATEWAY])
            self.assertEqual(dig(g1, NAME, tcp=True), [ADDR])  # upstream
            self.assertEqual(dig(g2, "alpha.lan.test"), [l1["ip"]])
            self.assertEqual(dig(g2, "alpha"), [l1["ip"]])
            self.assertEqual(dig(g2, "ALPHA.Lan.Test."), [l1["ip"]])
            self.assertEqual(dig(g1, "host.usernet.internal"), [netlab.GATEWAY])
            self.assertEqual(dig(g1, "host.usernet.internal", "AAAA"), ["fec0::2"])
            self.assertEqual(dig(g1, "db.test"), ["10.0.2.100"])
            self.assertEqual(dig(g1, "db.test", "AAAA"), ["fec0::64"])
            self.assertEqual(dig(g1, "nobody.lan.test"), [])  # upstream: NXDOMAIN
            self.assertEqual(dig(g1, NAME), [ADDR])  # upstream
            # EDNS (RFC 6891 7): a query with an OPT record gets one back
            # from a local answer, over UDP and TCP; one without, none.
            for opts in (["+notcp"], ["+tcp"]):
                r = g1.run(["dig", "+time=2", "+tries=2", "+edns=0"] + opts +
                           ["@" + DNS, "host.usernet.internal"], timeout=20)
                self.assertIn("OPT PSEUDOSECTION", r.stdout, r.stdout)
                self.assertIn("udp: 1232", r.stdout, r.stdout)
                self.assertIn("ADDITIONAL: 1", r.stdout, r.stdout)
            r = g1.run(["dig", "+time=2", "+tries=2", "+noedns", "@" + DNS, "host.usernet.internal"],
                       timeout=20)
            self.assertNotIn("OPT PSEUDOSECTION", r.stdout, r.stdout)
            self.assertIn("ADDITIONAL: 0", r.stdout, r.stdout)
            # The upstream (--log-queries) saw only the last two.
            log = dnsmasq.stdout() + dnsmasq.stderr()
            self.assertIn("query[A] %s" % NAME, log)
            self.assertNotIn("alpha", log)
            self.assertNotIn("db.test", log)

    def test_a_local_name_with_many_addresses(self):
        """A local name whose answer passes 512 bytes: over UDP as large as
        the query's EDNS offers, else TC and the client asks over TCP; the
        upstream, which knows the name too, is never asked. (Its answer
        once came back instead of the local one.)"""
        with netlab.Lab("dns") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            port = netlab.free_port(netlab.socket.SOCK_DGRAM)
            dnsmasq = start_dnsmasq(lab, host, "127.0.0.1", port)
            hosts = []
            for i in range(1, 41):  # 40 A records: 27 + 40 x 16 + 11 bytes with EDNS
                hosts += ["--dns-host", "%s=10.9.0.%d" % (NAME2, i)]
            lab.usernet(host, ["--netns", guest.path, "--config-net",
                               "--dns-upstream", "127.0.0.1:%d" % port] + hosts,
                        wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            want = sorted("10.9.0.%d" % i for i in range(1, 41))

            def dig(*opts):
                return guest.run(["dig", "+time=2", "+tries=2"] + list(opts) + ["@" + DNS, NAME2, "A"],
                                 timeout=20).stdout
            # EDNS with 1232 bytes (dig's default): all 40 over UDP, with OPT.
            r = dig("+notcp")
            self.assertEqual(sorted(re.findall(r"\sA\s+(10\.9\.0\.\d+)", r)), want, r)
            self.assertNotIn("Truncated", r)
            self.assertIn("udp: 1232", r)
            self.assertRegex(r, r"flags: qr aa")
            # Without EDNS: 512 bytes at most, TC, and dig asks again over TCP.
            r = dig("+noedns", "+notcp", "+ignore")
            self.assertRegex(r, r"flags: qr aa tc")
            self.assertIn("ANSWER: 0", r)
            r = dig("+noedns", "+notcp")
            self.assertIn("Truncated, retrying in TCP mode", r)
            self.assertEqual(sorted(re.findall(r"\sA\s+(10\.9\.0\.\d+)", r)), want, r)
            # EDNS offering only 512 does the same.
            r = dig("+bufsize=512", "+notcp", "+ignore")
            self.assertRegex(r, r"flags: qr aa tc")
            self.assertIn("OPT PSEUDOSECTION", r)
            log = dnsmasq.stdout() + dnsmasq.stderr()
            self.assertNotIn(NAME2, log)

    def test_local_names_without_any_resolver(self):
        """No /etc/resolv.conf entry and no --dns-upstream: local names are
        still answered, everything else is REFUSED at once."""
        with netlab.Lab("dns") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            host.resolv_conf("# nothing\n")
            lab.usernet(host, ["--netns", guest.path, "--config-net", "--dns-host", "db.test=10.0.2.100"],
                        wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            r = guest.run(["dig", "+time=2", "+tries=1", "@" + DNS, "db.test"], timeout=20)
            self.assertIn("status: NOERROR", r.stdout)
            self.assertRegex(r.stdout, r"db\.test\.\s+60\s+IN\s+A\s+10\.0\.2\.100")
            r = guest.run(["dig", "+time=2", "+tries=1", "@" + DNS, "example.org"], timeout=20)
            self.assertIn("status: REFUSED", r.stdout)
            # And over TCP.
            r = guest.run(["dig", "+tcp", "+time=2", "+tries=1", "@" + DNS, "db.test"], timeout=20)
            self.assertRegex(r.stdout, r"db\.test\.\s+60\s+IN\s+A\s+10\.0\.2\.100")
            r = guest.run(["dig", "+tcp", "+time=2", "+tries=1", "@" + DNS, "example.org"], timeout=20)
            self.assertIn("status: REFUSED", r.stdout)

    def test_dns_over_tcp_pipelined_and_a_dead_upstream(self):
        """Several queries on one TCP connection, local and upstream
        interleaved, all answered (matched by id); with a dead upstream a
        TCP query gets SERVFAIL at once, and local names still answer."""
        with netlab.Lab("dns") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            port = netlab.free_port()
            start_dnsmasq(lab, host, "127.0.0.1", port)
            dead = netlab.free_port(exclude=(port,))
            for upstreams in (["127.0.0.1:%d" % port], ["127.0.0.1:%d" % dead]):
                args = ["--netns", guest.path, "--config-net", "--dns-host", "db.test=10.0.2.100"]
                for u in upstreams:
                    args += ["--dns-upstream", u]
                un = lab.usernet(host, args, wait=[("link", guest, "tap0")])
                netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
                r = guest.py(PIPELINED_TCP, DNS, NAME, timeout=60)
                lines = r.stdout.split("\n")
                if upstreams[0].endswith(":%d" % port):
                    self.assertEqual(lines[0], "ANSWERS 1:0:1 2:0:1 3:0:1 4:0:1", r.stdout + r.stderr)
                else:
                    # Upstream queries fail at once (rcode 2), local ones answer.
                    self.assertEqual(lines[0], "ANSWERS 1:0:1 2:2:0 3:0:1 4:2:0", r.stdout + r.stderr)
                    self.assertLess(float(lines[1].split()[1]), 2.0, r.stdout)
                    # Over UDP too: SERVFAIL, not a hung dig.
                    t0 = time.monotonic()
                    r = guest.run(["dig", "+notcp", "+time=5", "+tries=1", "@" + DNS, NAME], timeout=20)
                    self.assertIn("status: SERVFAIL", r.stdout)
                    self.assertLess(time.monotonic() - t0, 3.0)
                un.stop()

    def test_many_queries_in_a_row_all_answered(self):
        with netlab.Lab("dns") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            port = netlab.free_port(netlab.socket.SOCK_DGRAM)
            start_dnsmasq(lab, host, "127.0.0.1", port)
            lab.usernet(host, ["--netns", guest.path, "--config-net", "--dns-upstream", "127.0.0.1:%d" % port],
                        wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            # 200 queries with distinct ids from one socket, answers matched by id
            code = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
def q(i, name):
    hdr = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0)
    qn = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return hdr + qn + struct.pack(">HH", 1, 1)
ids = set(range(1, 201))
for i in ids:
    s.sendto(q(i, sys.argv[2]), (sys.argv[1], 53))
got = set()
try:
    while got != ids:
        b, _ = s.recvfrom(4096)
        i, flags, qd, an = struct.unpack(">HHHH", b[:8])
        if i not in ids:  # an answer to no query of ours: corrupt, not lost
            print("answer with unknown id", i); sys.exit(1)
        if flags & 0x8000 and an >= 1 and (flags & 0xf) == 0:
            got.add(i)
except socket.timeout:
    pass
print(len(got))
"""
            r = guest.py(code, DNS, NAME, timeout=60)
            # a few may legitimately be dropped by rate limits; nearly all must be answered
            self.assertGreaterEqual(int(r.stdout.strip()), 195, r.stdout + r.stderr)

    def test_large_answer_over_udp_edns_and_over_tcp(self):
        if not netlab.have("dig"):
            self.skipTest("dig not installed")
        with netlab.Lab("dns") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            port = netlab.free_port()
            start_dnsmasq(lab, host, "127.0.0.1", port)
            lab.usernet(host, ["--netns", guest.path, "--config-net", "--dns-upstream", "127.0.0.1:%d" % port],
                        wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            # ~1 KB answer: over UDP with EDNS (bufsize 4096) it fits one datagram
            # larger than 512 bytes; with +tcp it goes over DNS-over-TCP; with
            # +noedns the UDP answer is truncated (TC) and dig retries over TCP
            for opts in (["+bufsize=4096", "+notcp", "+ignore"], ["+tcp"], ["+noedns"]):
                r = guest.run(["dig", "+short", "+time=3", "+tries=2"] + opts + ["@" + DNS, NAME2, "A"],
                              timeout=30, check=False)
                addrs = re.findall(r"^(\d+\.\d+\.\d+\.\d+)$", r.stdout, re.M)
                self.assertEqual(len(set(addrs)), 59, "dig %s: %s %s" % (" ".join(opts), r.stdout, r.stderr))

    def test_long_queries_relayed_and_an_unreadable_question_answered_formerr_at_once(self):
        """An EDNS query over 512 bytes (a large option) is legal
        (RFC 6891 limits answers only) and is relayed over UDP and TCP; a
        question that does not parse gets FORMERR at once, not SERVFAIL
        after the 5 s an unmatched answer would leave it waiting."""
        with netlab.Lab("dns") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            port = netlab.free_port()
            start_dnsmasq(lab, host, "127.0.0.1", port)
            lab.usernet(host, ["--netns", guest.path, "--config-net", "--dns-upstream", "127.0.0.1:%d" % port],
                        wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            for opts in (["+notcp"], ["+tcp"]):
                # dig pads only up to 512: a 640-byte experimental option
                # (RFC 6891 9, local use) makes a longer query the same way.
                r = guest.run(["dig", "+time=3", "+tries=1", "+ednsopt=65001:" + "ab" * 640, "+qr"] + opts +
                              ["@" + DNS, NAME, "A"], timeout=30, check=False)
                out = r.stdout.split("QUESTION SECTION", 1)[-1] + r.stderr  # without the option's hex
                sent = re.search(r"QUERY SIZE: (\d+)", r.stdout)
                self.assertTrue(sent and int(sent.group(1)) > 640, out)
                self.assertIn("status: NOERROR", out, out)
                self.assertIn(ADDR, out, out)
            script = (
                "import socket, struct, time\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "s.settimeout(8)\n"
                "t = time.monotonic()\n"
                # qdcount 1, a question whose name is a pointer to itself
                "s.sendto(struct.pack('>6H', 0x1234, 0x0100, 1, 0, 0, 0) + b'\\xc0\\x0c\\0\\1\\0\\1',"
                " ('%s', 53))\n"
                "r = s.recv(512)\n"
                "print('ID %%04x RCODE %%d IN %%.2f' %% (struct.unpack('>H', r[:2])[0], r[3] & 15,"
                " time.monotonic() - t))\n" % DNS)
            r = guest.run(["python3", "-c", script], timeout=30, check=False)
            m = re.search(r"ID (\w+) RCODE (\d+) IN ([\d.]+)", r.stdout)
            self.assertTrue(m, r.stdout + r.stderr)
            self.assertEqual(m.group(1), "1234")
            self.assertEqual(int(m.group(2)), 1)  # FORMERR
            self.assertLess(float(m.group(3)), 1.0)

    def test_lookup_via_loopback_resolver_from_resolv_conf(self):
        # no --dns-upstream: usernet uses the host's /etc/resolv.conf, which
        # here names a loopback resolver (like systemd-resolved's 127.0.0.53)
        with netlab.Lab("dns") as lab:
            host, guest, un = self._loopback_resolver(lab, "nameserver 127.0.0.53\n")
            addrs, r = lookup(guest, NAME)
            self.assertEqual(addrs, [ADDR], r.stdout + r.stderr)

    def _loopback_resolver(self, lab, resolv_conf):
        """dnsmasq on the host's 127.0.0.53, resolv.conf as given, and a
        --config-net guest with no --dns-upstream: (host, guest, usernet)."""
        host = lab.netns("host")
        guest = lab.netns("guest")
        host.resolv_conf(resolv_conf)
        host.run(["ip", "addr", "add", "127.0.0.53/8", "dev", "lo"], check=False)
        start_dnsmasq(lab, host, "127.0.0.53", 53)
        un = lab.usernet(host, ["--netns", guest.path, "--config-net"], wait=[("link", guest, "tap0")])
        netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
        return host, guest, un

    def test_a_changed_resolv_conf_is_followed(self):
        # As libslirp: the nameservers of /etc/resolv.conf are read again
        # when the file changes (a laptop joining another network), without
        # a restart. First it names a resolver that is not running.
        with netlab.Lab("dns") as lab:
            host, guest, un = self._loopback_resolver(lab, "nameserver 127.0.0.3\n")
            addrs, r = lookup(guest, NAME)
            self.assertEqual(addrs, [], r.stdout)
            host.resolv_conf("nameserver 127.0.0.53\n")  # rewritten in place
            addrs = netlab.wait_for(lambda: lookup(guest, NAME)[0], 15, interval=0.5,
                                    what="an answer from the new resolver")
            self.assertEqual(addrs, [ADDR])
            un.stop()
            self.assertIn("changed; forwarding to 127.0.0.53", un.stderr())

    def test_a_link_local_resolver_from_resolv_conf_is_asked_on_its_interface(self):
        # NetworkManager writes a router advertisement's resolver as
        # fe80::X%IFACE; without the interface nothing can reach it.
        with netlab.Lab("dns") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            far = lab.netns("far")
            hn, fn = lab.veth(host, far)
            ll = "fe80::77"
            far.add_addr6(ll + "/64", fn)
            # (the kernel's own link-local address is tentative for a second)
            host.add_addr6("fe80::66/64", hn)
            srv = far.popen([netlab.PY, "-c", LINK_LOCAL_RESOLVER, ll, fn, ADDR],
                            name="resolver")
            netlab.wait_for(lambda: "READY" in srv.stdout(), 10, what="resolver")
            host.resolv_conf("nameserver %s%%%s\n" % (ll, hn))
            lab.usernet(host, ["--netns", guest.path, "--config-net"],
                        wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            addrs, r = lookup(guest, NAME)
            self.assertEqual(addrs, [ADDR], r.stdout + r.stderr)


# Answers every A query with argv[3], on [argv[1]%argv[2]]:53.
LINK_LOCAL_RESOLVER = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53, 0, socket.if_nametoindex(sys.argv[2])))
print("READY", flush=True)
while True:
    q, peer = s.recvfrom(2048)
    end = 12
    while q[end]:
        end += 1 + q[end]
    end += 5
    ans = q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + q[12:end]
    ans += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + socket.inet_aton(sys.argv[3])
    s.sendto(ans, peer)
"""


if __name__ == "__main__":
    netlab.main()
