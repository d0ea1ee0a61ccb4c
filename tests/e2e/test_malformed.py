#!/usr/bin/env python3
"""A hostile client on --socket sends a corpus of malformed frames while a
well-behaved netns guest on the same usernet downloads 64 MiB: the transfer
completes intact and usernet is still alive and serving afterwards.

The corpus is deterministic for a given seed (printed; set UN_MALFORMED_SEED
to replay).  An oversize length prefix (> 65535) may legitimately make
usernet close that connection, so it is sent last, on its own connection."""

import os
import random
import socket
import struct
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import DNS, GATEWAY, MiB, REMOTE_ADDR  # noqa: E402
from rawframes import csum, ip4  # noqa: E402

netlab.require_basics()
netlab.require_tools("curl")

MY_MAC = bytes.fromhex("525400c0ffee")
MY_IP = "10.0.2.99"
BCAST = b"\xff" * 6


def eth(dst, src, etype, payload):
    return dst + src + struct.pack("!H", etype) + payload


def ipv4(src, dst, proto, payload, ihl=5, tot=None, frag=0, ttl=64, ident=0x1234, opts=b"",
         good_csum=True, version=4):
    hlen = ihl * 4
    opts = opts.ljust(max(0, hlen - 20), b"\0")[:max(0, hlen - 20)]
    total = tot if tot is not None else 20 + len(opts) + len(payload)
    h = struct.pack("!BBHHHBBH4s4s", (version << 4) | (ihl & 0xF), 0, total & 0xFFFF, ident, frag,
                    ttl, proto, 0, ip4(src), ip4(dst)) + opts
    c = csum(h) if good_csum else (csum(h) ^ 0x5A5A) or 1
    h = h[:10] + struct.pack("!H", c) + h[12:]
    return h + payload


def l4_csum(src, dst, proto, seg):
    ph = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, proto, len(seg))
    return csum(ph + seg)


def tcp(src, dst, sport, dport, seq=1000, ack=0, flags=0x02, win=65535, opts=b"", payload=b"",
        doff=None, urg=0, good_csum=True):
    hl = 20 + len(opts)
    d = doff if doff is not None else hl // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (d & 0xF) << 4,
                      flags, win, 0, urg) + opts + payload
    c = l4_csum(src, dst, 6, seg)
    if not good_csum:
        c ^= 0x00FF
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src, dst, sport, dport, payload, length=None, good_csum=True):
    ln = length if length is not None else 8 + len(payload)
    seg = struct.pack("!HHHH", sport, dport, ln & 0xFFFF, 0) + payload
    c = l4_csum(src, dst, 17, seg) or 0xFFFF
    if not good_csum:
        c ^= 0x0F0F
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def corpus(rng, gw_mac, guest_mac):
    """Yield (name, frame) pairs, every frame 14..65535 bytes long (a whole
    Ethernet header at least, so a framing-level close is not expected)."""
    dsts = [gw_mac, BCAST]
    targets = [GATEWAY, DNS, REMOTE_ADDR]

    def rbytes(n):
        return bytes(rng.getrandbits(8) for _ in range(n))

    def v4(proto, payload, dst=None, **kw):
        return eth(gw_mac, MY_MAC, 0x0800, ipv4(MY_IP, dst or rng.choice(targets), proto, payload, **kw))

    # bare headers
    for et in (0x0800, 0x0806, 0x86DD, 0x8100, 0x88A8, 0x0000, 0xFFFF):
        yield "bare-eth-%04x" % et, eth(gw_mac, MY_MAC, et, b"")
        yield "bare-eth-bcast-%04x" % et, eth(BCAST, MY_MAC, et, b"")
    # ARP: truncated, wrong sizes, request for the gateway from odd addresses
    arp_ok = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MY_MAC, ip4(MY_IP), b"\0" * 6, ip4(GATEWAY))
    for cut in (1, 7, 8, 20, 27):
        yield "arp-trunc%d" % cut, eth(BCAST, MY_MAC, 0x0806, arp_ok[:cut])
    yield "arp-hlen255", eth(BCAST, MY_MAC, 0x0806, struct.pack("!HHBBH", 1, 0x0800, 255, 255, 1) + rbytes(30))
    yield "arp-hlen0", eth(BCAST, MY_MAC, 0x0806, struct.pack("!HHBBH", 1, 0x0800, 0, 0, 1) + rbytes(10))
    yield "arp-op99", eth(BCAST, MY_MAC, 0x0806, arp_ok[:6] + struct.pack("!H", 99) + arp_ok[8:])
    yield "arp-from-gw-ip", eth(BCAST, MY_MAC, 0x0806, struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MY_MAC, ip4("0.0.0.0"), b"\0" * 6, ip4(GATEWAY)))
    # IPv4 header lies
    pl = tcp(MY_IP, GATEWAY, 4000, 80)
    for ihl in (0, 1, 4, 6, 15):
        yield "ip-ihl%d" % ihl, v4(6, pl, ihl=ihl)
    for tot in (0, 1, 19, 20, 21, 39, 65535, 1500):
        yield "ip-tot%d" % tot, v4(6, pl, tot=tot)
    yield "ip-badcsum", v4(6, pl, good_csum=False)
    yield "ip-version6-in-v4", v4(6, pl, version=6)
    yield "ip-version0", v4(6, pl, version=0)
    yield "ip-ttl0", v4(17, udp(MY_IP, GATEWAY, 4000, 9, b"x"), ttl=0, dst=GATEWAY)
    yield "ip-trunc-10", eth(gw_mac, MY_MAC, 0x0800, ipv4(MY_IP, GATEWAY, 6, pl)[:10])
    yield "ip-opts-garbage", v4(6, pl, ihl=15, opts=rbytes(40))
    yield "ip-opts-len0", v4(6, pl, ihl=6, opts=b"\x07\x00\x00\x00")
    yield "ip-proto-unknown", v4(253, rbytes(40))
    yield "ip-src-bcast", eth(gw_mac, MY_MAC, 0x0800, ipv4("255.255.255.255", GATEWAY, 17,
                                                         udp("255.255.255.255", GATEWAY, 1, 9, b"x")))
    yield "ip-dst-bcast-udp", eth(BCAST, MY_MAC, 0x0800, ipv4(MY_IP, "10.0.2.255", 17,
                                                            udp(MY_IP, "10.0.2.255", 4000, 9, b"x")))
    # fragments: single out-of-order fragment (crashed libslirp), overlaps, tiny, huge offset
    upl = udp(MY_IP, GATEWAY, 4001, 9, rbytes(3000))
    yield "frag-only-last", v4(17, upl[1480:2960], dst=GATEWAY, frag=1480 // 8, ident=0x4242)
    yield "frag-only-middle", v4(17, upl[8:1488], dst=GATEWAY, frag=(1 << 13) | 1, ident=0x4243)
    yield "frag-first-of-3", v4(17, upl[:1480], dst=GATEWAY, frag=1 << 13, ident=0x4244)
    yield "frag-overlap", v4(17, upl[8:1000], dst=GATEWAY, frag=(1 << 13) | 1, ident=0x4244)
    yield "frag-maxoff", v4(17, rbytes(64), dst=GATEWAY, frag=0x1FFF, ident=0x4245)
    yield "frag-maxoff-mf", v4(17, rbytes(64), dst=GATEWAY, frag=(1 << 13) | 0x1FFF, ident=0x4246)
    yield "frag-tiny-first", v4(6, pl[:8], dst=GATEWAY, frag=1 << 13, ident=0x4247)
    for i in range(40):  # many idents, never completed
        yield "frag-flood%d" % i, v4(17, rbytes(256), dst=GATEWAY, frag=(1 << 13) | rng.randrange(1, 8000),
                                     ident=0x5000 + i)
    # TCP
    for t in targets:
        sp = rng.randrange(1024, 65535)
        yield "tcp-trunc10", v4(6, tcp(MY_IP, t, sp, 80)[:10], dst=t)
        for d in (0, 4, 15):
            yield "tcp-doff%d" % d, v4(6, tcp(MY_IP, t, sp, 80, doff=d), dst=t)
        yield "tcp-badcsum-syn", v4(6, tcp(MY_IP, t, sp, 80, good_csum=False), dst=t)
        yield "tcp-allflags", v4(6, tcp(MY_IP, t, sp, 80, flags=0xFF, payload=b"x" * 10), dst=t)
        yield "tcp-noflags", v4(6, tcp(MY_IP, t, sp, 80, flags=0, payload=b"x" * 10), dst=t)
        yield "tcp-synfin", v4(6, tcp(MY_IP, t, sp, 80, flags=0x03), dst=t)
        yield "tcp-synrst", v4(6, tcp(MY_IP, t, sp, 80, flags=0x06), dst=t)
        yield "tcp-ack-noflow", v4(6, tcp(MY_IP, t, sp, 80, flags=0x10, ack=12345, payload=b"data"), dst=t)
        yield "tcp-rst-noflow", v4(6, tcp(MY_IP, t, sp, 80, flags=0x04), dst=t)
        yield "tcp-urg-beyond", v4(6, tcp(MY_IP, t, sp, 80, flags=0x30, urg=60000, payload=b"u"), dst=t)
        yield "tcp-opt-len0", v4(6, tcp(MY_IP, t, sp, 80, opts=b"\x02\x00\x00\x00"), dst=t)
        yield "tcp-opt-len1", v4(6, tcp(MY_IP, t, sp, 80, opts=b"\x03\x01\x00\x00"), dst=t)
        yield "tcp-opt-overrun", v4(6, tcp(MY_IP, t, sp, 80, opts=b"\x02\x28\x05\xb4"), dst=t)
        yield "tcp-mss-trunc", v4(6, tcp(MY_IP, t, sp, 80, opts=b"\x01\x01\x01\x02"), dst=t)
        yield "tcp-wscale255", v4(6, tcp(MY_IP, t, sp, 80, opts=b"\x03\x03\xff\x00"), dst=t)
        yield "tcp-mss0", v4(6, tcp(MY_IP, t, sp, 80, opts=b"\x02\x04\x00\x00"), dst=t)
        yield "tcp-opt-garbage", v4(6, tcp(MY_IP, t, sp, 80, opts=rbytes(40)), dst=t)
        yield "tcp-sport0", v4(6, tcp(MY_IP, t, 0, 80), dst=t)
        yield "tcp-dport0", v4(6, tcp(MY_IP, t, sp, 0), dst=t)
    # UDP
    for t in targets:
        sp = rng.randrange(1024, 65535)
        yield "udp-trunc4", v4(17, udp(MY_IP, t, sp, 9, b"abc")[:4], dst=t)
        for ln in (0, 7, 9, 2000, 65535):
            yield "udp-len%d" % ln, v4(17, udp(MY_IP, t, sp, 9, b"abcdefgh", length=ln), dst=t)
        yield "udp-badcsum", v4(17, udp(MY_IP, t, sp, 9, b"abcdefgh", good_csum=False), dst=t)
        yield "udp-dport0", v4(17, udp(MY_IP, t, sp, 0, b"x"), dst=t)
    # DNS to 10.0.2.3:53: header only, qdcount lies, compression loops, long labels
    def dns_q(body, qd=1, an=0, flags=0x0100):
        return struct.pack("!HHHHHH", rng.getrandbits(16), flags, qd, an, 0, 0) + body
    dns_bad = [
        dns_q(b"", qd=1), dns_q(b"", qd=65535), dns_q(b"\xc0\x0c\x00\x01\x00\x01"),
        dns_q(b"\xc0\x0e\xc0\x0c\x00\x01\x00\x01"), dns_q(b"\x3f" + b"a" * 10),
        dns_q(b"\xff" + b"a" * 20 + b"\0\0\x01\0\x01"), dns_q((b"\x3f" + b"a" * 63) * 5 + b"\0\0\x01\0\x01"),
        dns_q(b"\x01a\0\0\x01\0\x01", flags=0x8180, an=5), dns_q(rbytes(100)), b"\x00", b"",
        dns_q(b"\x07example\x04test\0\0\x01\0\x01", qd=0, an=0xFFFF),
    ]
    for i, q in enumerate(dns_bad):
        yield "dns-bad%d" % i, v4(17, udp(MY_IP, DNS, 5353 + i, 53, q), dst=DNS)
    # DHCP to the server port: truncated, bad hlen, options overrunning, no cookie
    def dhcp(opts, hlen=6, cookie=b"\x63\x82\x53\x63", op=1):
        bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, hlen, 0, rng.getrandbits(32), 0, 0x8000,
                            b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, MY_MAC.ljust(16, b"\0"), b"", b"")
        return bootp + cookie + opts

    def dhcp_frame(p):
        return eth(BCAST, MY_MAC, 0x0800, ipv4("0.0.0.0", "255.255.255.255", 17,
                                               udp("0.0.0.0", "255.255.255.255", 68, 67, p)))
    dhcp_bad = [
        dhcp(b"")[:100], dhcp(b"\x35\x01\x01\xff", hlen=255), dhcp(b"\x35\x01\x01\xff", hlen=0),
        dhcp(b"\x35\x00\xff"), dhcp(b"\x35\x01\x01\x32\xff"), dhcp(b"\x35\x01\x01\x3d\xff" + b"x" * 10),
        dhcp(b"\x35\x01\x01\xff", cookie=b"\0\0\0\0"), dhcp(b"\x35\x01\x03\x32\x04\x0a\x00\x02\x0f\xff"),
        dhcp(b"\x35\x01\x01" + rbytes(200)), dhcp(b"\x35\x01\x01\xff", op=2), dhcp(b"\x34\x01\x03\x35\x01\x01\xff"),
        dhcp(b"\x35\x01\x07\x36\x04\x0a\x00\x02\x02\xff"),  # a RELEASE of an address we never had
        dhcp(b"\x35\x01\x03\x32\x04\x0a\x00\x02\x02\xff"),  # REQUEST for the gateway's own address
    ]
    for i, p in enumerate(dhcp_bad):
        yield "dhcp-bad%d" % i, dhcp_frame(p)
    # ICMP
    for t in targets:
        yield "icmp-trunc1", v4(1, b"\x08", dst=t)
        yield "icmp-echo-badcsum", v4(1, struct.pack("!BBHHH", 8, 0, 0x1234, 1, 1) + b"x" * 32, dst=t)
        err_inner = ipv4(GATEWAY, MY_IP, 6, b"\x00" * 4)[:24]
        m = struct.pack("!BBHI", 3, 3, 0, 0) + err_inner
        m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
        yield "icmp-unreach-trunc-inner", v4(1, m, dst=t)
        m = struct.pack("!BBHI", 3, 4, 0, 0) + rbytes(8)
        m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
        yield "icmp-unreach-garbage", v4(1, m, dst=t)
        m = struct.pack("!BBHHH", 8, 0, 0, 0xBEEF, 1) + rbytes(1400)
        m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
        yield "icmp-echo-big", v4(1, m, dst=t)
        yield "icmp-type-unknown", v4(1, struct.pack("!BBHI", 200, 200, 0, 0), dst=t)
    # IPv6: truncated, payload length lies, extension chains, NDP options with length 0
    def v6(nh, payload, plen=None, src=b"\xfe\x80" + b"\0" * 13 + b"\x99", dst=b"\xff\x02" + b"\0" * 13 + b"\x01"):
        h = struct.pack("!IHBB16s16s", 0x60000000, len(payload) if plen is None else plen, nh, 255, src, dst)
        return eth(b"\x33\x33\x00\x00\x00\x01", MY_MAC, 0x86DD, h + payload)
    yield "v6-trunc", eth(BCAST, MY_MAC, 0x86DD, b"\x60\0\0\0\0\x08")
    yield "v6-plen-lie", v6(59, b"x" * 8, plen=4000)
    yield "v6-hbh-long", v6(0, b"\x3b\xff" + b"\0" * 6)
    yield "v6-ext-chain", v6(0, (b"\x00\x00" + b"\x01\x04\0\0\0\0") * 100 + b"\x3b\0" + b"\0" * 6)
    yield "v6-frag-only", v6(44, b"\x11\x00\x01\x01\x12\x34\x56\x78" + rbytes(64))
    rs = struct.pack("!BBHI", 133, 0, 0, 0) + b"\x01\x00" + b"\0" * 6   # RS, source-LL option len 0
    yield "ndp-rs-optlen0", v6(58, rs)
    ns_ = struct.pack("!BBHI", 135, 0, 0, 0) + b"\xfe\xc0" + b"\0" * 13 + b"\x02" + b"\x01\x00\0\0\0\0\0\0"
    yield "ndp-ns-optlen0", v6(58, ns_)
    yield "ndp-ns-trunc", v6(58, ns_[:10])
    yield "icmpv6-garbage", v6(58, rbytes(30))
    # VLAN tags
    yield "vlan", eth(gw_mac, MY_MAC, 0x8100, b"\x00\x05\x08\x00" + ipv4(MY_IP, GATEWAY, 17,
                                                                       udp(MY_IP, GATEWAY, 1, 9, b"x")))
    yield "qinq-trunc", eth(gw_mac, MY_MAC, 0x88A8, b"\x00\x05\x81\x00")
    # source MACs that must never be learned: broadcast and multicast
    yield "src-bcast", eth(gw_mac, BCAST, 0x0800, ipv4(MY_IP, GATEWAY, 17, udp(MY_IP, GATEWAY, 1, 9, b"x")))
    yield "src-mcast", eth(guest_mac or BCAST, b"\x01\x00\x5e\x00\x00\x01", 0x0800, rbytes(40))
    # big frames
    yield "max-frame-65535", eth(gw_mac, MY_MAC, 0x0800, ipv4(MY_IP, GATEWAY, 17, udp(MY_IP, GATEWAY, 1, 9, b""),
                                                             tot=65535)) + rbytes(65535 - 42)
    yield "jumbo-9000", eth(gw_mac, MY_MAC, 0x0800, rbytes(9000))
    # random garbage, biased towards parsable ethertypes and the gateway
    for i in range(3000):
        n = rng.choice([14, 20, 34, 42, 54, 60, 64, 128, 576, 1514, rng.randrange(0, 1600)])
        et = rng.choice([0x0800, 0x0800, 0x0806, 0x86DD, rng.getrandbits(16)])
        frame = eth(rng.choice(dsts), rbytes(6), et, rbytes(max(0, n - 14)))
        if rng.random() < 0.5 and et == 0x0800 and len(frame) >= 34:
            # keep the IPv4 header plausible so deeper parsers are reached
            p = rng.choice([1, 6, 17])
            body = bytearray(frame[14:])
            hdr = ipv4(MY_IP, rng.choice(targets), p, b"")[:20]
            body[:20] = hdr
            body[2:4] = struct.pack("!H", rng.choice([len(body), rng.getrandbits(16)]))
            frame = frame[:14] + bytes(body)
        # clear the multicast bit of random source MACs except sometimes
        if rng.random() < 0.9:
            frame = frame[:6] + bytes([frame[6] & 0xFE]) + frame[7:]
        yield "random%d" % i, frame


class SocketClient:
    """A --socket port speaking QEMU's stream framing, with a reader thread
    that drains and records frames."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.frames = []
        self.closed = False
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._reader, daemon=True)
        self.t.start()

    def _reader(self):
        buf = b""
        try:
            while True:
                b = self.s.recv(1 << 16)
                if not b:
                    break
                buf += b
                while len(buf) >= 4:
                    n = struct.unpack("!I", buf[:4])[0]
                    if len(buf) < 4 + n:
                        break
                    with self.lock:
                        if len(self.frames) < 10000:
                            self.frames.append(buf[4:4 + n])
                    buf = buf[4 + n:]
        except OSError:
            pass
        self.closed = True

    def send(self, frame):
        self.s.sendall(struct.pack("!I", len(frame)) + frame)

    def find(self, pred):
        with self.lock:
            for f in self.frames:
                if pred(f):
                    return f
        return None

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def arp_gateway(client, ip=GATEWAY, timeout=5, mac=None, my_ip=None):
    """ARP for ip through the socket port (from mac and my_ip, default
    MY_MAC and MY_IP); return its MAC."""
    mac = mac or MY_MAC
    req = eth(BCAST, mac, 0x0806, struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip4(my_ip or MY_IP),
                                             b"\0" * 6, ip4(ip)))

    def reply():
        client.send(req)
        f = client.find(lambda f: len(f) >= 42 and f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02"
                        and f[28:32] == ip4(ip))
        return f and f[22:28]
    return netlab.wait_for(reply, timeout, interval=0.3, what="ARP reply for %s on the socket port" % ip)


class MalformedTest(unittest.TestCase):
    def test_malformed_corpus_on_socket_does_not_disturb_netns_transfer(self):
        seed = int(os.environ.get("UN_MALFORMED_SEED", random.randrange(1 << 30)))
        print("corpus seed %d (replay with UN_MALFORMED_SEED=%d)" % (seed, seed), flush=True)
        with netlab.Lab("malf") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            lab.remote(host)
            sock = lab.path("usernet.sock")
            un = lab.usernet(host, ["--netns", guest.path, "--config-net", "--socket", sock],
                             wait=[("link", guest, "tap0"), ("socket", sock)])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            guest_mac = bytes.fromhex(guest.run(["cat", "/sys/class/net/tap0/address"]).stdout.strip().replace(":", ""))
            path, sha = lab.make_file(64 * MiB, "big.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)

            client = SocketClient(sock)
            gw_mac = arp_gateway(client)

            out = lab.path("dl.bin")
            # rate-limited so the transfer overlaps the attack (~6 s at 12 MB/s;
            # usernet alone moves 64 MiB in well under a second)
            dl = guest.popen(["curl", "-sS", "--noproxy", "*", "--max-time", "240", "--limit-rate", "12M", "-o", out,
                              "http://%s:%d/big.bin" % (GATEWAY, srv.port)], name="curl")

            rng = random.Random(seed)
            sent = during = 0
            reconnects = []
            rounds = 0
            # keep attacking for as long as the transfer runs (at least one full round)
            while rounds == 0 or (dl.poll() is None and rounds < 20):
                rounds += 1
                for name, frame in corpus(rng, gw_mac, guest_mac):
                    assert 14 <= len(frame) <= 65535, name
                    try:
                        client.send(frame)
                        sent += 1
                    except OSError as e:
                        # usernet dropped this port (noted, and the test fails
                        # below): reconnect and go on attacking
                        reconnects.append("%s (or a frame shortly before it): %s" % (name, e))
                        client.close()
                        client = SocketClient(sock)
                    if dl.poll() is None:
                        during += 1
                self.assertIsNone(un.poll(), "usernet died during round %d:\n%s" % (rounds, un.describe()))
            print("sent %d malformed frames in %d rounds (%d while the transfer ran); port dropped %d times %s" % (
                sent, rounds, during, len(reconnects), reconnects[:5]), flush=True)

            # framing errors, each on its own connection: usernet may close
            # the port for these (runts shorter than an Ethernet header, a
            # length prefix that lies about what follows, an oversize prefix)
            for n in (0, 1, 6, 12, 13):
                c = SocketClient(sock)
                try:
                    c.send(os.urandom(n))
                    c.send(eth(BCAST, MY_MAC, 0x0806, b"\0" * 28))
                except OSError:
                    pass
                time.sleep(0.05)
                c.close()
            # lying length prefix, then EOF mid-frame, on its own connection
            c2 = SocketClient(sock)
            c2.s.sendall(struct.pack("!I", 1000) + b"\0" * 100)
            c2.close()
            # oversize length prefix last, on its own connection
            c3 = SocketClient(sock)
            try:
                c3.s.sendall(struct.pack("!I", 0xFFFFFFFF) + b"\xAA" * 70000)
            except OSError:
                pass  # usernet may close the connection: allowed
            c3.close()

            rc = dl.wait(250)
            self.assertEqual(rc, 0, "guest download failed:\n" + dl.describe())
            self.assertEqual(os.path.getsize(out), 64 * MiB)
            self.assertEqual(netlab.sha256_file(out), sha, "download corrupted")

            # usernet survived and still serves old and new clients
            time.sleep(0.5)
            self.assertIsNone(un.poll(), "usernet died:\n" + un.describe())
            netlab.ping(guest, GATEWAY, count=2)
            # a guest of its own (the attacking port, still attached, keeps
            # MY_MAC: the switch does not move a live port's MAC)
            fresh = SocketClient(sock)
            self.assertEqual(arp_gateway(fresh, mac=bytes.fromhex("02aa00000002"), my_ip="10.0.2.98"),
                             gw_mac)
            fresh.close()
            self.assertFalse(client.closed, "usernet closed the attacking port")
            client.close()
            self.assertEqual(reconnects, [], "usernet closed the port on frames of valid length (14..65535 bytes)")


if __name__ == "__main__":
    netlab.main()
