#!/usr/bin/env python3
"""Debian's podman 4.3 with `--network slirp4netns`, its slirp4netns 1.2 on
usernet's libslirp.so.0: the container networking that rootless podman,
buildah and rootlesskit users get, with podman's own slirp4netns command
line (--configure, --mtu 65520, --enable-ipv6, --enable-sandbox, --enable-seccomp,
--disable-host-loopback unless allow_host_loopback=true, the API socket for
published ports).

podman runs as root in a namespace of the lab ("host"), entered with
nsenter so that /sys/fs/cgroup stays as it is, with everything of its own
under the lab directory (storage, run directory, network config, events)
or a private directory in /tmp (podman's tmp directory, where slirp4netns's
API socket needs a short path), so nothing outside the test changes. Its containers.conf points
network_cmd_path at a wrapper that starts slirp4netns with usernet's
library (LD_LIBRARY_PATH), as a user or a distribution would. The image is
imported from a tarball of the host's busybox. The container runtime is
runc with cgroupfs: crun refuses the hybrid cgroup hierarchy of these
machines, and the rlimits podman asks for by default are above what this
sandbox may raise, so the test sets them at or below the current ones.

Checks: the container gets 10.0.2.100 with its route and DNS; it downloads
and uploads 8 MiB with checksums through 10.0.2.2 (allow_host_loopback);
usernet's DNS answers its local name; without allow_host_loopback the
gateway refuses; a port published with port_handler=slirp4netns (podman's
add_hostfwd through the API socket) serves a file from the container to a
host client; and /proc/PID/maps of podman's slirp4netns shows usernet's
library.

Rootless podman is not run: it needs newuidmap (the uidmap package) and a
user with subordinate ids, and takes the same slirp4netns path as here."""

import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import MiB  # noqa: E402

netlab.require_basics()
netlab.require_tools("podman", "runc", "slirp4netns", "nsenter", "busybox", "curl")

LIBDIR, OURS_ENV = netlab.libslirp()
LIB = os.path.join(LIBDIR, "libslirp.so.0")
GW = "10.0.2.2"
DNS = "10.0.2.3"
GUEST = "10.0.2.100"
LOCAL_NAME = "host.usernet.internal"
SIZE = 8 * MiB


def busybox_rootfs(tar_path, extra):
    """A rootfs tarball: the host's busybox, the libraries it loads, a link
    per applet, and extra {path in image: local file}."""
    bb = os.path.realpath(shutil.which("busybox"))
    files = {"bin/busybox": bb}
    r = subprocess.run(["ldd", bb], capture_output=True, text=True)
    for line in r.stdout.splitlines():  # static: "not a dynamic executable"
        parts = line.split()
        for p in parts:
            if p.startswith("/"):
                files[p.lstrip("/")] = os.path.realpath(p)
                break
    applets = subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(tar_path, "w") as t:
        for d in ("bin", "etc", "tmp", "www"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            t.addfile(info)
        for name, src in list(files.items()) + list(extra.items()):
            t.add(src, arcname=name)
        for a in applets:
            if a == "busybox":
                continue
            info = tarfile.TarInfo("bin/" + a)
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            t.addfile(info)


class Podman:
    """podman in the lab's host namespace, all its state in the lab."""

    def __init__(self, lab):
        self.lab = lab
        self.host = lab.netns("host")
        d = lab.path("podman")
        for sub in ("root", "run", "net", "events"):
            os.makedirs(os.path.join(d, sub))
        # podman's tmp directory holds slirp4netns's API socket, named by the
        # container's 64-digit id: a short path, as a unix socket needs
        self.tmp = tempfile.mkdtemp(prefix="unp")
        wrapper = os.path.join(d, "slirp4netns")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec env %s slirp4netns \"$@\"\n" % " ".join(OURS_ENV))
        os.chmod(wrapper, 0o755)
        conf = os.path.join(d, "containers.conf")
        with open(conf, "w") as f:
            f.write('[engine]\nnetwork_cmd_path = "%s"\nevents_logger = "file"\n'
                    'events_logfile_path = "%s"\n' % (wrapper, os.path.join(d, "events", "log")))
        self.base = ["nsenter", "--net=" + self.host.path, "env", "CONTAINERS_CONF=" + conf,
                     "podman", "--root", os.path.join(d, "root"), "--runroot", os.path.join(d, "run"),
                     "--tmpdir", self.tmp, "--network-config-dir", os.path.join(d, "net"),
                     "--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
        # podman raises the container's open files and processes to limits
        # this sandbox cannot grant (no CAP_SYS_RESOURCE): keep them.
        nofile = min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        nproc = 4096 if nproc == resource.RLIM_INFINITY else min(4096, nproc)
        self.limits = ["--ulimit", "nofile=%d:%d" % (nofile, nofile),
                       "--ulimit", "nproc=%d:%d" % (nproc, nproc)]
        self.image = "localhost/usernet-test-%s" % lab.id
        self.data, self.sha = lab.make_file(SIZE, "data.bin")
        # busybox wget posts its --post-file as a string (up to a NUL): text
        self.text = lab.path("up.txt")
        with open(self.data, "rb") as f, open(self.text, "w") as t:
            t.write(f.read(SIZE // 2).hex())
        self.text_sha = netlab.sha256_file(self.text)
        tar = lab.path("rootfs.tar")
        busybox_rootfs(tar, {"www/data.bin": self.data, "www/up.txt": self.text})
        self.podman(["import", tar, self.image], timeout=120)

    def podman(self, args, timeout=120, check=True):
        r = subprocess.run(self.base + list(args), capture_output=True, text=True, timeout=timeout,
                           start_new_session=True)
        if check and r.returncode != 0:
            raise AssertionError("podman %s failed (exit %d)\nstdout: %s\nstderr: %s" % (
                " ".join(args), r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
        return r

    def run(self, network, command, extra=(), timeout=120, check=True):
        return self.podman(["run", "--rm"] + self.limits + ["--network", network] + list(extra) +
                           [self.image, "sh", "-c", command], timeout=timeout, check=check)

    def slirp4netns_pids(self):
        """slirp4netns processes in the lab's host namespace (podman's)."""
        ino = os.stat(self.host.path).st_ino
        pids = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/comm" % p) as f:
                    if f.read().strip() != "slirp4netns":
                        continue
                if os.readlink("/proc/%s/ns/net" % p) == "net:[%d]" % ino:
                    pids.append(int(p))
            except OSError:
                continue
        return pids

    def close(self):
        self.podman(["rm", "--all", "--force", "--time", "0"], check=False)
        self.podman(["rmi", "--all", "--force"], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


class PodmanSlirp4netns(unittest.TestCase):

    def test_container_network_on_usernets_library(self):
        with netlab.Lab("pod") as lab:
            pm = Podman(lab)
            try:
                self._container_network(lab, pm)
            finally:
                pm.close()

    def _container_network(self, lab, pm):
        srv = pm.host.server("http", "--bind", "127.0.0.1", "--dir", lab.dir)
        url = "http://%s:%d/" % (GW, srv.port)
        t0 = time.monotonic()
        r = pm.run("slirp4netns:allow_host_loopback=true",
                   "ip -4 addr show tap0; ip route; cat /etc/resolv.conf; "
                   "wget -q -O - %sdata.bin | sha256sum; "
                   "wget -q -O - --post-file /www/up.txt %supload; "
                   "nslookup %s %s" % (url, url, LOCAL_NAME, DNS))
        netlab.log("podman run: %.1f s\n%s" % (time.monotonic() - t0, r.stdout))
        self.assertIn("inet %s/24" % GUEST, r.stdout)
        self.assertIn("default via %s" % GW, r.stdout)
        self.assertIn("nameserver %s" % DNS, r.stdout)
        self.assertIn("%s  -" % pm.sha, r.stdout, "the download differs")
        self.assertIn("%s %d" % (pm.text_sha, SIZE), r.stdout, "the upload differs")
        self.assertRegex(r.stdout, r"Address:? +%s" % GW.replace(".", r"\."))
        # podman's default: --disable-host-loopback, so the gateway refuses
        r = pm.run("slirp4netns", "wget -q -T 10 -O - %sdata.bin | wc -c; echo done" % url)
        self.assertEqual(r.stdout.split(), ["0", "done"], r.stdout + r.stderr)
        # a published port: podman asks slirp4netns's API socket (add_hostfwd)
        port = 18080
        r = pm.podman(["run", "-d", "--name", "web-" + lab.id] + pm.limits +
                      ["--network", "slirp4netns:port_handler=slirp4netns",
                       "-p", "127.0.0.1:%d:8080" % port, pm.image, "httpd", "-f", "-p", "8080",
                       "-h", "/www"])
        out = lab.path("from-container.bin")
        netlab.wait_for(lambda: pm.host.run(["curl", "-sf", "--max-time", "60", "-o", out,
                                             "http://127.0.0.1:%d/data.bin" % port],
                                            timeout=90, check=False).returncode == 0,
                        60, interval=0.5, what="the published port to serve the file")
        self.assertEqual(netlab.sha256_file(out), pm.sha, "file from the container differs")
        pids = pm.slirp4netns_pids()
        self.assertTrue(pids, "podman's slirp4netns is not running")
        for pid in pids:
            with open("/proc/%d/cmdline" % pid) as f:
                netlab.log("podman's slirp4netns: " + f.read().replace("\0", " "))
            with open("/proc/%d/maps" % pid) as f:
                libs = {os.path.realpath(line.split()[-1]) for line in f if "libslirp" in line}
            self.assertIn(os.path.realpath(LIB), libs)
            self.assertFalse([x for x in libs if x.startswith("/usr/")], libs)


if __name__ == "__main__":
    netlab.main()
