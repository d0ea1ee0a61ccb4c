#!/usr/bin/env python3
"""Guest forwards (--guestfwd, QEMU's guestfwd=) and the SMB share (--smb)
with real clients in a namespace guest: a virtual address inside the LAN
whose TCP port leads to a host TCP server (IPv4 and IPv6 guest sides), a
unix socket, or a command run per connection; everything else at that
address is refused at once; guest forwards work under --restrict. --smb:
smbclient lists, reads and writes the shared directory at 10.0.2.4, and no
smbd or state is left behind."""

import glob
import hashlib
import os
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import REMOTE_ADDR  # noqa: E402

netlab.require_basics()
netlab.require_tools("curl")

# Connects to ADDR PORT, sends the file PATH (or nothing for "-") while
# reading, half-closes, reads to EOF; prints "<bytes received> <sha256>"
# or "ERROR <errno name> <seconds>".
STREAM_CLIENT = r"""
import errno, hashlib, socket, sys, threading, time
addr, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0 = time.monotonic()
try:
    s = socket.create_connection((addr, port), timeout=20)
except OSError as e:
    print("ERROR", errno.errorcode.get(e.errno, e.errno), "%.2f" % (time.monotonic() - t0))
    sys.exit(0)
def send():
    if path != "-":
        with open(path, "rb") as f:
            while True:
                b = f.read(65536)
                if not b:
                    break
                s.sendall(b)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
h, n = hashlib.sha256(), 0
while True:
    b = s.recv(65536)
    if not b:
        break
    h.update(b)
    n += len(b)
t.join()
print(n, h.hexdigest())
"""

# A unix stream socket server that echoes each connection until EOF.
UNIX_ECHO = r"""
import os, socket, sys, threading
path = sys.argv[1]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(16)
print("READY 0", flush=True)
def echo(c):
    with c:
        while True:
            b = c.recv(65536)
            if not b:
                break
            c.sendall(b)
        c.shutdown(socket.SHUT_WR)
while True:
    c, _ = srv.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"""

V4 = "10.0.2.100"
V6 = "fec0::100"


class GuestFwdTest(unittest.TestCase):
    def stream(self, guest, addr, port, path="-", timeout=60):
        r = guest.py(STREAM_CLIENT, addr, port, path, timeout=timeout)
        return r.stdout.split()

    def test_tcp_unix_and_command_targets(self):
        with netlab.Lab("gfwd") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            remote = lab.remote(host)
            web = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            far = remote.server("http", "--bind", REMOTE_ADDR, "--dir", lab.dir)
            sock = lab.path("echo.sock")
            echo = host.popen([netlab.PY, "-c", UNIX_ECHO, sock], name="unix-echo")
            netlab.wait_for(lambda: os.path.exists(sock), 10, what="unix echo server")
            data, digest = lab.make_file(8 << 20)
            count_file = lab.path("commands.txt")
            un = lab.usernet(host, [
                "--netns", guest.path, "--config-net", "--restrict",
                "--guestfwd", "tcp:%s:80-127.0.0.1:%d" % (V4, web.port),
                "--guestfwd", "tcp:[%s]:80-127.0.0.1:%d" % (V6, web.port),
                "--guestfwd", "tcp:%s:7-unix:%s" % (V4, sock),
                "--guestfwd", "tcp:%s:8-cmd:cat" % V4,
                "--guestfwd", "tcp:%s:9-cmd:echo x >> %s; sha256sum" % (V4, count_file),
                "--guestfwd", "%s:10-unix:%s" % (":10.0.2.101", lab.path("nobody.sock")),
            ], wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")

            # A host TCP server on the host's loopback, from both families.
            for url in ("http://%s/%s" % (V4, os.path.basename(data)),
                        "http://[%s]/%s" % (V6, os.path.basename(data))):
                r = netlab.curl(guest, ["-g", "--max-time", "30", "-s", "-o", lab.path("got"), url],
                                timeout=60)
                with open(lab.path("got"), "rb") as f:
                    self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest, url)
            # A unix socket: 8 MiB each way.
            self.assertEqual(self.stream(guest, V4, 7, data), [str(8 << 20), digest])
            # A command per connection: cat echoes, sha256sum reads to EOF
            # (the guest's FIN) and answers; several at once.
            self.assertEqual(self.stream(guest, V4, 8, data), [str(8 << 20), digest])
            out = guest.py(
                "import subprocess, sys\n"
                "ps = [subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2], '9', sys.argv[3]],"
                " stdout=subprocess.PIPE, text=True) for _ in range(10)]\n"
                "print('\\n'.join(p.communicate()[0].strip() for p in ps))\n",
                STREAM_CLIENT, V4, data, timeout=120).stdout.split("\n")
            want_line = "%d %s" % (len(digest) + len("  -\n"),
                                   hashlib.sha256((digest + "  -\n").encode()).hexdigest())
            self.assertEqual([line.strip() for line in out if line.strip()], [want_line] * 10)
            with open(count_file) as f:
                self.assertEqual(f.read().count("x"), 10)
            # The commands are reaped once they exit.
            netlab.wait_for(lambda: not [p for p in _children(un.p.pid)], 10,
                            what="the commands to be reaped")

            # Anything else at the virtual address is refused at once; so is
            # a unix socket nobody listens on; and --restrict still holds.
            for addr, port in ((V4, 81), ("10.0.2.101", 10)):
                res = self.stream(guest, addr, port)
                self.assertEqual(res[:2], ["ERROR", "ECONNREFUSED"], (addr, port))
                self.assertLess(float(res[2]), 3)
            r = netlab.curl(guest, ["--max-time", "8", "-o", "/dev/null",
                                    "http://%s:%d/" % (REMOTE_ADDR, far.port)], timeout=20, check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("Failed to connect", r.stderr)
            # The virtual address answers ARP like a host of the LAN.
            neigh = guest.run(["ip", "neigh", "show", V4]).stdout
            self.assertIn("52:55:0a:00:02:02", neigh)
            lab.assert_alive(un)
            lab.assert_alive(echo)

    def test_smb_share(self):
        netlab.require_tools("smbclient", "smbd")
        with netlab.Lab("gfwd") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            share = lab.path("share")
            os.mkdir(share)
            data, digest = lab.make_file(3 << 20, name="share/big.bin")
            tmp = lab.path("tmp")
            os.mkdir(tmp)
            un = lab.usernet(host, ["--netns", guest.path, "--config-net", "--restrict",
                                    "--smb", share], wait=[("link", guest, "tap0")],
                             wrapper=("env", "TMPDIR=" + tmp))
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            with open(lab.path("up.txt"), "w") as f:
                f.write("from the guest\n")
            r = guest.run(["smbclient", "-N", "//10.0.2.4/qemu", "-c",
                           "ls; get big.bin %s; put %s up.txt" % (lab.path("got.bin"), lab.path("up.txt"))],
                          timeout=60, check=False)
            self.assertTrue(r.returncode == 0 and "big.bin" in r.stdout, _smb_failure(r, tmp))
            with open(lab.path("got.bin"), "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest)
            with open(os.path.join(share, "up.txt")) as f:
                self.assertEqual(f.read(), "from the guest\n")
            # Port 139 too (NetBIOS session service, as QEMU forwards it).
            r = guest.run(["smbclient", "-N", "-p", "139", "//10.0.2.4/qemu", "-c", "ls"], timeout=60,
                          check=False)
            self.assertTrue(r.returncode == 0 and "up.txt" in r.stdout, _smb_failure(r, tmp))
            states = glob.glob(os.path.join(tmp, "usernet-smb.*"))
            self.assertEqual(len(states), 1, states)
            # A client that is still connected when usernet stops.
            hold = guest.popen(["smbclient", "-N", "//10.0.2.4/qemu"], name="smbclient-idle",
                               stdin=subprocess.PIPE)
            netlab.wait_for(lambda: _processes_naming(states[0]), 20, what="smbd for the idle client")
            un.stop()
            hold.stop()
            # Nothing left: no smbd of ours, no state directory.
            self.assertEqual(_processes_naming(states[0]), [])
            self.assertFalse(os.path.exists(states[0]))


def _smb_failure(result, tmp):
    """What to print when an smbclient step fails: its own output and the
    tail of every log smbd wrote in usernet's state directory (an error such
    as NT_STATUS_NO_MEMORY comes from smbd, and only its log says why)."""
    out = ["smbclient: rc=%s\nstdout:\n%s\nstderr:\n%s" % (result.returncode, result.stdout, result.stderr)]
    for log in sorted(glob.glob(os.path.join(tmp, "usernet-smb.*", "log.*"))):
        with open(log, errors="replace") as f:
            out.append("%s (last 200 lines):\n%s" % (log, "".join(f.readlines()[-200:])))
    return "\n".join(out)


class SmbMissingTest(unittest.TestCase):
    def test_without_smbd_one_line_names_the_package(self):
        """With no smbd to run (hidden by a bind mount in a private mount
        namespace), --smb refuses to start, in one line that names the
        samba package, with exit status 1."""
        netlab.require_tools("unshare", "smbd")
        with netlab.Lab("gfwd") as lab:
            share = lab.path("share")
            os.mkdir(share)
            smbd = subprocess.run(["sh", "-c", "command -v smbd"], capture_output=True,
                                  text=True).stdout.strip()
            script = ("mount --bind /dev/null %s && PATH=/usr/bin:/bin exec %s --socket %s --smb %s"
                      % (smbd, netlab.usernet_bin(), lab.path("s.sock"), share))
            r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 1, r.stderr)
            lines = [line for line in r.stderr.splitlines() if line.strip()]
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertIn("install the samba package", lines[0])


def _children(pid):
    """PIDs whose parent is pid."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.split("/")[2]))
    return out


def _processes_naming(text):
    """PIDs whose command line holds text."""
    out = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as f:
                if text.encode() in f.read():
                    out.append(int(cmdline.split("/")[2]))
        except OSError:
            continue
    return out


if __name__ == "__main__":
    netlab.main()
