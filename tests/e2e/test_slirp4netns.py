#!/usr/bin/env python3
"""Debian's slirp4netns 1.2 on usernet's libslirp.so.0 (LD_LIBRARY_PATH,
nothing else changed): slirp4netns runs in the host namespace and attaches
the guest namespace (--configure --netns-type=path, guest 10.0.2.100), and
real clients in the guest use it: a download and an upload with checksums
from and to the host's loopback through 10.0.2.2, UDP echo there, ping,
DNS at 10.0.2.3 (usernet's local name host.usernet.internal, and a name
from an upstream dnsmasq that the host's resolv.conf names), a closed
host port refused at once, --disable-host-loopback, --mtu 65520, IPv6
(--enable-ipv6: SLAAC, ping, TCP and UDP to the host's ::1 via fd00::2),
--enable-sandbox --enable-seccomp (podman's defaults), and the API socket's
add_hostfwd / list_hostfwd / remove_hostfwd (TCP and UDP). Each lab checks
in /proc/PID/maps that slirp4netns mapped usernet's library and not the
system's, and that slirp4netns printed no error from it.

A control runs the core checks on Debian's own libslirp (no
LD_LIBRARY_PATH), so a failure that is the test's own shows there too.

USERNET_LIBSLIRP_DIR names the directory with usernet's libslirp.so.0
(default build/libslirp)."""

import os
import re
import socket
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import MiB  # noqa: E402

netlab.require_basics()
netlab.require_tools("slirp4netns", "curl", "dig", "dnsmasq")

LIBDIR, OURS_ENV = netlab.libslirp()
LIB = os.path.join(LIBDIR, "libslirp.so.0")


def ours_env():
    return list(OURS_ENV)

# slirp4netns's addressing (its --cidr default, 10.0.2.0/24)
GW = "10.0.2.2"
DNS = "10.0.2.3"
GUEST = "10.0.2.100"
GW6 = "fd00::2"  # with --enable-ipv6: prefix fd00::/64
LOCAL_NAME = "host.usernet.internal"  # usernet's own name for the gateway
UPSTREAM_NAME = "s4.example.test"     # answered by dnsmasq on the host's loopback
UPSTREAM_ADDR = "192.0.2.7"
SIZE = 32 * MiB

# What slirp4netns prints when the library complains (libslirp.cpp's
# log_stderr), besides the crash markers netlab knows.
LIB_ERRORS = ("usernet (libslirp): error", "slirp_new failed")


class Slirp4netns:
    """host + guest namespaces, slirp4netns in host attached to guest.
    ours=True: on usernet's library; False: on Debian's."""

    def __init__(self, lab, ours=True, extra=(), upstream_dns=False, host=None):
        self.lab = lab
        self.ours = ours
        self.host = host or lab.netns("host")
        self.guest = lab.netns("guest")
        if upstream_dns:
            # the host's resolver, as both libraries read it: dnsmasq on the
            # host namespace's loopback, port 53
            self.host.resolv_conf("nameserver 127.0.0.1\n")
            self.dnsmasq = self.host.popen(
                ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                 "--bind-interfaces", "--listen-address=127.0.0.1", "--port=53", "--pid-file=",
                 "--user=root", "--address=/%s/%s" % (UPSTREAM_NAME, UPSTREAM_ADDR)], name="dnsmasq")
            netlab.wait_for(lambda: "127.0.0.1:53" in self.host.run(["ss", "-lunH"]).stdout, 10,
                            what="dnsmasq listening")
        self.api = lab.path("api-%s.sock" % self.guest.role)
        argv = (["env"] + ours_env() if ours else ["env", "-u", "LD_LIBRARY_PATH"])
        argv += ["slirp4netns", "--configure", "--netns-type=path", "--api-socket", self.api]
        argv += list(extra) + [self.guest.path, "tap0"]
        self.p = self.host.popen(argv, name="slirp4netns")

        def ready():
            if self.p.poll() is not None:
                raise AssertionError("slirp4netns exited:\n" + self.p.describe())
            return ((GUEST, "24") in self.guest.addrs("tap0") and os.path.exists(self.api))
        netlab.wait_for(ready, 10, what="slirp4netns to configure tap0 and its API socket")

    def maps(self):
        """The libslirp files slirp4netns has mapped."""
        # ip netns exec and env exec: the process we started is slirp4netns
        with open("/proc/%d/comm" % self.p.pid) as f:
            assert f.read().strip() == "slirp4netns"
        with open("/proc/%d/maps" % self.p.pid) as f:
            return {os.path.realpath(line.split()[-1]) for line in f if "libslirp" in line}

    def check_library(self, test):
        libs = self.maps()
        if self.ours:
            test.assertIn(os.path.realpath(LIB), libs)
            test.assertFalse([x for x in libs if x.startswith("/usr/")], libs)
        else:
            test.assertTrue(libs and all(x.startswith("/usr/") for x in libs), libs)

    def call(self, execute, **arguments):
        """One API request (slirp4netns takes one per connection); the
        decoded reply."""
        req = {"execute": execute}
        if arguments:
            req["arguments"] = arguments
        return netlab.api_request(self.api, req)

    def finish(self, test):
        """Still running on the right library, no error from it; then stop it."""
        test.assertIsNone(self.p.poll(), "slirp4netns died:\n" + self.p.describe())
        self.check_library(test)
        self.p.stop()
        err = self.p.stderr()
        for m in netlab.CRASH_MARKERS + LIB_ERRORS:
            test.assertNotIn(m, err, self.p.describe())


def received(r):
    m = re.search(r"(\d+) packets transmitted, (\d+) (packets )?received", r.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def dig(ns, name, tcp=False):
    r = ns.run(["dig", "+short", "+time=2", "+tries=3"] + (["+tcp"] if tcp else []) +
               ["@" + DNS, name, "A"], timeout=30, check=False)
    return re.findall(r"^(\d+\.\d+\.\d+\.\d+)$", r.stdout, re.M)


UDP_ECHO_CLIENT = r"""
import os, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
sizes = [int(x) for x in sys.argv[3].split(",")]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
ok = 0
for i, size in enumerate(sizes):
    msg = (b"%06d" % i + os.urandom(size))[:size]
    for attempt in range(3):
        s.sendto(msg, (addr, port))
        try:
            while True:
                b, peer = s.recvfrom(65535)
                if peer[:2] == (addr, port) and b == msg:
                    ok += 1
                    break
        except socket.timeout:
            continue
        break
print(ok)
"""

TCP_ECHO_CLIENT = r"""
import os, socket, sys
data = os.urandom(int(sys.argv[3]))
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
print("OK" if got == data else "BAD %d of %d bytes" % (len(got), len(data)))
"""

UDP_ONE = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for attempt in range(3):
    s.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recv(100).decode().strip())
        break
    except socket.timeout:
        pass
"""


class Slirp4netnsTest(unittest.TestCase):
    def _download_upload(self, t, size=SIZE):
        lab = t.lab
        path, sha = lab.make_file(size, "data.bin")
        srv = t.host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
        base = "http://%s:%d/" % (GW, srv.port)
        out = lab.path("download.bin")
        t0 = time.monotonic()
        netlab.curl(t.guest, ["--max-time", "100", "-o", out, base + "data.bin"], timeout=120)
        dt = time.monotonic() - t0
        self.assertEqual(os.path.getsize(out), size)
        self.assertEqual(netlab.sha256_file(out), sha, "downloaded data differs")
        os.unlink(out)
        t1 = time.monotonic()
        r = netlab.curl(t.guest, ["--max-time", "100", "-T", path, base + "upload"], timeout=120)
        du = time.monotonic() - t1
        self.assertEqual(r.stdout.split(), [sha, str(size)], "uploaded data differs")
        netlab.log("%s libslirp: %d MiB down in %.2fs, up in %.2fs" % (
            "usernet's" if t.ours else "Debian's", size // MiB, dt, du))

    def test_library_is_usernets(self):
        env = dict(os.environ, **dict(x.split("=", 1) for x in ours_env()))
        r = subprocess.run(["slirp4netns", "--version"], env=env, capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^libslirp: 4\.7\.0 \(usernet ", r.stdout)
        with netlab.Lab("s4") as lab:
            t = Slirp4netns(lab)
            t.check_library(self)
            t.finish(self)

    def test_download_upload_udp_ping_via_gateway(self):
        with netlab.Lab("s4") as lab:
            t = Slirp4netns(lab)
            t.check_library(self)
            self.assertIn("default via %s" % GW, t.guest.run(["ip", "route"]).stdout)
            self._download_upload(t)
            echo = t.host.server("udp-echo", "--bind", "127.0.0.1")
            sizes = [1, 100, 1400, 1472, 4000, 8000]  # the last two leave the guest in fragments
            r = t.guest.py(UDP_ECHO_CLIENT, GW, echo.port, ",".join(map(str, sizes)))
            self.assertEqual(r.stdout.strip(), str(len(sizes)), r.stdout + r.stderr)
            r = netlab.ping(t.guest, GW, count=3)
            self.assertEqual(received(r), (3, 3), r.stdout)
            r = t.guest.run(["busybox", "ping", "-c", "2", "-W", "3", "-s", "1400", GW], timeout=20)
            self.assertEqual(received(r), (2, 2), r.stdout)
            t.finish(self)

    def test_dns_local_and_upstream_names(self):
        with netlab.Lab("s4") as lab:
            t = Slirp4netns(lab, upstream_dns=True)
            self.assertEqual(dig(t.guest, LOCAL_NAME), [GW])
            self.assertEqual(dig(t.guest, LOCAL_NAME, tcp=True), [GW])
            self.assertEqual(dig(t.guest, UPSTREAM_NAME), [UPSTREAM_ADDR])
            self.assertEqual(dig(t.guest, UPSTREAM_NAME, tcp=True), [UPSTREAM_ADDR])
            t.finish(self)

    def test_outbound_addr_and_disable_dns(self):
        # --outbound-addr (SlirpConfig v2's outbound_addr): the guest's TCP,
        # UDP and ping leave from that host address, as a peer on the far
        # side of the host sees them; --disable-dns (v3's disable_dns): the
        # DNS address refuses queries although the host's resolver works.
        with netlab.Lab("s4") as lab:
            host = lab.netns("host")
            remote = lab.remote(host)
            out = "198.51.100.9"  # a second address of the host (on its lo)
            host.run(["ip", "addr", "add", out + "/32", "dev", "lo"])
            t = Slirp4netns(lab, extra=["--outbound-addr=" + out, "--disable-dns"],
                            upstream_dns=True, host=host)
            who = remote.server("whoami", "--bind", "0.0.0.0")
            r = t.guest.run(["busybox", "nc", "-w", "5", netlab.REMOTE_ADDR, str(who.port)],
                            timeout=20, check=False)
            self.assertEqual(r.stdout.strip(), "PEER " + out, r.stdout + r.stderr)
            r = t.guest.py(UDP_ONE, netlab.REMOTE_ADDR, who.port, timeout=30)
            self.assertEqual(r.stdout.strip(), "PEER " + out, r.stdout + r.stderr)
            r = netlab.ping(t.guest, netlab.REMOTE_ADDR, count=2)
            self.assertEqual(received(r), (2, 2), r.stdout)
            # the host's resolver answers the name; the DNS address does not
            self.assertEqual(t.host.run(["dig", "+short", "@127.0.0.1", UPSTREAM_NAME]).stdout.strip(),
                             UPSTREAM_ADDR)
            t0 = time.monotonic()
            self.assertEqual(dig(t.guest, UPSTREAM_NAME), [])
            self.assertEqual(dig(t.guest, UPSTREAM_NAME, tcp=True), [])
            self.assertLess(time.monotonic() - t0, 10, "refused queries should fail at once")
            t.finish(self)

    def test_closed_host_port_is_refused_at_once(self):
        with netlab.Lab("s4") as lab:
            t = Slirp4netns(lab)
            port = netlab.free_port()
            t0 = time.monotonic()
            r = netlab.curl(t.guest, ["--max-time", "10", "http://%s:%d/" % (GW, port)], timeout=20,
                            check=False)
            dt = time.monotonic() - t0
            self.assertEqual(r.returncode, 7, "curl to closed port %d: exit %d (%s)" % (
                port, r.returncode, r.stderr.strip()))
            self.assertLess(dt, 2.0, "refusal took %.2fs" % dt)
            t.finish(self)

    def test_disable_host_loopback_keeps_the_guest_off_the_hosts_loopback(self):
        with netlab.Lab("s4") as lab:
            t = Slirp4netns(lab, extra=["--disable-host-loopback"])
            srv = t.host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            r = netlab.curl(t.guest, ["--max-time", "5", "http://%s:%d/" % (GW, srv.port)], timeout=20,
                            check=False)
            self.assertNotEqual(r.returncode, 0, "reached the host's loopback: %s" % r.stdout[:200])
            echo = t.host.server("udp-echo", "--bind", "127.0.0.1")
            r = t.guest.py(UDP_ECHO_CLIENT, GW, echo.port, "100", timeout=30)
            self.assertEqual(r.stdout.strip(), "0", "UDP reached the host's loopback")
            t.finish(self)

    def test_mtu_65520_download_upload(self):
        with netlab.Lab("s4") as lab:
            t = Slirp4netns(lab, extra=["--mtu=65520"])
            self.assertIn("mtu 65520", t.guest.run(["ip", "link", "show", "tap0"]).stdout)
            self._download_upload(t)
            r = t.guest.run(["busybox", "ping", "-c", "2", "-W", "3", "-s", "30000", GW], timeout=20)
            self.assertEqual(received(r), (2, 2), r.stdout)
            t.finish(self)

    def test_ipv6_slaac_ping_tcp_udp_to_host_loopback(self):
        with netlab.Lab("s4") as lab:
            t = Slirp4netns(lab, extra=["--enable-ipv6"])

            def slaac():
                out = t.guest.run(["ip", "-6", "addr", "show", "dev", "tap0", "scope", "global"]).stdout
                return "inet6 fd00::" in out and "tentative" not in out
            netlab.wait_for(slaac, 20, what="an fd00::/64 address from the router advertisement")
            netlab.wait_for(lambda: "default via" in t.guest.run(["ip", "-6", "route"]).stdout, 10,
                            what="an IPv6 default route")
            r = t.guest.run(["busybox", "ping", "-6", "-c", "2", "-W", "3", GW6], timeout=20)
            self.assertEqual(received(r), (2, 2), r.stdout)
            path, sha = lab.make_file(4 * MiB, "data6.bin")
            srv = t.host.server("http", "--bind", "::1", "--dir", lab.dir)
            out = lab.path("download6.bin")
            netlab.curl(t.guest, ["--max-time", "60", "-g", "-o", out,
                                  "http://[%s]:%d/data6.bin" % (GW6, srv.port)], timeout=90)
            self.assertEqual(netlab.sha256_file(out), sha, "downloaded data differs")
            echo = t.host.server("udp-echo", "--bind", "::1")
            r = t.guest.py(UDP_ECHO_CLIENT.replace("AF_INET,", "AF_INET6,"), GW6, echo.port, "1,1200")
            self.assertEqual(r.stdout.strip(), "2", r.stdout + r.stderr)
            t.finish(self)

    def test_sandbox_and_seccomp(self):
        # what podman and rootless docker pass
        with netlab.Lab("s4") as lab:
            t = Slirp4netns(lab, extra=["--enable-sandbox", "--enable-seccomp"], upstream_dns=True)
            t.check_library(self)
            self._download_upload(t, 4 * MiB)
            self.assertEqual(dig(t.guest, LOCAL_NAME), [GW])
            self.assertEqual(dig(t.guest, UPSTREAM_NAME), [UPSTREAM_ADDR])
            t.call("add_hostfwd", proto="tcp", host_addr="127.0.0.1", host_port=netlab.free_port(),
                   guest_port=8080)
            t.finish(self)

    def test_api_hostfwd_add_list_use_remove(self):
        with netlab.Lab("s4") as lab:
            t = Slirp4netns(lab)
            echo = t.guest.server("tcp-echo", "--bind", "0.0.0.0")
            whoami = t.guest.server("whoami", "--bind", "0.0.0.0")
            hp = netlab.free_port()
            hp_who = netlab.free_port(exclude=(hp,))
            hp_udp = netlab.free_port(socket.SOCK_DGRAM, exclude=(hp, hp_who))
            r = t.call("add_hostfwd", proto="tcp", host_addr="127.0.0.1", host_port=hp,
                       guest_port=echo.port)
            self.assertIn("return", r, r)
            fid = r["return"]["id"]
            r2 = t.call("add_hostfwd", proto="tcp", host_addr="127.0.0.1", host_port=hp_who,
                        guest_port=whoami.port)
            r3 = t.call("add_hostfwd", proto="udp", host_addr="127.0.0.1", host_port=hp_udp,
                        guest_port=whoami.port)
            self.assertIn("return", r2, r2)
            self.assertIn("return", r3, r3)
            # the same host port again: the bind fails, an error, no entry
            dup = t.call("add_hostfwd", proto="tcp", host_addr="127.0.0.1", host_port=hp,
                         guest_port=echo.port)
            self.assertIn("error", dup, dup)
            entries = t.call("list_hostfwd")["entries"]
            self.assertIn({"id": fid, "proto": "tcp", "host_addr": "127.0.0.1", "host_port": hp,
                           "guest_addr": GUEST, "guest_port": echo.port}, entries)
            self.assertEqual(len(entries), 3, entries)
            listening = t.host.run(["ss", "-ltnH", "sport = :%d" % hp]).stdout
            self.assertIn("127.0.0.1:%d" % hp, listening)
            # host 127.0.0.1:hp reaches the echo server in the guest
            for size in (1, 100000, 2 * MiB):
                r = t.host.py(TCP_ECHO_CLIENT, "127.0.0.1", hp, size)
                self.assertEqual(r.stdout.strip(), "OK", "%d bytes: %s%s" % (size, r.stdout, r.stderr))
            # as libslirp: the guest sees the connection come from the gateway
            r = t.host.py("import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1])),"
                          " timeout=10); print(s.recv(100).decode().strip())", hp_who)
            self.assertEqual(r.stdout.strip(), "PEER " + GW)
            r = t.host.py(UDP_ONE, "127.0.0.1", hp_udp)
            self.assertEqual(r.stdout.strip(), "PEER " + GW)
            # remove by id: the listener goes, the port is refused
            self.assertEqual(t.call("remove_hostfwd", id=fid), {"return": {}})
            self.assertIn("error", t.call("remove_hostfwd", id=fid))
            entries = t.call("list_hostfwd")["entries"]
            self.assertNotIn(fid, [e["id"] for e in entries])
            self.assertEqual(t.host.run(["ss", "-ltnH", "sport = :%d" % hp]).stdout.strip(), "")
            r = netlab.curl(t.host, ["--max-time", "5", "http://127.0.0.1:%d/" % hp], timeout=20,
                            check=False)
            self.assertEqual(r.returncode, 7, "after remove_hostfwd: exit %d %s" % (r.returncode, r.stderr))
            # the others still work, and the port can be forwarded again
            r = t.host.py("import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1])),"
                          " timeout=10); print(s.recv(100).decode().strip())", hp_who)
            self.assertEqual(r.stdout.strip(), "PEER " + GW)
            r = t.call("add_hostfwd", proto="tcp", host_addr="127.0.0.1", host_port=hp,
                       guest_port=echo.port)
            self.assertIn("return", r, r)
            r = t.host.py(TCP_ECHO_CLIENT, "127.0.0.1", hp, 1000)
            self.assertEqual(r.stdout.strip(), "OK", r.stdout + r.stderr)
            t.check_library(self)
            t.finish(self)

    def test_control_debians_libslirp(self):
        # the same core checks on Debian's own libslirp: the test is sound
        with netlab.Lab("s4") as lab:
            t = Slirp4netns(lab, ours=False, upstream_dns=True)
            t.check_library(self)
            self._download_upload(t, 8 * MiB)
            r = netlab.ping(t.guest, GW, count=2)
            self.assertEqual(received(r), (2, 2), r.stdout)
            self.assertEqual(dig(t.guest, UPSTREAM_NAME), [UPSTREAM_ADDR])
            echo = t.guest.server("tcp-echo", "--bind", "0.0.0.0")
            hp = netlab.free_port()
            added = t.call("add_hostfwd", proto="tcp", host_addr="127.0.0.1", host_port=hp,
                           guest_port=echo.port)
            self.assertIn("return", added, added)
            r = t.host.py(TCP_ECHO_CLIENT, "127.0.0.1", hp, 100000)
            self.assertEqual(r.stdout.strip(), "OK", r.stdout + r.stderr)
            self.assertEqual(t.call("remove_hostfwd", id=added["return"]["id"]), {"return": {}})
            t.finish(self)


if __name__ == "__main__":
    netlab.main()
