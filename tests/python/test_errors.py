"""Error reporting of the Python binding.

Values the C library rejects raise winattn.WinattnError with the C status, its name and the library's
message (which names the argument); inconsistent shapes are caught in Python and raise ValueError naming
the argument before anything reaches C.
"""

import threading
import unittest

import numpy as np

from winattn_testutil import winattn

INVALID = 1  # WINATTN_STATUS_INVALID_ARGUMENT
UNSUPPORTED = 2  # WINATTN_STATUS_UNSUPPORTED


def _weights(c):
    """Small float32 weights for a layer of c channels."""
    rng = np.random.default_rng(c)
    return (
        rng.standard_normal((3 * c, c)).astype(np.float32) * 0.1,
        rng.standard_normal((c, c)).astype(np.float32) * 0.1,
    )


class TestCErrors(unittest.TestCase):
    """Failures reported by the C library."""

    def assertCError(self, status, words, fn, *args, **kwargs):
        """fn(*args, **kwargs) must raise WinattnError with status and a message containing one of words."""
        with self.assertRaises(winattn.WinattnError) as cm:
            fn(*args, **kwargs)
        e = cm.exception
        self.assertIsInstance(e, RuntimeError)
        self.assertIsInstance(e.status, int)
        self.assertEqual(e.status, status, "status of %s: %s" % (fn.__name__, e))
        self.assertIsInstance(e.status_name, str)
        self.assertTrue(e.status_name, "empty status name")
        self.assertNotEqual(e.status_name, "unknown status")
        self.assertIsInstance(e.message, str)
        self.assertTrue(e.message.strip(), "empty message")
        self.assertTrue(
            any(w in e.message.lower() for w in words),
            "message %r of %s names none of %r" % (e.message, fn.__name__, words),
        )
        self.assertIn(e.message, str(e))
        return e

    def tearDown(self):
        winattn.set_max_isa("native")
        winattn.set_num_threads(0)

    def test_status_names(self):
        e1 = self.assertCError(INVALID, ["isa"], winattn.set_max_isa, "avx9000")
        self.assertEqual(e1.status_name, "invalid argument")
        names = {s: winattn.WinattnError(s, "m").status_name for s in range(5)}
        self.assertEqual(len(set(names.values())), 5, names)
        self.assertNotIn("unknown status", names.values())
        self.assertEqual(winattn.WinattnError(99, "m").status_name, "unknown status")

    def test_set_max_isa_unknown(self):
        self.assertCError(INVALID, ["isa"], winattn.set_max_isa, "sse9")
        self.assertCError(INVALID, ["isa"], winattn.set_max_isa, "")
        # a failed call leaves the cap alone and a valid name still works
        winattn.set_max_isa("scalar")
        self.assertEqual(winattn.active_isa(), "scalar")

    def test_set_num_threads_negative(self):
        self.assertCError(INVALID, ["thread"], winattn.set_num_threads, -1)

    def test_relative_position_index_bad_window(self):
        self.assertCError(INVALID, ["window"], winattn.relative_position_index, (0, 7))
        self.assertCError(INVALID, ["window"], winattn.relative_position_index, (7, -2, 3))
        # N*N overflows int64: the library must refuse before writing
        self.assertCError(INVALID, ["window", "overflow", "large"], winattn.relative_position_index, (1 << 20, 1 << 20))

    def test_relative_position_bias_index_out_of_range(self):
        table = np.ones((13 * 13, 3), dtype=np.float32)
        index = winattn.relative_position_index((7, 7))
        index[10, 20] = 13 * 13
        self.assertCError(INVALID, ["index"], winattn.relative_position_bias, table, index)
        index[10, 20] = -1
        self.assertCError(INVALID, ["index"], winattn.relative_position_bias, table, index)
        grad = np.ones((3, 49, 49), dtype=np.float32)
        self.assertCError(INVALID, ["index"], winattn.relative_position_bias_backward, grad, index, 169)

    def test_shifted_window_mask_bad_values(self):
        self.assertCError(INVALID, ["grid", "window"], winattn.shifted_window_mask, (1, 10, 14), (1, 7, 7), (0, 3, 3))
        self.assertCError(INVALID, ["shift"], winattn.shifted_window_mask, (1, 14, 14), (1, 7, 7), (0, 7, 3))
        self.assertCError(INVALID, ["shift"], winattn.shifted_window_mask, (1, 14, 14), (1, 7, 7), (0, -1, 3))
        self.assertCError(INVALID, ["grid", "window"], winattn.shifted_window_mask, (1, 14, 14), (1, 0, 7), (0, 0, 0))

    def test_continuous_position_bias_bad_window(self):
        w1 = np.ones((8, 2), dtype=np.float32)
        w2 = np.ones((2, 8), dtype=np.float32)
        self.assertCError(INVALID, ["window"], winattn.continuous_position_bias_table, 0, 7, w1, None, w2)

    def test_shifted_window_attention_bad_values(self):
        qw, pw = _weights(64)
        x = np.zeros((1, 14, 14, 64), dtype=np.float32)
        # 64 channels do not split into 3 heads
        self.assertCError(INVALID, ["head", "channel"], winattn.shifted_window_attention, x, qw, pw, 3, (7, 7), (3, 3))
        self.assertCError(INVALID, ["shift"], winattn.shifted_window_attention, x, qw, pw, 2, (7, 7), (7, 3))
        self.assertCError(INVALID, ["window"], winattn.shifted_window_attention, x, qw, pw, 2, (0, 7), (0, 0))
        self.assertCError(INVALID, ["head"], winattn.shifted_window_attention, x, qw, pw, 0, (7, 7), (0, 0))
        empty = np.zeros((0, 14, 14, 64), dtype=np.float32)
        self.assertCError(INVALID, ["batch", "size"], winattn.shifted_window_attention, empty, qw, pw, 2, (7, 7), (0, 0))

    def test_window_attention_bad_values(self):
        q = np.zeros((2, 2, 0, 8), dtype=np.float32)
        self.assertCError(INVALID, ["n", "size"], winattn.window_attention, q, q, q, 1.0)

    def test_layer_create_errors(self):
        qw, pw = _weights(64)
        table = np.zeros((13 * 13, 2), dtype=np.float32)
        ls = np.zeros(2, dtype=np.float32)
        # v1 table together with a v2 logit scale
        self.assertCError(
            INVALID, ["table", "logit", "v1", "v2"], winattn.Layer, 64, 2, (7, 7), (3, 3), qw, pw,
            relative_position_bias_table=table, logit_scale=ls,
        )
        self.assertCError(INVALID, ["shift"], winattn.Layer, 64, 2, (7, 7), (8, 3), qw, pw)
        self.assertCError(INVALID, ["head", "channel"], winattn.Layer, 64, 3, (7, 7), (3, 3), qw, pw)
        # continuous position bias is for 2D windows only
        w1 = np.ones((16, 2), dtype=np.float32)
        b1 = np.ones(16, dtype=np.float32)
        w2 = np.ones((2, 16), dtype=np.float32)
        self.assertCError(
            INVALID, ["window", "cpb", "2d"], winattn.Layer, 64, 2, (2, 7, 7), (1, 3, 3), qw, pw,
            logit_scale=ls, cpb_weight1=w1, cpb_bias1=b1, cpb_weight2=w2,
        )

    def test_bf16_unsupported_or_working(self):
        """BF16 compute is UNSUPPORTED in this version (the header allows it to appear later)."""
        qw, pw = _weights(32)
        try:
            layer = winattn.Layer(32, 2, (4, 4), (0, 0), qw, pw, compute_dtype="bf16")
        except winattn.WinattnError as e:
            self.assertEqual(e.status, UNSUPPORTED)
            self.assertTrue(e.message)
        else:
            with layer:
                out = layer.forward(np.ones((1, 8, 8, 32), dtype=np.float32))
            self.assertEqual(out.shape, (1, 8, 8, 32))

    def test_messages_are_per_thread(self):
        """Each thread's WinattnError carries the message of its own failed call."""
        results = {}

        def bad_isa():
            for _ in range(50):
                try:
                    winattn.set_max_isa("no_such_isa")
                except winattn.WinattnError as e:
                    results.setdefault("isa", []).append(e.message)

        def bad_window():
            for _ in range(50):
                try:
                    winattn.relative_position_index((0, 3))
                except winattn.WinattnError as e:
                    results.setdefault("window", []).append(e.message)

        threads = [threading.Thread(target=bad_isa), threading.Thread(target=bad_window)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(results["isa"]), 50)
        self.assertEqual(len(results["window"]), 50)
        self.assertTrue(all("isa" in m.lower() for m in results["isa"]), set(results["isa"]))
        self.assertTrue(all("window" in m.lower() for m in results["window"]), set(results["window"]))

    def test_exception_constructor(self):
        e = winattn.WinattnError(1, "window: 0 is not >= 1")
        self.assertIsInstance(e, RuntimeError)
        self.assertEqual(e.status, 1)
        self.assertEqual(e.message, "window: 0 is not >= 1")
        self.assertEqual(e.status_name, "invalid argument")


class TestPythonShapeErrors(unittest.TestCase):
    """Inconsistent shapes raise ValueError naming the argument, in Python."""

    def assertArgError(self, name, fn, *args, **kwargs):
        """fn must raise ValueError (not WinattnError) whose message starts with name."""
        with self.assertRaises(ValueError) as cm:
            fn(*args, **kwargs)
        self.assertNotIsInstance(cm.exception, winattn.WinattnError)
        self.assertTrue(str(cm.exception).startswith(name), "%r does not name %r" % (str(cm.exception), name))

    def test_shifted_window_attention_shapes(self):
        qw, pw = _weights(64)
        x = np.zeros((1, 14, 14, 64), dtype=np.float32)
        swa = winattn.shifted_window_attention
        self.assertArgError("input", swa, np.zeros((14, 14, 64)), qw, pw, 2, (7, 7), (3, 3))
        self.assertArgError("qkv_weight", swa, x, qw[:-1], pw, 2, (7, 7), (3, 3))
        self.assertArgError("qkv_weight", swa, x, qw.T, pw, 2, (7, 7), (3, 3))
        self.assertArgError("proj_weight", swa, x, qw, pw[:, :-1], 2, (7, 7), (3, 3))
        self.assertArgError("qkv_bias", swa, x, qw, pw, 2, (7, 7), (3, 3), qkv_bias=np.zeros(64))
        self.assertArgError("proj_bias", swa, x, qw, pw, 2, (7, 7), (3, 3), proj_bias=np.zeros(192))
        self.assertArgError(
            "relative_position_bias", swa, x, qw, pw, 2, (7, 7), (3, 3), relative_position_bias=np.zeros((2, 49, 48))
        )
        self.assertArgError(
            "relative_position_bias", swa, x, qw, pw, 2, (7, 7), (3, 3), relative_position_bias=np.zeros((3, 49, 49))
        )
        self.assertArgError("logit_scale", swa, x, qw, pw, 2, (7, 7), (3, 3), logit_scale=np.zeros(3))
        self.assertArgError("window", swa, x, qw, pw, 2, (2, 7, 7), (1, 3, 3))  # 3D window, 2D input
        self.assertArgError("shift", swa, x, qw, pw, 2, (7, 7), (3, 3, 3))
        self.assertArgError("window", swa, x, qw, pw, 2, (7, 7.5), (3, 3))
        self.assertArgError("num_heads", swa, x, qw, pw, "two", (7, 7), (3, 3))
        self.assertArgError("input", swa, "not numbers", qw, pw, 2, (7, 7), (3, 3))

    def test_window_attention_shapes(self):
        q = np.zeros((4, 2, 16, 8), dtype=np.float32)
        wa = winattn.window_attention
        self.assertArgError("q", wa, q[0], q[0], q[0], 1.0)
        self.assertArgError("k", wa, q, q[:, :, :, :4], q, 1.0)
        self.assertArgError("v", wa, q, q, q[:2], 1.0)
        self.assertArgError("bias", wa, q, q, q, 1.0, bias=np.zeros((3, 16, 16)))
        self.assertArgError("mask", wa, q, q, q, 1.0, mask=np.zeros((2, 16, 15)))
        self.assertArgError("mask", wa, q, q, q, 1.0, mask=np.zeros((16, 16)))
        self.assertArgError("scale", wa, q, q, q, "big")

    def test_lookup_shapes(self):
        self.assertArgError("window", winattn.relative_position_index, (2, 2, 2, 2))
        self.assertArgError("window", winattn.relative_position_index, ())
        index = winattn.relative_position_index((7, 7))
        self.assertArgError("table", winattn.relative_position_bias, np.zeros(169), index)
        self.assertArgError("index", winattn.relative_position_bias, np.zeros((169, 2)), index[:, :-1])
        self.assertArgError("index", winattn.relative_position_bias, np.zeros((169, 2)), np.zeros(50, dtype=np.int64))
        self.assertArgError(
            "grad_bias", winattn.relative_position_bias_backward, np.zeros((2, 49, 48), dtype=np.float32), index, 169
        )
        self.assertArgError("grid", winattn.shifted_window_mask, (14, 14), (7, 7), (3, 3))
        self.assertArgError("shift", winattn.shifted_window_mask, (1, 14, 14), (1, 7, 7), (3, 3))
        w2 = np.zeros((2, 8), dtype=np.float32)
        self.assertArgError("w1", winattn.continuous_position_bias_table, 7, 7, np.zeros((8, 3)), None, w2)
        self.assertArgError("b1", winattn.continuous_position_bias_table, 7, 7, np.zeros((8, 2)), np.zeros(7), w2)
        self.assertArgError("w2", winattn.continuous_position_bias_table, 7, 7, np.zeros((8, 2)), None, np.zeros((2, 9)))

    def test_layer_shapes(self):
        qw, pw = _weights(64)
        L = winattn.Layer
        self.assertArgError("qkv_weight", L, 64, 2, (7, 7), (3, 3), qw[:10], pw)
        self.assertArgError("proj_weight", L, 64, 2, (7, 7), (3, 3), qw, qw)
        self.assertArgError(
            "relative_position_bias_table", L, 64, 2, (7, 7), (3, 3), qw, pw,
            relative_position_bias_table=np.zeros((169, 3)),
        )
        self.assertArgError("cpb_weight1", L, 64, 2, (7, 7), (3, 3), qw, pw, logit_scale=np.zeros(2),
                            cpb_weight1=np.zeros((16, 3)))
        self.assertArgError("cpb_weight2", L, 64, 2, (7, 7), (3, 3), qw, pw, logit_scale=np.zeros(2),
                            cpb_weight1=np.zeros((16, 2)), cpb_bias1=np.zeros(16), cpb_weight2=np.zeros((3, 16)))
        self.assertArgError("cpb_bias1", L, 64, 2, (7, 7), (3, 3), qw, pw, logit_scale=np.zeros(2),
                            cpb_weight1=np.zeros((16, 2)), cpb_bias1=np.zeros(15), cpb_weight2=np.zeros((2, 16)))
        self.assertArgError("shift", L, 64, 2, (7, 7), (3,), qw, pw)
        self.assertArgError("compute_dtype", L, 64, 2, (7, 7), (3, 3), qw, pw, compute_dtype="float16")

    def test_layer_forward_and_close(self):
        qw, pw = _weights(64)
        layer = winattn.Layer(64, 2, (7, 7), (3, 3), qw, pw)
        self.assertArgError("input", layer.forward, np.zeros((1, 14, 14, 32), dtype=np.float32))
        self.assertArgError("input", layer.forward, np.zeros((14, 14, 64), dtype=np.float32))
        out = layer.forward(np.ones((1, 14, 14, 64)))
        self.assertEqual(out.dtype, np.float32)
        self.assertEqual(out.shape, (1, 14, 14, 64))
        layer.close()
        self.assertTrue(layer.closed)
        layer.close()  # a second close does nothing
        self.assertArgError("layer", layer.forward, np.zeros((1, 14, 14, 64), dtype=np.float32))
        with winattn.Layer(64, 2, (7, 7), (3, 3), qw, pw) as layer2:
            self.assertFalse(layer2.closed)
        self.assertTrue(layer2.closed)

    def test_layer_keeps_no_reference_to_inputs(self):
        """The library copies the weights: changing the arrays after create must not change the layer."""
        qw, pw = _weights(64)
        qw2, pw2 = qw.copy(), pw.copy()
        x = np.random.default_rng(1).standard_normal((1, 14, 14, 64)).astype(np.float32)
        with winattn.Layer(64, 2, (7, 7), (3, 3), qw2, pw2) as layer:
            before = layer.forward(x)
            qw2[:] = 0.0
            pw2[:] = 0.0
            del qw2, pw2
            after = layer.forward(x)
        np.testing.assert_array_equal(before, after)
        ref = winattn.shifted_window_attention(x, qw, pw, 2, (7, 7), (3, 3))
        self.assertGreater(float(np.max(np.abs(ref))), 0.0)
        np.testing.assert_allclose(after, ref, rtol=0, atol=1e-5 * float(np.max(np.abs(ref))))


class TestMisc(unittest.TestCase):
    def test_version_and_isa(self):
        self.assertRegex(winattn.version(), r"^\d+\.\d+\.\d+$")
        winattn.set_max_isa("native")
        self.assertIn(winattn.active_isa(), ["amx_bf16", "avx512_bf16", "avx512", "avx2", "scalar"])
        self.assertTrue(winattn.library_path())

    def test_bad_library_path_is_an_error(self):
        """A WINATTN_LIBRARY that does not exist raises OSError naming it (no silent fallback)."""
        import os
        import subprocess
        import sys

        env = dict(os.environ, WINATTN_LIBRARY="/nonexistent/libwinattn.so")
        code = (
            "import sys; sys.path.insert(0, %r); import winattn\n"
            "try:\n    winattn.version()\nexcept OSError as e:\n    print('OSError', e)\n"
        ) % os.path.dirname(os.path.dirname(winattn.__file__))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("OSError", out.stdout)
        self.assertIn("/nonexistent/libwinattn.so", out.stdout)


if __name__ == "__main__":
    unittest.main()
