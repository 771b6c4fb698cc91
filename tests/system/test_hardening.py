"""The programs are built hardened: checked with readelf on the binaries of
$VB_BIN_DIR (the build CTest runs from; scripts/test.sh also points it at the
Release build).

- position-independent executables (ELF type DYN), so ASLR moves them;
- full RELRO: a GNU_RELRO segment and BIND_NOW, so the GOT is read-only
  after start;
- the stack protector (-fstack-protector-strong: calls __stack_chk_fail);
- _FORTIFY_SOURCE in optimised builds without sanitizers (calls checked
  libc variants such as __snprintf_chk).

What the build is (type, sanitizers) is read from its CMakeCache.txt.
"""

import os
import re
import shutil
import subprocess
import unittest

import harness

PROGRAMS = ("visionbatch", "visionbatch-producer", "visionbatch-worker")


def readelf(*args):
    r = subprocess.run(["readelf", "-W"] + list(args), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("readelf %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def cache_value(name):
    """A variable of $VB_BIN_DIR/CMakeCache.txt, or '' when absent."""
    try:
        with open(os.path.join(harness.bin_dir(), "CMakeCache.txt")) as f:
            for line in f:
                m = re.match(r"%s:\w+=(.*)$" % re.escape(name), line.strip())
                if m:
                    return m.group(1)
    except OSError:
        pass
    return ""


def fortified_build():
    sanitized = any(cache_value(v).upper() in ("ON", "1", "TRUE") for v in ("VB_SANITIZE", "VB_TSAN"))
    return not sanitized and cache_value("CMAKE_BUILD_TYPE") not in ("", "Debug")


class HardeningTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("readelf"):
            raise AssertionError("readelf (binutils) missing")
        cls.paths = {p: harness.require_binary(p) for p in PROGRAMS}

    def test_programs_are_position_independent(self):
        for name, path in self.paths.items():
            self.assertRegex(readelf("-h", path), r"Type:\s+DYN", name)

    def test_programs_have_full_relro(self):
        for name, path in self.paths.items():
            self.assertIn("GNU_RELRO", readelf("-l", path), name)
            dyn = readelf("-d", path)
            self.assertTrue(re.search(r"\(FLAGS\)\s.*BIND_NOW", dyn) or
                            re.search(r"\(FLAGS_1\)\s.*\bNOW\b", dyn), name + ":\n" + dyn)

    def test_programs_use_the_stack_protector(self):
        for name, path in self.paths.items():
            self.assertIn("__stack_chk_fail", readelf("--dyn-syms", path), name)

    def test_optimised_builds_are_fortified(self):
        if not fortified_build():
            self.skipTest("sanitizer or Debug build: _FORTIFY_SOURCE is off by design")
        for name, path in self.paths.items():
            syms = readelf("--dyn-syms", path)
            self.assertRegex(syms, r"__\w+_chk\b", name)


if __name__ == "__main__":
    unittest.main()
