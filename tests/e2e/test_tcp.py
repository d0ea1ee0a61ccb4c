#!/usr/bin/env python3
"""TCP through usernet: bulk transfers both ways (sha256-checked) to the host's
loopback (as 10.0.2.2) and to a routed remote address, refusals, half-close,
many concurrent connections."""

import os
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY, MiB, REMOTE_ADDR  # noqa: E402

netlab.require_basics()
netlab.require_tools("curl")

BIG = 64 * MiB


class TcpLab:
    """host + guest (+ remote) with usernet attached to guest."""

    def __init__(self, lab, dhcp=False, remote=True, extra=()):
        self.lab = lab
        self.host = lab.netns("host")
        self.guest = lab.netns("guest")
        self.remote = lab.remote(self.host) if remote else None
        args = ["--netns", self.guest.path] + ([] if dhcp else ["--config-net"]) + list(extra)
        self.un = lab.usernet(self.host, args, wait=[("link", self.guest, "tap0")])
        if dhcp:
            netlab.dhcp(lab, self.guest)
        else:
            netlab.wait_for(lambda: self.guest.addrs("tap0"), 10, what="address from --config-net")


class TcpTest(unittest.TestCase):
    def _download(self, t, url, path, sha):
        out = t.lab.path("download.bin")
        t0 = time.monotonic()
        netlab.curl(t.guest, ["--max-time", "100", "-o", out, url], timeout=120)
        dt = time.monotonic() - t0
        self.assertEqual(os.path.getsize(out), os.path.getsize(path))
        self.assertEqual(netlab.sha256_file(out), sha, "downloaded data differs")
        os.unlink(out)
        netlab.log("download %s: %d MiB in %.2fs (%.1f MiB/s)" % (url, os.path.getsize(path) // MiB, dt,
                                                                 os.path.getsize(path) / MiB / dt))

    def _upload(self, t, url, path, sha, method="PUT"):
        t0 = time.monotonic()
        if method == "PUT":
            r = netlab.curl(t.guest, ["--max-time", "100", "-T", path, url], timeout=120)
        else:
            r = netlab.curl(t.guest, ["--max-time", "100", "-H", "Content-Type: application/octet-stream",
                                      "--data-binary", "@" + path, url], timeout=120)
        dt = time.monotonic() - t0
        self.assertEqual(r.stdout.split(), [sha, str(os.path.getsize(path))], "uploaded data differs")
        netlab.log("upload (%s) %s: %.2fs (%.1f MiB/s)" % (method, url, dt, os.path.getsize(path) / MiB / dt))

    def test_64mib_download_and_upload_via_gateway_to_host_loopback(self):
        with netlab.Lab("tcp") as lab:
            t = TcpLab(lab, dhcp=True, remote=False)
            path, sha = lab.make_file(BIG, "big.bin")
            srv = t.host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            base = "http://%s:%d/" % (GATEWAY, srv.port)
            self._download(t, base + "big.bin", path, sha)
            self._upload(t, base + "upload", path, sha, "PUT")
            self._upload(t, base + "upload", path, sha, "POST")
            lab.assert_alive(t.un)

    def test_64mib_download_and_upload_to_remote_address(self):
        with netlab.Lab("tcp") as lab:
            t = TcpLab(lab)
            path, sha = lab.make_file(BIG, "big.bin")
            srv = t.remote.server("http", "--bind", REMOTE_ADDR, "--dir", lab.dir)
            base = "http://%s:%d/" % (REMOTE_ADDR, srv.port)
            self._download(t, base + "big.bin", path, sha)
            self._upload(t, base + "upload", path, sha, "PUT")
            lab.assert_alive(t.un)

    @staticmethod
    def _behind_a_lossy_router(lab, way):
        """A client namespace routed through the guest, whose router drops
        2% of what it forwards from the client (way "-i") or to it ("-o").
        Returns the TcpLab (usernet with a control socket), the client and
        the control socket's path."""
        api = lab.path("api.sock")
        t = TcpLab(lab, remote=False, extra=["--api-socket", api])
        client = lab.netns("client")
        rt, _ = lab.veth(t.guest, client, "192.168.77.1/24", "192.168.77.2/24")
        client.run(["ip", "route", "add", "default", "via", "192.168.77.1"])
        t.guest.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        t.guest.run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "tap0", "-j", "MASQUERADE"])
        t.guest.run(["iptables", "-A", "FORWARD", way, rt, "-m", "statistic", "--mode", "random",
                     "--probability", "0.02", "-j", "DROP"])
        return t, client, api

    def test_uploads_from_behind_a_lossy_router_are_reassembled(self):
        """A client routed through the guest (a container or a VM inside
        it) uploads while the guest's router drops 2% of what it forwards:
        every loss leaves the following segments out of order. usernet
        holds them and tells the client with SACK, so each loss costs one
        retransmission, not the rest of the window; a client without SACK
        or without timestamps recovers too. Each upload arrives intact,
        and the control API shows the segments held and written."""
        netlab.require_tools("iptables")
        with netlab.Lab("tcploss") as lab:
            t, client, api = self._behind_a_lossy_router(lab, "-i")
            size = 32 * MiB
            path, sha = lab.make_file(size, "up.bin")
            srv = t.host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            url = "http://%s:%d/upload" % (GATEWAY, srv.port)
            for variant in ("net.ipv4.tcp_sack", "net.ipv4.tcp_timestamps", None):
                if variant:
                    client.run(["sysctl", "-qw", variant + "=0"])
                t0 = time.monotonic()
                r = netlab.curl(client, ["--max-time", "100", "-T", path, url], timeout=120)
                self.assertEqual(r.stdout.split(), [sha, str(size)], "uploaded data differs")
                netlab.log("upload with 2%% loss, %s off: %.2fs" % (variant or "nothing", time.monotonic() - t0))
                if variant:
                    client.run(["sysctl", "-qw", variant + "=1"])
            nat = netlab.api_request(api, {"execute": "get_stats"})["return"]["lans"][0]["nat"]
            netlab.log("nat counters: %r" % {k: v for k, v in nat.items() if k.startswith("tcp_")})
            self.assertGreater(nat["tcp_out_of_order"], 0, nat)
            self.assertGreater(nat["tcp_bytes_reassembled"], 0, nat)
            lab.assert_alive(t.un)

    def test_downloads_to_behind_a_lossy_router_recover_every_hole_at_once(self):
        """The other direction: the guest's router drops 2% of what it
        forwards to the client, whole GSO frames of tens of segments at a
        time. usernet is the sender: with SACK it sends every hole the
        client names again at once (and probes a lost tail with its last
        segment, so that the client names the hole); without SACK it falls
        back to NewReno. Each download arrives intact, and the control API
        shows the holes sent again."""
        netlab.require_tools("iptables")
        with netlab.Lab("tcplossdn") as lab:
            t, client, api = self._behind_a_lossy_router(lab, "-o")
            size = 32 * MiB
            path, sha = lab.make_file(size, "down.bin")
            srv = t.host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            url = "http://%s:%d/down.bin" % (GATEWAY, srv.port)
            out = lab.path("got.bin")
            for variant in (None, "net.ipv4.tcp_timestamps", "net.ipv4.tcp_sack"):
                if variant:
                    client.run(["sysctl", "-qw", variant + "=0"])
                t0 = time.monotonic()
                netlab.curl(client, ["--max-time", "100", "-o", out, url], timeout=120)
                self.assertEqual(netlab.sha256_file(out), sha, "downloaded data differs")
                os.unlink(out)
                netlab.log("download with 2%% loss, %s off: %.2fs" % (variant or "nothing", time.monotonic() - t0))
                if variant:
                    client.run(["sysctl", "-qw", variant + "=1"])
                if variant is None:
                    nat = netlab.api_request(api, {"execute": "get_stats"})["return"]["lans"][0]["nat"]
                    netlab.log("nat counters: %r" % {k: v for k, v in nat.items() if k.startswith("tcp_")})
                    self.assertGreater(nat["tcp_retransmits_sack"], 0, nat)
            lab.assert_alive(t.un)

    def test_connection_refused_fails_fast_on_gateway_and_remote(self):
        with netlab.Lab("tcp") as lab:
            t = TcpLab(lab)
            for addr in (GATEWAY, REMOTE_ADDR):
                port = netlab.free_port()
                t0 = time.monotonic()
                r = netlab.curl(t.guest, ["--max-time", "10", "http://%s:%d/" % (addr, port)], timeout=20, check=False)
                dt = time.monotonic() - t0
                self.assertEqual(r.returncode, 7, "curl to closed port %s:%d: exit %d (%s)" % (
                    addr, port, r.returncode, r.stderr.strip()))
                self.assertLess(dt, 2.0, "refusal took %.2fs" % dt)
            lab.assert_alive(t.un)

    HALF_CLOSE_CLIENT = r"""
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[3]))
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.sendall(data)
s.shutdown(socket.SHUT_WR)          # we are done sending ...
reply = b""
while True:                          # ... but the reply still arrives
    b = s.recv(65536)
    if not b:
        break
    reply += b
s.close()
want = "%s %d" % (hashlib.sha256(data).hexdigest(), len(data))
print("OK" if reply.decode().strip() == want else "BAD %r want %r" % (reply, want))
"""

    def test_half_close_guest_shuts_write_and_still_receives_reply(self):
        with netlab.Lab("tcp") as lab:
            t = TcpLab(lab)
            local = t.host.server("half-close", "--bind", "127.0.0.1")
            remote = t.remote.server("half-close", "--bind", REMOTE_ADDR)
            for addr, port in ((GATEWAY, local.port), (REMOTE_ADDR, remote.port)):
                for size in (1, 100000, 4 * MiB):
                    r = t.guest.py(self.HALF_CLOSE_CLIENT, addr, port, size, timeout=60)
                    self.assertEqual(r.stdout.strip(), "OK", "%s:%d size %d: %s %s" % (
                        addr, port, size, r.stdout, r.stderr))

    def test_host_side_half_close_reaches_guest_while_guest_keeps_sending(self):
        # the server closes its write side first (FIN towards the guest);
        # the guest must see EOF and still be able to send afterwards
        with netlab.Lab("tcp") as lab:
            t = TcpLab(lab, remote=False)
            code_srv = r"""
import hashlib, socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0)); ls.listen(1)
print("READY %d" % ls.getsockname()[1], flush=True)
c, _ = ls.accept()
c.sendall(b"hello\n")
c.shutdown(socket.SHUT_WR)
h = hashlib.sha256(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
print("GOT %s %d" % (h.hexdigest(), n), flush=True)
"""
            srv = t.host.popen([netlab.PY, "-c", code_srv], name="fin-first")
            port = netlab.wait_for(lambda: (lambda m: m and int(m.group(1)))(
                __import__("re").search(r"READY (\d+)", srv.stdout())), 10, what="server")
            code_cli = r"""
import hashlib, os, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
got = b""
while True:
    b = s.recv(100)
    if not b: break
    got += b
assert got == b"hello\n", got
data = os.urandom(2 * 1024 * 1024)
s.sendall(data)
s.close()
print(hashlib.sha256(data).hexdigest())
"""
            r = t.guest.py(code_cli, GATEWAY, port, timeout=60)
            sha = r.stdout.strip()
            netlab.wait_for(lambda: "GOT" in srv.stdout(), 20, what="server to receive all data")
            self.assertIn("GOT %s %d" % (sha, 2 * MiB), srv.stdout())

    CONCURRENT_CLIENT = r"""
import os, selectors, socket, sys, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sel = selectors.DefaultSelector()
state = {}
for i in range(n):
    s = socket.socket(); s.setblocking(False)
    s.connect_ex((addr, port))
    msg = (("%05d:" % i) * 200).encode()      # 1200 bytes, unique per connection
    state[s] = [msg, 0, bytearray()]
    sel.register(s, selectors.EVENT_WRITE)
done = 0; failed = []
deadline = time.monotonic() + float(sys.argv[4])
while done + len(failed) < n and time.monotonic() < deadline:
    for key, ev in sel.select(timeout=1):
        s = key.fileobj; st = state[s]
        try:
            if ev & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                st[1] += s.send(st[0][st[1]:])
                if st[1] == len(st[0]):
                    s.shutdown(socket.SHUT_WR)
                    sel.modify(s, selectors.EVENT_READ)
            else:
                b = s.recv(65536)
                if b:
                    st[2] += b
                else:
                    sel.unregister(s); s.close()
                    if bytes(st[2]) == st[0]: done += 1
                    else: failed.append("bad echo %d bytes" % len(st[2]))
        except OSError as e:
            sel.unregister(s); s.close(); failed.append(str(e))
print("done %d failed %d pending %d %s" % (done, len(failed), n - done - len(failed), sorted(set(failed))[:5]))
"""

    def test_500_concurrent_connections_all_complete(self):
        with netlab.Lab("tcp") as lab:
            t = TcpLab(lab, remote=False)
            srv = t.host.server("tcp-echo", "--bind", "127.0.0.1")
            r = t.guest.py(self.CONCURRENT_CLIENT, GATEWAY, srv.port, 500, 90, timeout=120)
            self.assertTrue(r.stdout.startswith("done 500 failed 0 pending 0"), r.stdout + r.stderr)
            lab.assert_alive(t.un)

    def test_1000_sequential_connections_do_not_exhaust_flows(self):
        with netlab.Lab("tcp") as lab:
            t = TcpLab(lab, remote=False)
            srv = t.host.server("tcp-echo", "--bind", "127.0.0.1")
            code = r"""
import socket, sys
ok = 0
for i in range(int(sys.argv[3])):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    m = b"x%d" % i
    s.sendall(m); s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(100)
        if not b: break
        got += b
    s.close()
    ok += got == m
print(ok)
"""
            r = t.guest.py(code, GATEWAY, srv.port, 1000, timeout=150)
            self.assertEqual(r.stdout.strip(), "1000", r.stdout + r.stderr)


if __name__ == "__main__":
    netlab.main()
