"""Packaging of the Python binding: bindings/python/pyproject.toml installs offline with pip, and the installed copy
finds the shared library.

The package is installed with this Python's pip (Debian's python3-pip, setuptools and wheel; no network:
``--no-index --no-build-isolation``) into a temporary virtual environment created with
``--system-site-packages`` (so numpy, the package's dependency, comes from the system), from a copy of
bindings/python (an in-tree setuptools build would leave build/ and *.egg-info in the repository). Then, from a
different working directory and without the source tree on sys.path:

- ``import winattn`` resolves to the installed copy, and with WINATTN_LIBRARY set to the build's library it loads
  exactly that library (and only that: a wrong WINATTN_LIBRARY is an error naming that path alone);
- without WINATTN_LIBRARY, the installed copy finds the library where ``cmake --install --prefix <venv>`` puts it
  (<venv>/lib/libwinattn.so, emulated by copying the build's library there, so that the build tree is not written
  to), and does not look for a build/ of a source tree it is not in;
- ``python -m winattn.export`` runs from the installed copy.

If venv cannot create an environment, the package is installed with ``pip install --target`` instead (the tests
that need the environment's prefix are then skipped); if pip itself is missing, everything is skipped, naming the
Debian package to install (python3-pip).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from winattn_testutil import REPO

LIBRARY = os.path.abspath(os.environ["WINATTN_LIBRARY"])  # set by winattn_testutil / run.sh

# What the child process prints: where winattn was imported from and what it loaded.
PROBE = r"""
import json, os, sys
import winattn
out = {"file": os.path.realpath(winattn.__file__), "prefix": sys.prefix,
       "source_tree_library": winattn._source_tree_library(), "candidates": winattn._candidate_paths()}
try:
    out["library_path"] = winattn.library_path()
    out["version"] = winattn.version()
    out["has_model"] = hasattr(winattn, "Model") and hasattr(winattn, "ModelInfo")
except OSError as exc:
    out["error"] = str(exc)
print("PROBE " + json.dumps(out))
"""


def _run(cmd, env=None, cwd=None, timeout=300):
    return subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout)


def _pip_available():
    r = _run([sys.executable, "-m", "pip", "--version"], timeout=60)
    return r.returncode == 0, r.stdout.strip()


def _clean_env(**extra):
    """The environment for the child processes: no PYTHONPATH (the source tree must not be importable), pip
    offline and quiet, WINATTN_LIBRARY only when given."""
    env = dict(os.environ)
    for k in ("PYTHONPATH", "WINATTN_LIBRARY", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(k, None)
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1", PIP_NO_INPUT="1")
    env.update(extra)
    return env


class InstalledPackage(unittest.TestCase):
    """One offline install shared by the tests of this class (set up once: about 3 s)."""

    @classmethod
    def setUpClass(cls):
        ok, what = _pip_available()
        if not ok:
            raise unittest.SkipTest(
                "pip is not available to %s (apt-get install python3-pip): %s" % (sys.executable, what)
            )
        cls.tmp = tempfile.mkdtemp(prefix="winattn-packaging-")
        cls.src = os.path.join(cls.tmp, "src")
        shutil.copytree(os.path.join(REPO, "bindings", "python"), cls.src,
                        ignore=shutil.ignore_patterns("__pycache__", "build", "dist", "*.egg-info"))
        cls.elsewhere = os.path.join(cls.tmp, "elsewhere")
        os.mkdir(cls.elsewhere)
        cls.venv = os.path.join(cls.tmp, "venv")
        env = _clean_env()
        # --without-pip: the environment uses this Python's pip through the system site-packages (no ensurepip).
        r = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", cls.venv], env=env)
        if r.returncode == 0:
            cls.python = os.path.join(cls.venv, "bin", "python")
            cls.pythonpath = None
            cmd = [cls.python, "-m", "pip", "install", "--no-index", "--no-build-isolation", cls.src]
        else:
            cls.venv_error = r.stdout
            cls.venv = None
            cls.python = sys.executable
            cls.pythonpath = os.path.join(cls.tmp, "target")
            # --target is isolated from the system's packages, so pip would look for numpy: --no-deps.
            cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-deps",
                   "--target", cls.pythonpath, cls.src]
        cls.install = _run(cmd, env=env, cwd=cls.elsewhere)
        if cls.install.returncode != 0:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise AssertionError("offline pip install failed (%s):\n%s" % (" ".join(cmd), cls.install.stdout))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _probe(self, **env):
        extra = dict(env)
        if self.pythonpath:
            extra["PYTHONPATH"] = self.pythonpath
        r = _run([self.python, "-c", PROBE], env=_clean_env(**extra), cwd=self.elsewhere, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout)
        lines = [l for l in r.stdout.splitlines() if l.startswith("PROBE ")]
        self.assertEqual(len(lines), 1, r.stdout)
        return json.loads(lines[0][len("PROBE "):])

    def _installed_root(self):
        return os.path.realpath(self.pythonpath if self.pythonpath else os.path.join(self.venv, "lib"))

    def test_import_resolves_to_the_installed_copy(self):
        out = self._probe(WINATTN_LIBRARY=LIBRARY)
        self.assertIn("library_path", out, out)
        self.assertTrue(out["file"].startswith(self._installed_root() + os.sep), out["file"])
        self.assertFalse(out["file"].startswith(os.path.realpath(REPO) + os.sep), out["file"])
        self.assertNotEqual(os.path.dirname(out["file"]), os.path.realpath(self.src))
        self.assertEqual(out["library_path"], LIBRARY)
        self.assertRegex(out["version"], r"^\d+\.\d+\.\d+$")
        self.assertTrue(out["has_model"])
        # An installed copy has no source tree, so no build/ is searched on its behalf.
        self.assertIsNone(out["source_tree_library"])
        self.assertEqual(out["candidates"], [LIBRARY])

    def test_wrong_winattn_library_is_an_error_not_a_fallback(self):
        missing = os.path.join(self.tmp, "no", "libwinattn.so")
        out = self._probe(WINATTN_LIBRARY=missing)
        self.assertNotIn("library_path", out, out)
        self.assertIn(missing, out["error"])
        self.assertEqual(out["candidates"], [missing])

    def test_finds_the_library_installed_under_its_prefix(self):
        if self.venv is None:
            self.skipTest("no virtual environment (venv failed: %s)" % self.venv_error.strip()[-200:])
        # What `cmake --install build --prefix <venv>` does (CMAKE_INSTALL_LIBDIR is lib outside /usr), without
        # writing install_manifest.txt into the build tree.
        libdir = os.path.join(self.venv, "lib")
        target = os.path.join(libdir, "libwinattn.so")
        shutil.copy2(os.path.realpath(LIBRARY), target)
        try:
            out = self._probe()
            self.assertIn("library_path", out, out)
            self.assertEqual(os.path.realpath(out["prefix"]), os.path.realpath(self.venv))
            self.assertEqual(out["library_path"], target)
            self.assertEqual(out["candidates"][0], target)
            # The installed locations follow, then find_library's answer.
            self.assertIn("/usr/local/lib/libwinattn.so", out["candidates"])
        finally:
            os.remove(target)

    def test_export_module_runs_from_the_installed_copy(self):
        extra = {"PYTHONPATH": self.pythonpath} if self.pythonpath else {}
        r = _run([self.python, "-m", "winattn.export", "--help"], env=_clean_env(**extra), cwd=self.elsewhere,
                 timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("safetensors", r.stdout)

    def test_install_metadata(self):
        if self.venv is None:
            self.skipTest("no virtual environment")
        r = _run([self.python, "-m", "pip", "show", "-f", "winattn"], env=_clean_env(), cwd=self.elsewhere)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertRegex(r.stdout, r"(?m)^Version: \d+\.\d+\.\d+$")
        self.assertRegex(r.stdout, r"(?m)^Requires: numpy$")
        for f in ("winattn/__init__.py", "winattn/export.py", "winattn/_safetensors.py"):
            self.assertIn(f, r.stdout)


class SourceTreeLookup(unittest.TestCase):
    """The lookup order of the copy in the source tree (the one the other tests import)."""

    def test_order_without_winattn_library(self):
        import winattn

        saved = os.environ.pop("WINATTN_LIBRARY", None)
        try:
            paths = winattn._candidate_paths()
        finally:
            if saved is not None:
                os.environ["WINATTN_LIBRARY"] = saved
        self.assertEqual(paths[0], os.path.join(REPO, "build", "libwinattn.so"))
        local = paths.index("/usr/local/lib/libwinattn.so")
        self.assertLess(local, paths.index(os.path.join("/usr/lib", winattn.sysconfig.get_config_var("MULTIARCH")
                                                        or "x86_64-linux-gnu", "libwinattn.so")))
        self.assertIn(os.path.join(os.path.normpath(sys.prefix), "lib", "libwinattn.so"), paths)

    def test_winattn_library_alone_when_set(self):
        import winattn

        self.assertEqual(winattn._candidate_paths(), [os.environ["WINATTN_LIBRARY"]])


if __name__ == "__main__":
    unittest.main()
