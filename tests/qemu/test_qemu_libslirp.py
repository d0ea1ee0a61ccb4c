#!/usr/bin/env python3
"""Debian's own QEMU 7.2 with -netdev user on usernet's libslirp.so.0
(LD_LIBRARY_PATH, nothing else changed): the busybox guest of build-guest.sh
gets its lease by DHCP, resolves names at 10.0.2.3, pings the gateway,
downloads and uploads with checksums (virtio-net and ne2k_pci); hostfwd=
reaches an httpd in the guest; guestfwd= reaches a host TCP server (QEMU's
chardev path: slirp_add_guestfwd / slirp_socket_recv) and a command
(slirp_add_exec); the HMP commands hostfwd_add, hostfwd_remove and
info usernet work; restrict=on keeps the guest off the host; tftp= and
bootfile= boot a diskless guest through QEMU's iPXE. Each test checks in
/proc/PID/maps that QEMU mapped usernet's library, not the system's."""

import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
sys.path.insert(0, HERE)
import netlab  # noqa: E402
from netlab import GATEWAY, GUEST, MiB  # noqa: E402

netlab.require_basics()
netlab.require_tools("qemu-system-x86_64", "cpio", "gzip", "curl")

import test_qemu_guest as qg  # noqa: E402  (builds the guest once)

LIBDIR, LIB_ENV = netlab.libslirp()
LIB = os.path.join(LIBDIR, "libslirp.so.0")


def lib_env():
    return list(LIB_ENV)


class UserGuest:
    """QEMU with -netdev user on our library, serial console on stdio (a
    pipe, so the test can type into the guest's shell), HMP on a socket."""

    def __init__(self, lab, ns, netdev, nic="virtio-net-pci", append="", netboot=False, name="qemu"):
        self.lab = lab
        self.t0 = time.monotonic()
        self.mon_path = lab.path(name + ".mon")
        argv = ["env"] + lib_env() + [
                "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
                "-nodefaults", "-serial", "stdio",
                "-monitor", "unix:%s,server=on,wait=off" % self.mon_path,
                "-netdev", "user,id=n0," + netdev]
        if netboot:
            argv += ["-boot", "n", "-device", "%s,netdev=n0,mac=52:54:00:12:34:56" % nic]
        else:
            argv += ["-kernel", qg.KERNEL, "-initrd", qg.INITRD,
                     "-append", "console=ttyS0 panic=-1 loglevel=4 " + append,
                     "-device", "%s,netdev=n0,mac=52:54:00:12:34:56,romfile=" % nic]
        self.p = ns.popen(argv, name=name, stdin=subprocess.PIPE)
        self.n = 0

    def console(self):
        return self.p.stdout().replace("\r", "")

    def wait_marker(self, pattern, timeout=qg.BOOT_TIMEOUT):
        def seen():
            m = re.search(pattern, self.console(), re.M)
            if m:
                return m
            if self.p.poll() is not None:
                raise AssertionError("QEMU exited:\n" + self.p.describe())
        try:
            return netlab.wait_for(seen, timeout, interval=0.2, what=pattern)
        except AssertionError:
            raise AssertionError("no %r on the console:\n%s\n%s" % (pattern, self.console()[-3000:],
                                                                   self.p.stderr()[-2000:]))

    def sh(self, cmd, timeout=60):
        """Runs cmd in the guest's shell; returns (status, output)."""
        self.n += 1
        tag = "UN-M%d" % self.n
        start = len(self.console())
        self.p.p.stdin.write(("%s; echo %s $?\n" % (cmd, tag)).encode())
        self.p.p.stdin.flush()
        m = self.wait_marker(r"^%s (\d+)$" % tag, timeout)
        return int(m.group(1)), self.console()[start:m.start()]

    def monitor(self, command, timeout=10):
        """One HMP command; returns what QEMU printed for it."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        netlab.wait_for(lambda: os.path.exists(self.mon_path), 10, what="QEMU's monitor socket")
        s.connect(self.mon_path)
        buf = b""
        try:
            while not buf.endswith(b"(qemu) "):
                buf += s.recv(4096)
            s.sendall(command.encode() + b"\n")
            buf = b""
            # the echo of the command, its output, then the next prompt
            while not buf.endswith(b"(qemu) "):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        finally:
            s.close()
        text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", buf.decode(errors="replace")).replace("\r", "")
        body = text.split("\n", 1)[1] if "\n" in text else ""
        return body[:-len("(qemu) ")] if body.endswith("(qemu) ") else body

    def assert_maps_our_library(self, test):
        with open("/proc/%d/maps" % self.p.pid) as f:
            maps = f.read()
        libs = set(line.split()[-1] for line in maps.splitlines() if "libslirp" in line)
        test.assertIn(os.path.realpath(LIB), {os.path.realpath(x) for x in libs}, maps)
        test.assertFalse([x for x in libs if x.startswith("/usr/")], libs)

    def stop(self, test):
        """Stops QEMU (SIGTERM: a clean exit, slirp_cleanup() included)
        and checks that it exited cleanly."""
        rc = self.p.stop(timeout=20)
        test.assertEqual(rc, 0, "QEMU: exit %s\n%s" % (rc, self.p.stderr()[-3000:]))


def kv(s):
    return dict(x.split("=", 1) for x in s.split() if "=" in x)


def marker(out, name):
    m = re.search(r"^%s (.*)$" % name, out, re.M)
    return m and m.group(1).strip()


def b64_sha(path):
    """The guest uploads its download base64-encoded (busybox wget posts a
    file as a C string); the server answers that text's sha256."""
    with open(path, "rb") as f:
        return hashlib.sha256(base64.encodebytes(f.read())).hexdigest()


def http_get(ns, port, path):
    return ns.run(["curl", "-sS", "--max-time", "10", "http://127.0.0.1:%d/%s" % (port, path)],
                  check=False)


class QemuLibslirpTest(unittest.TestCase):
    def test_ldd_resolves_libslirp_to_usernets(self):
        env = dict(os.environ, LD_LIBRARY_PATH=LIBDIR)
        out = subprocess.run(["ldd", shutil.which("qemu-system-x86_64")], env=env, capture_output=True,
                             text=True, check=True).stdout
        line = [x for x in out.splitlines() if "libslirp.so.0" in x]
        self.assertTrue(line, out)
        self.assertIn(os.path.realpath(LIBDIR), os.path.realpath(line[0].split("=>")[1].split()[0]))

    def test_virtio_guest_dhcp_dns_download_upload_forwards_and_monitor(self):
        with netlab.Lab("qls") as lab:
            host = lab.netns("host")
            size = 4 * MiB
            path, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            echo = host.server("tcp-echo", "--bind", "127.0.0.1")
            slow = host.server("tcp-echo", "--bind", "127.0.0.1", "--delay", "1")
            hp, hp2 = netlab.free_port(), netlab.free_port()
            netdev = ("hostfwd=tcp:127.0.0.1:%d-:8080,"
                      "guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:%d,"
                      "guestfwd=tcp:10.0.2.102:81-tcp:127.0.0.1:%d,"
                      "guestfwd=tcp:10.0.2.101:7-cmd:echo from-the-command"
                      % (hp, echo.port, slow.port))
            g = UserGuest(lab, host, netdev,
                          append="un.port=%d un.file=file.bin un.upload un.host=host.usernet.internal "
                                 "un.shell" % srv.port)
            g.wait_marker(r"^UN-SHELL ")
            out = g.console()
            lease = kv(marker(out, "UN-LEASE") or "")
            self.assertEqual(lease.get("ip"), GUEST, out[-3000:])
            self.assertEqual(lease.get("router"), GATEWAY, out[-3000:])
            self.assertEqual(lease.get("dns"), "10.0.2.3", out[-3000:])
            # un.host: the download went to a name resolved at 10.0.2.3
            self.assertEqual((marker(out, "UN-RESOLVE") or "").split()[-1:], [GATEWAY], out[-3000:])
            got = marker(out, "UN-SHA256")
            self.assertIsNotNone(got, out[-3000:])
            self.assertEqual(got.split()[:2], [sha, str(size)])
            self.assertIsNotNone(marker(out, "UN-UPLOAD"), out[-3000:])
            self.assertEqual(marker(out, "UN-UPLOAD").split()[0], b64_sha(path))
            self.assertIn("UN-SHELL rc=0", out)
            g.assert_maps_our_library(self)

            rc, text = g.sh("ping -c 2 -W 2 %s" % GATEWAY)
            self.assertEqual(rc, 0, text)
            # guestfwd to a chardev (QEMU connects it to the echo server)
            # (stdin stays open for a while: busybox nc exits at its EOF,
            # which may come before the echo does)
            rc, text = g.sh("(echo hello-chardev; sleep 5) | timeout 10 nc 10.0.2.100 80")
            self.assertIn("hello-chardev\n", text.split("\n", 1)[1], text)
            # a client that half-closes (its FIN with the request) still
            # gets the answer, as libslirp's CLOSE_WAIT gives it
            rc, text = g.sh("echo hello-halfclose | timeout 10 nc 10.0.2.102 81")
            self.assertIn("hello-halfclose\n", text.split("\n", 1)[1], text)
            # guestfwd to a command
            rc, text = g.sh("sleep 8 | timeout 10 nc 10.0.2.101 7")
            self.assertIn("from-the-command", text.split("\n", 1)[1], text)

            # hostfwd=: a web server in the guest, reached from the host
            rc, text = g.sh("mkdir -p /www && echo guest-page > /www/index.html && "
                            "busybox httpd -p 8080 -h /www")
            self.assertEqual(rc, 0, text)
            r = http_get(host, hp, "index.html")
            self.assertEqual(r.stdout, "guest-page\n", r.stderr)

            # HMP: hostfwd_add, info usernet, hostfwd_remove
            self.assertEqual(g.monitor("hostfwd_add tcp:127.0.0.1:%d-:8080" % hp2).strip(), "")
            r = http_get(host, hp2, "index.html")
            self.assertEqual(r.stdout, "guest-page\n", r.stderr)
            info = g.monitor("info usernet")
            self.assertIn("Protocol[State]", info)
            fwd_rows = [x for x in info.splitlines() if "TCP[HOST_FORWARD]" in x]
            ports = {int(x.split()[3]) for x in fwd_rows}
            self.assertTrue({hp, hp2} <= ports, info)
            self.assertIn("removed", g.monitor("hostfwd_remove tcp:127.0.0.1:%d" % hp2))
            self.assertIn("not found", g.monitor("hostfwd_remove tcp:127.0.0.1:%d" % hp2))
            r = http_get(host, hp2, "index.html")
            self.assertNotEqual(r.returncode, 0, "removed forward still answers")
            r = http_get(host, hp, "index.html")
            self.assertEqual(r.stdout, "guest-page\n", r.stderr)
            g.stop(self)

    def download_and_upload(self, tag, nic, size):
        """A guest with `nic` downloads a file of `size` and posts it back,
        both checked."""
        with netlab.Lab(tag) as lab:
            host = lab.netns("host")
            path, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            g = UserGuest(lab, host, "ipv6=off", nic=nic,
                          append="un.port=%d un.file=file.bin un.upload" % srv.port)
            m = g.wait_marker(r"^UN-DONE (.*)$")
            out = g.console()
            self.assertEqual(kv(m.group(1)).get("rc"), "0", out[-3000:])
            self.assertEqual(marker(out, "UN-SHA256").split()[:2], [sha, str(size)])
            self.assertEqual(marker(out, "UN-UPLOAD").split()[0], b64_sha(path))
            g.stop(self)

    def test_ne2k_guest_downloads_and_uploads(self):
        self.download_and_upload("qlsne", "ne2k_pci", 1 * MiB)

    def test_pcnet_guest_downloads_and_uploads(self):
        # QEMU's pcnet transmits the guest's next frame from inside its
        # receive path: slirp_input() comes from inside the send callback.
        # Handled at once, a TCP translator ran inside another's send loop
        # and sent segments under wrong sequence numbers (9 downloads in 10
        # corrupted); now such frames wait until the outer call returns.
        self.download_and_upload("qlspc", "pcnet", 2 * MiB)

    def test_restrict_on_keeps_the_guest_off_the_host_but_not_off_its_forwards(self):
        with netlab.Lab("qlsr") as lab:
            host = lab.netns("host")
            _, sha = lab.make_file(64 * 1024, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            g = UserGuest(lab, host, "restrict=on,guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:%d" % srv.port,
                          append="un.port=%d un.file=file.bin un.shell" % srv.port)
            g.wait_marker(r"^UN-SHELL ")
            out = g.console()
            self.assertEqual(kv(marker(out, "UN-LEASE") or "").get("ip"), GUEST, out[-3000:])
            self.assertIsNone(marker(out, "UN-SHA256"), "restrict=on let the guest reach the host")
            self.assertIn("UN-ERROR wget failed", out)
            rc, text = g.sh("timeout 20 wget -O - http://10.0.2.100/file.bin | sha256sum")
            self.assertIn(sha, text, text)
            g.assert_maps_our_library(self)
            g.stop(self)

    def test_diskless_guest_boots_from_tftp_and_bootfile(self):
        with netlab.Lab("qlsnb") as lab:
            host = lab.netns("host")
            tftp = lab.path("tftp")
            os.mkdir(tftp)
            shutil.copy(qg.KERNEL, os.path.join(tftp, "vmlinuz"))
            shutil.copy(qg.INITRD, os.path.join(tftp, "initrd.gz"))
            size = 1 * MiB
            _, sha = lab.make_file(size, "file.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            with open(os.path.join(tftp, "boot.ipxe"), "w") as f:
                f.write("#!ipxe\nkernel vmlinuz %s\ninitrd initrd.gz\nboot\n" %
                        qg.cmdline(srv.port, "file.bin"))
            g = UserGuest(lab, host, "tftp=%s,bootfile=boot.ipxe" % tftp, netboot=True)
            m = g.wait_marker(r"^UN-DONE (.*)$", timeout=qg.BOOT_TIMEOUT + 120)
            out = g.console()
            self.assertEqual(kv(m.group(1)).get("rc"), "0", out[-3000:])
            self.assertEqual(marker(out, "UN-SHA256").split()[:2], [sha, str(size)])
            g.stop(self)


if __name__ == "__main__":
    netlab.main()
