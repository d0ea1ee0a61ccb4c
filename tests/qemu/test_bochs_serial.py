#!/usr/bin/env python3
"""A Bochs 2.7 guest with no NIC dialling in to usernet's --serial line with
PPP, through Bochs's serial port in `mode=socket-client` (Bochs connects to
usernet's TCP listener), as the banner's bochsrc line says.

Bochs boots the serial variant of the test guest (build-guest.sh with
USERNET_GUEST_SERIAL=1: pppd from apt's ppp and the ppp_async module) from
an ISOLINUX CD-ROM, as test_bochs_guest.py does; com1 is the console (a
file, where /init prints its markers) and com2 the line to usernet, where
/init runs pppd. The guest gets its address, route and DNS server by IPCP,
resolves a name through usernet's DNS (forwarded to a dnsmasq on the host
side) and downloads a file by that name, checked by sha256.

Slow: Bochs takes 1.5 to 7 minutes (wall clock, by the machine's load) to
reach /init; the line runs at an emulated 115200 baud."""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
sys.path.insert(0, HERE)
import netlab  # noqa: E402
from netlab import DNS, GATEWAY  # noqa: E402
import test_bochs_guest as tb  # noqa: E402  (Bochs, the ISO and bochsrc helpers)
import test_serial as ts  # noqa: E402  (dnsmasq, the lease in usernet's log)

netlab.require_tools("pppd")

KERNEL, INITRD = tb.build_guest(serial=True)
SIZE = 32 * 1024  # an emulated 115200 baud: about 10 KiB/s of payload


class BochsSerialTest(unittest.TestCase):
    def test_bochs_com_port_socket_client_dials_ppp_resolves_and_downloads(self):
        with netlab.Lab("bochs-ser") as lab:
            host = lab.netns("host")
            dport = netlab.free_port(netlab.socket.SOCK_DGRAM)
            ts.start_dnsmasq(host, dport)
            tport = netlab.free_port()
            un = lab.usernet(host, ["--serial", "tcp:127.0.0.1:%d" % tport,
                                    "--dns-upstream", "127.0.0.1:%d" % dport],
                             wait=[lambda: host.run(["ss", "-ltnH", "sport = :%d" % tport],
                                                    check=False).stdout.strip() != ""])
            # The banner's line for Bochs; the console has com1 here, so the
            # same settings go on com2.
            want = "com1: enabled=1, mode=socket-client, dev=127.0.0.1:%d" % tport
            netlab.wait_for(lambda: want in un.stdout(), 10, what="the bochsrc com1 line")
            line = want.replace("com1:", "com2:", 1)
            _, sha = lab.make_file(SIZE, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            append = ("console=ttyS0,115200 panic=-1 loglevel=4 cryptomgr.notests noresume "
                      "un.ppp un.host=%s un.port=%d un.file=file.bin" % (ts.NAME, srv.port))
            iso = tb.make_iso(lab.dir, append, KERNEL, INITRD)
            rc, serial, log = lab.path("bochsrc"), lab.path("serial.out"), lab.path("bochs.log")
            tb.bochsrc(rc, iso, serial, log, [line])
            g = tb.Bochs(lab, host, rc, serial, log)

            def seen(what, timeout):
                return g.seen(what, timeout, more=lambda: "\n--- usernet:\n" + un.describe())

            seen("UN-INIT", tb.BOOT_TIMEOUT)
            boot = time.monotonic() - g.t0
            # Bochs dialled the line when it started: the peer's lease.
            addr = ts.leased(un, "tcp:127.0.0.1:%d" % tport)
            out = seen("UN-DONE", 600)
            netlab.log("bochs serial: /init after %.0fs, done after %.0fs (wall clock)"
                       % (boot, time.monotonic() - g.t0))
            link = ts.kv(ts.marker(out, "UN-LINK ppp"))
            self.assertEqual(link.get("ip"), addr, "IPCP address; console:\n" + out[-4000:])
            self.assertEqual(link.get("peer"), GATEWAY, link)
            self.assertIn(DNS, link.get("dns", "").split(","), link)  # RFC 1877
            self.assertIn("dev_ppp0", link.get("route", ""), link)   # pppd defaultroute
            self.assertIn("UN-PING-OK", out, out[-3000:])
            self.assertEqual(ts.marker(out, "UN-RESOLVE"), "%s %s" % (ts.NAME, GATEWAY), out[-3000:])
            got = ts.marker(out, "UN-SHA256")
            self.assertIsNotNone(got, "no download; console:\n" + out[-4000:])
            dsha, dsize = got.split()[:2]
            self.assertEqual(int(dsize), SIZE, got)
            self.assertEqual(dsha, sha, "downloaded file differs")
            t = ts.kv(got)
            netlab.log("bochs serial: %d KiB in %.1fs guest time" % (SIZE // 1024, float(t["t1"]) - float(t["t0"])))
            self.assertEqual(ts.kv(ts.marker(out, "UN-DONE")).get("rc"), "0", out[-3000:])
            err = un.stderr()
            self.assertIn("PPP link up", err)
            self.assertRegex(err, r"serial tcp:127\.0\.0\.1:%d \(PPP\): \S+ connected" % tport)
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())
            g.stop()


if __name__ == "__main__":
    netlab.main()
