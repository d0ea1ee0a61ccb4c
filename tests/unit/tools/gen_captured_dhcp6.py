#!/usr/bin/env python3
"""Turns a usernet --pcap capture of dhclient -6 talking to usernet's
DHCPv6 server into tests/unit/captured_dhcp6.hpp, and writes the client
messages (UDP payloads) as fuzz seeds.

Usage: gen_captured_dhcp6.py CAPTURE.pcap SEED_DIR > ../captured_dhcp6.hpp

The capture: `usernet --netns NS --domain example.test --pcap CAPTURE.pcap`,
then in NS (ISC dhclient 4.4.3): `dhclient -6 -1`, `dhclient -6 -1 -S`,
`dhclient -6 -r`. Frames are chosen by message type. The TAP's checksum
offload leaves the kernel's UDP checksums partial (the pseudo-header sum
only), as the capture shows them: this completes them.
"""
import os
import sys

from gen_captured_frames6 import array, read_pcap

WANTED = [
    ('kDhcp6Solicit', 'Solicit with an IA_NA, ORO and elapsed time', 1),
    ('kDhcp6Request', 'Request for the advertised address', 3),
    ('kDhcp6InformationRequest', 'Information-Request (dhclient -S)', 11),
    ('kDhcp6Release', 'Release of the address', 8),
]


def dhcp6(f):
    """The DHCPv6 message of a client's frame (UDP 546 -> 547), else None."""
    if len(f) < 62 or f[12:14] != b'\x86\xdd' or f[20] != 17:
        return None
    if f[54:56] != (546).to_bytes(2, 'big') or f[56:58] != (547).to_bytes(2, 'big'):
        return None
    return f[62:]


def complete_udp_checksum(f):
    f = bytearray(f)
    udp_len = int.from_bytes(f[58:60], 'big')
    data = bytes(f[22:54]) + udp_len.to_bytes(4, 'big') + bytes([0, 0, 0, 17])
    f[60:62] = b'\0\0'
    data += bytes(f[54:54 + udp_len])
    if len(data) % 2:
        data += b'\0'
    s = sum(int.from_bytes(data[i:i + 2], 'big') for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    f[60:62] = ((~s & 0xffff) or 0xffff).to_bytes(2, 'big')
    return bytes(f)


def main():
    frames = read_pcap(sys.argv[1])
    seeds = sys.argv[2]
    out = ['// Real DHCPv6 frames captured for the tests: ISC dhclient 4.4.3 in a',
           '// namespace guest talking to usernet, captured by usernet --pcap.',
           '// Made by tools/gen_captured_dhcp6.py (UDP checksums completed); do not',
           '// edit the bytes.',
           '#pragma once', '', '#include <array>', '#include <cstdint>', '',
           'namespace usernet::testdata {', '']
    for name, what, mtype in WANTED:
        f = next((f for f in frames if dhcp6(f) and dhcp6(f)[0] == mtype), None)
        if f is None:
            raise SystemExit(f'no frame for {name}')
        f = complete_udp_checksum(f)
        with open(os.path.join(seeds, f'dhclient_{name[6:].lower()}.bin'), 'wb') as s:
            s.write(dhcp6(f))
        out += array(name, what, f)
    out.append('}  // namespace usernet::testdata')
    print('\n'.join(out))


if __name__ == '__main__':
    main()
