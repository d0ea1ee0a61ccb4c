#!/usr/bin/env python3
"""Small servers for usernet's end-to-end tests (Python 3 standard library only).

Run inside a namespace by netlab; each prints "READY <port>" on stdout once it
listens (port 0 asks for an ephemeral port), then serves until killed. An
address with a colon in --bind is IPv6 (:: for every address of both
families).

  http      --bind A --port P --dir D   GET serves files from D; PUT/POST reads
                                        the body and answers its sha256 (hex)
                                        and length: "<sha256> <bytes>\n"
  tcp-echo  --bind A --port P           echoes every byte back (selectors, many
                                        connections); on EOF from the client,
                                        shuts down its write side after echoing
  udp-echo  --bind A --port P           echoes every datagram to its sender
  half-close --bind A --port P          reads until EOF, then replies
                                        "<sha256> <bytes>\n" and closes
  whoami    --bind A --port P           TCP and UDP on the same port: answers
                                        each connection or datagram with the
                                        address it came from, "PEER <addr>\n"
"""

import argparse
import hashlib
import http.server
import os
import selectors
import socket
import socketserver
import sys
import threading
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def ready(port):
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()


class UploadHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _upload(self):
        h = hashlib.sha256()
        n = 0
        length = self.headers.get("Content-Length")
        if self.headers.get("Expect", "").lower() == "100-continue":
            pass  # http.server already answered 100 Continue for HTTP/1.1
        if length is not None:
            left = int(length)
            while left:
                b = self.rfile.read(min(left, 1 << 20))
                if not b:
                    break
                h.update(b)
                n += len(b)
                left -= len(b)
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                left = size
                while left:
                    b = self.rfile.read(min(left, 1 << 20))
                    if not b:
                        raise ConnectionError("short chunk")
                    h.update(b)
                    n += len(b)
                    left -= len(b)
                self.rfile.readline()
        body = ("%s %d\n" % (h.hexdigest(), n)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = _upload
    do_POST = _upload

    def copyfile(self, source, outputfile):
        # Larger chunks than the default for 64 MiB files.
        while True:
            b = source.read(1 << 20)
            if not b:
                break
            outputfile.write(b)


class ThreadingHTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def serve_http(a):
    handler = lambda *args, **kw: UploadHandler(*args, directory=a.dir, **kw)
    ThreadingHTTPServer.address_family = family(a.bind)
    srv = ThreadingHTTPServer((a.bind, a.port), handler)
    ready(srv.server_address[1])
    srv.serve_forever()


def serve_tcp_echo(a):
    ls = socket.socket(family(a.bind), socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    pending = {}  # sock -> bytearray to send
    eof = set()
    ready(ls.getsockname()[1])
    while True:
        for key, ev in sel.select():
            s = key.fileobj
            if s is ls:
                while True:
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    pending[c] = bytearray()
                    sel.register(c, selectors.EVENT_READ, None)
                continue
            try:
                if ev & selectors.EVENT_READ:
                    b = s.recv(65536)
                    if b:
                        if a.delay:
                            time.sleep(a.delay)  # a slow server (the whole loop waits)
                        pending[s] += b
                    else:
                        eof.add(s)
                if pending[s]:
                    n = s.send(pending[s])
                    del pending[s][:n]
            except BlockingIOError:
                pass
            except OSError:
                sel.unregister(s)
                s.close()
                pending.pop(s, None)
                eof.discard(s)
                continue
            if s in eof and not pending[s]:
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                sel.unregister(s)
                s.close()
                pending.pop(s, None)
                eof.discard(s)
                continue
            want = selectors.EVENT_READ if s not in eof else 0
            if pending[s]:
                want |= selectors.EVENT_WRITE
            sel.modify(s, want or selectors.EVENT_WRITE)


def serve_udp_echo(a):
    s = socket.socket(family(a.bind), socket.SOCK_DGRAM)
    # Room for a burst from many flows even when this server is slow (the
    # default buffer holds under 300 small datagrams).
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((a.bind, a.port))
    ready(s.getsockname()[1])
    while True:
        b, peer = s.recvfrom(65535)
        s.sendto(b, peer)


def serve_half_close(a):
    ls = socket.socket(family(a.bind), socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(64)
    ready(ls.getsockname()[1])

    def one(c):
        with c:
            h = hashlib.sha256()
            n = 0
            while True:
                b = c.recv(65536)
                if not b:
                    break
                h.update(b)
                n += len(b)
            # the client has shut down its write side; we can still send
            c.sendall(("%s %d\n" % (h.hexdigest(), n)).encode())

    while True:
        c, _ = ls.accept()
        threading.Thread(target=one, args=(c,), daemon=True).start()


def peer_text(peer):
    addr = peer[0]
    if addr.startswith("::ffff:") and "." in addr:
        addr = addr[len("::ffff:"):]
    return ("PEER %s\n" % addr).encode()


def serve_whoami(a):
    ls = socket.socket(family(a.bind), socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(64)
    port = ls.getsockname()[1]
    us = socket.socket(family(a.bind), socket.SOCK_DGRAM)
    us.bind((a.bind, port))
    ready(port)

    def udp():
        while True:
            _, peer = us.recvfrom(65535)
            us.sendto(peer_text(peer), peer)
    threading.Thread(target=udp, daemon=True).start()
    while True:
        c, peer = ls.accept()
        with c:
            c.sendall(peer_text(peer))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["http", "tcp-echo", "udp-echo", "half-close", "whoami"])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", default=".")
    ap.add_argument("--delay", type=float, default=0.0, help="tcp-echo: wait this long before echoing")
    a = ap.parse_args()
    {"http": serve_http, "tcp-echo": serve_tcp_echo, "udp-echo": serve_udp_echo,
     "half-close": serve_half_close, "whoami": serve_whoami}[a.kind](a)


if __name__ == "__main__":
    main()
