#!/usr/bin/env python3
"""TCP request/response latency into a QEMU guest on Debian's libslirp and
on usernet's libslirp.so.0, in one run:

  bench/qemu_rr.py NIC debian,usernet,...   (e.g. ne2k_pci debian,usernet,debian,usernet)

The busybox guest of tests/qemu/build-guest.sh (TCG, USERNET_QEMU_GUEST_DIR,
default build/qemu-guest) runs `nc -ll -p 7 -e cat`; QEMU's `hostfwd=`
brings a host client to it, which sends 2 bytes and waits for their echo,
300 times on a first connection (warm-up) and 300 on a second, which is
measured. Prints p50, p90, p99, max and mean per run (one line each, in
the order given). usernet's library comes from USERNET_LIBSLIRP_DIR
(default build/libslirp).
"""
import os, sys, subprocess, time, select, socket, statistics, random
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
G = os.environ.get("USERNET_QEMU_GUEST_DIR", os.path.join(REPO, "build", "qemu-guest"))
LIBDIR = os.environ.get("USERNET_LIBSLIRP_DIR", os.path.join(REPO, "build", "libslirp"))
nic = sys.argv[1]
runs = sys.argv[2].split(",")
def run(spec):
    lib, _, mode = spec.partition(":")
    env = dict(os.environ)
    if lib == "usernet":
        env["LD_LIBRARY_PATH"] = LIBDIR
    hp = random.randint(20000, 40000)
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot", "-nodefaults",
            "-serial", "stdio", "-monitor", "none", "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:7" % hp,
            "-device", "%s,netdev=n0,romfile=" % nic,
            "-kernel", G + "/vmlinuz", "-initrd", G + "/initrd.gz", "-append", "console=ttyS0 panic=-1 loglevel=4 un.shell"]
    p = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = b""; end = time.time() + 120
    while b"UN-SHELL" not in out and time.time() < end:
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        if r: out += os.read(p.stdout.fileno(), 65536)
    p.stdin.write(b"nc -ll -p 7 -e cat &\n"); p.stdin.flush(); time.sleep(2)
    res = []
    for attempt in range(2):
        s = socket.create_connection(("127.0.0.1", hp)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lat = []
        for i in range(300):
            t = time.perf_counter(); s.sendall(b"x\n"); d = b""
            while len(d) < 2:
                d += s.recv(10)
            lat.append((time.perf_counter() - t) * 1e3)
        s.close(); res.append(lat)
    p.kill()
    lat = res[1]
    lat.sort()
    print("%-10s p50 %.2f p90 %.2f p99 %.2f max %.2f mean %.2f ms, >1ms: %d, >2.5ms: %d" % (spec, lat[150], lat[270], lat[297], lat[-1], statistics.mean(lat), sum(x > 1 for x in lat), sum(x > 2.5 for x in lat)), flush=True)
for r in runs: run(r)
