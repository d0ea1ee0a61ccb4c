#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_hdlc and fuzz_ppp_negotiation: the
frames and exchanges a real pppd (2.4.9, "noauth local noipdefault
usepeerdns defaultroute") and slattach send on usernet's serial line.
Run by hand: python3 fuzz/tools/make_ppp_seeds.py fuzz/corpus"""
import os
import struct
import sys


def fcs16(data):
    fcs = 0xffff
    for b in data:
        fcs ^= b
        for _ in range(8):
            fcs = (fcs >> 1) ^ 0x8408 if fcs & 1 else fcs >> 1
    return fcs


def hdlc(proto, info, accm=0xffffffff, comp=False):
    hdr = (b"" if comp else b"\xff\x03") + (bytes([proto]) if comp and proto < 0x100 else struct.pack(">H", proto))
    body = hdr + info
    f = (~fcs16(body)) & 0xffff
    body += bytes([f & 0xff, f >> 8])
    out = bytearray(b"\x7e")
    for c in body:
        if c in (0x7e, 0x7d) or (c < 0x20 and (accm >> c) & 1):
            out += bytes([0x7d, c ^ 0x20])
        else:
            out.append(c)
    return bytes(out + b"\x7e")


def slip(pkt):
    return b"\xc0" + pkt.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


def ctl(code, ident, data=b""):
    return struct.pack(">BBH", code, ident, 4 + len(data)) + data


def opt32(t, v):
    return struct.pack(">BBI", t, 6, v)


LCP, IPCP, IP = 0xc021, 0x8021, 0x0021
PPPD_LCP_CR = ctl(1, 1, opt32(2, 0) + opt32(5, 0x5c3a9f01) + b"\x07\x02\x08\x02")
PPPD_IPCP_CR = ctl(1, 1, b"\x02\x06\x00\x2d\x0f\x01" + opt32(3, 0) + opt32(129, 0) + opt32(131, 0))
PPPD_IPCP_CR2 = ctl(1, 2, opt32(3, 0x0a00020f) + opt32(129, 0x0a000203) + opt32(131, 0x0a000203))
IPV6CP_CR = ctl(1, 1, b"\x01\x0a\x02\x11\x22\xff\xfe\x33\x44\x55")
ICMP = bytes.fromhex("4500001c00004000400100000a00020f0a00020208000000000100010000")

# our magic with the harness's random generator (rnd = rnd * 1103515245 + 12345, from 1), | 1
OUR_MAGIC = ((1 * 1103515245 + 12345) & 0xffffffff) | 1
OUR_LCP_CR = opt32(2, 0) + opt32(5, OUR_MAGIC) + b"\x07\x02\x08\x02"
OUR_IPCP_CR = opt32(3, 0x0a000202)


def op(code, body=b""):
    assert len(body) < 256
    return bytes([code, len(body)]) + body


def main(root):
    hd = os.path.join(root, "hdlc")
    pn = os.path.join(root, "ppp_negotiation")
    os.makedirs(hd, exist_ok=True)
    os.makedirs(pn, exist_ok=True)
    seeds = {
        "lcp_request": b"\x00\x07" + hdlc(LCP, PPPD_LCP_CR),
        "ipcp_request_fcs32_flag": b"\x01\x40" + hdlc(IPCP, PPPD_IPCP_CR),
        "ip_compressed": b"\x02\x10" + hdlc(IP, ICMP, accm=0, comp=True),
        "abort_and_runt": b"\x02\x03\x7e\xff\x03\x7d\x7e\x7e\x01\x7e" + hdlc(LCP, ctl(9, 3, b"\x00" * 4)),
        "slip_packet": b"\x00\x20" + slip(ICMP + b"\xc0\xdb"),
    }
    for name, data in seeds.items():
        with open(os.path.join(hd, name), "wb") as f:
            f.write(data)
    session = (op(1, PPPD_LCP_CR) + op(1, ctl(2, 1, OUR_LCP_CR)) + op(6) +
               op(2, PPPD_IPCP_CR) + op(2, ctl(1, 2, opt32(3, 0) + opt32(129, 0) + opt32(131, 0))) +
               op(2, PPPD_IPCP_CR2) + op(2, ctl(2, 1, OUR_IPCP_CR)) + op(3, ICMP) +
               op(1, ctl(9, 7, b"\x5c\x3a\x9f\x01abc")) + op(7, struct.pack(">H", 0x8057) + IPV6CP_CR) +
               op(1, ctl(99, 1, b"x")) + op(1, ctl(5, 9)) + op(4) + op(4))
    pn_seeds = {
        "pppd_session": session + (b"\x00" if len(session) % 2 else b""),
        "raw_line": op(0, hdlc(LCP, PPPD_LCP_CR)[:20]) + op(0, hdlc(LCP, PPPD_LCP_CR)[20:]) + op(4),
        "timeouts": op(4) * 12 + op(1, PPPD_LCP_CR) + op(5),
        "nak_and_reject": op(1, ctl(3, 1, opt32(2, 0x000a0000) + opt32(5, 7))) +
                          op(1, ctl(4, 2, b"\x07\x02\x08\x02")) + op(1, ctl(1, 4, b"\x03\x04\xc0\x23" + b"\x01\x04\x00\x10")) + b"\x00",
    }
    for name, data in pn_seeds.items():
        with open(os.path.join(pn, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "corpus"))
