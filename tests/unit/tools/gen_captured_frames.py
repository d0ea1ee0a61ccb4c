#!/usr/bin/env python3
"""Turns the captures of capture_frames.sh into tests/unit/captured_frames.hpp.

Usage: gen_captured_frames.py [CAPTURE_DIR] > ../captured_frames.hpp
Frames are chosen by content (not by position), so a new capture yields
the same set; their ids, ports and sequence numbers will differ.
"""
import struct
import sys


def read_pcapng(path):
    data = open(path, 'rb').read()
    if struct.unpack('<I', data[:4])[0] != 0x0a0d0d0a:
        raise SystemExit(f'{path}: not pcapng')
    frames, i = [], 0
    while i < len(data):
        btype, blen = struct.unpack('<II', data[i:i + 8])
        if btype == 6:  # enhanced packet block
            caplen = struct.unpack('<I', data[i + 20:i + 24])[0]
            frames.append(data[i + 28:i + 28 + caplen])
        i += blen
    return frames


def ipv4(f):
    return f[14:] if len(f) >= 34 and f[12:14] == b'\x08\x00' else None


def l4(f):
    ip = ipv4(f)
    return ip[(ip[0] & 15) * 4:] if ip else None


def ports(f):
    seg = l4(f)
    return struct.unpack('!HH', seg[:4])


def is_udp(f):
    return ipv4(f) is not None and ipv4(f)[9] == 17


def is_tcp(f):
    return ipv4(f) is not None and ipv4(f)[9] == 6


def is_icmp(f):
    return ipv4(f) is not None and ipv4(f)[9] == 1


def frag(f):
    ip = ipv4(f)
    v = struct.unpack('!H', ip[6:8])[0]
    return bool(v & 0x2000), v & 0x1fff


def dhcp_type(f):
    opts, i = l4(f)[8 + 240:], 0
    while i + 1 < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if opts[i] == 53:
            return opts[i + 2]
        i += 2 + opts[i + 1]
    return None


def dns_qtype(f):
    dns = l4(f)[8:]
    i = 12
    while dns[i]:
        i += 1 + dns[i]
    return struct.unpack('!H', dns[i + 1:i + 3])[0]


def dns_id(f):
    return struct.unpack('!H', l4(f)[8:10])[0]


def first(frames, pred):
    for f in frames:
        try:
            if pred(f):
                return f
        except (IndexError, struct.error, TypeError):
            pass
    raise SystemExit('no frame matches a selector')


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else '/tmp/usernet-capture'
    a = read_pcapng(d + '/all.pcapng')
    o = read_pcapng(d + '/opt.pcapng')
    n = read_pcapng(d + '/nock.pcapng')
    guest, gw = bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2])
    dq = first(a, lambda f: is_udp(f) and ports(f)[1] == 53 and dns_qtype(f) == 1)
    dq6 = first(a, lambda f: is_udp(f) and ports(f)[1] == 53 and dns_qtype(f) == 28)
    sel = [
        ('kDhcpDiscoverUdhcpc', first(a, lambda f: is_udp(f) and ports(f)[1] == 67 and dhcp_type(f) == 1),
         'busybox udhcpc 1.35 DHCPDISCOVER (udhcpc -x hostname:guest), 52:54:00:12:34:56'),
        ('kDhcpOfferDnsmasq', first(a, lambda f: is_udp(f) and ports(f)[0] == 67 and dhcp_type(f) == 2),
         'dnsmasq 2.90 DHCPOFFER answering it'),
        ('kDhcpRequestUdhcpc', first(a, lambda f: is_udp(f) and ports(f)[1] == 67 and dhcp_type(f) == 3),
         'busybox udhcpc DHCPREQUEST (selecting) for the offered address'),
        ('kDhcpAckDnsmasq', first(a, lambda f: is_udp(f) and ports(f)[0] == 67 and dhcp_type(f) == 5),
         'dnsmasq DHCPACK'),
        ('kArpRequest', first(a, lambda f: f[12:14] == b'\x08\x06' and f[21] == 1 and f[28:32] == guest),
         'Linux ARP request: who has 10.0.2.2, tell 10.0.2.15'),
        ('kArpReply', first(a, lambda f: f[12:14] == b'\x08\x06' and f[21] == 2 and f[28:32] == gw),
         'Linux ARP reply: 10.0.2.2 is at 52:55:0a:00:02:02'),
        ('kDnsQueryA', dq, f'busybox nslookup query id 0x{dns_id(dq):04x}: example.com A IN (UDP, real checksum)'),
        ('kDnsResponseA', first(a, lambda f: is_udp(f) and ports(f)[0] == 53 and dns_id(f) == dns_id(dq)),
         'dnsmasq response: example.com A 93.184.216.34 (answer name is a pointer)'),
        ('kDnsQueryAAAA', dq6, f'busybox nslookup query id 0x{dns_id(dq6):04x}: example.com AAAA IN'),
        ('kDnsResponseAAAA', first(a, lambda f: is_udp(f) and ports(f)[0] == 53 and dns_id(f) == dns_id(dq6)),
         'dnsmasq response: example.com AAAA 2606:2800:220:1:248:1893:25c8:1946'),
        ('kIcmpEchoRequest', first(a, lambda f: is_icmp(f) and frag(f) == (False, 0) and l4(f)[0] == 8 and len(f) == 98),
         'busybox ping echo request, seq 0, 56 data bytes'),
        ('kIcmpEchoReply', first(a, lambda f: is_icmp(f) and frag(f) == (False, 0) and l4(f)[0] == 0 and len(f) == 98),
         'Linux echo reply to it'),
        ('kIpv4FirstFragment', first(a, lambda f: ipv4(f)[12:16] == guest and frag(f) == (True, 0)),
         'first fragment (MF set, offset 0) of a 3000-byte ping'),
        ('kIpv4LastFragment', first(a, lambda f: ipv4(f)[12:16] == guest and not frag(f)[0] and frag(f)[1] > 0),
         'last fragment (MF clear, offset 2960) of the same ping'),
        ('kTcpSyn', first(a, lambda f: is_tcp(f) and l4(f)[13] == 0x02 and ports(f)[1] == 8080),
         'Linux SYN 10.0.2.15 -> 10.0.2.2:8080: MSS 1460, SACK_PERM, TS, WS 10'),
        ('kTcpSynAck', first(a, lambda f: is_tcp(f) and l4(f)[13] == 0x12 and ports(f)[0] == 8080),
         'Linux SYN-ACK answering it'),
        ('kTcpData', first(a, lambda f: is_tcp(f) and l4(f)[13] == 0x18 and ports(f)[1] == 8080),
         'PSH|ACK with 14 bytes "hello-usernet\\n" and a timestamp option'),
        ('kTcpRstAck', first(a, lambda f: is_tcp(f) and l4(f)[13] == 0x14 and ports(f)[0] == 9),
         'Linux RST|ACK refusing a connection to port 9'),
        ('kUdpWithIpOptions', first(o, is_udp),
         'UDP datagram whose IPv4 header has a Record Route option (IHL 8)'),
        ('kIcmpPortUnreachWithOptions', first(o, is_icmp),
         'Linux ICMP port unreachable quoting the datagram above'),
        ('kUdpZeroChecksum', first(n, is_udp), 'UDP datagram sent with SO_NO_CHECK: checksum field 0'),
        ('kIcmpPortUnreach', first(n, is_icmp), 'Linux ICMP port unreachable quoting it'),
    ]
    print('''// Real frames captured for the wire tests.
//
// Captured with dumpcap on a veth pair between two network namespaces
// (Linux 6.18, checksum offload turned off so every checksum is real):
// busybox 1.35 udhcpc/nslookup/ping/nc on one side (52:54:00:12:34:56,
// 10.0.2.15) and dnsmasq 2.90 plus the kernel on the other
// (52:55:0a:00:02:02, 10.0.2.2). Frames are whole Ethernet frames without
// FCS. Made by tools/capture_frames.sh and tools/gen_captured_frames.py;
// do not edit the bytes: tests rely on them being what real stacks send.
#pragma once

#include <array>
#include <cstdint>

namespace usernet::testdata {
''')
    for name, b, desc in sel:
        print(f'// {desc}.')
        print(f'inline constexpr std::array<uint8_t, {len(b)}> {name}{{')
        for i in range(0, len(b), 12):
            print('    ' + ' '.join(f'0x{x:02x},' for x in b[i:i + 12]))
        print('};\n')
    print('}  // namespace usernet::testdata')


if __name__ == '__main__':
    main()
