#!/usr/bin/env python3
"""A hostile guest gets nothing: crafted frames toward the host's loopback,
spoofed source addresses, a DHCP storm, and a namespace that disappears
under a live connection. The guest is the real kernel in a namespace; the
hostile frames are written with an AF_PACKET socket (rawframes.py), so
they can claim anything."""

import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import GATEWAY, MiB  # noqa: E402

netlab.require_basics()
netlab.require_tools("curl")

RAW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rawframes.py")

# Listens on the host's loopback (the host namespace's lo): TCP on
# 127.0.0.1:P and 127.0.0.53:P, UDP on 127.0.0.1:P and 127.0.0.53:P; prints
# what arrived as JSON when it gets SIGTERM.
WATCHER = r"""
import json, select, signal, socket, sys
port = int(sys.argv[1])
socks, got = [], {"tcp": [], "udp": []}
for a in ("127.0.0.1", "127.0.0.53"):
    t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((a, port)); t.listen(16); socks.append(("tcp", a, t))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((a, port)); socks.append(("udp", a, u))
def done(*_):
    print(json.dumps(got), flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, done)
print("ready", flush=True)
while True:
    r, _, _ = select.select([s for _, _, s in socks], [], [])
    for kind, a, s in socks:
        if s in r:
            if kind == "tcp":
                c, peer = s.accept(); got["tcp"].append([a, peer[0]]); c.close()
            else:
                d, peer = s.recvfrom(2048); got["udp"].append([a, peer[0]])
"""


def raw(ns, spec, timeout=60):
    """Runs rawframes.py in ns with spec; returns its JSON report."""
    r = ns.run([netlab.PY, RAW, json.dumps(spec)], timeout=timeout)
    return json.loads(r.stdout.strip().splitlines()[-1])


def start_watcher(lab, host):
    port = netlab.free_port()
    p = host.popen([netlab.PY, "-c", WATCHER, str(port)], name="watcher")
    netlab.wait_for(lambda: "ready" in p.stdout(), 10, what="loopback watcher")
    return p, port


def stop_watcher(p):
    p.send_signal(signal.SIGTERM)
    p.wait(10)
    return json.loads(p.stdout().strip().splitlines()[-1])


def two_guests(lab):
    """usernet in a host namespace with two namespace guests that took a
    DHCP lease each: (host, g1, g2, usernet, g1's address, g2's)."""
    host, g1, g2 = lab.netns("host"), lab.netns("g1"), lab.netns("g2")
    un = lab.usernet(host, ["--netns", g1.path, "--netns", g2.path],
                     wait=[("link", g1, "tap0"), ("link", g2, "tap0")])
    return host, g1, g2, un, netlab.dhcp(lab, g1)["ip"], netlab.dhcp(lab, g2)["ip"]


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class HostileGuestTest(unittest.TestCase):
    def test_crafted_loopback_destinations_reach_nothing_on_the_host(self):
        """TCP, UDP and ping to 127.0.0.1, 127.0.0.53 and 0.0.0.1 get a RST
        or ICMP administratively prohibited and never reach the host's
        loopback; the same SYN to the gateway address does (the control)."""
        with netlab.Lab("hostile") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            lab.usernet(host, ["--netns", guest.path], wait=[("link", guest, "tap0")])
            me = netlab.dhcp(lab, guest)["ip"]
            watcher, port = start_watcher(lab, host)
            frames = []
            for i, dst in enumerate(("127.0.0.1", "127.0.0.53", "0.0.0.1")):
                frames.append({"kind": "syn", "src": me, "dst": dst, "sport": 40000 + i, "dport": port})
                frames.append({"kind": "udp", "src": me, "dst": dst, "sport": 41000 + i, "dport": port})
                frames.append({"kind": "ping", "src": me, "dst": dst, "id": 0x100 + i})
            frames.append({"kind": "syn", "src": me, "dst": GATEWAY, "sport": 42000, "dport": port})
            report = raw(guest, {"ifname": "tap0", "frames": frames, "listen": 2})["got"]
            got = stop_watcher(watcher)

            mine = [g for g in report if g.get("dst") == me]
            for i, dst in enumerate(("127.0.0.1", "127.0.0.53", "0.0.0.1")):
                rst = [g for g in mine if g.get("proto") == 6 and g.get("dport") == 40000 + i]
                self.assertTrue(rst and rst[0]["flags"] & 0x04, "no RST for TCP to %s: %s" % (dst, mine))
                for proto, what in ((17, "UDP"), (1, "ping")):
                    icmp = [g for g in mine if g.get("type") == 3 and g.get("quoted_dst") == dst
                            and g.get("quoted_proto") == proto]
                    self.assertTrue(icmp, "no ICMP error for %s to %s: %s" % (what, dst, mine))
                    self.assertEqual(icmp[0]["code"], 13, "not administratively prohibited: %s" % icmp)
            control = [g for g in mine if g.get("proto") == 6 and g.get("dport") == 42000]
            self.assertTrue(control and control[0]["flags"] & 0x12 == 0x12,
                            "the gateway address should still reach the host: %s" % control)
            # Exactly one connection reached the host's loopback: the control's.
            self.assertEqual(got["udp"], [])
            self.assertEqual(len(got["tcp"]), 1, got)
            self.assertEqual(got["tcp"][0][0], "127.0.0.1")

    def test_spoofed_sources_get_nothing_and_the_victim_keeps_working(self):
        """g2 takes g1's leased address, announces it by ARP and floods from
        rotating sources: none of it reaches the host or costs usernet a
        socket, and g1's 16 MiB download meanwhile completes intact."""
        with netlab.Lab("hostile") as lab:
            host, g1, g2, un, a1, a2 = two_guests(lab)
            path, sha = lab.make_file(16 * MiB, "big.bin")
            srv = host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
            url = "http://%s:%d/big.bin" % (GATEWAY, srv.port)
            watcher, port = start_watcher(lab, host)
            fds_before = fd_count(un.pid)

            # g2 steals a1 the way a kernel would: address, gratuitous ARP.
            g2.run(["ip", "addr", "flush", "dev", "tap0"])
            g2.run(["ip", "addr", "add", a1 + "/24", "dev", "tap0"])
            g2.run(["ip", "route", "add", "default", "via", GATEWAY])
            raw(g2, {"ifname": "tap0", "frames": [{"kind": "garp", "ip": a1}], "repeat": 3})
            out = lab.path("g1.bin")
            dl = g1.popen(["curl", "-sS", "--noproxy", "*", "--max-time", "120", "--limit-rate", "8M",
                           "-o", out, url], name="curl-g1")
            stolen = g2.run(["curl", "-sS", "--noproxy", "*", "--max-time", "4", "-o", "/dev/null", url],
                            check=False, timeout=30)
            self.assertNotEqual(stolen.returncode, 0, "g2 reached the host with g1's address")
            # a flood from 4000 rotating sources, inside the network and outside
            # it (but never g2's own lease, which it may use)
            raw(g2, {"ifname": "tap0", "storm": {"udp": 4000, "udp_dst": GATEWAY, "udp_port": port,
                                                 "exclude": [a2]}})
            self.assertEqual(dl.wait(150), 0, "g1's download failed:\n" + dl.describe())
            self.assertEqual(netlab.sha256_file(out), sha, "g1's download corrupted")
            got = stop_watcher(watcher)
            self.assertEqual(got["udp"], [], "spoofed datagrams reached the host")
            self.assertLessEqual(fd_count(un.pid), fds_before + 4, "the flood cost usernet sockets")
            # g1 still owns its address.
            netlab.ping(g1, GATEWAY, count=2)

    def test_a_guest_cannot_become_the_gateway_by_arp_of_another_type_or_a_hidden_ra(self):
        """g2 tells g1 that 10.0.2.2 is at g2's MAC in an ARP of hardware
        type 6 (which Linux takes on Ethernet), and advertises itself as a
        router behind nine extension headers (which Linux walks): g1's
        kernel keeps the gateway's MAC for 10.0.2.2 and takes no router,
        prefix or address from g2."""
        with netlab.Lab("hostile") as lab:
            host, g1, g2, _, a1, _ = two_guests(lab)
            netlab.ping(g1, GATEWAY, count=1)
            g1_mac = g1.run(["cat", "/sys/class/net/tap0/address"]).stdout.strip()
            g2_mac = g2.run(["cat", "/sys/class/net/tap0/address"]).stdout.strip()
            gw_mac = g1.run(["ip", "neigh", "show", GATEWAY, "dev", "tap0"]).stdout.split("lladdr")[1].split()[0]
            self.assertNotEqual(gw_mac, g2_mac)
            spoof = {"kind": "arp", "htype": 6, "spa": GATEWAY, "tpa": a1, "to": g1_mac.replace(":", "")}
            ra = {"kind": "ra6", "src": "fe80::bad", "prefix": "2001:db8:bad::", "ext": 9}
            raw(g2, {"ifname": "tap0", "frames": [spoof, ra], "repeat": 3})
            time.sleep(1)
            neigh = g1.run(["ip", "neigh", "show", GATEWAY, "dev", "tap0"]).stdout
            self.assertNotIn(g2_mac, neigh, "g1 was told the gateway is g2: " + neigh)
            routes = g1.run(["ip", "-6", "route", "show", "dev", "tap0"]).stdout
            self.assertNotIn("fe80::bad", routes, routes)
            addrs = g1.run(["ip", "-6", "addr", "show", "dev", "tap0"]).stdout
            self.assertNotIn("2001:db8:bad", addrs, addrs)
            netlab.ping(g1, GATEWAY, count=1)

    def test_one_guests_icmp_error_flood_leaves_the_others_their_errors(self):
        """g2 sends TTL-1 datagrams as fast as it can (each costs an ICMP
        time exceeded); meanwhile g1's connected UDP socket still learns at
        once that a host port is closed (ECONNREFUSED from the port
        unreachable), 20 times of 20: ICMP errors are limited per
        attachment."""
        with netlab.Lab("hostile") as lab:
            host, g1, g2, _, _, _ = two_guests(lab)
            closed = netlab.free_port()
            flood = g2.popen([netlab.PY, "-c",
                              "import socket, time\n"
                              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                              "s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)\n"
                              "end = time.monotonic() + 8\n"
                              "while time.monotonic() < end:\n"
                              "    for p in range(200): s.sendto(b'x', ('192.0.2.1', 33434 + p))\n"],
                             name="ttl-flood")
            time.sleep(1)
            r = g1.py("import socket, sys, time\n"
                      "n = 0\n"
                      "for i in range(20):\n"
                      "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                      "    s.connect(('%s', int(sys.argv[1])))\n"
                      "    s.settimeout(1)\n"
                      "    s.send(b'x')\n"
                      "    try:\n"
                      "        s.recv(10)\n"
                      "    except ConnectionRefusedError:\n"
                      "        n += 1\n"
                      "    except socket.timeout:\n"
                      "        pass\n"
                      "    time.sleep(0.05)\n"
                      "print(n)\n" % GATEWAY, closed, timeout=60)
            flood.wait(20)
            self.assertEqual(r.stdout.strip(), "20", "port unreachables g1 got during g2's flood")

    def test_dhcp_storm_leaves_every_lease_and_new_guests_alone(self):
        """3000 DISCOVER+REQUEST pairs and 3000 gratuitous ARPs from made-up
        MACs on g2's port: g1 renews its own address, and g3, which asks
        only after the storm, still gets one."""
        with netlab.Lab("hostile") as lab:
            host = lab.netns("host")
            g1, g2, g3 = lab.netns("g1"), lab.netns("g2"), lab.netns("g3")
            lab.usernet(host, ["--netns", g1.path, "--netns", g2.path, "--netns", g3.path],
                        wait=[("link", g, "tap0") for g in (g1, g2, g3)])
            a1 = netlab.dhcp(lab, g1)["ip"]
            raw(g2, {"ifname": "tap0", "storm": {"dhcp": 3000, "arp": 3000, "seed": 7}})
            again = netlab.dhcp(lab, g1)
            self.assertEqual(again["ip"], a1, "g1 lost its address to the storm")
            a3 = netlab.dhcp(lab, g3)["ip"]
            self.assertNotEqual(a3, a1)
            netlab.ping(g1, GATEWAY, count=1)
            netlab.ping(g3, GATEWAY, count=1)

    def test_deleted_namespace_resets_its_connections_and_usernet_exits(self):
        """`ip netns del` while usernet's TAP keeps the namespace alive: the
        guest's idle connection to the host is reset within seconds, and
        usernet, started for that namespace alone, exits (status 0)."""
        with netlab.Lab("hostile") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            un = lab.usernet(host, ["--netns", guest.path], wait=[("link", guest, "tap0")])
            netlab.dhcp(lab, guest)
            port = netlab.free_port()
            # The host side accepts one connection and reports how it ended.
            server = host.popen([netlab.PY, "-c", r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); print("accepted", flush=True)
t = time.monotonic()
try:
    d = c.recv(1)
    print("eof" if d == b"" else "data", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
print("after %.1f" % (time.monotonic() - t), flush=True)
""", str(port)], name="server")
            netlab.wait_for(lambda: "ready" in server.stdout(), 10, what="server")
            guest.popen([netlab.PY, "-c",
                                  "import socket,time; s=socket.create_connection(('%s', %d)); time.sleep(600)"
                                  % (GATEWAY, port)], name="idle-client")
            netlab.wait_for(lambda: "accepted" in server.stdout(), 10, what="connection")
            # The client stays (the Lab stops it): its connection is alive
            # and idle when the namespace's name goes.
            subprocess.run(["ip", "netns", "del", guest.name], check=True)
            netlab.wait_for(lambda: "after" in server.stdout(), 10, what="the host side to see the end")
            self.assertIn("reset", server.stdout(), "the host side was not reset:\n" + server.stdout())
            self.assertEqual(un.wait(10), 0, "usernet did not exit when its namespace went:\n" + un.describe())
            self.assertIn("is gone", un.stderr())

    def test_namespace_given_by_pid_ends_with_its_process(self):
        with netlab.Lab("hostile") as lab:
            host = lab.netns("host")
            holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
            try:
                netlab.wait_for(lambda: os.readlink("/proc/%d/ns/net" % holder.pid)
                                != os.readlink("/proc/self/ns/net"), 10, what="unshare")
                un = lab.usernet(host, ["--netns", str(holder.pid)])
                time.sleep(0.5)
                self.assertIsNone(un.poll(), "usernet stopped early:\n" + un.describe())
                holder.kill()
                holder.wait(10)
                self.assertEqual(un.wait(10), 0, "usernet did not exit with the process:\n" + un.describe())
            finally:
                if holder.poll() is None:
                    holder.kill()
                    holder.wait(10)


if __name__ == "__main__":
    netlab.main()
