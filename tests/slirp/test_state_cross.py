#!/usr/bin/env python3
"""The migration stream between implementations: state_tool, linked against
the system's libslirp.so.0, runs once on Debian's libslirp and once on
usernet's (LD_LIBRARY_PATH). A stream either one saves, after a guest has
leased 10.0.2.15, must load in the other, consumed to its last byte, with
the lease kept for that guest."""

import os
import subprocess
import sys
import tempfile
import unittest

TOOL = os.environ["USERNET_STATE_TOOL"]
OURS = os.environ["USERNET_LIBSLIRP_DIR"]


def run(lib, *args):
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    if lib == "usernet":
        env["LD_LIBRARY_PATH"] = OURS
    # Under the sanitizers the tool carries the runtime; Debian's library
    # is not ours to check for leaks.
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
    r = subprocess.run([TOOL] + list(args), env=env, capture_output=True, text=True, timeout=30)
    return r


class StateCrossTest(unittest.TestCase):
    def _cross(self, saver, loader):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state")
            s = run(saver, "save", path)
            self.assertEqual(s.returncode, 0, s.stdout + s.stderr)
            self.assertIn("usernet" if saver == "usernet" else "libslirp 4.7.0\n", s.stdout)
            self.assertIn("saved 131 bytes", s.stdout)
            l = run(loader, "load", path)
            self.assertEqual(l.returncode, 0, l.stdout + l.stderr)
            self.assertIn("other guest 10.0.2.16, first guest 10.0.2.15", l.stdout)

    def test_usernet_to_debian(self):
        self._cross("usernet", "debian")

    def test_debian_to_usernet(self):
        self._cross("debian", "usernet")

    def test_usernet_to_usernet(self):
        self._cross("usernet", "usernet")

    def test_debian_to_debian_the_control(self):
        self._cross("debian", "debian")


if __name__ == "__main__":
    unittest.main(verbosity=2)
