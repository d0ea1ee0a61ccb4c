#!/usr/bin/env python3
"""The C API end to end: examples/tap_embedder (a plain C program linked
against libusernet.so, include/usernet.h) runs usernet in its own poll loop
with a TAP in the guest namespace as its only NIC.  Inside the namespace:
DHCP, ping, a TCP download from the host's loopback through 10.0.2.2
(sha256-checked), DNS at 10.0.2.3 for the local name host.usernet.internal,
UDP, and a port forward given with -t HOSTPORT:GUESTPORT.  On SIGTERM the
embedder exits 0 after printing its counters.

The binary: USERNET_EMBEDDER (CMake passes $<TARGET_FILE:tap_embedder>), else
build/examples/tap_embedder."""

import os
import re
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import DNS, GATEWAY, GUEST, MiB  # noqa: E402


def embedder_bin():
    path = os.environ.get("USERNET_EMBEDDER") or os.path.join(netlab.REPO, "build", "examples",
                                                              "tap_embedder")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        netlab.skip_file("tap_embedder not found (set USERNET_EMBEDDER): %s" % path)
    return os.path.abspath(path)


# What every netns test needs (netlab.require_basics() without the usernet
# binary, which this test does not run).
netlab.require_root()
netlab.require_tools("ip", "ss", "sysctl", "busybox", "curl")
if not os.path.exists("/dev/net/tun"):
    netlab.skip_file("/dev/net/tun missing (modprobe tun; in a container, pass the device in)")
EMBEDDER = embedder_bin()

# "tap_embedder: 12 frames in, 10 out, 0 dropped", its last words.
COUNTERS = re.compile(r"^tap_embedder: (\d+) frames in, (\d+) out, (\d+) dropped$", re.M)

# Datagrams to ADDR:PORT, each echoed back unchanged; prints OK or FAIL.
UDP_CLIENT = r"""
import os, socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
sent, ok = set(), 0
for i in range(n):
    msg = b"%04d:" % i + os.urandom(200 + 37 * i)
    sent.add(msg)
    for attempt in range(3):   # a lost datagram is sent again
        s.sendto(msg, (addr, port))
        try:
            while True:
                b, peer = s.recvfrom(65535)
                if peer != (addr, port):
                    print("FAIL reply from %r" % (peer,)); sys.exit(0)
                if b == msg:
                    break
                if b not in sent:   # a late echo of an earlier one is fine
                    print("FAIL corrupted reply of %d bytes" % len(b)); sys.exit(0)
        except socket.timeout:
            continue
        ok += 1
        break
print("OK" if ok == n else "FAIL %d/%d" % (ok, n))
"""

# Connects to 127.0.0.1:PORT (retrying while the guest's server is not up
# yet), sends random bytes, half-closes and expects them back; OK or FAIL.
TCP_CLIENT = r"""
import os, socket, sys, time
port, size = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 20
msg = os.urandom(size)
while True:
    got = b""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(msg)
            s.shutdown(socket.SHUT_WR)
            while True:
                b = s.recv(65536)
                if not b: break
                got += b
        finally:
            s.close()
    except OSError as e:
        if got or time.monotonic() > deadline:
            print("FAIL", repr(e)); break
        time.sleep(0.2); continue
    if got == msg:
        print("OK"); break
    if got or time.monotonic() > deadline:
        print("FAIL %d of %d bytes" % (len(got), len(msg))); break
    time.sleep(0.2)
"""


class EmbedTest(unittest.TestCase):
    def _start(self, lab, forwards=(), dhcp=True, extra=()):
        """host + guest namespaces; tap_embedder in host with tap0 in guest.
        It is a netlab.Usernet, so the lab checks its exit (0 after SIGTERM,
        no crash on stderr) when it stops it."""
        host = lab.netns("host")
        guest = lab.netns("guest")
        argv = [EMBEDDER, guest.path, "tap0"]
        for hp, gp in forwards:
            argv += ["-t", "%d:%d" % (hp, gp)]
        argv += list(extra)
        emb = netlab.Usernet(lab, argv, host, "tap_embedder")
        lab.usernets.append(emb)

        def up():
            if emb.poll() is not None:
                raise AssertionError("tap_embedder exited early:\n" + emb.describe())
            return guest.has_link("tap0")
        netlab.wait_for(up, 10, what="tap0 in %s" % guest.name)
        lease = netlab.dhcp(lab, guest) if dhcp else None
        return host, guest, emb, lease

    def _stop(self, lab, emb):
        """SIGTERM: exit 0 with the counters line; returns (in, out, dropped)."""
        lab.assert_alive(emb)
        rc = emb.stop()  # raises unless it exited 0 by itself, without a crash
        self.assertEqual(rc, 0)
        m = COUNTERS.findall(emb.stderr())
        self.assertTrue(m, "no counters line on stderr:\n" + emb.describe())
        frames_in, frames_out, dropped = (int(x) for x in m[-1])
        self.assertGreater(frames_in, 0, emb.stderr())
        self.assertGreater(frames_out, 0, emb.stderr())
        return frames_in, frames_out, dropped

    def test_dhcp_lease_and_ping_gateway_and_dns(self):
        with netlab.Lab("embed") as lab:
            host, guest, emb, lease = self._start(lab)
            self.assertEqual(lease.get("ip"), GUEST, lease)
            self.assertEqual(lease.get("router"), GATEWAY, lease)
            self.assertEqual(lease.get("dns", "").split(), [DNS], lease)
            self.assertEqual(guest.addrs("tap0"), [(GUEST, "24")])
            for addr in (GATEWAY, DNS):
                r = netlab.ping(guest, addr, count=3)
                self.assertIn("3 packets transmitted, 3 packets received", r.stdout)
            self.assertIn(" on tap0 in ", emb.stderr())  # its start line
            frames_in, frames_out, dropped = self._stop(lab, emb)
            # DHCP's two and the pings' six at least, each way.
            self.assertGreaterEqual(frames_in, 8)
            self.assertGreaterEqual(frames_out, 8)

    def _download(self, lab, host, guest, size):
        """curl in the guest fetches `size` bytes from the host's loopback
        through the gateway; the file is checked."""
        path, sha = lab.make_file(size, "payload.bin")
        srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
        out = lab.path("download.bin")
        netlab.curl(guest, ["--max-time", "100", "-o", out,
                            "http://%s:%d/payload.bin" % (GATEWAY, srv.port)], timeout=120)
        self.assertEqual(os.path.getsize(out), size)
        self.assertEqual(netlab.sha256_file(out), sha, "downloaded data differs")

    def test_tcp_download_from_the_hosts_loopback_via_the_gateway(self):
        with netlab.Lab("embed") as lab:
            host, guest, emb, _ = self._start(lab)
            self._download(lab, host, guest, 8 * MiB)
            frames_in, frames_out, _ = self._stop(lab, emb)
            # 8 MiB in frames of at most 1514 bytes.
            self.assertGreater(frames_out, 8 * MiB // 1514)

    def test_a_nic_that_transmits_from_its_receive_path(self):
        """usernet_nic_input() from inside the send callback (QEMU's pcnet
        transmits the guest's next frame as it receives one): the frame
        waits until usernet's own call returns. Handled at once, it ran a
        translator inside another's send loop: downloads stalled, and
        QEMU's pcnet guests got segments under wrong sequence numbers."""
        with netlab.Lab("embed") as lab:
            hp = netlab.free_port()
            gp = netlab.free_port(exclude=(hp,))
            host, guest, emb, _ = self._start(lab, forwards=[(hp, gp)],
                                              extra=["--transmit-on-receive"])
            self._download(lab, host, guest, 20 * MiB)
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", gp)
            r = host.py(TCP_CLIENT, hp, 8 * MiB, timeout=90)
            self.assertEqual(r.stdout.strip(), "OK", r.stdout + r.stderr)
            self._stop(lab, emb)

    def test_dns_at_the_dns_address_answers_the_local_host_name(self):
        with netlab.Lab("embed") as lab:
            host, guest, emb, _ = self._start(lab)
            name = "host.usernet.internal"
            if netlab.have("dig"):
                r = guest.run(["dig", "+short", "+time=2", "+tries=3", "@" + DNS, name, "A"],
                              timeout=30)
                self.assertEqual(r.stdout.split(), [GATEWAY], r.stdout + r.stderr)
            else:
                netlab.log("note: dig (dnsutils) missing, busybox nslookup instead")
                r = guest.run(["busybox", "nslookup", name, DNS], timeout=30)
                body = r.stdout.split("Name:", 1)[-1]
                self.assertEqual(re.findall(r"Address(?: \d+)?:\s*(\d+\.\d+\.\d+\.\d+)", body),
                                 [GATEWAY], r.stdout)
            self._stop(lab, emb)

    def test_udp_echo_on_the_hosts_loopback_via_the_gateway(self):
        with netlab.Lab("embed") as lab:
            host, guest, emb, _ = self._start(lab)
            srv = host.server("udp-echo", "--bind", "127.0.0.1")
            r = guest.py(UDP_CLIENT, GATEWAY, srv.port, 20, timeout=90)
            self.assertEqual(r.stdout.strip(), "OK", r.stdout + r.stderr)
            self._stop(lab, emb)

    def test_port_forward_reaches_a_server_in_the_guest(self):
        with netlab.Lab("embed") as lab:
            hp = netlab.free_port()
            gp = netlab.free_port(exclude=(hp,))
            host, guest, emb, _ = self._start(lab, forwards=[(hp, gp)])
            # The forward listens on the host's loopback, in the namespace
            # the embedder runs in.
            r = host.run(["ss", "-ltnH", "sport = :%d" % hp])
            self.assertIn("127.0.0.1:%d" % hp, r.stdout)
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", gp)
            for size in (1000, 2 * MiB):
                r = host.py(TCP_CLIENT, hp, size, timeout=90)
                self.assertEqual(r.stdout.strip(), "OK", "%d bytes: %s%s" % (size, r.stdout, r.stderr))
            self._stop(lab, emb)
            # Gone with the embedder.
            r = host.run(["ss", "-ltnH", "sport = :%d" % hp])
            self.assertEqual(r.stdout.strip(), "")

    def test_bad_usage_and_a_missing_namespace_fail(self):
        with netlab.Lab("embed") as lab:
            host = lab.netns("host")
            r = host.run([EMBEDDER], check=False)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("usage", r.stderr)
            r = host.run([EMBEDDER, "/run/netns/%sno-such-namespace" % netlab.NS_PREFIX], check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("cannot open namespace", r.stderr)
            guest = lab.netns("guest")
            r = host.run([EMBEDDER, guest.path, "tap0", "-t", "0:80"], check=False)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("bad forward", r.stderr)
            self.assertFalse(guest.has_link("tap0"))


if __name__ == "__main__":
    netlab.main()
