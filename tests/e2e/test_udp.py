#!/usr/bin/env python3
"""UDP through usernet: echo via the gateway (host loopback) and to a routed
remote address; errors on the host socket come back to the guest as ICMP."""

import os
import socket
import struct
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY, REMOTE_ADDR  # noqa: E402

netlab.require_basics()

ECHO_CLIENT = r"""
import os, socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sizes = [int(x) for x in sys.argv[4].split(",")]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
ok = 0
sent = set()
for i in range(n):
    size = sizes[i % len(sizes)]
    msg = (b"%06d" % i + os.urandom(size))[:size] if size >= 6 else os.urandom(size)
    sent.add(msg)
    for attempt in range(3):          # UDP: a lost datagram is sent again ...
        s.sendto(msg, (addr, port))
        try:
            while True:
                b, peer = s.recvfrom(65535)
                if peer != (addr, port):
                    print("reply from wrong peer", peer); sys.exit(1)
                if b == msg:
                    break
                # ... so a late echo of an earlier one may come; anything
                # else is a corrupted datagram, not a loss
                if b not in sent:
                    print("corrupted reply: %d bytes %r" % (len(b), b[:16])); sys.exit(1)
        except socket.timeout:
            continue
        ok += 1
        break
print(ok)
"""

REFUSED_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(2)
for attempt in range(3):
    try:
        s.send(b"anyone there?")
    except ConnectionRefusedError:
        print("REFUSED"); sys.exit(0)   # an earlier ICMP error reported on send
    try:
        s.recv(100)
        print("GOT REPLY"); sys.exit(1)
    except ConnectionRefusedError:
        print("REFUSED"); sys.exit(0)
    except socket.timeout:
        pass
print("TIMEOUT")
"""


def udp_fragments(pcap, src, dst):
    """(first fragments, later fragments) of UDP datagrams from src to dst
    in a pcap file (Ethernet, little-endian as usernet writes it)."""
    with open(pcap, "rb") as f:
        data = f.read()
    want = socket.inet_aton(src) + socket.inet_aton(dst)
    first = later = 0
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack("<I", data[off + 8:off + 12])[0]
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        if ip[9] != 17 or ip[12:20] != want:
            continue
        frag = struct.unpack(">H", ip[6:8])[0]
        more, offset = frag & 0x2000, frag & 0x1fff
        if offset:
            later += 1
        elif more:
            first += 1
    return first, later


class UdpTest(unittest.TestCase):
    def _lab(self, lab, dhcp=False):
        host = lab.netns("host")
        guest = lab.netns("guest")
        remote = lab.remote(host)
        args = ["--netns", guest.path] + ([] if dhcp else ["--config-net"])
        un = lab.usernet(host, args, wait=[("link", guest, "tap0")])
        if dhcp:
            netlab.dhcp(lab, guest)
        else:
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
        return host, guest, remote, un

    def test_udp_echo_via_gateway_to_host_loopback(self):
        with netlab.Lab("udp") as lab:
            host, guest, remote, un = self._lab(lab, dhcp=True)
            srv = host.server("udp-echo", "--bind", "127.0.0.1")
            r = guest.py(ECHO_CLIENT, GATEWAY, srv.port, 200, "1,64,512,1400,1472", timeout=60)
            self.assertEqual(r.stdout.strip(), "200", r.stdout + r.stderr)
            # The largest IPv4 datagrams (65,507 bytes, IP length 65,535):
            # the echo used to be dropped above 65,487.
            r = guest.py(ECHO_CLIENT, GATEWAY, srv.port, 4, "65488,65507", timeout=60)
            self.assertEqual(r.stdout.strip(), "4", r.stdout + r.stderr)

    def test_udp_echo_to_remote_address(self):
        with netlab.Lab("udp") as lab:
            host, guest, remote, un = self._lab(lab)
            srv = remote.server("udp-echo", "--bind", REMOTE_ADDR)
            r = guest.py(ECHO_CLIENT, REMOTE_ADDR, srv.port, 200, "1,64,512,1400,1472", timeout=60)
            self.assertEqual(r.stdout.strip(), "200", r.stdout + r.stderr)

    def test_udp_fragments_are_reassembled_and_replies_fragmented_at_mtu_1500(self):
        # At MTU 1500 the guest's kernel cuts a 4000-byte datagram into three
        # IPv4 fragments; usernet reassembles them for the host socket, and
        # the 4000-byte echo reaches the guest as three fragments too. The
        # capture shows the fragments both ways.
        with netlab.Lab("udpfrag") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            pcap = lab.path("frag.pcap")
            un = lab.usernet(host, ["--netns", guest.path, "--config-net", "--mtu", "1500",
                                    "--pcap", pcap], wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            self.assertEqual(guest.run(["cat", "/sys/class/net/tap0/mtu"]).stdout.strip(), "1500")
            srv = host.server("udp-echo", "--bind", "127.0.0.1")
            r = guest.py(ECHO_CLIENT, GATEWAY, srv.port, 3, "1472", timeout=60)
            self.assertEqual(r.stdout.strip(), "3", "a datagram that fits the MTU: " + r.stdout + r.stderr)
            r = guest.py(ECHO_CLIENT, GATEWAY, srv.port, 2, "4000", timeout=60)
            self.assertEqual(r.stdout.strip(), "2", "fragmented datagrams echoed: " + r.stdout + r.stderr)
            un.stop()
            # 2 datagrams each way (more if one was sent again), in 3
            # fragments each (1480+1480+1048)
            for src, dst in (("10.0.2.15", GATEWAY), (GATEWAY, "10.0.2.15")):
                first, later = udp_fragments(pcap, src, dst)
                self.assertTrue(first >= 2 and later == 2 * first, (src, dst, first, later))

    def test_the_largest_datagrams_cross_a_576_byte_mtu(self):
        # At MTU 576 a 65,507-byte datagram is 119 fragments each way, and a
        # 40,000-byte ping 73: all reassembled (64 pieces at most dropped
        # everything over 35,584 bytes here), as Linux and libslirp do.
        with netlab.Lab("udpfrag") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            un = lab.usernet(host, ["--netns", guest.path + ",mtu=576", "--no-ipv6", "--config-net"],
                             wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            srv = host.server("udp-echo", "--bind", "127.0.0.1")
            r = guest.py(ECHO_CLIENT, GATEWAY, srv.port, 4, "40000,65507", timeout=60)
            self.assertEqual(r.stdout.strip(), "4", r.stdout + r.stderr)
            r = guest.run(["busybox", "ping", "-c", "2", "-W", "3", "-s", "40000", GATEWAY], timeout=30)
            self.assertIn("2 packets received", r.stdout)
            lab.assert_alive(un)

    def test_many_udp_flows_from_distinct_source_ports(self):
        with netlab.Lab("udp") as lab:
            host, guest, remote, un = self._lab(lab)
            srv = host.server("udp-echo", "--bind", "127.0.0.1")
            # 300 sockets stay open, so 300 distinct flows exist at the end;
            # they are sent in groups of 50 so that a slow echo server (the
            # sanitizer build) is not overrun by one burst.
            code = r"""
import socket, sys
socks = []
ok = 0
for g in range(6):
    group = []
    for i in range(g * 50, g * 50 + 50):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
        s.sendto(b"flow%d" % i, (sys.argv[1], int(sys.argv[2])))
        group.append((i, s))
    for i, s in group:
        try:
            ok += s.recv(100) == b"flow%d" % i
        except socket.timeout:
            pass
    socks += group
print(ok)
"""
            r = guest.py(code, GATEWAY, srv.port, timeout=60)
            # each source port is its own flow; replies must reach the right socket
            self.assertGreaterEqual(int(r.stdout.strip()), 295, r.stdout + r.stderr)
            lab.assert_alive(un)

    def test_udp_to_closed_port_gives_connection_refused_on_gateway_and_remote(self):
        with netlab.Lab("udp") as lab:
            host, guest, remote, un = self._lab(lab)
            for addr in (GATEWAY, REMOTE_ADDR):
                port = netlab.free_port(netlab.socket.SOCK_DGRAM)
                r = guest.py(REFUSED_CLIENT, addr, port, timeout=30, check=False)
                self.assertEqual(r.stdout.strip(), "REFUSED", "%s:%d: %s %s" % (addr, port, r.stdout, r.stderr))
            lab.assert_alive(un)


if __name__ == "__main__":
    netlab.main()
