#!/usr/bin/env python3
"""Turns a usernet --pcap capture of TFTP clients asking usernet's TFTP
server into tests/unit/captured_tftp.hpp (their requests, as UDP payloads),
and writes the same requests as fuzz seeds.

Usage: gen_captured_tftp.py CAPTURE.pcap SEED_DIR > ../captured_tftp.hpp

The capture: `usernet --netns NS --config-net --no-ipv6 --tftp DIR --pcap
CAPTURE.pcap`, then in NS, in this order: busybox 1.35 `tftp -g -b 1468`,
atftp 0.8.0 `--get` with `--option` blksize 1428, tsize 0, timeout 2 and
windowsize 16, tftp-hpa 5.2 `-m binary -c get`, curl 7.88 `tftp://`,
tftp-hpa `-m ascii -c get`, busybox `tftp -p` (a write request).
"""
import os
import re
import sys

from gen_captured_frames6 import array, read_pcap

WANTED = [
    ('kTftpRrqBusybox', 'busybox tftp -g -b 1468: octet, blksize and tsize'),
    ('kTftpRrqAtftp', 'atftp --option blksize/tsize/timeout/windowsize'),
    ('kTftpRrqTftpHpa', 'tftp-hpa -m binary: octet, no options'),
    ('kTftpRrqCurl', 'curl tftp://: octet, tsize, blksize 512 and timeout 6'),
    ('kTftpRrqTftpHpaAscii', 'tftp-hpa -m ascii: netascii'),
    ('kTftpWrqBusybox', 'busybox tftp -p: a write request'),
]


def tftp_request(f):
    """The TFTP request of an untagged IPv4 UDP frame to port 69, else None."""
    if len(f) < 42 or f[12:14] != b'\x08\x00' or f[23] != 17:
        return None
    ihl = (f[14] & 15) * 4
    udp = 14 + ihl
    if int.from_bytes(f[udp + 2:udp + 4], 'big') != 69:
        return None
    length = int.from_bytes(f[udp + 4:udp + 6], 'big')
    msg = f[udp + 8:udp + length]
    return msg if msg[:2] in (b'\x00\x01', b'\x00\x02') else None


def main():
    requests = [m for m in map(tftp_request, read_pcap(sys.argv[1])) if m]
    if len(requests) != len(WANTED):
        raise SystemExit(f'expected {len(WANTED)} requests, found {len(requests)}')
    out = ['// Real TFTP requests captured for the wire tests: clients in a namespace',
           '// guest asking usernet --tftp, captured by usernet --pcap (UDP payloads).',
           '// Made by tools/gen_captured_tftp.py; do not edit the bytes.',
           '#pragma once', '', '#include <array>', '#include <cstdint>', '',
           'namespace usernet::testdata {', '']
    for (name, what), msg in zip(WANTED, requests):
        out += array(name, what, msg)
        seed = re.sub(r'(?<!^)([A-Z])', r'_\1', name[len('kTftp'):]).lower()
        with open(os.path.join(sys.argv[2], seed + '.bin'), 'wb') as s:
            s.write(msg)
    out += ['}  // namespace usernet::testdata']
    print('\n'.join(out))


if __name__ == '__main__':
    main()
