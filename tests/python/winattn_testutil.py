"""Shared set-up of the Python tests: import path, library location, ISA list and the tolerance check.

The tests import winattn from <repo>/bindings/python and take the shared library from the environment
variable WINATTN_LIBRARY, defaulting to <repo>/build/libwinattn.so.
"""

import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
os.environ.setdefault("WINATTN_LIBRARY", os.path.join(REPO, "build", "libwinattn.so"))

import winattn  # noqa: E402  (needs the path above)

# Dispatch levels, best first.
ISAS = ["amx_bf16", "avx512_bf16", "avx512", "avx2", "scalar"]


def supported_isas():
    """The dispatch levels this CPU runs, best first (everything at or below what "native" selects)."""
    winattn.set_max_isa("native")
    best = winattn.active_isa()
    return ISAS[ISAS.index(best):]


def max_abs(a):
    """max |a| as a Python float (0 for an empty array)."""
    a = np.asarray(a, dtype=np.float64)
    return float(np.max(np.abs(a))) if a.size else 0.0


def assert_rel_close(tc, got, ref, rtol=1e-4, what="output"):
    """Fails tc unless got has ref's shape, is finite, and max|got - ref| <= rtol * max|ref|."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    tc.assertEqual(got.shape, ref.shape, "%s: shape" % what)
    tc.assertTrue(np.all(np.isfinite(ref)), "%s: reference is not finite" % what)
    tc.assertTrue(np.all(np.isfinite(got)), "%s: non-finite values in the library's result" % what)
    err = max_abs(got - ref)
    scale = max_abs(ref)
    tc.assertGreater(scale, 0.0, "%s: the reference is all zeros, the comparison would be vacuous" % what)
    if err > rtol * scale:
        where = np.unravel_index(int(np.argmax(np.abs(got - ref))), got.shape)
        tc.fail(
            "%s: max|err| = %.3e > %.1e * max|ref| = %.3e (worst at %s: got %r, expected %r)"
            % (what, err, rtol, rtol * scale, where, got[where], ref[where])
        )
