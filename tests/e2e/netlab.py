"""netlab: network-namespace test lab for usernet's end-to-end tests.

Python 3 standard library only.  Every test builds its own, uniquely named
namespaces ("un-<pid>-<random>-<role>"), so test files can run in parallel
(ctest -j) without clashing, and nothing touches the root namespace's network:

  host    usernet runs here; lo is up, so a server on 127.0.0.1 in this
          namespace is "the host's loopback" that the gateway 10.0.2.2 maps to.
  guest   one or more namespaces in which usernet creates its TAP.
  remote  optional, joined to host by a veth pair with documentation
          addresses (198.51.100.1/24 host side, 198.51.100.2 remote side):
          a server "on the internet" reached through a routed address.

Everything a Lab starts (processes, namespaces, files under /etc/netns) is
removed when the Lab closes, also on failure (context manager), at exit
(atexit) and on SIGTERM/SIGINT/SIGHUP.  Namespaces left behind by a test
that was killed with SIGKILL are swept by the next Lab (their names carry
the owner's pid).

Exit codes: a test file calls netlab.main(); it exits 0 when every test ran
and passed, 1 on failure and 77 (CTest SKIP_RETURN_CODE) when a test could not
run, e.g. because we are not root or a needed tool is missing.  A skip must
never pass for success, so:
  - a file in which no test ran, or only some did, does not exit 0;
  - under CI (environment CI=true) a missing prerequisite is a failure
    (exit 1) that names what is missing and the Debian package that
    installs it (scripts/install-deps.sh installs them all), whether it is
    found at module level (skip_file, require_*) or by a test (skipTest).
Every Lab also checks, when it stops usernet, that usernet exited with 0
and printed no sanitizer report or crash (check_usernet_exit).
"""

import atexit
import errno
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY = sys.executable or "/usr/bin/python3"
SERVERS = os.path.join(HERE, "servers.py")

# usernet's defaults (QEMU's addressing).
NET = "10.0.2.0/24"
GATEWAY = "10.0.2.2"
DNS = "10.0.2.3"
GUEST = "10.0.2.15"
# Documentation ranges (RFC 5737) for the "internet" side.
HOST_VETH_ADDR = "198.51.100.1"
REMOTE_ADDR = "198.51.100.2"
REMOTE_NET_PREFIX = 24
# IPv6: usernet's defaults (QEMU's), and the remote namespace's documentation
# prefix (RFC 3849) on the same veth.
PREFIX6 = "fec0::"
GATEWAY6 = "fec0::2"
DNS6 = "fec0::3"
GATEWAY6_LL = "fe80::2"  # fe80:: with gateway6's interface identifier
HOST_VETH_ADDR6 = "2001:db8:1::1"
REMOTE_ADDR6 = "2001:db8:1::2"

NS_PREFIX = "un-"
MiB = 1024 * 1024


def log(*args):
    print("[netlab %s]" % time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# skipping


# CI sets CI=true (GitHub, GitLab and most others do): there, everything the
# tests need is installed by scripts/install-deps.sh, so a missing
# prerequisite is a broken CI machine, never a reason to pass.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

# The Debian package that provides each tool the tests run (all of them are
# in scripts/install-deps.sh's TEST_PKGS; keep the two lists in step).
PACKAGE_OF = {
    "ip": "iproute2", "ss": "iproute2", "sysctl": "procps", "busybox": "busybox",
    "udhcpc": "udhcpc", "curl": "curl", "dig": "dnsutils", "dnsmasq": "dnsmasq-base",
    "rdisc6": "ndisc6", "dhclient": "isc-dhcp-client", "atftp": "atftp", "tftp": "tftp-hpa",
    "smbd": "samba", "smbclient": "smbclient",
    "tshark": "tshark", "qemu-system-x86_64": "qemu-system-x86", "cpio": "cpio",
    "gzip": "gzip", "iperf3": "iperf3", "socat": "socat", "setpriv": "util-linux",
    "unshare": "util-linux",
    "prlimit": "util-linux",
    "bochs": "bochs", "xorriso": "xorriso",
    "vde_plug": "vdeplug", "vde_plug2tap": "vde2",
    "pppd": "ppp", "slattach": "net-tools", "bootpc": "bootpc",
    "iptables": "iptables", "ip6tables": "iptables",
    "node": "nodejs", "dpkg": "dpkg", "depmod": "kmod",
    "slirp4netns": "slirp4netns", "podman": "podman", "runc": "runc", "crun": "crun",
    "nsenter": "util-linux", "mountpoint": "util-linux",
}


def _with_packages(tools):
    return " ".join("%s (apt-get install %s)" % (t, PACKAGE_OF[t]) if t in PACKAGE_OF else t
                    for t in tools)


def skip_file(reason):
    """The whole file cannot run.  Outside CI: exit 77 (CTest reports the
    test as not run, with this reason).  Under CI: exit 1, a failure."""
    if IN_CI:
        print("FAILED: CI=true and a prerequisite is missing, which must not pass as a skip: %s\n"
              "(scripts/install-deps.sh installs everything the tests need; "
              "run the tests as root)" % reason, flush=True)
        sys.exit(1)
    print("skipped: %s" % reason, flush=True)
    sys.exit(SKIP)


def libslirp():
    """usernet's libslirp.so.0 (src/slirp) for a program that loads it:
    (its directory, the environment entries that make the program load it).
    That is LD_LIBRARY_PATH, and under the sanitizers the ASan runtime
    preloaded (USERNET_LIBSLIRP_PRELOAD, set by CMake), which the library
    expects from the process; leak checks are off, as QEMU and slirp4netns
    leave memory to the exit. Skips the file when the library is not built
    (USERNET_LIBSLIRP_DIR, default build/libslirp)."""
    d = os.path.abspath(os.environ.get("USERNET_LIBSLIRP_DIR") or os.path.join(REPO, "build", "libslirp"))
    if not os.path.exists(os.path.join(d, "libslirp.so.0")):
        skip_file("usernet's libslirp.so.0 is not built in %s (set USERNET_LIBSLIRP_DIR)" % d)
    env = ["LD_LIBRARY_PATH=" + d]
    preload = os.environ.get("USERNET_LIBSLIRP_PRELOAD", "")
    if preload:
        env += ["LD_PRELOAD=" + preload, "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1",
                "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"]
    return d, env


def sanitized_usernet():
    """True when the usernet binary is a sanitizer build (its runtime is
    linked in)."""
    with open(usernet_bin(), "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__ubsan_handle" in data


def require_root():
    if os.geteuid() != 0:
        skip_file("needs root (network namespaces, TAP devices)")


def require_tools(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        skip_file("missing tool(s): %s" % _with_packages(missing))


def have(tool):
    return shutil.which(tool) is not None


def optional_tool(tool):
    """For an extra check inside a test that runs without the tool: True when
    the tool is there.  Under CI its absence fails the test instead, so the
    check is never silently left out there."""
    if have(tool):
        return True
    if IN_CI:
        raise AssertionError("CI=true and %s is missing" % _with_packages([tool]))
    log("note: %s missing, a check is left out" % _with_packages([tool]))
    return False


def usernet_bin():
    path = os.environ.get("USERNET_BIN") or os.path.join(REPO, "build", "usernet")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        skip_file("usernet binary not found (set USERNET_BIN): %s" % path)
    return os.path.abspath(path)


def require_basics():
    """What every netns test needs."""
    require_root()
    require_tools("ip", "ss", "sysctl", "busybox")
    if not os.path.exists("/dev/net/tun"):
        skip_file("/dev/net/tun missing (modprobe tun; in a container, pass the device in)")
    return usernet_bin()


# --------------------------------------------------------------------------
# polling


class Timeout(AssertionError):
    pass


def wait_for(cond, timeout=10.0, interval=0.05, what="condition"):
    """Poll cond() until it returns a truthy value; return that value.
    Raise Timeout (an AssertionError, so the test fails) at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # the condition may fail while things start
            last_exc = e
        if time.monotonic() >= deadline:
            extra = " (last error: %r)" % (last_exc,) if last_exc else ""
            raise Timeout("timed out after %.1fs waiting for %s%s" % (timeout, what, extra))
        time.sleep(interval)


def free_port(kind=socket.SOCK_STREAM, exclude=()):
    """A random port number.  Each Lab has fresh namespaces, so a port is
    free there unless the test itself uses it; still, pick at random (not a
    fixed number) from below the kernel's ephemeral range (32768 up),
    which it never hands out, and
    check it is bindable on this machine's loopback for good measure."""
    for _ in range(200):
        p = random.randint(20000, 32000)
        if p in exclude:
            continue
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port found")


def check_capture_macs(pcap, seen, unseen):
    """MAC translation's promise, checked on a LAN capture: every MAC of
    `seen` is somewhere in it and no byte run of it is a MAC of `unseen`
    (the guests' own). Raises AssertionError naming the MAC otherwise."""
    with open(pcap, "rb") as f:
        data = f.read()
    for mac in seen:
        if bytes.fromhex(mac.replace(":", "")) not in data:
            raise AssertionError("the LAN capture %s never holds %s" % (pcap, mac))
    for mac in unseen:
        if bytes.fromhex(mac.replace(":", "")) in data:
            raise AssertionError("the LAN saw the guest's MAC %s (%s)" % (mac, pcap))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------
# processes


class Proc:
    """A process started in a namespace; stdout/stderr go to files in the
    lab's directory so a long-running process never blocks on a full pipe."""

    def __init__(self, lab, argv, ns, name, stdin=None):
        self.lab = lab
        self.argv = argv
        self.ns = ns
        self.name = name
        self.out_path = os.path.join(lab.dir, "%s.%d.out" % (name, len(lab.procs)))
        self.err_path = os.path.join(lab.dir, "%s.%d.err" % (name, len(lab.procs)))
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        full = (["ip", "netns", "exec", ns.name] if ns is not None else []) + list(argv)
        self.p = subprocess.Popen(full, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                  stdout=self._out, stderr=self._err, start_new_session=True)
        self.pid = self.p.pid
        self.killed = False
        lab.procs.append(self)

    def poll(self):
        return self.p.poll()

    def alive(self):
        return self.p.poll() is None

    def wait(self, timeout=None):
        return self.p.wait(timeout)

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def send_signal(self, sig):
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Signal, wait, then SIGKILL the whole process group.  Returns the exit code."""
        if self.p.poll() is None:
            self.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.p.poll() is None:
            self.killed = True  # did not stop on sig within timeout
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.p.wait(5)
        else:
            # kill anything the process left behind in its group
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for f in (self._out, self._err):
            try:
                f.close()
            except Exception:
                pass
        return self.p.returncode

    def describe(self):
        rc = self.p.poll()
        return "%s (pid %d, %s): %s\n--- stdout:\n%s\n--- stderr:\n%s" % (
            self.name, self.pid, "running" if rc is None else "exit %s" % rc,
            " ".join(self.argv), self.stdout()[-4000:], self.stderr()[-4000:])


# What a crash or a sanitizer leaves on stderr.  usernet itself never prints
# these; any of them fails the test that ran it.
CRASH_MARKERS = (
    "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "LeakSanitizer", "AddressSanitizer",
    "UndefinedBehaviorSanitizer", "ThreadSanitizer", "MemorySanitizer", "runtime error:",
    "Sanitizer:DEADLYSIGNAL", "terminate called", "Segmentation fault", "core dumped",
    "stack smashing detected", "double free", "free(): invalid", "malloc(): ", "Assertion `",
)


class Usernet(Proc):
    """usernet started by Lab.usernet.  When it is stopped (by the test or at
    the end of the Lab) its exit is checked: it must have exited by itself
    with expect_exit (0: SIGTERM is a clean stop, see EXIT STATUS in
    usernet(1)) -- not by a signal, not after a SIGKILL because it hung on
    SIGTERM -- and its stderr must hold no crash or sanitizer report.  A
    violation raises AssertionError, so the test that ran it fails."""

    def __init__(self, lab, argv, ns, name, expect_exit=0):
        super().__init__(lab, argv, ns, name)
        self.expect_exit = expect_exit
        self.checked = False

    def exit_problems(self):
        rc = self.p.poll()
        problems = []
        if rc is None:
            problems.append("still running")
        elif self.killed:
            problems.append("did not exit within the timeout after SIGTERM (killed)")
        elif rc < 0:
            problems.append("killed by signal %d (a crash?)" % -rc)
        elif rc != self.expect_exit:
            problems.append("exit status %d, expected %d" % (rc, self.expect_exit))
        err = self.stderr()
        for m in CRASH_MARKERS:
            if m in err:
                problems.append("stderr has %r" % m)
        return problems

    def check_exit(self):
        """Raise AssertionError if the exit was not clean (once)."""
        if self.checked:
            return
        self.checked = True
        problems = self.exit_problems()
        if problems:
            raise AssertionError("usernet did not stop cleanly: %s\n%s" % ("; ".join(problems), self.describe()))

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        rc = super().stop(sig, timeout)
        self.check_exit()
        return rc


class Server(Proc):
    """A servers.py server; waits for its 'READY <port>' line."""

    def __init__(self, lab, ns, kind, args, name=None, timeout=20):
        argv = [PY, SERVERS, kind] + list(args)
        super().__init__(lab, argv, ns, name or kind)
        self.port = None

        def ready():
            if self.p.poll() is not None:
                raise AssertionError("server died:\n" + self.describe())
            m = re.search(r"^READY (\d+)", self.stdout(), re.M)
            return m and int(m.group(1))

        self.port = wait_for(ready, timeout, what="%s server ready" % kind)


# --------------------------------------------------------------------------
# namespaces


class Netns:
    def __init__(self, lab, name, role):
        self.lab = lab
        self.name = name
        self.role = role
        self.path = "/run/netns/" + name

    def __repr__(self):
        return "<Netns %s>" % self.name

    def run(self, cmd, timeout=30, check=True, input=None, shell=None):
        """Run cmd (a list, or a string for sh -c) in this namespace; return
        CompletedProcess with text stdout/stderr.  check=True fails the test
        on non-zero exit, with the output in the message."""
        if isinstance(cmd, str):
            argv = ["sh", "-c", cmd]
        else:
            argv = list(cmd)
        full = ["ip", "netns", "exec", self.name] + argv
        try:
            r = subprocess.run(full, input=input, capture_output=True, timeout=timeout,
                               text=not isinstance(input, bytes), start_new_session=True)
        except subprocess.TimeoutExpired as e:
            raise Timeout("command timed out after %ss in %s: %s\nstdout: %s\nstderr: %s" % (
                timeout, self.name, " ".join(argv), _s(e.stdout), _s(e.stderr)))
        if isinstance(r.stdout, bytes):
            r.stdout = r.stdout.decode(errors="replace")
            r.stderr = r.stderr.decode(errors="replace")
        if check and r.returncode != 0:
            raise AssertionError("command failed (exit %d) in %s: %s\nstdout: %s\nstderr: %s" % (
                r.returncode, self.name, " ".join(argv), r.stdout[-3000:], r.stderr[-3000:]))
        return r

    def add_addr6(self, addr, dev):
        """Add an IPv6 address (ADDR/LEN) to dev without duplicate address
        detection, and wait until the kernel delivers to it: its local
        route comes from the kernel's address work, which waits for the
        RTNL lock, held for seconds while other tests' namespaces go."""
        self.run(["ip", "-6", "addr", "add", addr, "dev", dev, "nodad"])
        a = addr.split("/")[0]
        wait_for(lambda: self.run(["ip", "-6", "route", "show", "table", "local", a]).stdout.strip(),
                 10, what="the local route to %s in %s" % (a, self.name))

    def py(self, code, *args, timeout=60, check=True):
        """Run a Python snippet in this namespace."""
        return self.run([PY, "-c", code] + [str(a) for a in args], timeout=timeout, check=check)

    def popen(self, argv, name=None, stdin=None):
        return Proc(self.lab, argv, self, name or os.path.basename(argv[0]), stdin=stdin)

    def server(self, kind, *args, name=None):
        return Server(self.lab, self, kind, [str(a) for a in args], name=name)

    def has_link(self, ifname):
        r = self.run(["ip", "-o", "link", "show", "dev", ifname], check=False)
        return r.returncode == 0

    def link_up(self, ifname):
        r = self.run(["ip", "-o", "link", "show", "dev", ifname], check=False)
        return r.returncode == 0 and ("state UP" in r.stdout or ",UP" in r.stdout or "<UP" in r.stdout)

    def addrs(self, ifname):
        r = self.run(["ip", "-o", "-4", "addr", "show", "dev", ifname], check=False)
        return re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/(\d+)", r.stdout)

    def wait_link(self, ifname, timeout=10):
        return wait_for(lambda: self.has_link(ifname), timeout, what="%s to appear in %s" % (ifname, self.name))

    def resolv_conf(self, text):
        """ip netns exec bind-mounts /etc/netns/<name>/resolv.conf over
        /etc/resolv.conf for processes started in this namespace."""
        d = "/etc/netns/" + self.name
        os.makedirs(d, exist_ok=True)
        self.lab.etc_dirs.append(d)
        with open(os.path.join(d, "resolv.conf"), "w") as f:
            f.write(text)


def _s(b):
    if b is None:
        return ""
    if isinstance(b, bytes):
        return b.decode(errors="replace")
    return b


_LABS = []


def _cleanup_all():
    for lab in list(_LABS):
        try:
            lab.close()
        except Exception as e:
            log("cleanup error:", e)


def _on_signal(signum, frame):
    _cleanup_all()
    # exit with the conventional code for "killed by signal"
    os._exit(128 + signum)


atexit.register(_cleanup_all)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        signal.signal(_sig, _on_signal)
    except (ValueError, OSError):
        pass


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def list_netns():
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _kill_ns_pids(name):
    r = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    pids = [int(x) for x in r.stdout.split()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        # reap if it is our child, else wait until it is gone
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    break
            except ChildProcessError:
                if not _pid_alive(pid):
                    break
            time.sleep(0.02)


def _delete_ns(name):
    _kill_ns_pids(name)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    shutil.rmtree("/etc/netns/" + name, ignore_errors=True)


def sweep_stale():
    """Delete namespaces left by labs whose process is gone (e.g. SIGKILLed by
    a CTest timeout).  Names are un-<pid hex>-<random>-<role>."""
    for name in list_netns():
        m = re.match(r"^un-([0-9a-f]+)-[0-9a-z]+-", name)
        if not m:
            continue
        pid = int(m.group(1), 16)
        if pid != os.getpid() and not _pid_alive(pid):
            log("sweeping stale namespace", name)
            _delete_ns(name)


class Lab:
    """A set of namespaces and processes for one test.  Use as a context manager."""

    def __init__(self, name="lab"):
        sweep_stale()
        self.id = "%x-%s" % (os.getpid(), "".join(random.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(5)))
        self.dir = tempfile.mkdtemp(prefix="un-%s-%s-" % (name, self.id))
        self.ns = []
        self.procs = []
        self.etc_dirs = []
        self.usernets = []
        self.closed = False
        self._nlinks = 0
        _LABS.append(self)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is not None and not isinstance(ev, unittest.SkipTest):
            self.dump()
        # without an exception of its own, the test fails if usernet's exit
        # was not clean; with one, that exception is the one reported
        self.close(check=et is None)
        return False

    def dump(self):
        """Print what the lab's processes said (on failure)."""
        for p in self.procs:
            try:
                log("process " + p.describe())
            except Exception:
                pass

    # namespaces ---------------------------------------------------------

    def netns(self, role):
        name = "%s%s-%s" % (NS_PREFIX, self.id, role)
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        ns = Netns(self, name, role)
        self.ns.append(ns)
        ns.run(["ip", "link", "set", "lo", "up"])
        return ns

    def ifname(self, stem):
        """A short (<16 chars) interface name, unique within the lab."""
        self._nlinks += 1
        return "%s%d" % (stem[:8], self._nlinks)

    def veth(self, a, b, a_addr=None, b_addr=None, a_name=None, b_name=None):
        """Connect namespaces a and b with a veth pair; addresses as 'A/len'."""
        an = a_name or self.ifname("va")
        bn = b_name or self.ifname("vb")
        subprocess.run(["ip", "link", "add", an, "netns", a.name, "type", "veth",
                        "peer", "name", bn, "netns", b.name], check=True, capture_output=True)
        for ns, n, addr in ((a, an, a_addr), (b, bn, b_addr)):
            if addr:
                ns.run(["ip", "addr", "add", addr, "dev", n])
            ns.run(["ip", "link", "set", n, "up"])
        return an, bn

    def remote(self, host):
        """A 'remote' namespace on the internet side of host:
        host 198.51.100.1/24 <-veth-> remote 198.51.100.2/24, with a default
        route in remote back to the host side."""
        r = self.netns("remote")
        hn, rn = self.veth(host, r, "%s/%d" % (HOST_VETH_ADDR, REMOTE_NET_PREFIX),
                           "%s/%d" % (REMOTE_ADDR, REMOTE_NET_PREFIX))
        r.run(["ip", "route", "add", "default", "via", HOST_VETH_ADDR])
        # IPv6 as well: 2001:db8:1::1/64 <-> ::2/64, without duplicate
        # address detection so that both are usable at once.
        host.add_addr6(HOST_VETH_ADDR6 + "/64", hn)
        r.add_addr6(REMOTE_ADDR6 + "/64", rn)
        r.run(["ip", "-6", "route", "add", "default", "via", HOST_VETH_ADDR6])
        return r

    # processes ----------------------------------------------------------

    def usernet(self, host, args, wait=None, name="usernet", timeout=10, wrapper=(), expect_exit=0):
        """Start usernet in the host namespace: ip netns exec HOST [WRAPPER]
        usernet ARGS (wrapper: a command that execs its arguments, e.g.
        setpriv).  wait: a list of readiness conditions, each ("link", ns,
        ifname) or ("socket", path) or a callable.  The test fails if usernet
        exits before it is ready, and when it is stopped if it does not exit
        with expect_exit or leaves a crash on stderr (Usernet)."""
        argv = list(wrapper) + [usernet_bin()] + [str(a) for a in args]
        p = Usernet(self, argv, host, name, expect_exit=expect_exit)
        self.usernets.append(p)
        for cond in (wait or []):
            def check(cond=cond):
                if p.poll() is not None:
                    raise AssertionError("usernet exited early:\n" + p.describe())
                if callable(cond):
                    return cond()
                if cond[0] == "link":
                    return cond[1].has_link(cond[2])
                if cond[0] == "socket":
                    return os.path.exists(cond[1]) and _unix_connectable(cond[1])
                raise ValueError(cond)
            wait_for(check, timeout, what="usernet ready: %r" % (cond if not callable(cond) else "callable",))
        return p

    def assert_alive(self, p):
        if p.poll() is not None:
            raise AssertionError("process died:\n" + p.describe())

    # files --------------------------------------------------------------

    def make_file(self, size, name=None):
        """A file of random bytes in the lab directory; returns (path, sha256)."""
        path = os.path.join(self.dir, name or "data-%d.bin" % size)
        h = hashlib.sha256()
        with open(path, "wb") as f:
            left = size
            while left:
                b = os.urandom(min(left, 1 << 20))
                h.update(b)
                f.write(b)
                left -= len(b)
        return path, h.hexdigest()

    def path(self, name):
        return os.path.join(self.dir, name)

    # teardown -----------------------------------------------------------

    def close(self, check=False):
        """Stop everything and delete the namespaces.  check: raise
        AssertionError (after cleaning up) if a usernet did not exit
        cleanly; otherwise only log it."""
        if self.closed:
            return
        self.closed = True
        problems = []
        for p in reversed(self.procs):
            try:
                if isinstance(p, Usernet):
                    p.stop()
                else:
                    p.stop(timeout=3)
            except AssertionError as e:
                problems.append(str(e))
            except Exception as e:
                log("stop error", p.name, e)
        for ns in reversed(self.ns):
            _delete_ns(ns.name)
        for d in self.etc_dirs:
            shutil.rmtree(d, ignore_errors=True)
        if os.environ.get("NETLAB_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
        if self in _LABS:
            _LABS.remove(self)
        if problems:
            if check:
                raise AssertionError("\n".join(problems))
            for m in problems:
                log(m)


def _unix_connectable(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------
# guest helpers

UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc event script: record the lease's variables and configure the link.
out="$UN_LEASE_DIR/lease.$interface"
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    env | grep -E '^(ip|subnet|mask|router|dns|serverid|lease|domain|mtu|broadcast|interface|hostname|search|staticroutes|siaddr|boot_file|tftp|bootfile)=' > "$out.tmp"
    echo "event=$1" >> "$out.tmp"
    mv "$out.tmp" "$out"
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$mtu" ]; then ip link set "$interface" mtu "$mtu"; fi
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    ;;
  leasefail|nak)
    echo "event=$1" >> "$out.fail"
    ;;
esac
exit 0
"""


def udhcpc_cmd():
    if have("udhcpc"):
        return [shutil.which("udhcpc")]
    return [shutil.which("busybox"), "udhcpc"]


def dhcp(lab, guest, ifname="tap0", timeout=30, hostname=None, extra=()):
    """Run busybox udhcpc once in guest on ifname (waits for the link first),
    telling the server hostname (option 12) if given, with extra arguments
    (e.g. ("-x", "61:HEX"): a client identifier); returns the lease's
    variables as a dict (ip, mask, router, dns, ...)."""
    guest.wait_link(ifname)
    script = lab.path("udhcpc.sh")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(UDHCPC_SCRIPT)
        os.chmod(script, 0o755)
    env_dir = lab.path("lease-%s" % guest.role)
    os.makedirs(env_dir, exist_ok=True)
    # -f foreground, -q quit after lease, -n fail if none, -t tries, -T secs between
    cmd = "UN_LEASE_DIR=%s exec %s -f -q -n -t 8 -T 2 -A 1 -O mtu -i %s -s %s" % (
        env_dir, " ".join(udhcpc_cmd()), ifname, script)
    if hostname:
        cmd += " -x hostname:%s" % hostname
    for a in extra:
        cmd += " " + shlex.quote(a)
    r = guest.run(cmd, timeout=timeout, check=False)
    lease_file = os.path.join(env_dir, "lease." + ifname)
    if r.returncode != 0 or not os.path.exists(lease_file):
        raise AssertionError("udhcpc got no lease in %s (exit %d)\nstdout: %s\nstderr: %s" % (
            guest.name, r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    lease = {}
    with open(lease_file) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            lease[k] = v
    return lease


def ping(ns, addr, count=3, timeout=20, check=True):
    """busybox ping (raw socket as root); returns CompletedProcess."""
    return ns.run(["busybox", "ping", "-c", str(count), "-W", "3", addr], timeout=timeout, check=check)


def api_request(path, request, half_close=False, timeout=10):
    """One request to an API socket in slirp4netns's protocol (one request
    per connection: slirp4netns's own, or usernet's --api-socket); the
    decoded reply. half_close: shut the sending side after the request, as
    rootlesskit's port driver does."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    buf = b""
    try:
        s.connect(path)
        s.sendall(json.dumps(request).encode())
        if half_close:
            s.shutdown(socket.SHUT_WR)
        while True:
            b = s.recv(4096)
            if not b:
                break
            buf += b
            try:
                return json.loads(buf)
            except ValueError:
                continue
    finally:
        s.close()
    raise AssertionError("no reply to %r: %r" % (request, buf))


def curl(ns, args, timeout=180, check=True):
    return ns.run(["curl", "-sS", "--noproxy", "*"] + list(args), timeout=timeout, check=check)


# --------------------------------------------------------------------------
# running a test file


class _Result(unittest.TextTestResult):
    pass


# The one skip that is no missing prerequisite: a test the sanitizer
# runtime cannot run (it needs descriptors a test exhausts on purpose), run
# by the release build's pass instead. As the C++ tests' GTEST_SKIP of the
# same wording, it passes under CI.
SANITIZER_LIMITATION = "known limitation of the sanitized build only"


def exit_status(r, in_ci=None):
    """The exit status for a unittest result r: 1 on a failure, when no test
    ran, or (under CI) when any test was skipped; 77 when some test was
    skipped outside CI (the file did not run completely, so it is not a
    success); 0 only when every test ran and passed, or was skipped for
    SANITIZER_LIMITATION.  Returns (status, message)."""
    in_ci = IN_CI if in_ci is None else in_ci
    if not r.wasSuccessful():
        return 1, None
    if r.testsRun == 0:
        return 1, "FAILED: no test ran"
    limits = [(t, why) for t, why in r.skipped if why.startswith(SANITIZER_LIMITATION)]
    if limits and len(limits) == len(r.skipped):
        return 0, "passed; %d skipped: %s" % (len(limits), limits[0][1])
    if r.skipped:
        why = "; ".join("%s: %s" % (t.id().rsplit(".", 1)[-1], reason) for t, reason in r.skipped)
        if in_ci:
            return 1, "FAILED: CI=true and %d of %d tests were skipped (%s)" % (
                len(r.skipped), r.testsRun, why)
        return SKIP, "skipped: %d of %d tests skipped (%s)" % (len(r.skipped), r.testsRun, why)
    return 0, None


def main():
    """unittest.main() with CTest's conventions, see exit_status()."""
    prog = unittest.TestProgram(module="__main__", exit=False, verbosity=2,
                                testRunner=unittest.TextTestRunner(verbosity=2, resultclass=_Result))
    status, msg = exit_status(prog.result)
    if msg:
        print(msg, flush=True)
    sys.exit(status)
