#!/usr/bin/env python3
"""usernet --websocket with a real WebSocket client: Node's `ws` package
(tests/v86/ws_frames.js, installed by scripts/install-deps.sh), speaking
v86's relay protocol, one binary message per Ethernet frame.

- Two clients each send a DHCP DISCOVER as a binary message, get an OFFER,
  REQUEST it and get an ACK: two distinct leases (each connection is its own
  switch port); each then resolves the gateway by ARP.
- The start-up banner prints the network_relay_url line.
- The Origin allow-list: a listed Origin connects, another gets 403.
- A text message is answered with close 1003; a plain HTTP GET with 426.
"""

import json
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
import rawframes  # noqa: E402

V86_DIR = os.path.join(netlab.REPO, "tests", "v86")
WS_FRAMES = os.path.join(V86_DIR, "ws_frames.js")
GW_MAC = rawframes.GW_MAC


def require_ws():
    netlab.require_root()
    netlab.require_tools("ip", "ss", "node", "curl")
    if not os.path.isdir(os.path.join(V86_DIR, "node_modules", "ws")):
        netlab.skip_file("the npm package ws is not installed in tests/v86 "
                         "(scripts/install-deps.sh runs npm ci there)")
    return netlab.usernet_bin()


class WsPeer:
    """A ws_frames.js client in a namespace: send() frames, events() out."""

    def __init__(self, ns, url, origin=None):
        argv = ["ip", "netns", "exec", ns.name, "node", WS_FRAMES, url] + ([origin] if origin else [])
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            try:
                self.q.put(json.loads(line))
            except ValueError:
                self.q.put({"event": "garbage", "line": line})
        self.q.put({"event": "eof"})

    def send_line(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def send(self, frame):
        self.send_line(frame.hex())

    def next_event(self, want, timeout=15.0, match=lambda e: True):
        deadline = time.time() + timeout
        seen = []
        while time.time() < deadline:
            try:
                e = self.q.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            seen.append(e)
            if e["event"] == want and match(e):
                return e
            if e["event"] in ("eof",):
                break
        raise AssertionError("no %s event from the WebSocket client; saw %r; stderr: %s" % (
            want, [x.get("event") for x in seen], self.stderr()))

    def stderr(self):
        if self.p.poll() is None:
            return "(running)"
        return self.p.stderr.read()

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(5)


def parse_dhcp(frame):
    """(msg_type, xid, yiaddr, chaddr) of a DHCP reply frame, or None."""
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    udp = 14 + ihl
    sport, dport = struct.unpack("!HH", frame[udp:udp + 4])
    if (sport, dport) != (67, 68):
        return None
    b = frame[udp + 8:]
    xid = struct.unpack("!I", b[4:8])[0]
    yiaddr = socket.inet_ntoa(b[16:20])
    chaddr = b[28:34]
    opts = b[240:]
    i, mtype = 0, None
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if i + 1 >= len(opts):
            break
        if opts[i] == 53 and opts[i + 1] >= 1:
            mtype = opts[i + 2]
        i += 2 + opts[i + 1]
    return mtype, xid, yiaddr, chaddr


class WebSocketTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bin = require_ws()

    def start(self, lab, extra=""):
        host = lab.netns("host")
        port = netlab.free_port()
        un = lab.usernet(host, ["--websocket", "127.0.0.1:%d%s" % (port, extra)],
                         wait=[lambda: host.run(["ss", "-ltnH", "sport = :%d" % port]).stdout.strip() != ""])
        return host, un, "ws://127.0.0.1:%d/" % port

    def peer(self, ns, url, origin=None):
        p = WsPeer(ns, url, origin)
        self.addCleanup(p.close)
        return p

    def dhcp_lease(self, peer, mac, xid):
        peer.next_event("open")
        peer.send(rawframes.eth(rawframes.BCAST, mac, 0x0800, rawframes.dhcp(mac, 1, xid)))

        def is_reply(kind):
            def m(e):
                d = parse_dhcp(bytes.fromhex(e["hex"]))
                return d is not None and d[0] == kind and d[1] == xid and d[3] == mac
            return m
        offer = parse_dhcp(bytes.fromhex(peer.next_event("frame", match=is_reply(2))["hex"]))
        peer.send(rawframes.eth(rawframes.BCAST, mac, 0x0800,
                                rawframes.dhcp(mac, 3, xid, requested=offer[2], server=netlab.GATEWAY)))
        ack = parse_dhcp(bytes.fromhex(peer.next_event("frame", match=is_reply(5))["hex"]))
        self.assertEqual(ack[2], offer[2])
        return ack[2]

    def test_two_clients_get_distinct_leases(self):
        with netlab.Lab("ws-dhcp") as lab:
            host, un, url = self.start(lab)
            mac_a = bytes.fromhex("0200c0ffee01")
            mac_b = bytes.fromhex("0200c0ffee02")
            a = self.peer(host, url)
            b = self.peer(host, url)
            ip_a = self.dhcp_lease(a, mac_a, 0x11111111)
            ip_b = self.dhcp_lease(b, mac_b, 0x22222222)
            self.assertNotEqual(ip_a, ip_b)
            for ip in (ip_a, ip_b):
                self.assertTrue(ip.startswith("10.0.2."), ip)
            # Each resolves the gateway from its own address.
            for peer, mac, ip in ((a, mac_a, ip_a), (b, mac_b, ip_b)):
                peer.send(rawframes.eth(rawframes.BCAST, mac, 0x0806,
                                        rawframes.arp(1, mac, ip, b"\0" * 6, netlab.GATEWAY)))

                def arp_reply(e, mac=mac):
                    f = bytes.fromhex(e["hex"])
                    return f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" and f[0:6] == mac
                f = bytes.fromhex(peer.next_event("frame", match=arp_reply)["hex"])
                self.assertEqual(f[22:28], GW_MAC)
                self.assertEqual(len(f), 60, "frames are padded to 60 bytes")
            a.send_line("CLOSE")
            a.next_event("close")
            # Both connections were logged with their switch port and MAC.
            netlab.wait_for(lambda: "closed (WebSocket close 1000)" in un.stderr(), 10,
                            what="usernet logs the close")
            log = un.stderr()
            self.assertEqual(log.count("connected as switch port"), 2, log)
            self.assertIn("guest MAC 02:00:c0:ff:ee:01", log)
            self.assertIn("guest MAC 02:00:c0:ff:ee:02", log)

    def test_banner_prints_network_relay_url(self):
        with netlab.Lab("ws-banner") as lab:
            host, un, url = self.start(lab)
            netlab.wait_for(lambda: "network_relay_url" in un.stdout(), 10, what="the banner")
            self.assertIn('network_relay_url: "%s"' % url, un.stdout())

    def test_origin_allow_list(self):
        with netlab.Lab("ws-origin") as lab:
            host, un, url = self.start(lab, ",origin=https://good.example,origin=http://localhost:8000")
            ok = self.peer(host, url, origin="https://good.example")
            ok.next_event("open")
            bad = self.peer(host, url, origin="https://evil.example")
            e = bad.next_event("error")
            self.assertIn("403", e["message"])
            none = self.peer(host, url)
            e = none.next_event("error")
            self.assertIn("403", e["message"])

    def test_without_origin_only_this_hosts_pages_and_non_browsers_connect(self):
        """A page on any site can open a WebSocket to 127.0.0.1, and its
        guest would reach the host's loopback: without origin=, a page of
        another site is refused (403, and the log says what to add); this
        host's pages and clients that send no Origin connect; origin=*
        admits any page."""
        with netlab.Lab("ws-origin") as lab:
            host, un, url = self.start(lab)
            bad = self.peer(host, url, origin="https://evil.example")
            self.assertIn("403", bad.next_event("error")["message"])
            netlab.wait_for(lambda: "add ,origin=https://evil.example" in un.stderr(), 10,
                            what="the log naming the Origin and the option")
            for origin in ("http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000", None):
                self.peer(host, url, origin=origin).next_event("open")
        with netlab.Lab("ws-origin") as lab:
            host, un, url = self.start(lab, ",origin=*")
            self.peer(host, url, origin="https://evil.example").next_event("open")

    def test_text_message_closes_and_plain_http_is_told_what_this_is(self):
        with netlab.Lab("ws-text") as lab:
            host, un, url = self.start(lab)
            p = self.peer(host, url)
            p.next_event("open")
            p.send_line("TEXT hello")
            e = p.next_event("close")
            self.assertEqual(e["code"], 1003)
            port = url.rsplit(":", 1)[1].strip("/")
            r = host.run(["curl", "-s", "-i", "http://127.0.0.1:%s/" % port], check=False)
            self.assertIn("426 Upgrade Required", r.stdout)
            self.assertIn("network_relay_url", r.stdout)


if __name__ == "__main__":
    netlab.main()
