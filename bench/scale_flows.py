#!/usr/bin/env python3
"""Many idle TCP connections, for bench/scale.sh.

  scale_flows.py server PORT          echo server on 127.0.0.1:PORT that
                                      holds every connection; prints READY
  scale_flows.py client HOST PORT N   opens N connections (at most
                                      --concurrency connecting at once) and
                                      holds them; prints
                                      "OPEN ok=.. fail=.. secs=.. errors=.."
      then reads commands on stdin, one a line:
        check   send one byte on every held connection and wait for its
                echo: prints "ALIVE ok=.. of=.. secs=.."
        close   closes them all: prints "CLOSED n"
      and exits at EOF.

Both raise RLIMIT_NOFILE to what N needs.
"""
import argparse
import asyncio
import collections
import errno
import resource
import selectors
import socket
import sys
import time


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data):
        self.t.write(data)


async def serve(port):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print("READY %d" % srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()


def client(host, port, n, concurrency, connect_timeout, total_timeout):
    raise_nofile(n + 256)
    sel = selectors.DefaultSelector()
    held, pending = [], {}
    started = failed = 0
    errors = collections.Counter()
    t0 = time.monotonic()
    deadline = t0 + total_timeout
    while (started < n or pending) and time.monotonic() < deadline:
        while started < n and len(pending) < concurrency:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((host, port))
            started += 1
            if rc == 0:
                held.append(s)
            elif rc == errno.EINPROGRESS:
                sel.register(s, selectors.EVENT_WRITE)
                pending[s] = time.monotonic()
            else:
                failed += 1
                errors[errno.errorcode.get(rc, str(rc))] += 1
                s.close()
        for key, _ in sel.select(0.05):
            s = key.fileobj
            sel.unregister(s)
            del pending[s]
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                failed += 1
                errors[errno.errorcode.get(err, str(err))] += 1
                s.close()
            else:
                held.append(s)
        now = time.monotonic()
        for s, t in list(pending.items()):
            if now - t > connect_timeout:
                sel.unregister(s)
                del pending[s]
                failed += 1
                errors["timeout"] += 1
                s.close()
    for s in list(pending):  # total_timeout hit
        sel.unregister(s)
        failed += 1
        errors["timeout"] += 1
        s.close()
    failed += n - started
    print("OPEN ok=%d fail=%d secs=%.2f errors=%s" % (
        len(held), failed, time.monotonic() - t0,
        ",".join("%s:%d" % kv for kv in sorted(errors.items())) or "-"), flush=True)

    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "check":
            t = time.monotonic()
            waiting = set()
            for s in held:
                try:
                    if s.send(b"x") == 1:
                        sel.register(s, selectors.EVENT_READ)
                        waiting.add(s)
                except OSError:
                    pass
            ok = 0
            end = time.monotonic() + 30
            while waiting and time.monotonic() < end:
                for key, _ in sel.select(0.1):
                    s = key.fileobj
                    sel.unregister(s)
                    waiting.discard(s)
                    try:
                        if s.recv(16) == b"x":
                            ok += 1
                    except OSError:
                        pass
            for s in waiting:
                sel.unregister(s)
            print("ALIVE ok=%d of=%d secs=%.2f" % (ok, len(held), time.monotonic() - t), flush=True)
        elif cmd == "close":
            for s in held:
                s.close()
            print("CLOSED %d" % len(held), flush=True)
            held = []
        else:
            print("ERROR unknown command %r" % cmd, flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    sp = sub.add_parser("server")
    sp.add_argument("port", type=int)
    sp.add_argument("--nofile", type=int, default=65536)
    cp = sub.add_parser("client")
    cp.add_argument("host")
    cp.add_argument("port", type=int)
    cp.add_argument("n", type=int)
    cp.add_argument("--concurrency", type=int, default=128)
    cp.add_argument("--connect-timeout", type=float, default=10.0)
    cp.add_argument("--timeout", type=float, default=180.0)
    a = ap.parse_args()
    if a.mode == "server":
        raise_nofile(a.nofile)
        asyncio.run(serve(a.port))
    else:
        client(a.host, a.port, a.n, a.concurrency, a.connect_timeout, a.timeout)


if __name__ == "__main__":
    main()
