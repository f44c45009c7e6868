"""Reliability of the Python binding in a long-running process (issue 13).

- Layer.close() from one thread while others run forwards: close waits for them, later calls raise.
- Arrays reach the C library aligned and contiguous whatever the caller passes (unaligned views are copied).
- Complex, boolean and non-numeric arrays, and float arrays where an index is expected, are refused with
  ArgumentTypeError naming the argument instead of being cast or truncated silently; integer and float
  dtypes whose conversion is exact or the usual float32 rounding are accepted.
- The per-layer thread budget, trim, memory report and thread scratch release.
"""

import ctypes
import json
import os
import re
import subprocess
import sys
import threading
import unittest

import numpy as np

from winattn_testutil import REPO, winattn

INVALID = 1  # WINATTN_STATUS_INVALID_ARGUMENT


def _weights(c, seed=0):
    """Small float32 qkv and proj weights for a layer of c channels."""
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((3 * c, c)).astype(np.float32) * 0.1,
        rng.standard_normal((c, c)).astype(np.float32) * 0.1,
    )


def _unaligned(a, offset=1):
    """A copy of array a whose data starts `offset` bytes past an aligned address (so it is misaligned for
    its element type), C-contiguous, same dtype and shape."""
    a = np.ascontiguousarray(a)
    raw = np.zeros(a.nbytes + 64, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    v = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    v[...] = a
    assert not v.flags.aligned and v.flags.c_contiguous
    return v


class _AlignmentSpy:
    """Stands in for the loaded library: forwards every call and records each pointer argument (including the
    pointer fields of a struct passed by reference) that is not aligned to the size of what it points to."""

    def __init__(self, lib):
        self._lib = lib
        self.misaligned = []
        self.calls = []

    def _check_pointer(self, fn_name, what, p):
        if not isinstance(p, ctypes._Pointer) or not p:
            return
        address = ctypes.cast(p, ctypes.c_void_p).value
        size = ctypes.sizeof(p._type_)
        if address % size:
            self.misaligned.append("%s(%s): address %#x is not a multiple of %d" % (fn_name, what, address, size))

    def __getattr__(self, name):
        fn = getattr(self._lib, name)
        if not name.startswith("winattn_"):
            return fn

        def call(*args):
            self.calls.append(name)
            for i, a in enumerate(args):
                self._check_pointer(name, "argument %d" % i, a)
                struct = getattr(a, "_obj", None)  # ctypes.byref(...) of a Structure
                if isinstance(struct, ctypes.Structure):
                    for field, _ in struct._fields_:
                        self._check_pointer(name, field, getattr(struct, field))
            return fn(*args)

        return call


class TestCloseWhileForwardsRun(unittest.TestCase):
    """close() from one thread while other threads are inside forward (a use-after-free before the fix)."""

    # Runs in a child process so that a crash (SIGSEGV) is reported as a failure of this test instead of
    # killing the whole suite. A spy in front of the library counts the forwards that are inside the C call;
    # winattn_layer_destroy must find none. Prints one JSON line per round.
    CHILD = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import winattn

winattn.version()
real = winattn._lib_handle

class Spy:
    def __init__(self):
        self.lock = threading.Lock()
        self.inflight = 0
        self.at_destroy = []
    def __getattr__(self, name):
        fn = getattr(real, name)
        if name == "winattn_layer_forward":
            def forward(*args):
                with self.lock:
                    self.inflight += 1
                try:
                    return fn(*args)
                finally:
                    with self.lock:
                        self.inflight -= 1
            return forward
        if name == "winattn_layer_destroy":
            def destroy(*args):
                with self.lock:
                    self.at_destroy.append(self.inflight)
                return fn(*args)
            return destroy
        return fn

spy = Spy()
winattn._lib_handle = spy

rng = np.random.default_rng(3)
c, heads = 96, 3
qw = (rng.standard_normal((3 * c, c)) * 0.1).astype(np.float32)
pw = (rng.standard_normal((c, c)) * 0.1).astype(np.float32)
table = (rng.standard_normal((13 * 13, heads)) * 0.02).astype(np.float32)
x = rng.standard_normal((2, 42, 42, c)).astype(np.float32)
for round in range(4):
    layer = winattn.Layer(c, heads, (7, 7), (3, 3), qw, pw, relative_position_bias_table=table)
    ref = layer.forward(x)
    events = []
    lock = threading.Lock()
    nthreads = 4
    barrier = threading.Barrier(nthreads + 1)
    def worker():
        barrier.wait()
        while True:
            t0 = time.monotonic()
            try:
                y = layer.forward(x)
            except ValueError as e:
                with lock:
                    events.append(["closed", t0, str(e)])
                return
            with lock:
                events.append(["ok", t0, bool(np.array_equal(y, ref))])
    threads = [threading.Thread(target=worker) for _ in range(nthreads)]
    for t in threads:
        t.start()
    barrier.wait()
    time.sleep(0.05)
    inflight_at_close = spy.inflight
    destroys = len(spy.at_destroy)
    layer.close()
    close_returned = time.monotonic()
    for t in threads:
        t.join()
    after = None
    try:
        layer.forward(x)
    except ValueError as e:
        after = str(e)
    print(json.dumps({"events": events, "close_returned": close_returned, "after": after,
                      "inflight_at_close": inflight_at_close, "at_destroy": spy.at_destroy[destroys:]}),
          flush=True)
"""

    def test_close_waits_for_running_forwards(self):
        bindings = os.path.dirname(os.path.dirname(os.path.abspath(winattn.__file__)))
        proc = subprocess.run(
            [sys.executable, "-c", self.CHILD, bindings], capture_output=True, text=True, timeout=300
        )
        self.assertEqual(
            proc.returncode, 0, "child exited with %d (negative: killed by that signal)\n%s"
            % (proc.returncode, proc.stderr[-3000:])
        )
        rounds = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        self.assertEqual(len(rounds), 4, proc.stdout[-2000:])
        for r in rounds:
            # The layer was destroyed once, with no forward inside the C library.
            self.assertEqual(r["at_destroy"], [0], "winattn_layer_destroy ran while forwards were in the library")
            oks = [e for e in r["events"] if e[0] == "ok"]
            closed = [e for e in r["events"] if e[0] == "closed"]
            self.assertEqual(len(closed), 4, "every thread must end on the 'layer is closed' error")
            for e in closed:
                self.assertEqual(e[2], "layer: the layer is closed")
            self.assertTrue(all(e[2] for e in oks), "a forward that succeeded returned wrong bits")
            started_late = [e for e in oks if e[1] > r["close_returned"]]
            self.assertEqual(started_late, [], "a forward that started after close() returned succeeded")
            self.assertEqual(r["after"], "layer: the layer is closed")
        # The race was exercised: close() was called while forwards were inside the library.
        self.assertGreater(
            sum(r["inflight_at_close"] for r in rounds), 0, "close() never overlapped a forward; nothing was tested"
        )

    def test_calls_after_close_raise(self):
        qw, pw = _weights(16)
        layer = winattn.Layer(16, 2, (4, 4), (2, 2), qw, pw)
        layer.close()
        x = np.zeros((1, 8, 8, 16), dtype=np.float32)
        for fn in (lambda: layer.forward(x), layer.trim, lambda: layer.num_threads, lambda: layer.memory_bytes):
            with self.assertRaises(ValueError) as cm:
                fn()
            self.assertNotIsInstance(cm.exception, winattn.WinattnError)
            self.assertEqual(str(cm.exception), "layer: the layer is closed")
        with self.assertRaises(ValueError):
            layer.num_threads = 1

    def test_close_from_many_threads_at_once(self):
        """Concurrent close() calls destroy the layer once and none of them fails."""
        qw, pw = _weights(16)
        for _ in range(20):
            layer = winattn.Layer(16, 2, (4, 4), (2, 2), qw, pw)
            errors = []

            def close():
                try:
                    layer.close()
                except Exception as e:  # pragma: no cover - reported below
                    errors.append(e)

            threads = [threading.Thread(target=close) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            self.assertTrue(layer.closed)


class TestArraysReachCAligned(unittest.TestCase):
    """Unaligned arrays are copied before C sees them, and give the results of aligned ones."""

    def setUp(self):
        winattn.version()  # load the library
        self._real = winattn._lib_handle
        self.spy = _AlignmentSpy(self._real)
        winattn._lib_handle = self.spy

    def tearDown(self):
        winattn._lib_handle = self._real

    def assertAllAligned(self):
        self.assertTrue(self.spy.calls, "the spy saw no call")
        self.assertEqual(self.spy.misaligned, [])

    def test_layer_forward_and_create(self):
        qw, pw = _weights(32, 1)
        table = np.random.default_rng(2).standard_normal((7 * 7, 2)).astype(np.float32)
        x = np.random.default_rng(3).standard_normal((1, 8, 8, 32)).astype(np.float32)
        with winattn.Layer(32, 2, (4, 4), (2, 2), qw, pw, relative_position_bias_table=table) as ref_layer:
            ref = ref_layer.forward(x)
        with winattn.Layer(
            32, 2, (4, 4), (2, 2), _unaligned(qw), _unaligned(pw), relative_position_bias_table=_unaligned(table)
        ) as layer:
            got = layer.forward(_unaligned(x))
            got2 = layer.forward(_unaligned(x, 2))
        self.assertAllAligned()
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(got2, ref)

    def test_functions(self):
        rng = np.random.default_rng(4)
        q, k, v = (rng.standard_normal((4, 2, 16, 8)).astype(np.float32) for _ in range(3))
        mask = np.where(rng.random((2, 16, 16)) < 0.3, -100.0, 0.0).astype(np.float32)
        bias = rng.standard_normal((2, 16, 16)).astype(np.float32)
        ref = winattn.window_attention(q, k, v, 0.35, bias=bias, mask=mask)
        got = winattn.window_attention(
            _unaligned(q), _unaligned(k), _unaligned(v), 0.35, bias=_unaligned(bias), mask=_unaligned(mask)
        )
        np.testing.assert_array_equal(got, ref)

        index = winattn.relative_position_index((4, 4))
        table = rng.standard_normal((49, 3)).astype(np.float32)
        ref = winattn.relative_position_bias(table, index)
        np.testing.assert_array_equal(winattn.relative_position_bias(_unaligned(table), _unaligned(index)), ref)
        np.testing.assert_array_equal(winattn.relative_position_bias(table, _unaligned(index, 4)), ref)
        grad = rng.standard_normal((3, 16, 16)).astype(np.float32)
        np.testing.assert_array_equal(
            winattn.relative_position_bias_backward(_unaligned(grad), _unaligned(index), 49),
            winattn.relative_position_bias_backward(grad, index, 49),
        )

        w1, b1, w2 = (rng.standard_normal(s).astype(np.float32) for s in ((8, 2), (8,), (3, 8)))
        np.testing.assert_array_equal(
            winattn.continuous_position_bias_table(4, 4, _unaligned(w1), _unaligned(b1), _unaligned(w2)),
            winattn.continuous_position_bias_table(4, 4, w1, b1, w2),
        )

        qw, pw = _weights(16, 5)
        x = rng.standard_normal((1, 8, 8, 16)).astype(np.float32)
        rpb = winattn.relative_position_bias(rng.standard_normal((49, 2)).astype(np.float32), index)
        ls = np.log(np.full(2, 10.0, dtype=np.float32))
        for kwargs in ({"relative_position_bias": rpb}, {"logit_scale": ls}):
            ref = winattn.shifted_window_attention(x, qw, pw, 2, (4, 4), (2, 2), **kwargs)
            un = {key: _unaligned(val) for key, val in kwargs.items()}
            got = winattn.shifted_window_attention(_unaligned(x), _unaligned(qw), _unaligned(pw), 2, (4, 4), (2, 2),
                                                   qkv_bias=_unaligned(np.zeros(48, np.float32)), **un)
            np.testing.assert_array_equal(got, ref)
        self.assertAllAligned()

    def test_aligned_contiguous_arrays_are_not_copied(self):
        """The conversion copies only when needed: an aligned float32 array is passed as it is."""
        x = np.zeros((2, 3), dtype=np.float32)
        self.assertIs(winattn._f32(x, "x"), x)
        idx = np.zeros((4, 4), dtype=np.int64)
        self.assertIs(winattn._i64(idx, "index"), idx)
        for a in (_unaligned(x), x.T, x[:, ::2], x.astype(">f4")):
            c = winattn._f32(a, "x")
            self.assertTrue(c.flags.aligned and c.flags.c_contiguous and c.dtype == np.float32)
            self.assertFalse(np.shares_memory(c, a))
            np.testing.assert_array_equal(c, a)


class TestDtypes(unittest.TestCase):
    """Which dtypes each kind of argument takes, and the errors for the others."""

    def assertTypeErrorNaming(self, name, fn, *args, **kwargs):
        """fn must raise ArgumentTypeError (a TypeError and a ValueError) whose message starts with name."""
        with self.assertRaises(TypeError) as cm:
            fn(*args, **kwargs)
        e = cm.exception
        self.assertIsInstance(e, winattn.ArgumentTypeError)
        self.assertIsInstance(e, ValueError)
        self.assertTrue(str(e).startswith(name + ":"), "%r does not name %r" % (str(e), name))
        return e

    def test_complex_arrays_are_refused(self):
        qw, pw = _weights(16)
        x = np.ones((1, 8, 8, 16), dtype=np.complex64)
        with winattn.Layer(16, 2, (4, 4), (2, 2), qw, pw) as layer:
            e = self.assertTypeErrorNaming("input", layer.forward, x)
            self.assertIn("complex", str(e))
        self.assertTypeErrorNaming("qkv_weight", winattn.Layer, 16, 2, (4, 4), (2, 2), qw.astype(np.complex128), pw)
        self.assertTypeErrorNaming(
            "logit_scale", winattn.Layer, 16, 2, (4, 4), (2, 2), qw, pw, logit_scale=np.zeros(2, np.complex64)
        )
        q = np.zeros((1, 2, 4, 8), dtype=np.float32)
        self.assertTypeErrorNaming("q", winattn.window_attention, q + 1j, q, q, 1.0)
        self.assertTypeErrorNaming("mask", winattn.window_attention, q, q, q, 1.0, mask=np.zeros((1, 4, 4), complex))
        self.assertTypeErrorNaming("scale", winattn.window_attention, q, q, q, np.complex128(1 + 2j))
        self.assertTypeErrorNaming("scale", winattn.window_attention, q, q, q, 1 + 0j)
        self.assertTypeErrorNaming("table", winattn.relative_position_bias, np.ones((49, 2), complex),
                                   winattn.relative_position_index((4, 4)))
        self.assertTypeErrorNaming("input", winattn.shifted_window_attention, np.ones((1, 8, 8, 16), complex),
                                   qw, pw, 2, (4, 4), (2, 2))
        # complex scalars where an integer is expected, even with a zero imaginary part
        self.assertTypeErrorNaming("window", winattn.relative_position_index, (np.complex128(4), 4))
        self.assertTypeErrorNaming("channels", winattn.Layer, 16 + 0j, 2, (4, 4), (2, 2), qw, pw)

    def test_boolean_and_non_numeric_arrays_are_refused(self):
        q = np.zeros((1, 2, 4, 8), dtype=np.float32)
        self.assertTypeErrorNaming("mask", winattn.window_attention, q, q, q, 1.0, mask=np.zeros((1, 4, 4), bool))
        self.assertTypeErrorNaming("q", winattn.window_attention, q.astype(object), q, q, 1.0)
        self.assertTypeErrorNaming("k", winattn.window_attention, q, np.full(q.shape, "1"), q, 1.0)
        self.assertTypeErrorNaming("index", winattn.relative_position_bias, np.ones((49, 2), np.float32),
                                   np.zeros((16, 16), bool))

    def test_float_index_arrays_are_refused_not_truncated(self):
        table = np.random.default_rng(6).standard_normal((49, 2)).astype(np.float32)
        index = winattn.relative_position_index((4, 4))
        for dtype in (np.float64, np.float32, np.float16):
            e = self.assertTypeErrorNaming("index", winattn.relative_position_bias, table, (index + 0.7).astype(dtype))
            self.assertIn("float", str(e))
            # whole-valued floats too: the rule is by dtype, so no value is ever truncated silently
            self.assertTypeErrorNaming("index", winattn.relative_position_bias, table, index.astype(dtype))
        grad = np.ones((2, 16, 16), dtype=np.float32)
        self.assertTypeErrorNaming("index", winattn.relative_position_bias_backward, grad, index + 0.5, 49)
        as_floats = [[float(v) for v in row] for row in index]  # a nested list of Python floats
        self.assertTypeErrorNaming("index", winattn.relative_position_bias, table, as_floats)

    def test_integer_index_dtypes_are_accepted(self):
        table = np.random.default_rng(7).standard_normal((49, 2)).astype(np.float32)
        index = winattn.relative_position_index((4, 4))
        ref = winattn.relative_position_bias(table, index)
        for dtype in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.uint64, ">i8"):
            got = winattn.relative_position_bias(table, index.astype(dtype))
            np.testing.assert_array_equal(got, ref, err_msg=str(dtype))
        np.testing.assert_array_equal(winattn.relative_position_bias(table, index.tolist()), ref)
        np.testing.assert_array_equal(winattn.relative_position_bias(table, index.ravel()[::1]), ref)
        big = index.astype(np.uint64)
        big[0, 0] = np.uint64(1 << 63)
        with self.assertRaises(ValueError) as cm:
            winattn.relative_position_bias(table, big)
        self.assertTrue(str(cm.exception).startswith("index:"), str(cm.exception))
        self.assertNotIsInstance(cm.exception, TypeError)

    def test_real_float_and_integer_dtypes_are_accepted(self):
        rng = np.random.default_rng(8)
        qw, pw = _weights(16, 9)
        x32 = rng.integers(-3, 4, (1, 8, 8, 16)).astype(np.float32)
        with winattn.Layer(16, 2, (4, 4), (2, 2), qw, pw) as layer:
            ref = layer.forward(x32)
            for x in (x32.astype(np.float64), x32.astype(np.float16), x32.astype(">f4"), x32.astype(np.int16),
                      x32.astype(np.int64), x32.tolist(), np.asfortranarray(x32)):
                np.testing.assert_array_equal(layer.forward(x), ref)
        with winattn.Layer(16, 2, (4, 4), (2, 2), qw.astype(np.float64), pw.astype(">f8")) as layer64:
            np.testing.assert_array_equal(layer64.forward(x32), ref)

    def test_scalar_sizes(self):
        qw, pw = _weights(16)
        with winattn.Layer(16.0, np.int32(2), (4.0, np.int64(4)), (2, 2), qw, pw) as layer:
            self.assertEqual(layer.channels, 16)
        for bad in (float("inf"), float("nan"), 2.5, True, "2"):
            with self.assertRaises(ValueError) as cm:
                winattn.Layer(16, bad, (4, 4), (2, 2), qw, pw)
            self.assertTrue(str(cm.exception).startswith("num_heads:"), str(cm.exception))
        q = np.zeros((1, 2, 4, 8), dtype=np.float32)
        with self.assertRaises(ValueError):
            winattn.window_attention(q, q, q, "big")


class TestServingControls(unittest.TestCase):
    """MAX_THREADS, thread counts, the per-layer budget, trim, memory_bytes, release_thread_memory."""

    def tearDown(self):
        winattn.set_num_threads(0)

    def assertInvalid(self, fn, *args, **kwargs):
        with self.assertRaises(winattn.WinattnError) as cm:
            fn(*args, **kwargs)
        self.assertEqual(cm.exception.status, INVALID)
        self.assertIn("thread", cm.exception.message)

    def test_max_threads_matches_the_header(self):
        with open(os.path.join(REPO, "include", "winattn", "winattn.h")) as f:
            m = re.search(r"#define\s+WINATTN_MAX_THREADS\s+(\d+)", f.read())
        self.assertIsNotNone(m)
        self.assertEqual(winattn.MAX_THREADS, int(m.group(1)))

    def test_set_num_threads_range(self):
        winattn.set_num_threads(3)
        # -4294967291 is 5 modulo 2**32: it must not be truncated to a C int
        for bad in (-4294967291, 4294967297, 1 << 31, -1, winattn.MAX_THREADS + 1):
            self.assertInvalid(winattn.set_num_threads, bad)
            self.assertEqual(winattn.get_num_threads(), 3, "a refused count changed the setting")
        winattn.set_num_threads(winattn.MAX_THREADS)
        self.assertEqual(winattn.get_num_threads(), winattn.MAX_THREADS)
        with self.assertRaises(ValueError):
            winattn.set_num_threads(1.5)

    def _layer(self, **kwargs):
        qw, pw = _weights(32, 11)
        table = np.random.default_rng(12).standard_normal((13 * 13, 4)).astype(np.float32) * 0.1
        return winattn.Layer(32, 4, (7, 7), (3, 3), qw, pw, relative_position_bias_table=table, **kwargs)

    def test_layer_thread_budget(self):
        x = np.random.default_rng(13).standard_normal((2, 21, 28, 32)).astype(np.float32)
        with self._layer() as layer:
            self.assertEqual(layer.num_threads, 0)
            ref = layer.forward(x)
            layer.num_threads = 1
            self.assertEqual(layer.num_threads, 1)
            np.testing.assert_array_equal(layer.forward(x), ref)
            layer.num_threads = 3
            self.assertEqual(layer.num_threads, 3)
            np.testing.assert_array_equal(layer.forward(x), ref)
            for bad in (-1, winattn.MAX_THREADS + 1, -4294967291):
                self.assertInvalid(setattr, layer, "num_threads", bad)
                self.assertEqual(layer.num_threads, 3)
            layer.num_threads = 0
            self.assertEqual(layer.num_threads, 0)
        with self._layer(num_threads=1) as layer1:
            self.assertEqual(layer1.num_threads, 1)
            np.testing.assert_array_equal(layer1.forward(x), ref)
        self.assertInvalid(self._layer, num_threads=winattn.MAX_THREADS + 1)

    def test_budget_changes_while_forwards_run(self):
        x = np.random.default_rng(14).standard_normal((1, 14, 14, 32)).astype(np.float32)
        with self._layer() as layer:
            ref = layer.forward(x)
            bad = []

            def work():
                for _ in range(10):
                    if not np.array_equal(layer.forward(x), ref):
                        bad.append(1)

            threads = [threading.Thread(target=work) for _ in range(3)]
            for t in threads:
                t.start()
            for i in range(30):
                layer.num_threads = i % 4
                layer.trim()
            for t in threads:
                t.join()
            self.assertEqual(bad, [])

    def test_trim_keeps_results(self):
        x = np.random.default_rng(15).standard_normal((3, 14, 21, 32)).astype(np.float32)
        with self._layer() as layer:
            created = layer.memory_bytes
            self.assertGreater(created, 0)
            ref = layer.forward(x)
            used = layer.memory_bytes
            layer.trim()
            trimmed = layer.memory_bytes
            self.assertLessEqual(trimmed, used)
            self.assertLessEqual(trimmed, created)
            np.testing.assert_array_equal(layer.forward(x), ref)
            layer.trim()
            layer.trim()
            np.testing.assert_array_equal(layer.forward(x), ref)

    def test_memory_is_bounded_across_grids(self):
        """50 forwards with 50 different grids on a shifted layer: what the layer keeps stays within the
        header's bound (memory after create + 7*N*N float masks + a bounded number of projection plans), so
        it does not grow with the number of distinct grids a server sees."""
        n = 7 * 7
        with self._layer() as layer:
            created = layer.memory_bytes
            self.assertGreater(created, 0)
            grids = [(7 + (i * 5) % 29, 7 + (i * 11) % 31) for i in range(50)]
            self.assertEqual(len(set(grids)), 50)
            seen = []
            for h, w in grids:
                layer.forward(np.ones((1, h, w, 32), dtype=np.float32))
                seen.append(layer.memory_bytes)
            masks = 7 * n * n * 4
            # Growth in the second half of the run (25 more new grids) beyond the first half's peak would
            # mean a cache that grows with every new grid.
            first, second = max(seen[:25]), max(seen[25:])
            self.assertLessEqual(
                second, first + masks,
                "memory kept growing with new grids: %d after create, peak %d over grids 1-25, %d over 26-50"
                % (created, first, second),
            )
            layer.trim()
            self.assertLessEqual(layer.memory_bytes, created + masks)

    def test_release_thread_memory(self):
        x = np.random.default_rng(16).standard_normal((1, 14, 14, 32)).astype(np.float32)
        with self._layer() as layer:
            ref = layer.forward(x)
            results = []

            def work():
                winattn.release_thread_memory()  # before any call on this thread
                y = layer.forward(x)
                winattn.release_thread_memory()
                results.append(np.array_equal(y, ref) and np.array_equal(layer.forward(x), ref))

            threads = [threading.Thread(target=work) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winattn.release_thread_memory()
            np.testing.assert_array_equal(layer.forward(x), ref)
        self.assertEqual(results, [True, True, True])


if __name__ == "__main__":
    unittest.main()
