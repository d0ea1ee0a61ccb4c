#!/usr/bin/env python3
"""Checksum and segmentation offload on the TAP (the default; --no-offload).

At MTU 1500 a guest whose TAP offloads hands usernet TCP segments far
larger than the MTU, and usernet sends it segments as large; the capture
shows them, and data arrives intact both ways. With --no-offload no frame
exceeds the MTU. Between a TAP guest with offload and a guest attached
through the QEMU stream socket (a kernel namespace behind a plain TAP,
relayed to the socket with passt's framing, as QEMU's -netdev stream
does), usernet's switch completes the checksums and cuts the large
segments to the socket's MTU: files cross both ways intact. A guest
announcing an MSS below the smallest gso_size the switch accepts still gets
its download (usernet sends it plain segments)."""

import os
import struct
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY, MiB  # noqa: E402

netlab.require_basics()
netlab.require_tools("curl")

# A wire between a plain TAP in a namespace and usernet's stream socket:
# each frame read from the TAP goes out as a 4-byte big-endian length and
# the frame, and the other way round. No offload on this TAP.
RELAY = r"""
import fcntl, os, select, socket, struct, sys
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454ca, 0x0002, 0x1000
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"tap0", IFF_TAP | IFF_NO_PI))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
stats, biggest, frames = sys.argv[2], 0, 0
buf = b""
while True:
    r, _, _ = select.select([fd, s], [], [])
    if fd in r:
        f = os.read(fd, 65536)
        s.sendall(struct.pack("!I", len(f)) + f)
    if s in r:
        d = s.recv(1 << 20)
        if not d:
            break
        buf += d
        while len(buf) >= 4:
            n = struct.unpack("!I", buf[:4])[0]
            if len(buf) < 4 + n:
                break
            try:
                os.write(fd, buf[4:4 + n])
            except OSError:
                pass  # the TAP's queue is full: a dropped frame, as on a wire
            buf = buf[4 + n:]
            frames += 1
            if n > biggest or frames % 1000 == 0:
                biggest = max(biggest, n)
                with open(stats + ".tmp", "w") as f:
                    f.write("%d %d" % (frames, biggest))
                os.replace(stats + ".tmp", stats)
"""


def pcap_frame_lengths(path):
    """(captured length, original length, source MAC) of every record."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    off = 24
    while off + 16 <= len(data):
        _, _, incl, orig = struct.unpack("<IIII", data[off:off + 16])
        out.append((incl, orig, data[off + 16 + 6:off + 16 + 12]))
        off += 16 + incl
    return out


class OffloadTest(unittest.TestCase):
    def _guest(self, lab, extra):
        host = lab.netns("host")
        guest = lab.netns("guest")
        pcap = lab.path("trace.pcap")
        un = lab.usernet(host, ["--netns", guest.path, "--config-net", "--mtu", "1500",
                                "--pcap", pcap] + extra, wait=[("link", guest, "tap0")])
        guest.wait_link("tap0")
        netlab.wait_for(lambda: ("10.0.2.15", "24") in guest.addrs("tap0"), what="--config-net address")
        return host, guest, un, pcap

    def _both_ways(self, lab, host, guest):
        path, sha = lab.make_file(16 * MiB, "f.bin")
        srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
        base = "http://%s:%d/" % (GATEWAY, srv.port)
        out = lab.path("down.bin")
        netlab.curl(guest, ["--max-time", "100", "-o", out, base + "f.bin"], timeout=120)
        self.assertEqual(netlab.sha256_file(out), sha, "download differs")
        r = netlab.curl(guest, ["--max-time", "100", "-T", path, base + "upload"], timeout=120)
        self.assertEqual(r.stdout.split(), [sha, str(16 * MiB)], "upload differs")

    def test_large_segments_both_ways_at_mtu_1500(self):
        with netlab.Lab("offl") as lab:
            host, guest, un, pcap = self._guest(lab, [])
            guest_mac = bytes.fromhex(guest.run(["cat", "/sys/class/net/tap0/address"])
                                      .stdout.strip().replace(":", ""))
            self._both_ways(lab, host, guest)
            un.stop()
            frames = pcap_frame_lengths(pcap)
            gw_mac = None
            big_from_guest = big_to_guest = 0
            for incl, orig, src in frames:
                self.assertEqual(incl, orig, "a frame was cut in the capture")
                if orig > 1514:
                    if src == guest_mac:
                        big_from_guest += 1
                    else:
                        big_to_guest += 1
                        gw_mac = src
            self.assertGreater(big_from_guest, 10, "the guest sent no segment larger than the MTU")
            self.assertGreater(big_to_guest, 10, "usernet sent no segment larger than the MTU")
            netlab.log("frames over 1514 bytes: %d from the guest, %d to it (gateway %s)" % (
                big_from_guest, big_to_guest, gw_mac.hex() if gw_mac else "-"))

    def test_guest_with_a_small_mss_gets_its_download(self):
        # The guest announces MSS 300: usernet's segments toward it are
        # below the smallest gso_size usernet sends as GSO (496), so it
        # sends them as plain frames.
        with netlab.Lab("offl") as lab:
            host, guest, un, pcap = self._guest(lab, [])
            guest.run(["ip", "route", "add", GATEWAY + "/32", "dev", "tap0", "advmss", "300"])
            self.assertIn("advmss 300", guest.run(["ip", "route", "get", GATEWAY]).stdout)
            path, sha = lab.make_file(2 * MiB, "f.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            out = lab.path("down.bin")
            netlab.curl(guest, ["--max-time", "60", "-o", out,
                                "http://%s:%d/f.bin" % (GATEWAY, srv.port)], timeout=80)
            self.assertEqual(netlab.sha256_file(out), sha, "download differs")

    def test_guest_with_a_small_mss_uploads_at_full_speed(self):
        # A route MTU of 440 makes the guest's MSS 400: its TSO frames carry
        # gso_size 388 (timestamps), which the switch used to drop at the
        # TAP (only the guest's single-segment retransmissions got through:
        # 46 Kbit/s). The NAT takes such a frame whole.
        with netlab.Lab("offl") as lab:
            host, guest, un, pcap = self._guest(lab, [])
            guest.run(["ip", "route", "add", GATEWAY + "/32", "dev", "tap0", "mtu", "lock", "440"])
            path, sha = lab.make_file(16 * MiB, "f.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            t0 = time.monotonic()
            r = netlab.curl(guest, ["--max-time", "60", "-T", path,
                                    "http://%s:%d/upload" % (GATEWAY, srv.port)], timeout=80)
            self.assertEqual(r.stdout.split(), [sha, str(16 * MiB)], "upload differs")
            netlab.log("16 MiB up at MSS 400 in %.2f s" % (time.monotonic() - t0))
            lab.assert_alive(un)

    def test_no_offload_keeps_every_frame_within_the_mtu(self):
        with netlab.Lab("nooffl") as lab:
            host, guest, un, pcap = self._guest(lab, ["--no-offload"])
            self._both_ways(lab, host, guest)
            un.stop()
            frames = pcap_frame_lengths(pcap)
            self.assertGreater(len(frames), 1000)
            self.assertLessEqual(max(orig for _, orig, _ in frames), 1514)

    def test_tap_guest_with_offload_and_stream_guest_exchange_files(self):
        with netlab.Lab("offmix") as lab:
            host = lab.netns("host")
            a = lab.netns("a")
            b = lab.netns("b")
            sock = lab.path("qemu.sock")
            un = lab.usernet(host, ["--netns", a.path, "--mtu", "1500", "--socket", sock],
                             wait=[("link", a, "tap0"), ("socket", sock)])
            stats = lab.path("relay.stats")
            relay = b.popen([sys.executable, "-c", RELAY, sock, stats], name="relay")
            netlab.wait_for(lambda: b.has_link("tap0") or relay.poll() is not None,
                            what="relay TAP")
            lab.assert_alive(relay)
            la = netlab.dhcp(lab, a)
            lb = netlab.dhcp(lab, b)
            path, sha = lab.make_file(16 * MiB, "x.bin")
            # a's large segments go to b through the switch's software
            # segmentation; b's plain frames go to a's TAP with a plain header.
            for src, src_ip, dst in ((a, la["ip"], b), (b, lb["ip"], a)):
                srv = src.server("http", "--bind", "0.0.0.0", "--dir", lab.dir)
                out = lab.path("got-%s.bin" % dst.role)
                netlab.curl(dst, ["--max-time", "100", "-o", out,
                                  "http://%s:%d/x.bin" % (src_ip, srv.port)], timeout=120)
                self.assertEqual(netlab.sha256_file(out), sha, "%s -> %s differs" % (src.role, dst.role))
            lab.assert_alive(un)
            lab.assert_alive(relay)
            with open(stats) as f:
                frames, biggest = map(int, f.read().split())
            netlab.log("relay: %d frames to b, the largest %d bytes" % (frames, biggest))
            self.assertGreater(frames, 11000, "fewer frames than 16 MiB in 1448-byte pieces")
            self.assertLessEqual(biggest, 1514, "a frame over the stream port's MTU reached b")

    def test_existing_tap_is_left_without_offload_for_its_next_user(self):
        # A persistent TAP keeps its offload settings across users: after a
        # usernet with offload, one with --no-offload (no header to tell a
        # large or partially checksummed frame) must still work.
        with netlab.Lab("offtap") as lab:
            g = lab.netns("g")
            for cmd in (["ip", "tuntap", "add", "dev", "utap", "mode", "tap"],
                        ["ip", "link", "set", "lo", "up"],
                        ["ip", "link", "set", "utap", "up", "mtu", "1500"],
                        ["ip", "addr", "add", "10.0.2.15/24", "dev", "utap"],
                        ["ip", "route", "add", "default", "via", GATEWAY]):
                g.run(cmd)
            path, sha = lab.make_file(16 * MiB, "t.bin")
            srv = g.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            url = "http://%s:%d/t.bin" % (GATEWAY, srv.port)
            for i, extra in enumerate(([], ["--no-offload"])):
                un = lab.usernet(g, ["--tap", "utap"] + extra, name="usernet%d" % i)
                netlab.wait_for(lambda: netlab.ping(g, GATEWAY, count=1, check=False).returncode == 0,
                                20, what="gateway reachable through utap")
                out = lab.path("t%d.bin" % i)
                netlab.curl(g, ["--max-time", "60", "-o", out, url], timeout=90)
                self.assertEqual(netlab.sha256_file(out), sha, "transfer %d (%s) differs" % (i, extra))
                un.stop()


if __name__ == "__main__":
    netlab.main()
