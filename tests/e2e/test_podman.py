#!/usr/bin/env python3
"""Debian's podman 4.3 with `--network slirp4netns`, its slirp4netns 1.2 on
usernet's libslirp.so.0: the container networking that rootless podman,
buildah and rootlesskit users get, with podman's own slirp4netns command
line (--configure, --mtu 65520, --enable-ipv6, --enable-sandbox, --enable-seccomp,
--disable-host-loopback unless allow_host_loopback=true, the API socket for
published ports).

podman runs in a namespace of the lab ("host"), entered with nsenter so
that /sys/fs/cgroup stays as it is, twice: as root (runc with cgroupfs:
crun refuses the hybrid cgroup hierarchy of these machines) and rootless,
as nobody with the single id mapping podman uses for a user without
subordinate ids (crun, no cgroups, the hybrid hierarchy's cgroup2 mount
hidden in a mount namespace of its own). All of podman's state is in a
private directory (storage, run and tmp directories, network config,
events), so nothing outside the test changes. Its containers.conf points
network_cmd_path at a wrapper that starts slirp4netns with usernet's
library (LD_LIBRARY_PATH), as a user or a distribution would. The image is
imported from a tarball of the host's busybox. The rlimits podman asks for
by default are above what this sandbox may raise, so the containers keep
the current ones.

Checks: the container gets 10.0.2.100 with its route and DNS; it downloads
and uploads 8 MiB with checksums through 10.0.2.2 (allow_host_loopback);
usernet's DNS answers its local name; without allow_host_loopback the
gateway refuses; a port published with port_handler=slirp4netns (podman's
add_hostfwd through the API socket) serves a file from the container to a
host client; and /proc/PID/maps of podman's slirp4netns shows usernet's
library.
"""

import os
import resource
import shutil
import signal
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
netlab.require_tools("podman", "runc", "crun", "slirp4netns", "nsenter", "unshare", "setpriv",
                     "mountpoint", "busybox", "curl")

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


# podman's rootless user: nobody, with the single id mapping podman falls
# back to when the user has no subordinate ids (no newuidmap needed)
NOBODY = 65534

# On a hybrid cgroup hierarchy (v1 controllers, a cgroup2 mount at
# /sys/fs/cgroup/unified, as on these machines) crun refuses to start
# anything. Rootless podman on cgroup v1 uses no cgroups at all, so the
# rootless runs hide that mount in a mount namespace of their own.
HIDE_UNIFIED = ("if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null; then "
                "umount /sys/fs/cgroup/unified || exit 1; fi; exec \"$@\"")


class Podman:
    """podman in the lab's host namespace, as root (runc, cgroupfs) or
    rootless (as nobody; crun, no cgroups), with all its state in a private
    directory: storage, run and tmp directories, network config, events,
    containers.conf, the slirp4netns wrapper and a copy of usernet's
    library (readable by nobody wherever the build tree is)."""

    def __init__(self, lab, rootless):
        self.lab = lab
        self.rootless = rootless
        self.host = lab.netns("host")
        # short: podman's tmp directory holds slirp4netns's API socket, named
        # by the container's 64-digit id, and a unix socket path is short
        d = self.dir = tempfile.mkdtemp(prefix="unp")
        for sub in ("root", "run", "xdg", "t", "net", "events", "lib"):
            os.makedirs(os.path.join(d, sub))
        self.lib = os.path.join(d, "lib", "libslirp.so.0")
        shutil.copy(os.path.realpath(LIB), self.lib)
        env = [e for e in OURS_ENV if not e.startswith("LD_LIBRARY_PATH=")]
        env.append("LD_LIBRARY_PATH=" + os.path.dirname(self.lib))
        wrapper = os.path.join(d, "slirp4netns")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec env %s slirp4netns \"$@\"\n" % " ".join(env))
        os.chmod(wrapper, 0o755)
        conf = os.path.join(d, "containers.conf")
        with open(conf, "w") as f:
            f.write('[engine]\nnetwork_cmd_path = "%s"\nevents_logger = "file"\n'
                    'events_logfile_path = "%s"\n' % (wrapper, os.path.join(d, "events", "log")))
        podman = ["podman", "--root", os.path.join(d, "root"), "--runroot", os.path.join(d, "run"),
                  "--tmpdir", os.path.join(d, "t"), "--network-config-dir", os.path.join(d, "net"),
                  "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"]
        enter = ["nsenter", "--net=" + self.host.path]
        if rootless:
            os.chmod(d, 0o755)
            os.chmod(os.path.join(d, "xdg"), 0o700)
            for root, dirs, files in os.walk(d):
                for n in dirs + files:
                    os.lchown(os.path.join(root, n), NOBODY, NOBODY)
            os.chown(d, NOBODY, NOBODY)
            self.base = enter + ["unshare", "--mount", "--propagation", "private",
                                 "sh", "-c", HIDE_UNIFIED, "sh",
                                 "setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                                 "--clear-groups", "env", "HOME=" + d,
                                 "XDG_RUNTIME_DIR=" + os.path.join(d, "xdg"),
                                 "CONTAINERS_CONF=" + conf] + podman + ["--runtime", "crun"]
        else:
            self.base = enter + ["env", "CONTAINERS_CONF=" + conf] + podman + ["--runtime", "runc"]
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
        tar = os.path.join(d, "rootfs.tar")
        busybox_rootfs(tar, {"www/data.bin": self.data, "www/up.txt": self.text})
        if rootless:
            os.chown(tar, NOBODY, NOBODY)
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
        # rootless podman leaves a pause process holding its user namespace
        try:
            with open(os.path.join(self.dir, "t", "pause.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        # conmon and slirp4netns of the last containers exit on their own
        # a moment after podman returns; anything still running on this
        # directory after 5 s is killed
        def left():
            pids = []
            for p in os.listdir("/proc"):
                try:
                    if p.isdigit() and self.dir.encode() in open("/proc/%s/cmdline" % p, "rb").read():
                        pids.append(int(p))
                except OSError:
                    pass
            return pids
        deadline = time.monotonic() + 5
        while left() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in left():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


class PodmanSlirp4netns(unittest.TestCase):

    def test_rootful(self):
        self._with_podman(rootless=False)

    def test_rootless(self):
        self._with_podman(rootless=True)

    def _with_podman(self, rootless):
        with netlab.Lab("pod") as lab:
            pm = Podman(lab, rootless)
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
            self.assertIn(os.path.realpath(pm.lib), libs)
            self.assertFalse([x for x in libs if x.startswith("/usr/")], libs)


if __name__ == "__main__":
    netlab.main()
