#!/usr/bin/env python3
"""The control API (--api-socket PATH), in slirp4netns's protocol, driven
as slirp4netns's own documentation drives its API (socat) and as
rootlesskit's port driver does (a request, a half-close, the reply to the
end): the command line's forwards listed, TCP and UDP forwards added at
run time and used by real clients, a host port in use refused with no
entry left, removal by id (the listener goes), get_stats counters that
match the traffic, malformed and unknown requests answered with an error,
the socket owner-only and removed at exit."""

import json
import signal
import os
import socket
import stat
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import MiB  # noqa: E402

netlab.require_basics()
netlab.require_tools("socat", "curl")


class ControlLab:
    def __init__(self, lab, extra=()):
        self.lab = lab
        self.api = lab.path("api.sock")
        self.host = lab.netns("host")
        self.guest = lab.netns("guest")
        self.un = lab.usernet(self.host, ["--netns", self.guest.path, "--config-net",
                                          "--api-socket", self.api] + list(extra),
                              wait=[("link", self.guest, "tap0"), ("socket", self.api)])
        netlab.wait_for(lambda: self.guest.addrs("tap0"), 10, what="address from --config-net")

    def socat(self, request):
        """One request through socat, as slirp4netns(1) shows."""
        r = self.host.run(["socat", "-t", "5", "UNIX-CONNECT:" + self.api, "-"],
                          input=request if isinstance(request, str) else json.dumps(request),
                          timeout=20)
        return json.loads(r.stdout)

    def call(self, execute, **arguments):
        """A request, a half-close, the reply (rootlesskit's way)."""
        req = {"execute": execute}
        if arguments:
            req["arguments"] = arguments
        return netlab.api_request(self.api, req, half_close=True)


class ControlTest(unittest.TestCase):
    def test_forwards_at_run_time(self):
        with netlab.Lab("ctl") as lab:
            p_cli = netlab.free_port()
            t = ControlLab(lab, ["-t", "%d:8000" % p_cli])
            self.assertEqual(stat.S_IMODE(os.stat(t.api).st_mode) & 0o077, 0, "owner only")
            entries = t.socat('{"execute": "list_hostfwd"}')["entries"]
            self.assertEqual(entries, [{"id": 1, "proto": "tcp", "host_addr": "", "host_port": p_cli,
                                        "guest_addr": "10.0.2.15", "guest_port": 8000}])
            with open(lab.path("f.bin"), "wb") as f:
                f.write(os.urandom(MiB))
            sha = netlab.sha256_file(lab.path("f.bin"))
            t.guest.server("http", "--bind", "0.0.0.0", "--port", "8000", "--dir", lab.dir)
            echo = t.guest.server("udp-echo", "--bind", "0.0.0.0", "--port", "0")
            hp = netlab.free_port(exclude=(p_cli,))
            up = netlab.free_port(socket.SOCK_DGRAM, exclude=(p_cli, hp))
            r = t.call("add_hostfwd", proto="tcp", host_addr="127.0.0.1", host_port=hp, guest_port=8000)
            self.assertIn("return", r, r)
            tid = r["return"]["id"]
            r = t.socat({"execute": "add_hostfwd", "arguments": {"proto": "udp", "host_addr": "127.0.0.1",
                                                                 "host_port": up, "guest_port": echo.port}})
            self.assertIn("return", r, r)
            uid = r["return"]["id"]
            self.assertEqual(len({1, tid, uid}), 3)
            # rootlesskit's driver sends "" for an address it has not got,
            # which slirp4netns takes as the default (0.0.0.0, the guest)
            ep = netlab.free_port(exclude=(p_cli, hp, up))
            r = t.call("add_hostfwd", proto="tcp", host_addr="", host_port=ep, guest_addr="",
                       guest_port=8000)
            self.assertIn("return", r, r)
            self.assertIn({"id": r["return"]["id"], "proto": "tcp", "host_addr": "0.0.0.0", "host_port": ep,
                           "guest_addr": "10.0.2.15", "guest_port": 8000}, t.call("list_hostfwd")["entries"])
            self.assertEqual(t.call("remove_hostfwd", id=r["return"]["id"]), {"return": {}})
            # the same host port again: refused, nothing added
            dup = t.call("add_hostfwd", proto="tcp", host_addr="127.0.0.1", host_port=hp, guest_port=8000)
            self.assertIn("Address already in use", dup["error"]["desc"])
            self.assertEqual(len(t.call("list_hostfwd")["entries"]), 3)
            # real clients through the new forwards
            out = lab.path("got.bin")
            netlab.curl(t.host, ["--max-time", "20", "-o", out, "http://127.0.0.1:%d/f.bin" % hp], timeout=30)
            self.assertEqual(netlab.sha256_file(out), sha)
            r = t.host.py("import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                          "s.settimeout(5); s.sendto(b'ping', ('127.0.0.1', int(sys.argv[1])));"
                          "print(s.recvfrom(100)[0].decode())", up, timeout=20)
            self.assertEqual(r.stdout.strip(), "ping")
            # counters that match: the download went out of the guest's TAP
            st = t.call("get_stats")["return"]["lans"][0]
            self.assertEqual(st["name"], "default")
            tap = [a for a in st["attachments"] if "tap0" in a["name"]]
            self.assertEqual(len(tap), 1, st["attachments"])
            self.assertGreater(tap[0]["rx_bytes"], MiB)  # the guest's HTTP answer
            self.assertGreater(tap[0]["tx_frames"], 10)
            self.assertGreaterEqual(st["nat"]["tcp_bytes_to_host"], MiB)
            self.assertEqual(st["nat"]["udp_forwarded_to_guest"], 1)
            self.assertEqual(st["nat"]["udp_forwarded_to_host"], 1)
            self.assertEqual(st["gateway"]["dropped_malformed"], 0)
            self.assertGreater(st["gateway"]["routed"], 0)
            # removal by id: the listener goes
            self.assertEqual(t.call("remove_hostfwd", id=tid), {"return": {}})
            self.assertIn("error", t.call("remove_hostfwd", id=tid))
            self.assertEqual(t.host.run(["ss", "-ltnH", "sport = :%d" % hp]).stdout.strip(), "")
            r = netlab.curl(t.host, ["--max-time", "5", "-o", "/dev/null", "http://127.0.0.1:%d/" % hp],
                            timeout=20, check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertEqual([e["id"] for e in t.call("list_hostfwd")["entries"]], [1, uid])
            # the command line's forward can go too
            self.assertEqual(t.call("remove_hostfwd", id=1), {"return": {}})
            self.assertEqual(t.host.run(["ss", "-ltnH", "sport = :%d" % p_cli]).stdout.strip(), "")
            lab.assert_alive(t.un)
            t.un.stop()
            self.assertFalse(os.path.exists(t.api), "the socket is removed at exit")

    def test_get_stats_counts_reassembly_dns_and_icmp_rate_limits(self):
        """What the docs say is counted shows in get_stats: a fragmented
        ping's reassembly, a TTL-1 flood's drops and the ICMP errors held
        back beyond the rate limit, and the DNS and DHCP counters."""
        with netlab.Lab("ctl") as lab:
            t = ControlLab(lab)
            # A 4000-byte echo at MTU 1500 leaves the guest in 3 fragments.
            t.guest.run(["ip", "link", "set", "tap0", "mtu", "1500"])
            t.guest.run(["busybox", "ping", "-c", "1", "-W", "5", "-s", "4000", netlab.GATEWAY], timeout=20)
            t.guest.py("import socket\n"
                       "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                       "s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)\n"
                       "for i in range(300): s.sendto(b'x', ('192.0.2.1', 33434 + i))\n")
            st = t.call("get_stats")["return"]["lans"][0]
            self.assertGreaterEqual(st["gateway"]["reassembly"]["reassembled"], 1, st["gateway"])
            self.assertGreaterEqual(st["gateway"]["reassembly"]["fragments"], 3, st["gateway"])
            self.assertEqual(st["gateway"]["dropped_ttl"], 300, st["gateway"])
            self.assertGreater(st["gateway"]["icmp_rate_limited"], 0, st["gateway"])
            for k in ("queries", "servfail", "formerr", "truncated", "dropped_quota"):
                self.assertIn(k, st["dns"])
            for k in ("sessions", "forwarded", "formerr"):
                self.assertIn(k, st["dns"]["tcp"])
            for k in ("acks", "bootp_replies", "dropped_malformed"):
                self.assertIn(k, st["dhcp"])
            self.assertIn("icmp_errors_rate_limited", st["nat"])

    def test_sigusr1_writes_the_counters_and_sigusr2_is_ignored(self):
        """SIGUSR1 writes what get_stats answers as one JSON line on
        stderr, even under --quiet; neither SIGUSR1 nor SIGUSR2 stops the
        daemon (their default action would), and SIGTERM still does."""
        with netlab.Lab("ctl") as lab:
            t = ControlLab(lab, extra=["--quiet"])
            t.guest.run(["busybox", "ping", "-c", "1", "-W", "5", netlab.GATEWAY], timeout=20)
            t.un.p.send_signal(signal.SIGUSR2)
            t.un.p.send_signal(signal.SIGUSR1)

            def counters():
                lines = [l for l in t.un.stderr().splitlines() if l.startswith("usernet: counters: ")]
                return lines and json.loads(lines[-1][len("usernet: counters: "):])
            st = netlab.wait_for(counters, 10, what="counters on stderr after SIGUSR1")
            lan = st["lans"][0]
            self.assertEqual(lan["name"], "default")
            self.assertGreater(lan["attachments"][0]["rx_frames"], 0, lan)  # the ping, at least
            self.assertEqual(set(lan), set(t.call("get_stats")["return"]["lans"][0]))
            lab.assert_alive(t.un)
            t.un.stop()  # SIGTERM: a clean exit (checked)

    def test_bad_requests_get_an_error(self):
        with netlab.Lab("ctl") as lab:
            t = ControlLab(lab)
            for req, says in (('{"execute": "nonsense"}', "unknown command"),
                              ('{"arguments": {}}', "execute"),
                              ('{"execute": "add_hostfwd", "arguments": {"proto": "sctp"}}', "proto"),
                              ('{"execute": "add_hostfwd", "arguments": {"proto": "tcp", '
                               '"host_port": 70000, "guest_port": 80}}', "host_port"),
                              ('{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "x", '
                               '"host_port": 8080, "guest_port": 80}}', "host_addr"),
                              ('{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_port": 8080, '
                               '"guest_port": 80, "guest_addr": "10.0.2.2"}}', "guest_addr"),
                              ('{"execute": "remove_hostfwd", "arguments": {"id": "one"}}', "id"),
                              ("not json at all", "JSON")):
                r = t.socat(req)
                self.assertIn(says, r.get("error", {}).get("desc", ""), (req, r))
            self.assertEqual(t.call("list_hostfwd"), {"entries": []})
            lab.assert_alive(t.un)

    def test_refused_at_start(self):
        with netlab.Lab("ctl") as lab:
            host = lab.netns("host")
            path = lab.path("api.sock")
            with open(path, "w") as f:
                f.write("a file")
            r = host.run([netlab.usernet_bin(), "--socket", lab.path("q.sock"), "--api-socket", path],
                         timeout=15, check=False)
            self.assertEqual(r.returncode, 1)
            err = r.stderr.strip().splitlines()
            self.assertEqual(len(err), 1, err)
            self.assertIn("--api-socket", err[0])
            self.assertIn("not a socket", err[0])


if __name__ == "__main__":
    netlab.main()
