#!/usr/bin/env python3
"""The command line: help, version, errors, signals, pcap output."""

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY  # noqa: E402

USERNET = netlab.usernet_bin()


def run(args, timeout=10):
    """Run usernet to completion.  As root, inside a throwaway namespace, so
    that an invocation that wrongly starts up touches nothing real.  Like
    every usernet a Lab stops, it must leave no crash or sanitizer report
    on stderr (its exit status is the caller's to check)."""
    if os.geteuid() != 0:
        r = subprocess.run([USERNET] + list(args), capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    else:
        with netlab.Lab("cli") as lab:
            ns = lab.netns("sandbox")
            r = ns.run([USERNET] + list(args), timeout=timeout, check=False)
    for m in netlab.CRASH_MARKERS:
        if m in r.stderr:
            raise AssertionError("usernet %s: %r on stderr:\n%s" % (" ".join(args), m, r.stderr))
    if r.returncode < 0:
        raise AssertionError("usernet %s: killed by signal %d" % (" ".join(args), -r.returncode))
    return r


class CliTest(unittest.TestCase):
    def test_help_exits_zero_and_mentions_netns(self):
        r = run(["--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        for opt in ("--netns", "--socket", "--tap", "--pcap", "--pcap-size", "--pcap-count",
                    "-t", "-u", "--dns-upstream",
                    "--no-offload", "--max-flows", "--busy-poll"):
            self.assertIn(opt, r.stdout, "--help does not mention %s" % opt)

    def test_version_exits_zero_and_prints_a_version(self):
        r = run(["--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"\d+\.\d+")
        self.assertLessEqual(len(r.stdout.strip().splitlines()), 3, r.stdout)

    def assertExit(self, r, status, args):
        """usernet(1) EXIT STATUS: 1 start-up failed, 2 the command line is
        wrong; either way exactly one line on stderr and nothing that looks
        like a crash."""
        self.assertEqual(r.returncode, status, "%s: exit %d, expected %d; stderr %r" % (
            args, r.returncode, status, r.stderr))
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, "%s: stderr should be one line, got %r" % (args, r.stderr))
        for m in netlab.CRASH_MARKERS:
            self.assertNotIn(m, r.stderr, args)

    def test_bad_option_exits_2_with_one_line_on_stderr(self):
        for args in (["--no-such-option"], ["-Q"], ["--netns"], ["-t", "notaport"], ["-u", "70000"],
                     ["--mtu", "12"], ["--net", "10.0.2.0/99"], ["--guest-addr", "300.1.1.1"],
                     ["--max-flows", "0"], ["--max-flows", "many"], ["--busy-poll", "20000"],
                     ["--help-me"], ["stray-argument"]):
            self.assertExit(run(args), 2, args)

    def test_missing_netns_exits_1_with_one_line(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        for args in (["--netns", "un-does-not-exist-%d" % os.getpid()],
                     ["--netns", "/run/netns/un-does-not-exist-%d" % os.getpid()]):
            self.assertExit(run(args, timeout=15), 1, args)

    def test_socket_in_missing_directory_exits_1_with_one_line(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        with netlab.Lab("cli") as lab:
            host = lab.netns("host")
            args = ["--socket", lab.path("no-such-dir/s.sock")]
            self.assertExit(host.run([USERNET] + args, timeout=15, check=False), 1, args)

    def test_socket_errors_say_what_to_do_for_each_cause(self):
        """A missing directory, a file that is not a socket: each its own
        remedy in the one line."""
        if os.geteuid() != 0:
            self.skipTest("needs root")
        with netlab.Lab("cli") as lab:
            host = lab.netns("host")
            r = host.run([USERNET, "--socket", lab.path("no-such-dir/s.sock")], timeout=15, check=False)
            self.assertIn("create its directory, or give another --socket path", r.stderr)
            with open(lab.path("plain"), "w") as f:
                f.write("x")
            r = host.run([USERNET, "--socket", lab.path("plain")], timeout=15, check=False)
            self.assertExit(r, 1, "--socket on a regular file")
            self.assertIn("remove that file, or give another --socket path", r.stderr)

    def test_the_default_socket_takes_the_mtu_option(self):
        """With no attachment usernet listens on its default socket, and
        --mtu is that attachment's MTU as any other's."""
        if os.geteuid() != 0:
            self.skipTest("needs root")
        with netlab.Lab("cli") as lab:
            host = lab.netns("host")
            sock = lab.path("usernet.socket")
            un = lab.usernet(host, ["--mtu", "1400"], wait=[("socket", sock)],
                             wrapper=("env", "XDG_RUNTIME_DIR=" + lab.dir))
            netlab.wait_for(lambda: "for QEMU (MTU" in un.stderr(), 5, what="the listening line")
            self.assertIn("listening on %s for QEMU (MTU 1400)" % sock, un.stderr())
            lab.assert_alive(un)

    def test_socket_path_in_use_exits_nonzero(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        with netlab.Lab("cli") as lab:
            host = lab.netns("host")
            sock = lab.path("s.sock")
            first = lab.usernet(host, ["--socket", sock], wait=[("socket", sock)])
            r = host.run([USERNET, "--socket", sock], timeout=15, check=False)
            self.assertExit(r, 1, "second usernet on a live socket path")
            # and the first one still serves its socket
            self.assertTrue(netlab._unix_connectable(sock))
            lab.assert_alive(first)

    def test_a_failed_start_leaves_an_existing_capture_alone(self):
        # The second instance fails on the live socket path; the capture
        # it was given, the first one's, once came out truncated.
        with netlab.Lab("cli") as lab:
            host = lab.netns("host")
            sock = lab.path("s.sock")
            pcap = lab.path("live.pcap")
            with open(pcap, "wb") as f:
                f.write(b"not yet a capture, and it must stay so")
            first = lab.usernet(host, ["--socket", sock], wait=[("socket", sock)])
            r = host.run([USERNET, "--socket", sock, "--pcap", pcap], timeout=15, check=False)
            self.assertExit(r, 1, "second usernet on a live socket path")
            with open(pcap, "rb") as f:
                self.assertEqual(f.read(), b"not yet a capture, and it must stay so")
            lab.assert_alive(first)

    def test_low_descriptor_limit_is_warned_about_after_start_up(self):
        """A hard RLIMIT_NOFILE below what all flow limits together need
        (74,496 by default) gets one warning naming both numbers, once
        usernet is up; usernet still runs and stops cleanly."""
        netlab.require_tools("prlimit")
        with netlab.Lab("cli") as lab:
            host = lab.netns("host")
            sock = lab.path("s.sock")
            un = lab.usernet(host, ["--socket", sock], wait=[("socket", sock)],
                             wrapper=["prlimit", "--nofile=3000:3000"])
            netlab.wait_for(lambda: "descriptor limit" in un.stderr(), 5, what="the warning")
            self.assertRegex(un.stderr(), r"warning: the file descriptor limit \(3000\) is below the "
                                          r"75136 that the flow limits of all guests together may need")
            un.send_signal(signal.SIGTERM)
            self.assertEqual(un.wait(10), 0, un.describe())

    def test_connect_never_keeps_a_connection_to_itself(self):
        """--connect to a port of the ephemeral range with nothing listening:
        the kernel may choose that very port as the source, and the socket
        connects to itself (a namespace whose range is two ports makes it
        happen at once). usernet once took that for QEMU, held the port and
        never retried, so QEMU could not listen there. Now the listener that
        comes later binds the port and gets usernet's connection."""
        netlab.require_root()
        with netlab.Lab("cli") as lab:
            host = lab.netns("host")
            host.run(["sysctl", "-qw", "net.ipv4.ip_local_port_range=47600 47601"])
            un = lab.usernet(host, ["--connect", "127.0.0.1:47600"])
            time.sleep(1.5)  # attempts every 100 ms, doubling
            code = r"""
import socket, time
for i in range(100):  # usernet's socket may hold the port a moment
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as QEMU's listener
    try:
        s.bind(("127.0.0.1", 47600)); break
    except OSError:
        s.close(); time.sleep(0.05)
else:
    raise SystemExit("the port stayed taken")
s.listen(1); s.settimeout(10)
c, peer = s.accept()
print("accepted", peer[1])
"""
            r = host.py(code, timeout=30, check=False)
            self.assertIn("accepted", r.stdout, r.stdout + r.stderr + un.describe())
            netlab.wait_for(lambda: "connected as port" in un.stderr(), 5, what="connected")
            self.assertNotIn("52:55:0a:00:02:02", un.stderr())  # its own RA never came back
            lab.assert_alive(un)

    def test_sigterm_exits_cleanly_with_zero(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        with netlab.Lab("cli") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            sock = lab.path("s.sock")
            un = lab.usernet(host, ["--netns", guest.path, "--config-net", "--socket", sock],
                             wait=[("link", guest, "tap0"), ("socket", sock)])
            netlab.ping(guest, GATEWAY, count=1)
            un.send_signal(signal.SIGTERM)
            rc = un.wait(10)
            self.assertEqual(rc, 0, un.describe())
            # the TAP goes away with the process
            netlab.wait_for(lambda: not guest.has_link("tap0"), 5, what="tap0 removed")

    def test_sigint_exits_cleanly_with_zero(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        with netlab.Lab("cli") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            un = lab.usernet(host, ["--netns", guest.path], wait=[("link", guest, "tap0")])
            un.send_signal(signal.SIGINT)
            self.assertEqual(un.wait(10), 0, un.describe())

    def test_pcap_file_has_frames_after_traffic(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        with netlab.Lab("cli") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            pcap = lab.path("trace.pcap")
            un = lab.usernet(host, ["--netns", guest.path, "--config-net", "--pcap", pcap],
                             wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            netlab.ping(guest, GATEWAY, count=3)
            time.sleep(0.5)
            un.send_signal(signal.SIGTERM)
            self.assertEqual(un.wait(10), 0, un.describe())
            with open(pcap, "rb") as f:
                data = f.read()
            self.assertGreaterEqual(len(data), 24, "pcap shorter than its global header")
            magic = struct.unpack("<I", data[:4])[0]
            self.assertIn(magic, (0xA1B2C3D4, 0xA1B23C4D, 0xD4C3B2A1, 0x4D3CB2A1), "not a pcap file")
            endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
            linktype = struct.unpack(endian + "I", data[20:24])[0]
            self.assertEqual(linktype, 1, "pcap link type should be Ethernet (1)")
            # count records ourselves
            off, n = 24, 0
            while off + 16 <= len(data):
                incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
                off += 16 + incl
                n += 1
            self.assertGreaterEqual(n, 6, "expected >= 6 frames (3 echo requests + 3 replies)")
            if netlab.optional_tool("tshark"):
                r = subprocess.run(["tshark", "-n", "-r", pcap, "-Y", "icmp"], capture_output=True, text=True,
                                   timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                icmp = [l for l in r.stdout.splitlines() if "ICMP" in l or "Echo" in l]
                self.assertGreaterEqual(len(icmp), 1, r.stdout)

    def test_pcap_rotates_at_the_size_limit_and_keeps_count_files(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        limit = 1000000  # --pcap-size 1: one million bytes
        with netlab.Lab("cli") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            pcap = lab.path("rot.pcap")
            un = lab.usernet(host, ["--netns", guest.path, "--config-net", "--pcap", pcap,
                                    "--pcap-size", "1", "--pcap-count", "3"],
                             wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            # About 5.7 MB of broadcast frames: they cross the switch (and
            # the capture) and go no further.
            guest.run(["python3", "-c",
                       "import socket\n"
                       "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                       "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
                       "for i in range(4000):\n"
                       "    s.sendto(i.to_bytes(4, 'big') * 350, ('10.0.2.255', 9))\n"],
                      timeout=60)
            time.sleep(0.5)
            un.send_signal(signal.SIGTERM)
            self.assertEqual(un.wait(10), 0, un.describe())
            frames = 0
            for name in (pcap, pcap + ".1", pcap + ".2"):
                self.assertTrue(os.path.exists(name), "%s missing after 5.7 MB" % name)
                size = os.path.getsize(name)
                self.assertLessEqual(size, limit, "%s is %d bytes, over --pcap-size" % (name, size))
                with open(name, "rb") as f:
                    data = f.read()
                self.assertEqual(struct.unpack("<I", data[:4])[0], 0xA1B2C3D4, name)
                off = 24
                while off + 16 <= len(data):
                    off += 16 + struct.unpack("<I", data[off + 8:off + 12])[0]
                    frames += 1
                self.assertEqual(off, len(data), "%s ends in a partial record" % name)
            self.assertFalse(os.path.exists(pcap + ".3"), "more files than --pcap-count 3")
            self.assertGreater(frames, 1500, "the kept files hold too few frames")


if __name__ == "__main__":
    netlab.main()
