"""The Python binding of whole models (winattn.Model) against torchvision itself.

A tiny torchvision SwinTransformer (patch 4, embed_dim 16, depths (2, 2), heads (1, 2), window 4, 10 classes),
built with a fixed seed and then given random norms, biases and weights of unit-scale effect (torchvision's own
initialisation leaves the norms at 1/0 and the biases at 0, which would hide padding and bias errors), in eval
mode. The reference is the same model in float64 (model.double()); winattn runs in float32.

Criteria: max|got - ref| <= 1e-4 * max|ref| for the logits and for every stage's features (torchvision's
model.features[2*s + 1] outputs), on a 32x32 input (whole windows; the last stage is one window, whose shift is
dropped) and a 40x36 input (padding to windows and at the patch merging), batches 1 and 3. Then the binding
itself: the kind of the result follows the input's (torch in, torch out; numpy in, numpy out), out=, unbatched
inputs, refused inputs (requires_grad, other devices, wrong shapes and dtypes), the state_dict dtypes (float64,
float16, bfloat16, numpy arrays, skipped integer buffers), Model.load of a file written by
``python3 -m winattn.export`` (bit-identical to from_torchvision), thread budgets (bit-identical), close().
"""

import os
import subprocess
import sys
import tempfile
import threading
import unittest

import numpy as np
import torch
from torchvision.models.swin_transformer import SwinTransformer

from winattn_testutil import REPO, assert_rel_close, winattn

from winattn import export  # noqa: E402  (winattn_testutil puts bindings/python on sys.path)

RTOL = 1e-4
SIZES = [(32, 32), (40, 36)]
BATCHES = [1, 3]
NUM_CLASSES = 10


def make_torchvision_model(seed=0):
    """The tiny eval-mode torchvision Swin of this test, every parameter random (fixed seed), float32."""
    torch.manual_seed(seed)
    m = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[1, 2], window_size=[4, 4],
                        num_classes=NUM_CLASSES)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.normal_(0.0, 1.0)
            elif p.ndim == 1 and name.endswith("weight"):  # LayerNorm gains
                p.normal_(1.0, 0.3)
            elif p.ndim == 1:  # biases, LayerNorm betas
                p.normal_(0.0, 0.3)
            else:  # Linear and Conv weights: unit-scale outputs
                fan_in = p[0].numel()
                p.normal_(0.0, 1.0 / fan_in ** 0.5)
    return m.eval()


def torch_stages(model, x):
    """The stage outputs of a torchvision Swin (features[2*s + 1], channels last) and its logits."""
    outs = []
    y = x
    for i, layer in enumerate(model.features):
        y = layer(y)
        if i % 2 == 1:
            outs.append(y)
    logits = model.head(model.flatten(model.avgpool(model.permute(model.norm(y)))))
    return outs, logits


def _input(batch, size, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, 3) + tuple(size), generator=g)


class ModelBinding(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tv = make_torchvision_model()
        cls.ref = make_torchvision_model().double().eval()
        cls.model = winattn.Model.from_torchvision(cls.tv)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def reference(self, x):
        """(stage outputs, logits) of the float64 torchvision model, as numpy float64."""
        with torch.no_grad():
            stages, logits = torch_stages(self.ref, x.double())
        return [s.numpy() for s in stages], logits.numpy()

    # ---- architecture ---------------------------------------------------------------------------------

    def test_info(self):
        info = self.model.info
        self.assertIsInstance(info, winattn.ModelInfo)
        self.assertEqual(info.family, "swin")
        self.assertEqual(info.in_channels, 3)
        self.assertEqual(info.num_classes, NUM_CLASSES)
        self.assertEqual(info.embed_dim, 16)
        self.assertEqual(info.depths, (2, 2))
        self.assertEqual(info.num_heads, (1, 2))
        self.assertEqual(info.patch, (1, 4, 4))
        self.assertEqual(info.window, (1, 4, 4))
        self.assertEqual(info.num_stages, 2)
        self.assertFalse(info.is_3d)
        self.assertEqual(info.stage_channels, (16, 32))
        with self.assertRaises(Exception):
            info.num_classes = 3  # frozen
        r = repr(self.model)
        for part in ("family='swin'", "num_classes=10", "embed_dim=16", "depths=(2, 2)", "num_heads=(1, 2)",
                     "patch=(4, 4)", "window=(4, 4)"):
            self.assertIn(part, r)

    # ---- parity with torchvision ---------------------------------------------------------------------

    def test_logits_match_torchvision_float64(self):
        for size in SIZES:
            for batch in BATCHES:
                with self.subTest(size=size, batch=batch):
                    x = _input(batch, size, seed=batch * 100 + size[1])
                    _, ref = self.reference(x)
                    got = self.model(x)
                    self.assertIsInstance(got, torch.Tensor)
                    self.assertEqual(got.dtype, torch.float32)
                    self.assertEqual(tuple(got.shape), (batch, NUM_CLASSES))
                    assert_rel_close(self, got.numpy(), ref, RTOL, "logits %s batch %d" % (size, batch))
                    # The float32 torchvision model agrees as well (a sanity check of the reference).
                    with torch.no_grad():
                        assert_rel_close(self, self.tv(x).numpy(), ref, RTOL, "torchvision float32")

    def test_features_match_torchvision_float64(self):
        for size in SIZES:
            for batch in BATCHES:
                with self.subTest(size=size, batch=batch):
                    x = _input(batch, size, seed=7 + batch + size[1])
                    ref, _ = self.reference(x)
                    got = self.model.features(x)
                    self.assertEqual(len(got), 2)
                    shapes = self.model.feature_shapes(size)
                    self.assertEqual(shapes, [r.shape[1:] for r in ref])
                    self.assertEqual(self.model.feature_shapes((1,) + size), shapes)
                    for s, (g, r) in enumerate(zip(got, ref)):
                        self.assertIsInstance(g, torch.Tensor)
                        self.assertEqual(g.dtype, torch.float32)
                        self.assertEqual(tuple(g.shape), r.shape)  # [B][H][W][C], torchvision's layout
                        assert_rel_close(self, g.numpy(), r, RTOL, "stage %d features %s batch %d" % (s, size, batch))

    def test_features_of_selected_stages(self):
        x = _input(2, (40, 36), seed=3)
        every = self.model.features(x)
        only_first = self.model.features(x, stages=[0])
        self.assertIsNone(only_first[1])
        self.assertTrue(torch.equal(only_first[0], every[0]))
        only_last = self.model.features(x, stages=1)
        self.assertIsNone(only_last[0])
        self.assertTrue(torch.equal(only_last[1], every[1]))
        with self.assertRaises(ValueError):
            self.model.features(x, stages=[2])

    # ---- kinds of inputs and outputs -----------------------------------------------------------------

    def test_numpy_in_numpy_out(self):
        x = _input(3, (40, 36), seed=11)
        got_t = self.model(x)
        got_n = self.model(x.numpy())
        self.assertIsInstance(got_n, np.ndarray)
        self.assertEqual(got_n.dtype, np.float32)
        np.testing.assert_array_equal(got_n, got_t.numpy())
        feats = self.model.features(x.numpy())
        for f, ft in zip(feats, self.model.features(x)):
            self.assertIsInstance(f, np.ndarray)
            np.testing.assert_array_equal(f, ft.numpy())
        # Other real dtypes are converted as astype(float32) does.
        np.testing.assert_array_equal(self.model(x.numpy().astype(np.float64)), got_n)
        np.testing.assert_array_equal(self.model.classify(x.double()).numpy(), got_n)
        self.assertEqual(self.model.classify(x.double()).dtype, torch.float32)

    def test_torch_output_shares_no_memory(self):
        x = _input(1, (32, 32), seed=5)
        a = self.model(x)
        b = self.model(x)
        self.assertNotEqual(a.data_ptr(), b.data_ptr())
        self.assertNotEqual(a.data_ptr(), x.data_ptr())
        a.add_(1.0)  # a torch-owned tensor: writable, independent
        self.assertFalse(torch.equal(a, b))

    def test_non_contiguous_and_strided_inputs(self):
        x = _input(2, (40, 36), seed=9)
        ref = self.model(x)
        xt = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, not contiguous
        self.assertFalse(xt.is_contiguous())
        self.assertTrue(torch.equal(self.model(xt), ref))
        np.testing.assert_array_equal(self.model(np.asfortranarray(x.numpy())), ref.numpy())

    def test_out_parameter(self):
        x = _input(3, (40, 36), seed=13)
        ref = self.model(x)
        out = torch.full((3, NUM_CLASSES), float("nan"))
        self.assertIs(self.model.classify(x, out=out), out)
        self.assertTrue(torch.equal(out, ref))
        outn = np.full((3, NUM_CLASSES), np.nan, dtype=np.float32)
        self.assertIs(self.model.classify(x.numpy(), out=outn), outn)
        np.testing.assert_array_equal(outn, ref.numpy())
        # Unbatched input, unbatched out (the same bits as a batch of that one sample).
        out1 = np.empty(NUM_CLASSES, dtype=np.float32)
        self.assertIs(self.model.classify(x[1].numpy(), out=out1), out1)
        np.testing.assert_array_equal(out1, self.model(x[1:2])[0].numpy())
        bad = [
            (x, np.empty((3, NUM_CLASSES), np.float32), TypeError),  # torch in, numpy out
            (x.numpy(), torch.empty(3, NUM_CLASSES), TypeError),  # numpy in, torch out
            (x, torch.empty(3, NUM_CLASSES + 1), ValueError),
            (x, torch.empty(3, NUM_CLASSES, dtype=torch.float64), winattn.ArgumentTypeError),
            (x, torch.empty(NUM_CLASSES, 3).t(), ValueError),  # not contiguous
            (x, torch.empty(3, NUM_CLASSES, requires_grad=True), ValueError),
            (x.numpy(), np.empty((3, NUM_CLASSES), np.float64), winattn.ArgumentTypeError),
            (x.numpy(), np.empty((NUM_CLASSES, 3), np.float32).T, ValueError),
            (x.numpy(), np.empty((3, NUM_CLASSES), np.float32)[:, :], None),  # fine: a contiguous view
        ]
        for xi, o, exc in bad:
            with self.subTest(out=(type(o).__name__, tuple(o.shape), str(o.dtype))):
                if exc is None:
                    self.model.classify(xi, out=o)
                else:
                    with self.assertRaises(exc):
                        self.model.classify(xi, out=o)
        ro = np.empty((3, NUM_CLASSES), np.float32)
        ro.flags.writeable = False
        with self.assertRaises(ValueError):
            self.model.classify(x.numpy(), out=ro)

    def test_requires_grad_is_refused(self):
        x = _input(1, (32, 32), seed=1).requires_grad_(True)
        with self.assertRaises(ValueError) as cm:
            self.model(x)
        msg = str(cm.exception)
        self.assertIn("inference-only", msg)
        self.assertIn("autograd", msg)
        self.assertIn("torch.no_grad()", msg)
        self.assertIn("detach()", msg)
        with self.assertRaises(ValueError):
            self.model.features(x)
        # What the message suggests works.
        self.assertTrue(torch.equal(self.model(x.detach()), self.model(x.detach().clone())))
        w = torch.ones((), requires_grad=True)
        with torch.no_grad():
            y = self.model(x.detach() * w)
        self.assertFalse(y.requires_grad)

    def test_other_devices_are_refused(self):
        x = torch.empty((1, 3, 32, 32), device="meta")
        with self.assertRaises(ValueError) as cm:
            self.model(x)
        self.assertIn("CPU", str(cm.exception))
        self.assertIn("meta", str(cm.exception))

    def test_unbatched_input(self):
        for size in SIZES:
            with self.subTest(size=size):
                x = _input(2, size, seed=21)
                single = self.model(x[1])
                self.assertEqual(tuple(single.shape), (NUM_CLASSES,))
                # An unbatched sample is a batch of one: the same bits.
                self.assertTrue(torch.equal(single, self.model(x[1:2])[0]))
                # Within a larger batch the projections' GEMMs may round differently (not bit-identical).
                assert_rel_close(self, single.numpy(), self.model(x)[1].numpy(), 1e-5, "unbatched vs batch of 2")
                feats = self.model.features(x[1].numpy())
                for f, fb in zip(feats, self.model.features(x[1:2])):
                    self.assertEqual(f.shape, tuple(fb.shape[1:]))
                    np.testing.assert_array_equal(f, fb[0].numpy())

    def test_empty_batch(self):
        x = np.zeros((0, 3, 32, 32), np.float32)
        self.assertEqual(self.model(x).shape, (0, NUM_CLASSES))
        self.assertEqual([f.shape for f in self.model.features(x)], [(0, 8, 8, 16), (0, 4, 4, 32)])

    def test_bad_inputs(self):
        cases = [
            (np.zeros((1, 4, 32, 32), np.float32), ValueError),  # channels
            (np.zeros((1, 1, 3, 32, 32), np.float32), ValueError),  # a video for a 2D model
            (np.zeros((32, 32), np.float32), ValueError),
            (np.zeros((1, 3, 32, 32), np.complex64), winattn.ArgumentTypeError),
            (np.zeros((1, 3, 32, 32), bool), winattn.ArgumentTypeError),
            (torch.zeros((1, 3, 32, 32), dtype=torch.complex64), winattn.ArgumentTypeError),
            (np.zeros((1, 3, 3, 32), np.float32), winattn.WinattnError),  # smaller than the patch
        ]
        for x, exc in cases:
            with self.subTest(shape=x.shape, dtype=str(x.dtype)):
                with self.assertRaises(exc):
                    self.model(x)
        with self.assertRaises(winattn.WinattnError) as cm:
            self.model.feature_shapes((3, 32))
        self.assertTrue(cm.exception.message)
        with self.assertRaises(ValueError):
            self.model.feature_shapes((2, 32, 32))  # frames != 1 for a 2D model

    # ---- construction from state_dicts and files -----------------------------------------------------

    def test_load_of_an_exported_file_equals_from_torchvision(self):
        x = _input(3, (40, 36), seed=31)
        ref_logits = self.model(x)
        ref_feats = self.model.features(x)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = os.path.join(tmp, "tiny.pth")
            path = os.path.join(tmp, "tiny.safetensors")
            torch.save(self.tv.state_dict(), ckpt)
            env = dict(os.environ)
            env["PYTHONPATH"] = os.path.join(REPO, "bindings", "python")
            r = subprocess.run([sys.executable, "-m", "winattn.export", ckpt, path], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stdout)
            for loaded in (winattn.Model.load(path), winattn.Model(path), winattn.Model.load(os.fsencode(path))):
                with loaded:
                    self.assertEqual(loaded.info, self.model.info)
                    self.assertTrue(torch.equal(loaded(x), ref_logits))
                    for a, b in zip(loaded.features(x), ref_feats):
                        self.assertTrue(torch.equal(a, b))
            # export_state_dict from Python, with buffers in float64 and float16 weights: F64 is converted.
            sd64 = {k: (v.double() if v.is_floating_point() else v) for k, v in self.tv.state_dict().items()}
            export.export_state_dict(sd64, path)
            with winattn.Model.load(path) as loaded:
                self.assertTrue(torch.equal(loaded(x), ref_logits))

    def test_load_errors_name_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            missing = os.path.join(tmp, "missing.safetensors")
            with self.assertRaises(winattn.WinattnError) as cm:
                winattn.Model.load(missing)
            self.assertIn("missing.safetensors", cm.exception.message)
            junk = os.path.join(tmp, "junk.safetensors")
            with open(junk, "wb") as f:
                f.write(b"not a safetensors file")
            with self.assertRaises(winattn.WinattnError):
                winattn.Model.load(junk)
        with self.assertRaises(TypeError):
            winattn.Model.load(42)

    def test_state_dict_dtypes(self):
        x = _input(2, (40, 36), seed=41)
        ref = self.model(x)
        sd = self.tv.state_dict()
        # float64 tensors are converted to float32 (exactly, since they came from float32).
        with winattn.Model.from_state_dict({k: v.double() if v.is_floating_point() else v for k, v in sd.items()}) as m:
            self.assertTrue(torch.equal(m(x), ref))
        # numpy arrays, integer buffers included (skipped).
        with winattn.Model.from_state_dict({k: v.numpy() for k, v in sd.items()}) as m:
            self.assertTrue(torch.equal(m(x), ref))
        # float16 and bfloat16 tensors are passed with their dtype: the same result as the same values in float32.
        for dt in (torch.float16, torch.bfloat16):
            with self.subTest(dtype=str(dt)):
                low = {k: v.to(dt) if v.is_floating_point() else v for k, v in sd.items()}
                wide = {k: v.float() if v.is_floating_point() else v for k, v in low.items()}
                with winattn.Model.from_state_dict(low) as a, winattn.Model.from_state_dict(wide) as b:
                    self.assertTrue(torch.equal(a(x), b(x)))
                    assert_rel_close(self, a(x).numpy(), ref.numpy(), 0.1, "logits with %s weights" % dt)
        # Without the integer buffers at all (they are skipped anyway).
        no_index = {k: v for k, v in sd.items() if not k.endswith("relative_position_index")}
        with winattn.Model.from_state_dict(no_index) as m:
            self.assertTrue(torch.equal(m(x), ref))
        # Aliases and the generic constructor.
        with winattn.Model.from_module(self.tv) as m, winattn.Model(sd) as m2, winattn.Model(self.tv, 1) as m3:
            for mm in (m, m2, m3):
                self.assertTrue(torch.equal(mm(x), ref))
            self.assertEqual(m3.num_threads, 1)

    def test_state_dict_errors(self):
        sd = self.tv.state_dict()
        bad_index = dict(sd)
        bad_index["features.1.0.attn.relative_position_index"] = torch.zeros_like(
            sd["features.1.0.attn.relative_position_index"])
        with self.assertRaises(ValueError) as cm:
            winattn.Model.from_state_dict(bad_index)
        self.assertIn("features.1.0.attn.relative_position_index", str(cm.exception))
        self.assertIn("entry 0", str(cm.exception))
        bad_index["features.3.1.attn.relative_position_index"] = torch.flip(
            sd["features.3.1.attn.relative_position_index"], [0])
        del bad_index["features.1.0.attn.relative_position_index"]
        with self.assertRaises(ValueError) as cm:
            winattn.Model.from_state_dict(bad_index)
        self.assertIn("features.3.1.attn.relative_position_index", str(cm.exception))
        # The [N][N] layout (timm, Video Swin) of the right index is accepted.
        square = dict(sd)
        name = "features.1.0.attn.relative_position_index"
        square[name] = sd[name].view(16, 16)
        winattn.Model.from_state_dict(square).close()
        complex_sd = dict(sd)
        complex_sd["head.bias"] = sd["head.bias"].to(torch.complex64)
        with self.assertRaises(winattn.ArgumentTypeError):
            winattn.Model.from_state_dict(complex_sd)
        missing = {k: v for k, v in sd.items() if k != "features.3.1.attn.qkv.weight"}
        with self.assertRaises(winattn.WinattnError) as cm:
            winattn.Model.from_state_dict(missing)
        self.assertIn("features.3.1.attn.qkv", cm.exception.message)
        extra = dict(sd)
        extra["features.9.unused.weight"] = torch.zeros(3)
        with self.assertRaises(winattn.WinattnError):
            winattn.Model.from_state_dict(extra)
        with self.assertRaises(TypeError):
            winattn.Model.from_state_dict([1, 2, 3])
        with self.assertRaises(TypeError):
            winattn.Model.from_torchvision(object())
        with self.assertRaises(TypeError):
            winattn.Model(3.5)

    def test_backbone_without_head(self):
        sd = {k: v for k, v in self.tv.state_dict().items() if not k.startswith("head.")}
        x = _input(2, (32, 32), seed=51)
        with winattn.Model.from_state_dict(sd) as m:
            self.assertEqual(m.info.num_classes, 0)
            with self.assertRaises(ValueError) as cm:
                m(x)
            self.assertIn("features()", str(cm.exception))
            for a, b in zip(m.features(x), self.model.features(x)):
                self.assertTrue(torch.equal(a, b))

    # ---- threads and lifetime ------------------------------------------------------------------------

    def test_thread_budgets_are_bit_identical(self):
        x = _input(3, (40, 36), seed=61)
        with winattn.Model.from_torchvision(self.tv, num_threads=1) as m:
            self.assertEqual(m.num_threads, 1)
            one = m(x)
            one_f = m.features(x)
            m.num_threads = 2
            self.assertEqual(m.num_threads, 2)
            two = m(x)
            two_f = m.features(x)
            self.assertTrue(torch.equal(one, two))
            for a, b in zip(one_f, two_f):
                self.assertTrue(torch.equal(a, b))
            m.num_threads = 0
            self.assertEqual(m.num_threads, 0)
            for bad in (-1, winattn.MAX_THREADS + 1):
                with self.assertRaises(winattn.WinattnError):
                    m.num_threads = bad
            with self.assertRaises(ValueError):
                m.num_threads = 1.5
        with self.assertRaises(winattn.WinattnError):
            winattn.Model.from_torchvision(self.tv, num_threads=-1)

    def test_concurrent_calls(self):
        x = _input(2, (40, 36), seed=71)
        ref = self.model(x)
        results, errors = [], []

        def work():
            try:
                for _ in range(3):
                    results.append(self.model(x))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 12)
        for r in results:
            self.assertTrue(torch.equal(r, ref))

    def test_close(self):
        m = winattn.Model.from_torchvision(self.tv)
        x = _input(1, (32, 32), seed=81)
        m(x)
        m.close()
        self.assertTrue(m.closed)
        self.assertIn("closed", repr(m))
        for call in (lambda: m(x), lambda: m.classify(x.numpy()), lambda: m.features(x),
                     lambda: m.feature_shapes((32, 32)), lambda: m.num_threads,
                     lambda: setattr(m, "num_threads", 1)):
            with self.assertRaises(ValueError) as cm:
                call()
            self.assertIn("the model is closed", str(cm.exception))
        m.close()  # again: nothing
        with winattn.Model.from_torchvision(self.tv) as m2:
            m2(x)
        self.assertTrue(m2.closed)

    def test_close_waits_for_running_calls(self):
        m = winattn.Model.from_torchvision(self.tv)
        x = _input(8, (64, 64), seed=91)
        started = threading.Event()
        outcome = []

        def work():
            started.set()
            try:
                for _ in range(5):
                    outcome.append(m(x).shape)
            except ValueError as exc:
                outcome.append(str(exc))

        t = threading.Thread(target=work)
        t.start()
        started.wait()
        m.close()
        t.join()
        self.assertTrue(outcome)
        for o in outcome:
            self.assertTrue(o == (8, NUM_CLASSES) or "closed" in o, o)


class VideoModelBinding(unittest.TestCase):
    """The binding's 3D path ([B][C][T][H][W] in, [B][T][H][W][C] features out) on a tiny Video Swin with
    torchvision swin3d names, against the float64 reference of tests/python/reference_models.py (torchvision
    0.14 has no swin3d_t)."""

    @classmethod
    def setUpClass(cls):
        try:
            import reference_models
        except ImportError as exc:  # pragma: no cover - the file belongs to the model parity suite
            raise unittest.SkipTest("tests/python/reference_models.py is not importable: %s" % exc)
        torch.manual_seed(0)
        m = reference_models.VideoSwin3D(patch=(2, 4, 4), embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                                         window=(4, 4, 4), num_classes=5, naming="torchvision")
        with torch.no_grad():
            reference_models.init_random_(m, 1)
        cls.ref = m.double().eval()
        cls.model = winattn.Model.from_module(m)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def test_info(self):
        info = self.model.info
        self.assertEqual(info.family, "swin_3d")
        self.assertTrue(info.is_3d)
        self.assertEqual((info.patch, info.window, info.num_classes), ((2, 4, 4), (4, 4, 4), 5))
        self.assertIn("patch=(2, 4, 4)", repr(self.model))

    def test_logits_and_features_match_the_float64_reference(self):
        for batch, size in ((1, (8, 32, 32)), (2, (7, 36, 28))):
            with self.subTest(batch=batch, size=size):
                x = torch.randn((batch, 3) + size, generator=torch.Generator().manual_seed(batch))
                with torch.no_grad():
                    ref_logits = self.ref(x.double()).numpy()
                    ref_feats = [f.numpy() for f in self.ref.features(x.double())]
                logits = self.model(x)
                self.assertEqual(tuple(logits.shape), (batch, 5))
                assert_rel_close(self, logits.numpy(), ref_logits, RTOL, "3D logits")
                feats = self.model.features(x.numpy())
                self.assertEqual(self.model.feature_shapes(size), [f.shape[1:] for f in ref_feats])
                for s, (g, r) in enumerate(zip(feats, ref_feats)):
                    self.assertIsInstance(g, np.ndarray)
                    self.assertEqual(g.shape, r.shape)  # [B][T][H][W][C]
                    assert_rel_close(self, g, r, RTOL, "3D stage %d features" % s)
                # One unbatched clip: [C][T][H][W] in, [classes] and [T][H][W][C] out.
                single = self.model(x[0])
                self.assertTrue(torch.equal(single, self.model(x[:1])[0]))
                self.assertEqual([tuple(f.shape) for f in self.model.features(x[0])],
                                 [f.shape[1:] for f in ref_feats])

    def test_2d_shapes_are_refused(self):
        with self.assertRaises(ValueError):
            self.model(np.zeros((1, 3, 32, 32), np.float32))  # read as one clip [C=1][T=3][H][W]: 1 channel
        with self.assertRaises(ValueError):
            self.model(np.zeros((3, 32, 32), np.float32))
        with self.assertRaises(ValueError):
            self.model.feature_shapes((32, 32))


class TimmModuleBuffers(unittest.TestCase):
    """Model.from_module passes the buffers a module registers as non-persistent (timm >= 0.9 leaves
    relative_coords_table, relative_position_index and attn_mask out of its state_dict; a SwinV2 stage's window
    is only known from relative_coords_table): a timm-named SwinV2 whose window is not torchvision's 8, and whose
    last stage's window timm shrinks to the feature size, against the float64 reference of
    tests/python/reference_models.py."""

    def test_timm_v2_without_persistent_buffers(self):
        try:
            import reference_models
        except ImportError as exc:  # pragma: no cover - the file belongs to the model parity suite
            self.skipTest("tests/python/reference_models.py is not importable: %s" % exc)
        for window, img in ((4, 32), (8, 64)):
            with self.subTest(window=window, img=img):
                m = reference_models.TimmSwin(img_size=img, patch=4, embed_dim=16, depths=(2, 2, 2),
                                              num_heads=(1, 2, 4), window=window, num_classes=7, version=2,
                                              layout="new")
                with torch.no_grad():
                    reference_models.init_random_(m, 5)
                m.eval()
                buffers = dict(m.named_buffers())
                self.assertTrue(any(k.endswith("relative_coords_table") for k in buffers))
                self.assertFalse(any(k.endswith("relative_coords_table") for k in m.state_dict()))
                x = torch.randn((2, 3, img, img), generator=torch.Generator().manual_seed(window))
                with torch.no_grad():
                    ref = m.double()(x.double()).numpy()
                with winattn.Model.from_module(m) as model:
                    self.assertEqual(model.info.family, "swin_v2")
                    self.assertEqual(model.info.window, (1, window, window))
                    assert_rel_close(self, model(x).numpy(), ref, RTOL, "timm v2 window %d logits" % window)


class _WithoutModelFunctions:
    """Stands in for a library older than the model functions: every winattn_model_* is missing."""

    def __init__(self, lib):
        self._lib = lib

    def __getattr__(self, name):
        if name.startswith("winattn_model_"):
            raise AttributeError(name)
        return getattr(self._lib, name)


class OlderLibrary(unittest.TestCase):
    def setUp(self):
        self._real = winattn._lib()
        winattn._lib_handle = _WithoutModelFunctions(self._real)

    def tearDown(self):
        winattn._lib_handle = self._real

    def test_model_functions_missing_is_a_clear_error(self):
        self.assertTrue(winattn.version())  # the rest of the binding works
        for make in (lambda: winattn.Model.from_torchvision(make_torchvision_model()),
                     lambda: winattn.Model.load("whatever.safetensors")):
            with self.assertRaises(winattn.WinattnError) as cm:
                make()
            self.assertEqual(cm.exception.status, winattn.STATUS_UNSUPPORTED)
            self.assertIn("winattn_model_", cm.exception.message)
            self.assertIn("older than this binding", cm.exception.message)


if __name__ == "__main__":
    unittest.main()
