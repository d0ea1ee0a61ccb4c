#!/usr/bin/env python3
"""Guests with no NIC at all on usernet's --serial line, as with the
original slirp: QEMU (TCG) boots the serial variant of the test guest
(build-guest.sh with USERNET_GUEST_SERIAL=1: pppd from apt's ppp, slattach
from net-tools, the ppp_async and slip modules) with -nodefaults (no NIC),
its console on ttyS0 and ttyS1 on usernet's serial line.

- PPP over a unix socket (QEMU -serial unix:PATH): the real pppd gets its
  address, default route and DNS server by IPCP, resolves a name through
  usernet's DNS (forwarded to a dnsmasq the test starts on the host side)
  and downloads a file by that name, checked by sha256.
- SLIP over TCP (QEMU -serial tcp:) and PPP over a pty (QEMU -serial
  /dev/pts/N) at once: slattach with the address usernet leased for the
  line, both download, and each pings the other across the LAN (the ports
  answer ARP for their peers)."""

import os
import re
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import netlab  # noqa: E402
from netlab import DNS, GATEWAY  # noqa: E402

netlab.require_basics()
netlab.require_tools("qemu-system-x86_64", "cpio", "gzip", "dnsmasq", "pppd", "slattach")

BOOT_TIMEOUT = float(os.environ.get("USERNET_QEMU_TIMEOUT", "180"))
NAME = "files.test"
SIZE = 96 * 1024  # QEMU's UART under TCG: about 50 KiB/s (bench/serial_ppp.py)


def build_guest():
    d = os.environ.get("USERNET_QEMU_GUEST_DIR") or os.path.join(netlab.REPO, "build", "qemu-guest")
    d = d.rstrip("/") + "-serial"
    os.makedirs(d, exist_ok=True)
    env = dict(os.environ, USERNET_GUEST_SERIAL="1")
    import fcntl
    with open(os.path.join(d, ".lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        r = subprocess.run(["sh", os.path.join(HERE, "build-guest.sh"), d], capture_output=True,
                           text=True, timeout=300, env=env)
    if r.returncode == 2:
        netlab.skip_file("cannot build the serial test guest: " + r.stderr.strip())
    if r.returncode != 0:
        raise AssertionError("build-guest.sh failed:\n" + r.stdout + r.stderr)
    netlab.log(r.stdout.strip())
    return os.path.join(d, "vmlinuz"), os.path.join(d, "initrd.gz")


KERNEL, INITRD = build_guest()


def start_dnsmasq(host, port):
    argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--listen-address=127.0.0.1", "--port=%d" % port,
            "--pid-file=", "--user=root", "--log-queries", "--log-facility=-",
            "--address=/%s/%s" % (NAME, GATEWAY)]
    p = host.popen(argv, name="dnsmasq")

    def up():
        if p.poll() is not None:
            raise AssertionError("dnsmasq died:\n" + p.describe())
        return "127.0.0.1" in host.run(["ss", "-lunH", "sport = :%d" % port], check=False).stdout
    netlab.wait_for(up, 10, what="dnsmasq listening")
    return p


class SerialGuest:
    """One QEMU with no NIC: console on stdio (ttyS0), ttyS1 on `line`."""

    def __init__(self, ns, line, append, name):
        self.t0 = time.monotonic()
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
                "-nodefaults", "-monitor", "none", "-serial", "stdio", "-serial", line,
                "-kernel", KERNEL, "-initrd", INITRD,
                "-append", "console=ttyS0 panic=-1 loglevel=4 " + append]
        self.name = name
        self.p = ns.popen(argv, name=name)

    def wait_done(self, timeout=BOOT_TIMEOUT):
        def done():
            if "UN-DONE" in self.p.stdout():
                return True
            if self.p.poll() is not None:
                raise AssertionError("QEMU exited before UN-DONE:\n" + self.p.describe())
        try:
            netlab.wait_for(done, timeout, interval=0.3, what="%s to finish" % self.name)
        except AssertionError:
            raise AssertionError("%s did not finish:\n%s" % (self.name, self.p.describe()))
        self.elapsed = time.monotonic() - self.t0
        try:
            self.p.wait(20)
        except subprocess.TimeoutExpired:
            pass
        finally:
            self.p.stop()
        return self.p.stdout().replace("\r", "")


def marker(out, name):
    m = re.search(r"^%s (.*)$" % name, out, re.M)
    return m and m.group(1).strip()


def kv(s):
    return dict(x.split("=", 1) for x in (s or "").split() if "=" in x)


def leased(un, what):
    """The address usernet logged as leased for the line described by `what`."""
    found = {}

    def check():
        if un.poll() is not None:
            raise AssertionError("usernet exited:\n" + un.describe())
        m = re.search(r"serial %s .*: leased (\S+) for the peer" % re.escape(what), un.stderr())
        if m:
            found["addr"] = m.group(1)
            return True
    netlab.wait_for(check, 15, what="a lease for %s" % what)
    return found["addr"]


class SerialTest(unittest.TestCase):
    def check_download(self, out, sha):
        got = marker(out, "UN-SHA256")
        self.assertIsNotNone(got, "no download; console:\n" + out[-4000:])
        dsha, dsize = got.split()[:2]
        self.assertEqual(int(dsize), SIZE, got)
        self.assertEqual(dsha, sha, "downloaded file differs")
        t = kv(got)
        return float(t["t1"]) - float(t["t0"])

    def test_ppp_over_unix_socket_ipcp_dns_and_download(self):
        with netlab.Lab("ser-ppp") as lab:
            host = lab.netns("host")
            dport = netlab.free_port(netlab.socket.SOCK_DGRAM)
            start_dnsmasq(host, dport)
            sock = lab.path("serial.sock")
            un = lab.usernet(host, ["--serial", "unix:" + sock, "--dns-upstream", "127.0.0.1:%d" % dport],
                             wait=[("socket", sock)])
            _, sha = lab.make_file(SIZE, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            # The lease is taken for a PPP peer once one connects (QEMU does
            # at start; the readiness check above already did).
            g = SerialGuest(host, "unix:" + sock,
                            "un.ppp un.host=%s un.port=%d un.file=file.bin" % (NAME, srv.port), "qemu-ppp")
            addr = leased(un, "unix:" + sock)
            out = g.wait_done()
            link = kv(marker(out, "UN-LINK ppp"))
            self.assertEqual(link.get("ip"), addr, "IPCP address; console:\n" + out[-4000:])
            self.assertEqual(link.get("peer"), GATEWAY, link)
            self.assertIn(DNS, link.get("dns", "").split(","), link)  # RFC 1877
            self.assertIn("dev_ppp0", link.get("route", ""), link)   # pppd defaultroute
            self.assertIn("UN-PING-OK", out, out[-3000:])
            self.assertEqual(marker(out, "UN-RESOLVE"), "%s %s" % (NAME, GATEWAY), out[-3000:])
            secs = self.check_download(out, sha)
            self.assertEqual(kv(marker(out, "UN-DONE")).get("rc"), "0", out[-3000:])
            netlab.log("PPP over unix: %d KiB in %.1fs guest time (%.1f KiB/s), %.0fs wall clock"
                       % (SIZE // 1024, secs, SIZE / 1024 / max(secs, 0.01), g.elapsed))
            log = un.stderr()
            self.assertIn("PPP link up", log)
            self.assertRegex(log, r"serial unix:.*: pid \d+ connected \(switch port \d+, MAC 02:53:")
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())

    def test_slip_over_tcp_and_ppp_over_pty_share_the_lan(self):
        with netlab.Lab("ser-two") as lab:
            host = lab.netns("host")
            dport = netlab.free_port(netlab.socket.SOCK_DGRAM)
            start_dnsmasq(host, dport)
            tport = netlab.free_port()
            link = lab.path("pty")
            un = lab.usernet(host, ["--serial", "tcp:127.0.0.1:%d,proto=slip" % tport,
                                    "--serial", "pty:" + link,
                                    "--dns-upstream", "127.0.0.1:%d" % dport],
                             wait=[lambda: os.path.islink(link)])
            slip_addr = leased(un, "tcp:127.0.0.1:%d" % tport)
            ppp_addr = leased(un, "pty:" + link)
            self.assertNotEqual(slip_addr, ppp_addr)
            pts = os.readlink(link)
            self.assertTrue(pts.startswith("/dev/pts/"), pts)
            # the banner names the pty, the QEMU and Bochs lines for TCP
            banner = un.stdout()
            self.assertIn("-serial " + pts, banner)
            self.assertIn("com1: enabled=1, mode=socket-client, dev=127.0.0.1:%d" % tport, banner)
            _, sha = lab.make_file(SIZE, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            common = "un.host=%s un.port=%d un.file=file.bin un.linger=20" % (NAME, srv.port)
            gs = SerialGuest(host, "tcp:127.0.0.1:%d" % tport,
                             "un.slip=%s un.ping=%s %s" % (slip_addr, ppp_addr, common), "qemu-slip")
            gp = SerialGuest(host, pts, "un.ppp un.ping=%s %s" % (slip_addr, common), "qemu-pty")
            outs = gs.wait_done(), gp.wait_done(timeout=60)
            for name, out, me, other in (("SLIP/tcp", outs[0], slip_addr, ppp_addr),
                                         ("PPP/pty", outs[1], ppp_addr, slip_addr)):
                self.assertEqual(kv(marker(out, "UN-LINK \\w+")).get("ip"), me, out[-4000:])
                self.assertEqual(marker(out, "UN-RESOLVE"), "%s %s" % (NAME, GATEWAY), out[-3000:])
                self.assertIn("UN-PEER-OK %s" % other, out, out[-3000:])
                secs = self.check_download(out, sha)
                netlab.log("%s: %d KiB in %.1fs guest time" % (name, SIZE // 1024, secs))
                self.assertEqual(kv(marker(out, "UN-DONE")).get("rc"), "0", out[-3000:])
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())


if __name__ == "__main__":
    netlab.main()
