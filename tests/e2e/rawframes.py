"""rawframes: hand-built Ethernet frames for tests that play a hostile guest
(IPv4, ARP, DHCP; and IPv6: router and neighbor advertisements, UDP,
extension header chains, fragments).

Python 3 standard library only.  A test runs `python3 rawframes.py JSON`
inside a guest namespace: JSON names the interface, a list of frames to
send (built here from short descriptions) and how long to listen for
replies; the script prints one JSON line describing every IPv4/ARP frame
it received.  The guest's own kernel is not involved in sending (an
AF_PACKET socket), so a frame can claim any source address.
"""

import json
import os
import random
import select
import socket
import struct
import sys
import time

GW_MAC = bytes.fromhex("52550a000202")
BCAST = b"\xff" * 6
ETH_P_ALL = 0x0003


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip4(a):
    return socket.inet_aton(a)


def eth(dst, src, etype, payload):
    frame = dst + src + struct.pack("!H", etype) + payload
    return frame.ljust(60, b"\0")


def ipv4(src, dst, proto, payload, ttl=64):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), random.getrandbits(16), 0x4000,
                    ttl, proto, 0, ip4(src), ip4(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def _l4(src, dst, proto, seg, at):
    ph = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, proto, len(seg))
    c = csum(ph + seg)
    if proto == 17 and c == 0:
        c = 0xFFFF
    return seg[:at] + struct.pack("!H", c) + seg[at + 2:]


def tcp_syn(src, dst, sport, dport, seq=1000):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 65535, 0, 0)
    return ipv4(src, dst, 6, _l4(src, dst, 6, seg, 16))


def udp(src, dst, sport, dport, payload):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return ipv4(src, dst, 17, _l4(src, dst, 17, seg, 6))


def icmp_echo(src, dst, ident=0x4242, seq=1):
    m = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"usernet" * 4
    m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
    return ipv4(src, dst, 1, m)


def ip6(a):
    return socket.inet_pton(socket.AF_INET6, a)


def ipv6(src, dst, next_header, payload, hop_limit=64):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, hop_limit,
                       ip6(src), ip6(dst)) + payload


def icmp6(src, dst, msg):
    """msg with its checksum (the pseudo-header of RFC 8200 8.1) filled."""
    ph = ip6(src) + ip6(dst) + struct.pack("!I3xB", len(msg), 58)
    c = csum(ph + msg[:2] + b"\0\0" + msg[4:])
    return msg[:2] + struct.pack("!H", c) + msg[4:]


def udp6(src, dst, sport, dport, payload):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ph = ip6(src) + ip6(dst) + struct.pack("!I3xB", len(seg), 17)
    c = csum(ph + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def mcast_mac(a):
    return b"\x33\x33" + ip6(a)[12:]


def ipv6_frames(d, src_mac):
    """IPv6 frames of one description (a list: fragments make several)."""
    kind = d["kind"]
    if kind == "ra6":  # a router advertisement for a prefix, from src (link-local)
        pfx = struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 86400, 14400, 0, ip6(d["prefix"]))
        lla = struct.pack("!BB6s", 1, 1, src_mac)
        msg = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + lla + pfx
        dst = "ff02::1"
        body, nh = icmp6(d["src"], dst, msg), 58
        for _ in range(d.get("ext", 0)):  # behind n destination-options headers (PadN)
            body = struct.pack("!BB", nh, 0) + b"\x01\x04\0\0\0\0" + body
            nh = 60
        return [eth(mcast_mac(dst), src_mac, 0x86DD, ipv6(d["src"], dst, nh, body, 255))]
    if kind == "na6":  # an unsolicited, overriding advertisement for target
        lla = struct.pack("!BB6s", 2, 1, src_mac)
        msg = struct.pack("!BBHI16s", 136, 0, 0, 0x20000000, ip6(d["target"])) + lla
        dst = "ff02::1"
        return [eth(mcast_mac(dst), src_mac, 0x86DD,
                    ipv6(d["src"], dst, 58, icmp6(d["src"], dst, msg), 255))]
    if kind == "udp6":
        return [eth(GW_MAC, src_mac, 0x86DD,
                    ipv6(d["src"], d["dst"], 17,
                         udp6(d["src"], d["dst"], d["sport"], d["dport"], d.get("data", "x").encode())))]
    if kind == "chain6":  # UDP behind n destination-options headers (PadN), or cut short
        body = udp6(d["src"], d["dst"], 4000, d["dport"], b"x")
        nh = 17
        for _ in range(d["n"]):
            body = struct.pack("!BB", nh, 0) + b"\x01\x04\0\0\0\0" + body
            nh = 60
        if d.get("cut"):
            body = body[:d["cut"]]
        return [eth(GW_MAC, src_mac, 0x86DD, ipv6(d["src"], d["dst"], nh, body))]
    if kind == "echo6":  # an echo request, behind a type 0 routing header with "left" segments
        msg = icmp6(d["src"], d["dst"], struct.pack("!BBHHH", 128, 0, 0, 0x4242, 1) + b"rh0")
        body, nh = msg, 58
        if "rh0_left" in d:
            body = struct.pack("!BBBBI16s", nh, 2, 0, d["rh0_left"], 0, ip6(d["dst"])) + body
            nh = 43
        return [eth(GW_MAC, src_mac, 0x86DD, ipv6(d["src"], d["dst"], nh, body))]
    if kind == "frag6":  # pieces [offset, length, more] of a UDP datagram of `size` bytes
        seg = udp6(d["src"], d["dst"], 4000, d["dport"], bytes(d["size"]))
        out = []
        for off, length, more in d["pieces"]:
            fh = struct.pack("!BBHI", 17, 0, off | more, d["id"])
            out.append(eth(GW_MAC, src_mac, 0x86DD,
                           ipv6(d["src"], d["dst"], 44, fh + seg[off:off + length])))
        return out
    raise ValueError(kind)


def arp(op, sha, spa, tha, tpa, htype=1):
    return struct.pack("!HHBBH6s4s6s4s", htype, 0x0800, 6, 4, op, sha, ip4(spa), tha, ip4(tpa))


def dhcp(mac, msg_type, xid, requested=None, server=None):
    b = struct.pack("!BBBBIHHIIII", 1, 1, 6, 0, xid, 0, 0x8000, 0, 0, 0, 0)
    b += mac + b"\0" * 10 + b"\0" * 192 + b"\x63\x82\x53\x63"
    b += bytes([53, 1, msg_type])
    if requested:
        b += bytes([50, 4]) + ip4(requested)
    if server:
        b += bytes([54, 4]) + ip4(server)
    b += b"\xff"
    return udp("0.0.0.0", "255.255.255.255", 68, 67, b)


def build(d, my_mac):
    """A frame from its description (a dict)."""
    kind = d["kind"]
    src_mac = bytes.fromhex(d["mac"]) if "mac" in d else my_mac
    if kind.endswith("6"):
        return ipv6_frames(d, src_mac)
    if kind == "syn":
        return eth(GW_MAC, src_mac, 0x0800, tcp_syn(d["src"], d["dst"], d["sport"], d["dport"]))
    if kind == "udp":
        return eth(GW_MAC, src_mac, 0x0800,
                   udp(d["src"], d["dst"], d["sport"], d["dport"], d.get("data", "x").encode()))
    if kind == "ping":
        return eth(GW_MAC, src_mac, 0x0800, icmp_echo(d["src"], d["dst"], d.get("id", 0x4242)))
    if kind == "garp":
        return eth(BCAST, src_mac, 0x0806, arp(2, src_mac, d["ip"], BCAST, d["ip"]))
    if kind == "arp":  # who-has tpa, from spa; "vlan": an 802.1Q tag (TCI) in front;
        # "to": a destination MAC (hex) instead of broadcast; "htype": the hardware type
        dst = bytes.fromhex(d["to"]) if "to" in d else BCAST
        f = eth(dst, src_mac, 0x0806, arp(1, src_mac, d["spa"], b"\0" * 6, d["tpa"], d.get("htype", 1)))
        if "vlan" in d:
            f = f[:12] + struct.pack("!HH", 0x8100, d["vlan"]) + f[12:]
        return f
    if kind == "dhcp":
        mt = {"discover": 1, "request": 3}[d["type"]]
        return eth(BCAST, src_mac, 0x0800, dhcp(src_mac, mt, d["xid"], d.get("requested"),
                                                d.get("server")))
    raise ValueError(kind)


def storm(st, my_mac):
    """Frames a hostile guest sprays (a dict of counts, seeded):
    dhcp: DISCOVER + REQUEST pairs from made-up MACs; arp: gratuitous ARP
    from made-up MACs for addresses of the network; udp: datagrams from
    rotating source addresses (inside and outside the network, but none in
    st["exclude"]) toward st["udp_dst"]:st["udp_port"], all from this
    port's own MAC."""
    if not st:
        return []
    rng = random.Random(st.get("seed", 1))
    out = []

    def made_up_mac():
        return bytes([0x02]) + bytes(rng.getrandbits(8) for _ in range(5))

    for i in range(st.get("dhcp", 0)):
        m = made_up_mac()
        out.append(eth(BCAST, m, 0x0800, dhcp(m, 1, rng.getrandbits(32))))
        want = "10.0.2.%d" % (15 + i % 16)
        out.append(eth(BCAST, m, 0x0800, dhcp(m, 3, rng.getrandbits(32), want, "10.0.2.2")))
    for i in range(st.get("arp", 0)):
        m = made_up_mac()
        a = "10.0.2.%d" % rng.randrange(4, 255)
        out.append(eth(BCAST, m, 0x0806, arp(2, m, a, BCAST, a)))
    exclude = set(st.get("exclude", ()))
    for i in range(st.get("udp", 0)):
        if i % 2:
            src = "10.0.2.%d" % rng.randrange(4, 255)
            while src in exclude:
                src = "10.0.2.%d" % rng.randrange(4, 255)
        else:
            src = "%d.%d.%d.%d" % (rng.randrange(1, 224), rng.randrange(256), rng.randrange(256),
                                   rng.randrange(1, 255))
        out.append(eth(GW_MAC, my_mac, 0x0800,
                       udp(src, st["udp_dst"], 1024 + rng.randrange(60000), st["udp_port"], b"x")))
    return out


def describe(frame):
    """What a received frame is, for the test to assert on."""
    if len(frame) < 14:
        return None
    etype = struct.unpack("!H", frame[12:14])[0]
    if etype == 0x0806 and len(frame) >= 42:
        op = struct.unpack("!H", frame[20:22])[0]
        return {"arp": op, "spa": socket.inet_ntoa(frame[28:32]), "sha": frame[22:28].hex()}
    if etype == 0x86DD and len(frame) >= 54 + 8 and frame[20] == 58:  # ICMPv6, no extensions
        l4 = frame[54:]
        return {"src6": socket.inet_ntop(socket.AF_INET6, frame[22:38]),
                "dst6": socket.inet_ntop(socket.AF_INET6, frame[38:54]),
                "type": l4[0], "code": l4[1], "param": struct.unpack("!I", l4[4:8])[0],
                "quoted_nh": l4[8 + 6] if len(l4) >= 8 + 40 else None}
    if etype != 0x0800 or len(frame) < 34:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0xF) * 4
    proto = ip[9]
    r = {"src": socket.inet_ntoa(ip[12:16]), "dst": socket.inet_ntoa(ip[16:20]), "proto": proto}
    l4 = ip[ihl:]
    if proto == 6 and len(l4) >= 20:
        r.update(sport=struct.unpack("!H", l4[0:2])[0], dport=struct.unpack("!H", l4[2:4])[0],
                 flags=l4[13])
    elif proto == 1 and len(l4) >= 8:
        r.update(type=l4[0], code=l4[1])
        if l4[0] == 3 and len(l4) >= 8 + 20 + 4:
            q = l4[8:]
            qihl = (q[0] & 0xF) * 4
            r.update(quoted_dst=socket.inet_ntoa(q[16:20]), quoted_proto=q[9])
            if len(q) >= qihl + 4:
                r.update(quoted_dport=struct.unpack("!H", q[qihl + 2:qihl + 4])[0])
    elif proto == 17 and len(l4) >= 8:
        r.update(sport=struct.unpack("!H", l4[0:2])[0], dport=struct.unpack("!H", l4[2:4])[0])
    return r


def run(spec):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((spec["ifname"], 0))
    my_mac = s.getsockname()[4]
    frames = []
    for d in spec.get("frames", []):
        f = build(d, my_mac)
        frames += f if isinstance(f, list) else [f]
    frames += storm(spec.get("storm"), my_mac)
    for _ in range(spec.get("repeat", 1)):
        for f in frames:
            s.send(f)
        if spec.get("gap"):
            time.sleep(spec["gap"])
    got = []
    deadline = time.monotonic() + spec.get("listen", 0)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if not select.select([s], [], [], left)[0]:
            break
        pkt, addr = s.recvfrom(65536)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        d = describe(pkt)
        if d:
            got.append(d)
    print(json.dumps({"mac": my_mac.hex(), "got": got}))


if __name__ == "__main__":
    run(json.loads(sys.argv[1]))
