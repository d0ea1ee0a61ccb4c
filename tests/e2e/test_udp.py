#!/usr/bin/env python3
"""UDP through usernet: echo via the gateway (host loopback) and to a routed
remote address; errors on the host socket come back to the guest as ICMP."""

import os
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
for i in range(n):
    size = sizes[i % len(sizes)]
    msg = (b"%06d" % i + os.urandom(size))[:size] if size >= 6 else os.urandom(size)
    for attempt in range(3):          # UDP: allow a retry per datagram
        s.sendto(msg, (addr, port))
        try:
            while True:
                b, peer = s.recvfrom(65535)
                if b == msg:
                    break
        except socket.timeout:
            continue
        if peer != (addr, port):
            print("reply from wrong peer", peer); sys.exit(1)
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

    def test_udp_echo_to_remote_address(self):
        with netlab.Lab("udp") as lab:
            host, guest, remote, un = self._lab(lab)
            srv = remote.server("udp-echo", "--bind", REMOTE_ADDR)
            r = guest.py(ECHO_CLIENT, REMOTE_ADDR, srv.port, 200, "1,64,512,1400,1472", timeout=60)
            self.assertEqual(r.stdout.strip(), "200", r.stdout + r.stderr)

    def test_udp_fragmented_datagram_echo(self):
        # 4000-byte datagrams: the guest fragments them at MTU 1500; they must
        # arrive whole at the server and the (fragmented) reply whole at the guest
        with netlab.Lab("udp") as lab:
            host, guest, remote, un = self._lab(lab)
            srv = host.server("udp-echo", "--bind", "127.0.0.1")
            r = guest.py(ECHO_CLIENT, GATEWAY, srv.port, 20, "4000,8000", timeout=60)
            self.assertEqual(r.stdout.strip(), "20", r.stdout + r.stderr)

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
