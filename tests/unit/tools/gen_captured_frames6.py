#!/usr/bin/env python3
"""Turns a usernet --pcap capture of a namespace guest's IPv6 start-up into
tests/unit/captured_frames6.hpp.

Usage: gen_captured_frames6.py CAPTURE.pcap > ../captured_frames6.hpp

The capture: `usernet --netns NS --config-net --pcap CAPTURE.pcap`, then in
NS `busybox ping -c1 fec0::2` (Linux 6.1). Frames are chosen by content, so
a new capture yields the same set with other addresses.
"""
import struct
import sys


def read_pcap(path):
    data = open(path, 'rb').read()
    if struct.unpack('<I', data[:4])[0] != 0xa1b2c3d4:
        raise SystemExit(f'{path}: not a little-endian pcap')
    frames, i = [], 24
    while i + 16 <= len(data):
        caplen = struct.unpack('<I', data[i + 8:i + 12])[0]
        frames.append(data[i + 16:i + 16 + caplen])
        i += 16 + caplen
    return frames


def icmp6(f):
    """(type, src is ::) of an IPv6 frame's ICMPv6 message, else None."""
    if len(f) < 54 or f[12:14] != b'\x86\xdd':
        return None
    nxt, off = f[20], 54
    if nxt == 0:  # hop-by-hop options, as MLD reports carry
        nxt, off = f[54], 54 + (f[55] + 1) * 8
    if nxt != 58 or off >= len(f):
        return None
    return f[off], f[22:38] == bytes(16)


WANTED = [
    ('kMld2ReportUnspecified', 'MLDv2 report from :: with a hop-by-hop router alert',
     lambda t: t == (143, True)),
    ('kNsDad', 'duplicate address detection: neighbor solicitation from ::',
     lambda t: t == (135, True)),
    ('kRouterSolicit', 'router solicitation from the link-local address',
     lambda t: t == (133, False)),
    ('kNsForGateway', 'neighbor solicitation for fec0::2',
     lambda t: t == (135, False)),
    ('kEcho6Request', 'echo request to fec0::2 (busybox ping)',
     lambda t: t == (128, False)),
]


def array(name, what, f):
    """One frame as a C++ array, with its comment: a list of lines."""
    out = [f'// {what}.', f'inline constexpr std::array<uint8_t, {len(f)}> {name}{{']
    for i in range(0, len(f), 12):
        out.append('    ' + ' '.join(f'0x{b:02x},' for b in f[i:i + 12]))
    return out + ['};', '']


def main():
    frames = read_pcap(sys.argv[1])
    out = ['// Real IPv6 frames captured for the wire tests: a namespace guest',
           '// (Linux 6.1) starting up behind usernet, captured by usernet --pcap.',
           '// Made by tools/gen_captured_frames6.py; do not edit the bytes.',
           '#pragma once', '', '#include <array>', '#include <cstdint>', '',
           'namespace usernet::testdata {', '']
    for name, what, match in WANTED:
        f = next((f for f in frames if icmp6(f) and match(icmp6(f))), None)
        if f is None:
            raise SystemExit(f'no frame for {name}')
        out += array(name, what, f)
    out.append('}  // namespace usernet::testdata')
    print('\n'.join(out))


if __name__ == '__main__':
    main()
