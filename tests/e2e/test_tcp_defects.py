#!/usr/bin/env python3
"""TCP translator defects from issue 7, shown with real kernels at both ends:
urgent data from a host peer (MSG_OOB mid-stream, an outbound connection
or a forwarded one) reaches the guest inline, once, in order, with EOF only
at the end; and the fallback host-to-guest path for kernels without TCP
SO_PEEK_OFF (forced with USERNET_NO_PEEK_OFF=1) moves 64 MiB both ways
intact, and handles urgent data too."""

import os
import re
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY, REMOTE_ADDR, MiB  # noqa: E402

netlab.require_basics()

# Both ends build the same bytes from the round number and length.
PATTERN = r"""
def pat(n, salt):
    return bytes((i * 7 + salt * 13 + i // 251) % 256 for i in range(n))
"""

# Either end may listen: argv[1] is "listen:ADDR:PORT" (PORT 0: any;
# prints READY PORT) or "connect:ADDR:PORT".
ENDPOINT = r"""
import socket, sys, time
def endpoint(spec):
    kind, addr = spec.split(":", 1)
    addr, port = addr.rsplit(":", 1)
    if kind == "listen":
        ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((addr, int(port))); ls.listen(1)
        print("READY %d" % ls.getsockname()[1], flush=True)
        ls.settimeout(30)
        c, _ = ls.accept()
        c.settimeout(15)
        return c
    deadline = time.monotonic() + 15
    while True:  # a forward's listener may still be coming up
        try:
            return socket.create_connection((addr, int(port)), timeout=15)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
"""

# Host peer: per round, data, one urgent byte, more data; waits for the
# guest's "k" between rounds and closes right after the last one (so that
# its FIN is queued behind the urgent mark).
URGENT_SENDER = PATTERN + ENDPOINT + r"""
sizes = [tuple(map(int, r.split(":"))) for r in sys.argv[2].split(",")]
c = endpoint(sys.argv[1])
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for i, (a, b) in enumerate(sizes):
    c.sendall(pat(a, i))
    c.send(b"!", socket.MSG_OOB)
    c.sendall(pat(b, i + 100))
    if i + 1 < len(sizes):
        assert c.recv(1) == b"k"
c.close()
print("SENT", flush=True)
"""

# Guest: every byte once, in order, the urgent ones inline; EOF only after
# the last round.
URGENT_RECEIVER = PATTERN + ENDPOINT + r"""
sizes = [tuple(map(int, r.split(":"))) for r in sys.argv[2].split(",")]
s = endpoint(sys.argv[1])
def read_n(n):
    got = bytearray()
    while len(got) < n:
        b = s.recv(n - len(got))
        if not b:
            break
        got += b
    return bytes(got)
for i, (a, b) in enumerate(sizes):
    want = pat(a, i) + b"!" + pat(b, i + 100)
    try:
        got = read_n(len(want))
    except socket.timeout:
        print("STALL round %d" % i); sys.exit(1)
    if got != want:
        first = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
        print("BAD round %d: got %d bytes, want %d, first difference at %d" % (i, len(got), len(want), first))
        sys.exit(1)
    if i + 1 < len(sizes):
        s.sendall(b"k")
try:
    extra = s.recv(65536)
except socket.timeout:
    print("NO EOF"); sys.exit(1)
print("OK" if extra == b"" else "EXTRA %d bytes" % len(extra))
"""


# Guest: one byte echoed, then idle with keepalives every 2 s (usernet
# answers them itself); waits for the connection to end.
KEEPALIVE_CLIENT = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"x")
assert s.recv(1) == b"x"
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 2)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 50)
print("CONNECTED", flush=True)
s.settimeout(float(sys.argv[3]))
t0 = time.monotonic()
try:
    b = s.recv(1)
    print("EOF" if not b else "DATA")
except ConnectionResetError:
    print("RESET after %.0f s" % (time.monotonic() - t0))
except socket.timeout:
    print("TIMEOUT")
except OSError as e:
    print("ERROR", e)
"""


class TcpLab:
    """host + guest with usernet attached to guest (--config-net)."""

    def __init__(self, lab, env=None, extra=(), remote=False):
        self.lab = lab
        self.host = lab.netns("host")
        self.guest = lab.netns("guest")
        self.remote = lab.remote(self.host) if remote else None
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            self.un = lab.usernet(self.host, ["--netns", self.guest.path, "--config-net"] + list(extra),
                                  wait=[("link", self.guest, "tap0")])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        netlab.wait_for(lambda: self.guest.addrs("tap0"), 10, what="address from --config-net")


def start_py_server(ns, code, *args):
    """Runs code in ns; waits for its READY PORT line; returns (proc, port)."""
    srv = ns.popen([netlab.PY, "-c", code] + [str(a) for a in args], name="pyserver")
    port = netlab.wait_for(lambda: (lambda m: m and int(m.group(1)))(
        re.search(r"READY (\d+)", srv.stdout())), 10, what="server")
    return srv, port


# Answers each connection's first line with an error, then aborts (SO_LINGER
# 0: a RST right after the data), as HAProxy's nolinger or Java's
# setSoLinger(0) do.
ABORTING_SERVER = r"""
import socket, struct, sys
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(8)
print("READY", ls.getsockname()[1], flush=True)
while True:
    c, _ = ls.accept()
    c.recv(100)
    c.sendall(b"ERROR: bad request\n")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
"""
# What a connection brings before its end, EOF or reset.
READ_ALL = r"""
def read_all(c):
    got = b""
    try:
        while True:
            b = c.recv(100)
            if not b: return got
            got += b
    except ConnectionResetError:
        return got
"""
# Sends a request, waits, then reads to the end: prints what came before
# the reset, 5 times.
ASK_THEN_READ = READ_ALL + r"""
import socket, sys, time
for i in range(5):
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    c.sendall(b"req\n")
    time.sleep(0.3)
    print(repr(read_all(c)), flush=True)
    c.close()
"""
# Prints what each connection sent before its end.
READ_TO_THE_END = READ_ALL + r"""
import socket, sys
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(8)
print("READY", ls.getsockname()[1], flush=True)
while True:
    c, _ = ls.accept()
    print("GOT", repr(read_all(c)), flush=True)
    c.close()
"""
# Writes a line and aborts at once, 5 times.
WRITE_THEN_ABORT = r"""
import socket, struct, sys
for i in range(5):
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    c.sendall(b"QUIT now\n")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
"""

# Accepts one connection and reads nothing for argv[1] seconds (the
# sender's window shuts), then reads to the end.
STALLED_READER = r"""
import socket, sys, time
ls = socket.socket()
ls.bind(("127.0.0.1", 0)); ls.listen(1)
print("READY", ls.getsockname()[1], flush=True)
c, _ = ls.accept()
time.sleep(float(sys.argv[1]))
n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    n += len(b)
print("GOT", n, flush=True)
"""
# Sends argv[3] MiB, then keeps the connection open and idle.
SEND_THEN_IDLE = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
s.sendall(bytes(int(sys.argv[3]) << 20))
print("SENT", flush=True)
time.sleep(60)
"""

NO_PEEK_OFF = {"USERNET_NO_PEEK_OFF": "1"}
FALLBACK_LOG = "USERNET_NO_PEEK_OFF is set"


class TcpDefectsTest(unittest.TestCase):
    # Small and large rounds: the urgent mark within the first segment,
    # deep in a window's worth, and right before the host's FIN.
    SIZES = "1000:1000,0:5,70000:300000,3:0,200000:1,5000:5000"

    def _urgent(self, env=None):
        with netlab.Lab("tcpurg") as lab:
            t = TcpLab(lab, env)
            srv, port = start_py_server(t.host, URGENT_SENDER, "listen:127.0.0.1:0", self.SIZES)
            r = t.guest.py(URGENT_RECEIVER, "connect:%s:%d" % (GATEWAY, port), self.SIZES,
                           timeout=120, check=False)
            self.assertEqual(r.stdout.strip(), "OK", r.stdout + r.stderr)
            netlab.wait_for(lambda: "SENT" in srv.stdout(), 10, what="server done")
            lab.assert_alive(t.un)
            self.assertEqual(FALLBACK_LOG in t.un.stderr(), env is not None, t.un.stderr())

    def test_urgent_data_from_a_forwarded_client_reaches_guest_inline(self):
        # The host end is a forward's accepted socket this time (SO_OOBINLINE
        # from its listener): a host client sends urgent data to a guest server.
        with netlab.Lab("tcpurgf") as lab:
            port = netlab.free_port()
            t = TcpLab(lab, extra=["-t", str(port)])
            srv, _ = start_py_server(t.guest, URGENT_RECEIVER, "listen:0.0.0.0:%d" % port,
                                     self.SIZES)
            r = t.host.py(URGENT_SENDER, "connect:127.0.0.1:%d" % port, self.SIZES, timeout=120,
                          check=False)
            self.assertIn("SENT", r.stdout, r.stdout + r.stderr)
            netlab.wait_for(lambda: srv.poll() is not None, 30, what="guest receiver done")
            self.assertEqual(srv.stdout().split()[-1], "OK", srv.stdout() + srv.stderr())
            lab.assert_alive(t.un)

    def _data_before_a_host_reset(self, env=None):
        with netlab.Lab("tcprst") as lab:
            t = TcpLab(lab, env)
            srv, port = start_py_server(t.host, ABORTING_SERVER)
            r = t.guest.py(ASK_THEN_READ, GATEWAY, port, timeout=60, check=False)
            self.assertEqual(r.stdout.splitlines(), [repr(b"ERROR: bad request\n")] * 5,
                             r.stdout + r.stderr)
            lab.assert_alive(t.un)

    def test_what_a_host_sends_before_its_reset_reaches_the_guest(self):
        """A server that writes an error and aborts: its bytes were queued
        before the RST, and a direct client reads them first. usernet once
        reset the guest at once, and the guest read nothing (4 runs in 5)."""
        self._data_before_a_host_reset()

    def test_what_a_host_sends_before_its_reset_without_peek_offset(self):
        self._data_before_a_host_reset(NO_PEEK_OFF)

    def test_what_the_guest_sends_before_its_reset_reaches_the_host(self):
        """A client that writes QUIT and aborts: the line was staged for the
        batch's one write, and the RST in the same batch threw it away."""
        with netlab.Lab("tcprstg") as lab:
            t = TcpLab(lab)
            srv, port = start_py_server(t.host, READ_TO_THE_END)
            t.guest.py(WRITE_THEN_ABORT, GATEWAY, port, timeout=60)
            netlab.wait_for(lambda: srv.stdout().count("GOT") >= 5, 10, what="5 connections")
            got = [l for l in srv.stdout().splitlines() if l.startswith("GOT")]
            self.assertEqual(got, ["GOT " + repr(b"QUIT now\n")] * 5, srv.stdout())
            lab.assert_alive(t.un)

    def test_urgent_data_from_host_reaches_guest_inline_once_and_in_order(self):
        self._urgent()

    def test_urgent_data_without_peek_offset(self):
        self._urgent(NO_PEEK_OFF)

    def test_guest_keepalive_finds_a_dead_remote_and_gets_a_reset(self):
        # The guest keeps an idle connection with keepalives; the remote then
        # goes silent (its address removed: no RST, no answer at all).
        # usernet answers the guest's probes itself, so only the host
        # socket's keepalive, turned on by them, can notice: after about
        # 10 s idle + 8 probes 1 s apart the guest gets a RST.
        with netlab.Lab("tcpka") as lab:
            t = TcpLab(lab, remote=True)
            srv = t.remote.server("tcp-echo", "--bind", REMOTE_ADDR)
            cli = t.guest.popen([netlab.PY, "-c", KEEPALIVE_CLIENT, REMOTE_ADDR, str(srv.port), "90"],
                                name="keepalive-client")
            netlab.wait_for(lambda: "CONNECTED" in cli.stdout(), 15, what="guest connected")
            time.sleep(3.5)  # the guest's first keepalives (idle 2 s)
            t.remote.run(["ip", "-4", "addr", "flush", "scope", "global"])
            netlab.wait_for(lambda: cli.poll() is not None, 100, what="guest connection to end")
            self.assertTrue(cli.stdout().split("\n")[1].startswith("RESET"), cli.stdout() + cli.stderr())
            lab.assert_alive(t.un)

    def test_zero_window_probes_are_no_keepalives(self):
        # A remote that stops reading shuts the window usernet offers the
        # guest, and Linux then probes it with the same segment it sends
        # as a keepalive (one byte below the next sequence number, no
        # data). Such probes once turned on the host socket's keepalive,
        # which would then reset an idle connection after an outage the
        # guest itself would ride out. usernet's socket must come out of
        # the stall with no keepalive timer.
        with netlab.Lab("tcpzwp") as lab:
            t = TcpLab(lab)
            srv, port = start_py_server(t.host, STALLED_READER, 6)
            cli = t.guest.popen([netlab.PY, "-c", SEND_THEN_IDLE, GATEWAY, str(port), "32"],
                                name="sender")

            def guest_timer():
                return t.guest.run(["ss", "-tnoH", "state", "established",
                                    "dport = :%d" % port]).stdout
            # The guest is probing a zero window: its persist timer runs.
            netlab.wait_for(lambda: "persist" in guest_timer(), 10,
                            what="the guest's zero-window probes (persist timer)")
            netlab.wait_for(lambda: "SENT" in cli.stdout(), 60, what="the guest's 32 MiB sent")

            def guest_send_queue():  # ss with one state: Recv-Q Send-Q local peer [timer]
                out = guest_timer().split()
                return int(out[1]) if len(out) > 1 else None
            netlab.wait_for(lambda: guest_send_queue() == 0, 30,
                            what="everything the guest sent acknowledged")
            time.sleep(1)
            host_side = t.host.run(["ss", "-tnoH", "state", "established",
                                    "dport = :%d" % port]).stdout
            self.assertIn("127.0.0.1:%d" % port, host_side, "usernet's host socket")
            self.assertNotIn("keepalive", host_side)
            lab.assert_alive(t.un)

    def test_64mib_download_and_upload_without_peek_offset(self):
        # The path of kernels without TCP SO_PEEK_OFF (Linux < 6.9, Debian
        # 12's 6.1): peeks from 0 into a discard area.
        netlab.require_tools("curl")
        with netlab.Lab("tcpnpo") as lab:
            t = TcpLab(lab, NO_PEEK_OFF)
            self.assertIn(FALLBACK_LOG, t.un.stderr())
            path, sha = lab.make_file(64 * MiB, "big.bin")
            srv = t.host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            base = "http://%s:%d/" % (GATEWAY, srv.port)
            out = lab.path("download.bin")
            netlab.curl(t.guest, ["--max-time", "100", "-o", out, base + "big.bin"], timeout=120)
            self.assertEqual(os.path.getsize(out), 64 * MiB)
            self.assertEqual(netlab.sha256_file(out), sha, "downloaded data differs")
            os.unlink(out)
            r = netlab.curl(t.guest, ["--max-time", "100", "-T", path, base + "upload"], timeout=120)
            self.assertEqual(r.stdout.split(), [sha, str(64 * MiB)], "uploaded data differs")
            lab.assert_alive(t.un)

    def test_a_guest_without_window_scaling_gets_two_segments_per_window(self):
        # Without window scaling a guest offers at most 65,535 bytes; at MTU
        # 65520 one full-MSS segment filled it, and the guest acknowledged
        # each at its delayed-ACK timer (32 MiB took 22 s). Segments are now
        # at most half the largest window offered (RFC 9293 3.8.6.2.1), as
        # Linux sends them.
        import struct
        netlab.require_tools("curl")
        with netlab.Lab("tcpwsc") as lab:
            pcap = lab.path("trace.pcap")
            guest = lab.netns("guest")
            guest.run(["sysctl", "-qw", "net.ipv4.tcp_window_scaling=0"])
            host = lab.netns("host")
            un = lab.usernet(host, ["--netns", guest.path, "--config-net", "--pcap", pcap],
                             wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            path, sha = lab.make_file(8 * MiB, "f.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            out = lab.path("down.bin")
            netlab.curl(guest, ["--max-time", "100", "-o", out,
                                "http://%s:%d/f.bin" % (GATEWAY, srv.port)], timeout=120)
            self.assertEqual(netlab.sha256_file(out), sha)
            un.stop()
            with open(pcap, "rb") as f:
                data = f.read()
            largest, off = 0, 24
            while off + 16 <= len(data):
                incl = struct.unpack("<I", data[off + 8:off + 12])[0]
                fr = data[off + 16:off + 16 + incl]
                off += 16 + incl
                if len(fr) < 54 or fr[12:14] != b"\x08\x00" or fr[23] != 6:
                    continue
                ihl = (fr[14] & 15) * 4
                if fr[26:30] != bytes([10, 0, 2, 2]):
                    continue
                total = struct.unpack(">H", fr[16:18])[0]
                doff = (fr[14 + ihl + 12] >> 4) * 4
                largest = max(largest, total - ihl - doff)
            netlab.log("largest segment to the guest: %d bytes" % largest)
            self.assertGreater(largest, 1460)
            self.assertLessEqual(largest, 65535 // 2)


if __name__ == "__main__":
    netlab.main()
