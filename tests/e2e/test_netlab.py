#!/usr/bin/env python3
"""netlab itself: the rules that make every e2e test able to fail.

- A skip never passes for success: no test run, or some skipped, is not
  exit 0; under CI=true a missing prerequisite or a skipped test is exit 1,
  with the missing tool's Debian package named.
- Every usernet a Lab starts is checked when it stops: a crash, a signal
  death, a hang on SIGTERM, an unexpected exit status or a sanitizer report
  on stderr fails the test.
- Every tool the tests use has its package in scripts/install-deps.sh, and
  no test starts usernet around Lab.usernet (which would skip the check).
"""

import io
import os
import re
import signal
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_FILES = sorted([os.path.join(HERE, f) for f in os.listdir(HERE) if re.match(r"test_.*\.py$", f)] +
                    [os.path.join(netlab.REPO, "tests", "qemu", f)
                     for f in os.listdir(os.path.join(netlab.REPO, "tests", "qemu")) if f.endswith(".py")] +
                    [os.path.join(netlab.REPO, "tests", "v86", f)
                     for f in os.listdir(os.path.join(netlab.REPO, "tests", "v86")) if f.endswith(".py")])


def run_cases(*methods):
    """Run a throwaway TestCase made of the given methods; return its result."""
    case = type("Case", (unittest.TestCase,), {"test_%d" % i: m for i, m in enumerate(methods)})
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(case)
    return unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)


def passes(self):
    pass


def skips(self):
    self.skipTest("no such thing here")


def skips_for_the_sanitizers(self):
    self.skipTest(netlab.SANITIZER_LIMITATION + " (the release build runs this test)")


def run_netlab_snippet(code, env_extra):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(env_extra)
    return subprocess.run([netlab.PY, "-c", "import sys; sys.path.insert(0, %r); import netlab\n%s" % (HERE, code)],
                          capture_output=True, text=True, env=env, timeout=30)


class ExitStatusTest(unittest.TestCase):
    def test_all_passed_is_success(self):
        self.assertEqual(netlab.exit_status(run_cases(passes, passes), in_ci=False)[0], 0)
        self.assertEqual(netlab.exit_status(run_cases(passes, passes), in_ci=True)[0], 0)

    def test_no_test_run_is_a_failure(self):
        self.assertEqual(netlab.exit_status(run_cases(), in_ci=False)[0], 1)
        self.assertEqual(netlab.exit_status(run_cases(), in_ci=True)[0], 1)

    def test_some_skipped_is_not_success_and_fails_under_ci(self):
        r = run_cases(passes, skips)
        self.assertEqual(netlab.exit_status(r, in_ci=False)[0], netlab.SKIP)
        status, msg = netlab.exit_status(r, in_ci=True)
        self.assertEqual(status, 1)
        self.assertIn("no such thing here", msg)
        self.assertEqual(netlab.exit_status(run_cases(skips), in_ci=True)[0], 1)

    def test_only_the_sanitizer_limitation_skip_passes_under_ci(self):
        r = run_cases(passes, skips_for_the_sanitizers)
        self.assertEqual(netlab.exit_status(r, in_ci=True)[0], 0)
        self.assertEqual(netlab.exit_status(r, in_ci=False)[0], 0)
        # beside another skip, the file still fails under CI
        r = run_cases(skips_for_the_sanitizers, skips)
        self.assertEqual(netlab.exit_status(r, in_ci=True)[0], 1)

    def test_missing_tool_skips_outside_ci_and_fails_under_ci_naming_the_package(self):
        code = "netlab.require_tools('curl')"
        r = run_netlab_snippet(code, {"PATH": "/nonexistent"})
        self.assertEqual(r.returncode, netlab.SKIP, r.stdout + r.stderr)
        r = run_netlab_snippet(code, {"PATH": "/nonexistent", "CI": "true"})
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("curl (apt-get install curl)", r.stdout)

    def test_skip_file_fails_under_ci(self):
        r = run_netlab_snippet("netlab.skip_file('no kernel image')", {"CI": "true"})
        self.assertEqual(r.returncode, 1)
        self.assertIn("no kernel image", r.stdout)


class InstallDepsTest(unittest.TestCase):
    def packages(self):
        with open(os.path.join(netlab.REPO, "scripts", "install-deps.sh")) as f:
            text = f.read()
        pkgs = set()
        for var in ("BUILD_PKGS", "TEST_PKGS"):
            m = re.search(r'^%s="([^"]*)"' % var, text, re.M)
            self.assertIsNotNone(m, var)
            pkgs.update(m.group(1).split())
        return pkgs

    def test_every_tool_the_tests_look_for_is_installed_by_install_deps(self):
        pkgs = self.packages()
        for tool, pkg in netlab.PACKAGE_OF.items():
            self.assertIn(pkg, pkgs, "%s's package %s is not in scripts/install-deps.sh" % (tool, pkg))
        used = set()
        for path in TEST_FILES + [os.path.join(HERE, "netlab.py")]:
            with open(path) as f:
                text = f.read()
            for call in re.findall(r"(?:require_tools|optional_tool|have|shutil\.which)\(([^)]*)\)", text):
                used.update(re.findall(r"[\"']([\w.+-]+)[\"']", call))
        self.assertTrue(used)
        for tool in sorted(used):
            self.assertIn(tool, netlab.PACKAGE_OF, "%s: which package installs it? (netlab.PACKAGE_OF)" % tool)

    def test_no_test_starts_usernet_around_lab_usernet(self):
        # one-shot runs (test_cli's run()) assert their exit status themselves
        for path in TEST_FILES:
            if path == os.path.abspath(__file__):
                continue
            with open(path) as f:
                for n, line in enumerate(f, 1):
                    if "popen(" in line and re.search(r"usernet_bin|USERNET\b", line):
                        self.fail("%s:%d starts usernet with popen; use lab.usernet (checked exit)" % (path, n))


@unittest.skipUnless(os.geteuid() == 0, "needs root (network namespaces)")
class UsernetExitCheckTest(unittest.TestCase):
    def setUp(self):
        netlab.usernet_bin()

    def start(self, lab, role="host", **kw):
        host = lab.netns(role)
        sock = lab.path("%s.sock" % role)
        return lab.usernet(host, ["--socket", sock], wait=[("socket", sock)], **kw)

    def test_clean_stop_passes(self):
        with netlab.Lab("nlself") as lab:
            self.start(lab)

    def test_crash_fails_the_test(self):
        # (11, or 6 under ASan, whose handler reports the SEGV and aborts)
        with self.assertRaisesRegex(AssertionError, "killed by signal (11|6) "):
            with netlab.Lab("nlself") as lab:
                un = self.start(lab)
                un.send_signal(signal.SIGSEGV)
                un.wait(10)

    def test_sanitizer_report_fails_the_test(self):
        # usernet runs as usual, behind a report of the kind ASan prints
        wrap = ["sh", "-c", 'echo "==1==ERROR: AddressSanitizer: heap-use-after-free" >&2; exec "$@"', "sh"]
        with self.assertRaisesRegex(AssertionError, "AddressSanitizer"):
            with netlab.Lab("nlself") as lab:
                self.start(lab, wrapper=wrap)

    def test_unexpected_exit_status_fails_the_test(self):
        with self.assertRaisesRegex(AssertionError, "exit status 1, expected 0"):
            with netlab.Lab("nlself") as lab:
                host = lab.netns("host")
                un = lab.usernet(host, ["--netns", "un-no-such-namespace"])
                un.wait(10)
        with netlab.Lab("nlself") as lab:
            host = lab.netns("host")
            un = lab.usernet(host, ["--netns", "un-no-such-namespace"], expect_exit=1)
            un.wait(10)

    def test_explicit_stop_checks_at_once(self):
        with netlab.Lab("nlself") as lab:
            un = self.start(lab)
            self.assertEqual(un.stop(), 0)
            un2 = self.start(lab, role="host2", name="usernet2")
            os.kill(un2.pid, signal.SIGABRT)
            un2.wait(10)
            with self.assertRaisesRegex(AssertionError, "killed by signal 6 "):
                un2.stop()


if __name__ == "__main__":
    netlab.main()
