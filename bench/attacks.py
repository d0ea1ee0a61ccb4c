#!/usr/bin/env python3
"""Another guest's 64 MiB download while a hostile guest attacks.

    sudo python3 bench/attacks.py [--reps 3] [--out DIR]

USERNET_BIN picks the binary (default build/usernet). For each attack a
fresh usernet serves two guest namespaces on one LAN: the victim downloads
64 MiB over HTTP from the host's loopback through the gateway (curl, no
rate limit) while the attacker, a second namespace on its own TAP, keeps
attacking until the download ends. Printed and written to DIR/attacks.tsv:
the download's wall time (median of --reps), the time relative to no
attack, whether every run's sha256 matched, and usernet's descriptors and
RSS at the end. The attacks are the ones docs/security.md lists; each is
rawframes.py (tests/e2e) writing frames through an AF_PACKET socket, or
ordinary sockets in the attacker's kernel.

Everything stays on this machine: namespaces made here, the host's
loopback. Bounded: each attack stops with the download or after 120 s.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(os.path.dirname(HERE), "tests", "e2e")
sys.path.insert(0, E2E)
sys.dont_write_bytecode = True
import netlab  # noqa: E402
from netlab import GATEWAY, MiB  # noqa: E402

RAW = os.path.join(E2E, "rawframes.py")

# One attack: a shell loop in the attacker's namespace, run until killed.
# {raw} is rawframes.py, {me} the attacker's address, {port} a port with a
# listener on the host's loopback (TCP and UDP), {py} python3.
ATTACKS = [
    ("none", None),
    ("crafted 127/8 and 0/8 destinations (TCP, UDP, ping)",
     "while :; do {py} {raw} '{{\"ifname\": \"tap0\", \"repeat\": 200, \"frames\": ["
     "{{\"kind\": \"syn\", \"src\": \"{me}\", \"dst\": \"127.0.0.1\", \"sport\": 40000, \"dport\": {port}}},"
     "{{\"kind\": \"udp\", \"src\": \"{me}\", \"dst\": \"127.0.0.53\", \"sport\": 40001, \"dport\": {port}}},"
     "{{\"kind\": \"ping\", \"src\": \"{me}\", \"dst\": \"127.0.0.1\"}}]}}' >/dev/null; done"),
    ("spoofed sources: the victim's address, gratuitous ARP, 4000 rotating sources",
     "while :; do {py} {raw} '{{\"ifname\": \"tap0\", \"frames\": [{{\"kind\": \"garp\", \"ip\": \"{victim}\"}},"
     "{{\"kind\": \"udp\", \"src\": \"{victim}\", \"dst\": \"" + GATEWAY + "\", \"sport\": 5000, \"dport\": {port}}}],"
     " \"storm\": {{\"udp\": 4000, \"udp_dst\": \"" + GATEWAY + "\", \"udp_port\": {port}, \"exclude\": [\"{me}\"]}}}}'"
     " >/dev/null; done"),
    ("DHCP and ARP storm from made-up MACs",
     "while :; do {py} {raw} '{{\"ifname\": \"tap0\", \"storm\": {{\"dhcp\": 2000, \"arp\": 2000}}}}' >/dev/null; done"),
    ("TCP connection flood to the host (held open)",
     "{py} -c \"import socket,time\nss=[]\nwhile True:\n try: ss.append(socket.create_connection(('" + GATEWAY +
     "', {port}), timeout=2))\n except OSError: time.sleep(0.05)\""),
    ("SYN flood to a silent destination (half-open connects)",
     "{py} -c \"import socket,time\nss=[]\nwhile True:\n s=socket.socket(); s.setblocking(False)\n"
     " try: s.connect(('198.51.100.77', 80))\n except OSError: pass\n ss.append(s); ss=ss[-20000:]; time.sleep(0.001)\""),
    ("UDP flow flood (many source ports)",
     "{py} -c \"import socket\nwhile True:\n s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.sendto(b'x',('" +
     GATEWAY + "',{port})); s.close()\""),
]

HOST_LISTENER = r"""
import resource, select, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
p = int(sys.argv[1])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", p)); t.listen(4096)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p))
held = []
while True:
    r, _, _ = select.select([t, u], [], [])
    if t in r:
        c, _ = t.accept(); held.append(c)
    if u in r:
        u.recvfrom(2048)
"""


def usernet_state(pid):
    fds = len(os.listdir("/proc/%d/fd" % pid))
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return fds, rss


def one(attack, cmd, reps):
    times, ok, fds, rss = [], True, 0, 0
    for _ in range(reps):
        with netlab.Lab("attack") as lab:
            host = lab.netns("host")
            lab.remote(host)  # 198.51.100.0/24: .77 answers no ARP (a silent destination)
            victim = lab.netns("victim")
            attacker = lab.netns("attacker")
            # The attacker's routes are the kernel's; its frames go out of tap0.
            un = lab.usernet(host, ["--netns", victim.path, "--netns", attacker.path],
                             wait=[("link", victim, "tap0"), ("link", attacker, "tap0")])
            v = netlab.dhcp(lab, victim)["ip"]
            me = netlab.dhcp(lab, attacker)["ip"]
            path, sha = lab.make_file(64 * MiB, "big.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            port = netlab.free_port()
            host.popen([netlab.PY, "-c", HOST_LISTENER, str(port)], name="listener")
            time.sleep(0.3)
            if cmd:
                attacker.popen(["sh", "-c", cmd.format(py=netlab.PY, raw=RAW, me=me, victim=v, port=port)],
                               name="attack")
                time.sleep(1.0)  # let it get going
            out = lab.path("dl.bin")
            t0 = time.monotonic()
            r = victim.run(["curl", "-sS", "--noproxy", "*", "--max-time", "120", "-o", out,
                            "http://%s:%d/big.bin" % (GATEWAY, srv.port)], check=False, timeout=130)
            times.append(time.monotonic() - t0)
            good = r.returncode == 0 and netlab.sha256_file(out) == sha
            ok = ok and good
            fds, rss = usernet_state(un.pid)
            print("  %-60s %.2f s %s fds %d rss %d kB" % (attack[:60], times[-1], "ok" if good else "FAILED",
                                                          fds, rss), flush=True)
    return statistics.median(times), ok, fds, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "bench", "results",
                                                  time.strftime("%Y-%m-%d")))
    a = ap.parse_args()
    netlab.require_basics()
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for name, cmd in ATTACKS:
        t, ok, fds, rss = one(name, cmd, a.reps)
        rows.append((name, t, ok, fds, rss))
    base = rows[0][1]
    with open(os.path.join(a.out, "attacks.tsv"), "w") as f:
        f.write("# bench/attacks.py --reps %d, usernet %s, %s\n" % (
            a.reps, netlab.usernet_bin(), subprocess.run(["uname", "-r"], capture_output=True,
                                                         text=True).stdout.strip()))
        f.write("attack\tmedian_s\tvs_none\tsha256_ok\tusernet_fds\tusernet_rss_kB\n")
        for name, t, ok, fds, rss in rows:
            f.write("%s\t%.2f\t%.2f\t%s\t%d\t%d\n" % (name, t, t / base, "yes" if ok else "NO", fds, rss))
    print("\n| attack (another guest downloads 64 MiB meanwhile) | time, s | vs none | sha256 |")
    print("| --- | ---: | ---: | --- |")
    for name, t, ok, fds, rss in rows:
        print("| %s | %.2f | %.2fx | %s |" % (name, t, t / base, "intact" if ok else "CORRUPT"))
    return 0 if all(r[2] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
