#!/usr/bin/env python3
"""TFTP (--tftp DIR) at the gateway address with real clients in a
namespace guest: busybox tftp, tftp-hpa, atftp (every option: blksize, tsize,
timeout, windowsize) and curl, over IPv4 and IPv6 (also at the gateway's
link-local address); a 32 MiB file in 512-byte
blocks (block numbers roll over) with its checksum; netascii; names that
lead out of DIR and write requests refused; 20 transfers at once."""

import os
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY, GATEWAY6, MiB  # noqa: E402

netlab.require_basics()
netlab.require_tools("atftp", "tftp", "curl")  # atftp, tftp-hpa


class TftpLab:
    def __init__(self, lab):
        self.lab = lab
        self.root = lab.path("tftp")
        os.mkdir(self.root)
        self.host = lab.netns("host")
        self.guest = lab.netns("guest")
        self.un = lab.usernet(self.host, ["--netns", self.guest.path, "--config-net",
                                          "--tftp", self.root],
                              wait=[("link", self.guest, "tap0")])
        netlab.wait_for(lambda: self.guest.addrs("tap0"), 10, what="address from --config-net")

    def file(self, size, name):
        path, sha = self.lab.make_file(size, name)
        os.rename(path, os.path.join(self.root, name))
        return sha

    def got(self, name):
        return self.lab.path(name)


class TftpTest(unittest.TestCase):
    def test_a_32_mib_file_with_every_client_and_option(self):
        with netlab.Lab("tftp") as lab:
            t = TftpLab(lab)
            sha = t.file(32 * MiB, "big.bin")
            g = t.guest
            # busybox, 512-byte blocks: 65537 of them, so the block number
            # rolls over.
            g.run(["busybox", "tftp", "-g", "-r", "big.bin", "-l", t.got("bb"), GATEWAY], timeout=300)
            self.assertEqual(netlab.sha256_file(t.got("bb")), sha, "busybox tftp")
            # busybox with blksize.
            g.run(["busybox", "tftp", "-g", "-b", "1468", "-r", "/big.bin", "-l", t.got("bbb"), GATEWAY],
                  timeout=300)
            self.assertEqual(netlab.sha256_file(t.got("bbb")), sha, "busybox tftp -b 1468")
            # atftp with every option.
            r = g.run(["atftp", "--get", "-r", "big.bin", "-l", t.got("at"), "--option", "blksize 1428",
                       "--option", "tsize 0", "--option", "timeout 2", "--option", "windowsize 16",
                       "--verbose", GATEWAY], timeout=300)
            self.assertEqual(netlab.sha256_file(t.got("at")), sha, "atftp: " + r.stdout + r.stderr)
            # tftp-hpa over IPv4 and IPv6.
            g.run(["tftp", "-4", GATEWAY, "-m", "binary", "-c", "get", "big.bin", t.got("hpa")], timeout=300)
            self.assertEqual(netlab.sha256_file(t.got("hpa")), sha, "tftp-hpa")
            netlab.wait_for(lambda: "tentative" not in g.run(["ip", "-6", "addr", "show", "dev", "tap0"]).stdout,
                            15, what="IPv6 addresses out of duplicate address detection")
            g.run(["tftp", "-6", GATEWAY6, "-m", "binary", "-c", "get", "big.bin", t.got("hpa6")], timeout=300)
            self.assertEqual(netlab.sha256_file(t.got("hpa6")), sha, "tftp-hpa -6")
            # curl (tsize and blksize), IPv4 and IPv6.
            netlab.curl(g, ["--tftp-blksize", "8192", "-o", t.got("c"), "tftp://%s/big.bin" % GATEWAY])
            self.assertEqual(netlab.sha256_file(t.got("c")), sha, "curl")
            netlab.curl(g, ["-g", "-o", t.got("c6"), "tftp://[%s]/big.bin" % GATEWAY6])
            self.assertEqual(netlab.sha256_file(t.got("c6")), sha, "curl -6")
            lab.assert_alive(t.un)

    def test_netascii(self):
        with netlab.Lab("tftp") as lab:
            t = TftpLab(lab)
            text = b"one\ntwo\r\nthree\rfour\n" * 500
            with open(os.path.join(t.root, "t.txt"), "wb") as f:
                f.write(text)
            # tftp-hpa's ascii mode is netascii: it turns CR LF and CR NUL
            # back into the file's own bytes.
            t.guest.run(["tftp", "-4", GATEWAY, "-m", "ascii", "-c", "get", "t.txt", t.got("t")])
            with open(t.got("t"), "rb") as f:
                self.assertEqual(f.read(), text)

    def test_nothing_outside_the_directory_and_no_writes(self):
        with netlab.Lab("tftp") as lab:
            t = TftpLab(lab)
            with open(lab.path("secret"), "w") as f:
                f.write("not for guests\n")
            os.symlink(lab.path("secret"), os.path.join(t.root, "escape"))
            os.mkdir(os.path.join(t.root, "sub"))
            for name in ("../secret", "/../secret", "sub/../../secret", "escape",
                         lab.path("secret"), "sub"):
                out = t.got("x")
                if os.path.exists(out):
                    os.unlink(out)
                r = t.guest.run(["busybox", "tftp", "-g", "-r", name, "-l", out, GATEWAY], check=False)
                self.assertNotEqual(r.returncode, 0, name)
                self.assertRegex(r.stderr, r"server error: \((1|2)\)", name)
                if os.path.exists(out):
                    with open(out) as f:
                        self.assertNotIn("not for guests", f.read(), name)
            r = t.guest.run(["tftp", "-4", GATEWAY, "-c", "get", "../secret", t.got("y")], check=False)
            self.assertIn("Error code 2", r.stdout + r.stderr)
            # Write requests: refused, nothing written.
            with open(lab.path("up"), "w") as f:
                f.write("upload\n")
            r = t.guest.run(["busybox", "tftp", "-p", "-l", lab.path("up"), "-r", "up", GATEWAY], check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("write requests are refused", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(t.root, "up")))
            lab.assert_alive(t.un)

    def test_at_the_gateways_link_local_address(self):
        # A guest's default IPv6 router is the gateway's link-local address
        # (where its advertisements come from; --config-net routes by
        # fec0::2 instead). TFTP there is the gateway's own, as at fec0::2,
        # and nothing listens on the host's [::1]:69 where the NAT would
        # take it.
        with netlab.Lab("tftp") as lab:
            t = TftpLab(lab)
            sha = t.file(300 * 1024, "ll.bin")
            g = t.guest
            netlab.wait_for(lambda: "tentative" not in g.run(["ip", "-6", "addr", "show", "dev", "tap0"]).stdout,
                            15, what="IPv6 addresses out of duplicate address detection")
            g.run(["busybox", "ping", "-c", "1", "-W", "5", GATEWAY6])
            # The gateway's link-local address, which router advertisements
            # come from (a SLAAC guest's default router).
            ll = netlab.GATEWAY6_LL
            netlab.curl(g, ["-g", "--max-time", "30", "-o", t.got("ll"), "tftp://[%s%%25tap0]/ll.bin" % ll])
            self.assertEqual(netlab.sha256_file(t.got("ll")), sha, "curl at " + ll)
            lab.assert_alive(t.un)

    def test_twenty_transfers_at_once(self):
        with netlab.Lab("tftp") as lab:
            t = TftpLab(lab)
            sha = t.file(2 * MiB, "f.bin")
            procs = [t.guest.popen(["busybox", "tftp", "-g", "-b", "1400", "-r", "f.bin", "-l",
                                    t.got("f%d" % i), GATEWAY], name="tftp%d" % i)
                     for i in range(20)]
            for p in procs:
                self.assertEqual(p.wait(120), 0, p.describe())
            for i in range(20):
                self.assertEqual(netlab.sha256_file(t.got("f%d" % i)), sha, i)
            lab.assert_alive(t.un)


if __name__ == "__main__":
    netlab.main()
