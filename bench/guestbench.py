"""What bench/ne2k.py, bench/v86.py and bench/serial_ppp.py share: the
guest image, the file the guest downloads, the HTTP server it comes from,
and reading TCP frames back from a capture."""

import hashlib
import http.server
import os
import socketserver
import struct
import subprocess
import tempfile
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def prepare(build_script, size_mib, prefix):
    """Builds the guest with build_script into a fresh temporary directory
    and writes a random file of size_mib MiB into its www/ as "f".
    Returns (tmp, kernel, initrd, www, data, sha256 of data)."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    gdir = os.path.join(tmp, "guest")
    subprocess.run(["sh", build_script, gdir], check=True, stdout=subprocess.DEVNULL)
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    data = os.urandom(int(size_mib * 1024 * 1024))
    with open(os.path.join(www, "f"), "wb") as f:
        f.write(data)
    return (tmp, os.path.join(gdir, "vmlinuz"), os.path.join(gdir, "initrd.gz"), www, data,
            hashlib.sha256(data).hexdigest())


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def serve(directory):
    """A threaded HTTP server for directory on 127.0.0.1 (an ephemeral
    port: srv.server_address[1]), serving until srv.shutdown()."""
    handler = lambda *a, **k: _Quiet(*a, directory=directory, **k)  # noqa: E731
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def tcp_frames(path):
    """(time, source port, destination port, TCP flags) of every IPv4 TCP
    frame in a pcap of Ethernet frames, in order."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    e = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = struct.unpack(e + "I", data[:4])[0] == 0xA1B23C4D
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(e + "IIII", data[off:off + 16])
        fr = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(fr) < 54 or fr[12:14] != b"\x08\x00" or fr[23] != 6:
            continue
        tcp = fr[14 + (fr[14] & 15) * 4:]
        if len(tcp) < 14:
            continue
        sport, dport = struct.unpack(">HH", tcp[:4])
        yield sec + frac / (1e9 if nano else 1e6), sport, dport, tcp[13]


def write_tsv(path, comment, columns, rows):
    """One '# comment' line, the column names, then a line per row."""
    with open(path, "w") as f:
        f.write("# " + comment + "\n")
        f.write("\t".join(columns) + "\n")
        for r in rows:
            f.write("\t".join(map(str, r)) + "\n")
