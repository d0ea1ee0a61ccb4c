#!/usr/bin/env python3
"""A real guest under Bochs 2.7 (Debian's bochs package) attached to usernet
with --bochs: Bochs's PCI NE2000 with `ethmod=socket` (one frame per UDP
datagram; Bochs binds ethdev=N and sends to N+1).

Bochs boots an ISOLINUX CD-ROM holding the test kernel and initramfs of
build-guest.sh (with the ne2k-pci module); its display library is `term`,
run under a pseudo-terminal, and the debugger Debian builds in is told to
continue (`c` at the `<bochs:1>` prompt). The guest's serial console goes
to a file (com1 mode=file), where /init prints its markers. The guest gets a
lease from usernet, pings the gateway and a second guest on the LAN (a
network namespace attached with --netns --config-net), which pings it back,
and downloads a file from an HTTP server on the host's loopback (10.0.2.2)
whose sha256 must match.

Everything (usernet, Bochs, the HTTP server) runs in a fresh network
namespace, so Bochs's `localhost` and its UDP ports are the test's own.
Slow: under the load of a shared 2-core machine, Bochs took 5 to 7 minutes
(wall clock) to reach /init here; the whole test 7 minutes."""

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import netlab  # noqa: E402
from netlab import DNS, GATEWAY  # noqa: E402

netlab.require_basics()
netlab.require_tools("bochs", "xorriso", "cpio", "gzip")

BOOT_TIMEOUT = float(os.environ.get("USERNET_BOCHS_TIMEOUT", "900"))

# Files from Debian's packages (package in the message when one is missing).
FILES = {
    "bios": ("/usr/share/bochs/BIOS-bochs-latest", "bochsbios"),
    "vgabios": ("/usr/share/bochs/VGABIOS-lgpl-latest", "vgabios"),
    "term": ("/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_term_gui.so", "bochs-term"),
    "socket": ("/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_eth_socket.so", "bochs"),
    "isolinux": ("/usr/lib/ISOLINUX/isolinux.bin", "isolinux"),
    "ldlinux": ("/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common"),
}
missing = ["%s (apt-get install %s)" % f for f in FILES.values() if not os.path.exists(f[0])]
if missing:
    netlab.skip_file("missing: " + ", ".join(missing))
F = {k: v[0] for k, v in FILES.items()}



def build_guest(serial=False):
    """Build (or reuse) build-guest.sh's kernel + initramfs, in the directory
    test_qemu_guest.py uses too (the build is locked and cached there); with
    `serial`, the serial-line variant test_serial.py uses."""
    d = os.environ.get("USERNET_QEMU_GUEST_DIR") or os.path.join(netlab.REPO, "build", "qemu-guest")
    env = dict(os.environ)
    if serial:
        d = d.rstrip("/") + "-serial"
        env["USERNET_GUEST_SERIAL"] = "1"
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, ".lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        r = subprocess.run(["sh", os.path.join(HERE, "build-guest.sh"), d], capture_output=True,
                           text=True, timeout=300, env=env)
    if r.returncode == 2:
        netlab.skip_file("cannot build the test guest: " + r.stderr.strip())
    if r.returncode != 0:
        raise AssertionError("build-guest.sh failed:\n" + r.stdout + r.stderr)
    netlab.log(r.stdout.strip())
    return os.path.join(d, "vmlinuz"), os.path.join(d, "initrd.gz")


KERNEL, INITRD = build_guest()


def marker(out, name):
    m = re.search(r"%s (.*)$" % name, out, re.M)
    return m and m.group(1).strip()


def kv(s):
    return dict(x.split("=", 1) for x in (s or "").split() if "=" in x)


def make_iso(workdir, append, kernel=None, initrd=None):
    """An ISOLINUX CD-ROM booting the test kernel (or `kernel`, `initrd`)
    with `append`."""
    root = os.path.join(workdir, "iso")
    os.makedirs(os.path.join(root, "isolinux"))
    shutil.copy(F["isolinux"], os.path.join(root, "isolinux", "isolinux.bin"))
    shutil.copy(F["ldlinux"], os.path.join(root, "isolinux", "ldlinux.c32"))
    shutil.copy(kernel or KERNEL, os.path.join(root, "vmlinuz"))
    shutil.copy(initrd or INITRD, os.path.join(root, "initrd.gz"))
    with open(os.path.join(root, "isolinux", "isolinux.cfg"), "w") as f:
        f.write("SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n"
                "  KERNEL /vmlinuz\n  INITRD /initrd.gz\n  APPEND %s\n" % append)
    iso = os.path.join(workdir, "guest.iso")
    r = subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-b", "isolinux/isolinux.bin",
                        "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
                        "-boot-info-table", "-J", "-R", root], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError("xorriso failed: " + r.stdout + r.stderr)
    return iso


def bochsrc(path, iso, serial, log, lines):
    """A bochsrc booting iso, with the NIC lines usernet printed."""
    with open(path, "w") as f:
        f.write("\n".join([
            "megs: 256",
            "cpu: count=1, ips=50000000",
            "romimage: file=%s" % F["bios"],
            "vgaromimage: file=%s" % F["vgabios"],
            "ata0-master: type=cdrom, path=%s, status=inserted" % iso,
            "boot: cdrom",
            "display_library: term",
            "clock: sync=slowdown",
            "com1: enabled=1, mode=file, dev=%s" % serial,
            "log: %s" % log,
            "panic: action=fatal",
            "error: action=report",
            "info: action=report",
            "debug: action=ignore",
            "mouse: enabled=0",
        ] + lines) + "\n")


class Bochs:
    """bochs -q -f RC in namespace ns, on a pseudo-terminal (the `term`
    display needs one); a thread keeps the terminal drained, keeps its tail,
    and answers the debugger's first prompt with `c` (continue)."""

    def __init__(self, lab, ns, rc, serial, log, name="bochs"):
        self.lab, self.name, self.serial, self.log = lab, name, serial, log
        self.argv = ["ip", "netns", "exec", ns.name, "bochs", "-q", "-f", rc]
        master, slave = pty.openpty()
        env = dict(os.environ, TERM="vt100")
        self.p = subprocess.Popen(self.argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                  start_new_session=True)
        os.close(slave)
        self.pid = self.p.pid
        self.master = master
        self.term = bytearray()
        self.answered = False
        self.t0 = time.monotonic()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        lab.procs.append(self)

    def _read(self):
        while True:
            try:
                r, _, _ = select.select([self.master], [], [], 0.5)
                if not r:
                    if self.p.poll() is not None:
                        return
                    continue
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.term += data
            if len(self.term) > 65536:
                del self.term[:-65536]
            if not self.answered and b"<bochs:1>" in self.term:
                self.answered = True
                os.write(self.master, b"c\r")

    def seen(self, what, timeout, more=lambda: ""):
        """The console once `what` is on it (whole lines); fails at once if
        the guest finished or Bochs exited without it (not
        netlab.wait_for), or after `timeout` s, adding more() to the
        message."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.console()
            out = out[:out.rfind("\n") + 1]  # whole lines only: Bochs may be mid-line
            if what in out:
                return out
            if "UN-DONE" in out or self.poll() is not None:
                raise AssertionError("no %s before the guest finished:\n%s%s" % (what, self.describe(), more()))
            if time.monotonic() > deadline:
                raise AssertionError("no %s after %.0fs:\n%s%s" % (what, timeout, self.describe(), more()))
            time.sleep(0.5)

    def console(self):
        try:
            with open(self.serial, "rb") as f:
                return f.read().decode(errors="replace").replace("\r", "")
        except FileNotFoundError:
            return ""

    def poll(self):
        return self.p.poll()

    def stop(self, sig=signal.SIGTERM, timeout=3.0):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
                self.p.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()
        self.reader.join(2)
        try:
            os.close(self.master)
        except OSError:
            pass
        return self.p.returncode

    def describe(self):
        rc = self.p.poll()
        log = ""
        try:
            with open(self.log, "rb") as f:
                log = f.read().decode(errors="replace")[-3000:]
        except FileNotFoundError:
            pass
        term = bytes(self.term).decode(errors="replace")
        return "%s (pid %d, %s): %s\n--- terminal (tail):\n%s\n--- bochs log (tail):\n%s\n" \
               "--- serial console:\n%s" % (self.name, self.pid, "running" if rc is None else "exit %s" % rc,
                                            " ".join(self.argv), term[-1500:], log, self.console()[-3000:])


class BochsGuestTest(unittest.TestCase):
    def test_bochs_ne2k_gets_lease_pings_peer_and_downloads(self):
        with netlab.Lab("bochs") as lab:
            host = lab.netns("host")
            peer = lab.netns("peer")
            base = netlab.free_port()
            un = lab.usernet(host, ["--bochs", base, "--netns", peer.name, "--config-net"],
                             wait=[("link", peer, "tap0")])
            # The banner: the bochsrc lines for the one instance, printed on stdout.
            netlab.wait_for(lambda: "ethdev=" in un.stdout(), 10, what="the bochsrc lines")
            lines = [l.strip() for l in un.stdout().splitlines() if l.strip().startswith(("pci:", "ne2k:"))]
            self.assertEqual(lines, ["pci: enabled=1, chipset=i440fx, slot1=ne2k",
                                     "ne2k: enabled=1, mac=b0:c4:20:00:00:00, ethmod=socket, "
                                     "ethdev=%d" % base], un.stdout())
            addrs = peer.addrs("tap0")
            self.assertTrue(addrs, "the namespace has no address")
            peer_ip = addrs[0][0]
            size = 256 * 1024
            path, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            # cryptomgr.notests, noresume: the kernel's crypto self-tests and
            # its look for a hibernation image take half of its boot under
            # Bochs (15 of 30 emulated seconds, measured here)
            append = ("console=ttyS0,115200 panic=-1 loglevel=4 cryptomgr.notests noresume "
                      "un.port=%d un.file=file.bin un.ping=%s un.linger=20" % (srv.port, peer_ip))
            iso = make_iso(lab.dir, append)
            rc, serial, log = lab.path("bochsrc"), lab.path("serial.out"), lab.path("bochs.log")
            bochsrc(rc, iso, serial, log, lines)
            g = Bochs(lab, host, rc, serial, log)

            seen = g.seen

            seen("UN-INIT", BOOT_TIMEOUT)
            boot = time.monotonic() - g.t0
            out = seen("UN-LEASE", 300)
            lease = kv(marker(out, "UN-LEASE"))
            guest_ip = lease.get("ip")
            # The namespace pings the Bochs guest while it lingers.
            netlab.wait_for(lambda: netlab.ping(peer, guest_ip, count=1, check=False).returncode == 0,
                            120, interval=0.5, what="the namespace's ping of the Bochs guest")
            out = seen("UN-DONE", 600)
            total = time.monotonic() - g.t0
            netlab.log("bochs: /init after %.0fs, done after %.0fs (wall clock)" % (boot, total))
            self.assertIn("UN-NIC ne2k-pci b0:c4:20:00:00:00", out)
            self.assertTrue(guest_ip and guest_ip.startswith("10.0.2.") and guest_ip != peer_ip, lease)
            self.assertEqual(lease.get("router"), GATEWAY, lease)
            self.assertIn(DNS, lease.get("dns", "").split(), lease)
            self.assertIn("UN-PING-OK", out)
            self.assertIn("UN-PEER-OK %s" % peer_ip, out)
            got = marker(out, "UN-SHA256")
            self.assertIsNotNone(got, "no download; console:\n" + out[-3000:])
            dsha, dsize = got.split()[:2]
            self.assertEqual(int(dsize), size, got)
            self.assertEqual(dsha, sha, "downloaded file differs")
            t = kv(got)
            netlab.log("bochs: %d KiB in %.1fs guest time" % (size // 1024, float(t["t1"]) - float(t["t0"])))
            self.assertEqual(kv(marker(out, "UN-DONE")).get("rc"), "0", out[-3000:])
            # usernet saw the Bochs NIC's MAC on that instance's port
            self.assertRegex(un.stderr(), r"guest MAC b0:c4:20:00:00:00")
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())
            g.stop()


if __name__ == "__main__":
    netlab.main()
