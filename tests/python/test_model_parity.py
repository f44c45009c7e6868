"""Whole models against their references, in float64, through the shipped exporter and the file loader.

- torchvision 0.14's own swin_t and swin_v2_t (random weights, fixed seed, perturbed so no LayerNorm is the
  identity): logits and every stage's features on 224x224, 256x320, 200x200 and 225x231 (odd), batch 3 and
  batch 1;
- Video Swin 3D (torchvision swin3d_t's structure at a reduced width, and the original Video Swin's names),
  timm Swin v1 (both downsample layouts) and timm SwinV2 (with a pretrained_window_size), against the
  references written in reference_models.py from the published formulations;
- files that must be refused: truncated, corrupted header, a wrong shape, a missing tensor, a NaN weight, an
  unexpected tensor, a relative_position_index that is not the window's.

Tolerance: max|winattn - reference| <= 1e-4 * max|reference| (float64 reference, float32 library).
"""

import os
import struct
import tempfile
import unittest

import numpy as np
import torch
import torchvision

from winattn_testutil import assert_rel_close, winattn
from winattn import export

RTOL = 1e-4
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def perturb_(module, seed):
    """Adds seeded noise to every parameter, so LayerNorms are not identities and biases are not zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 0.1 if ("norm" in name or name.endswith("bias")) else 0.02
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module.eval()


def stage_outputs_2d(model, x):
    """torchvision 2D: model.features is [embed, stage, merge, stage, ...]; the stages are at odd indices."""
    outs = []
    for i, layer in enumerate(model.features):
        x = layer(x)
        if i % 2 == 1:
            outs.append(x)
    return outs


class ModelCase(unittest.TestCase):
    tmp = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def exported(self, module, name):
        """Writes the module's state_dict plus its non-persistent position buffers (timm >= 0.9 keeps
        relative_coords_table out of its state_dict; the loader needs it for a SwinV2 window)."""
        path = os.path.join(self.tmp.name, name + ".safetensors")
        state = dict(module.state_dict())
        for key, buffer in module.named_buffers():
            if key not in state and key.endswith("relative_coords_table"):
                state[key] = buffer
        export.export_state_dict(state, path)
        return path

    def check(self, model, ref_logits, ref_features, x, what):
        """winattn's logits and features on x against the float64 references."""
        if ref_logits is not None:
            assert_rel_close(self, model.classify(x), ref_logits, RTOL, what + " logits")
        feats = model.features(x)
        self.assertEqual(len(feats), len(ref_features), what + ": number of stages")
        for s, (got, ref) in enumerate(zip(feats, ref_features)):
            assert_rel_close(self, got, ref, RTOL, "%s stage %d features" % (what, s))


class TorchvisionModels(ModelCase):
    SIZES = [(224, 224), (256, 320), (200, 200), (225, 231)]

    def run_model(self, name, seed):
        module = perturb_(getattr(torchvision.models, name)(), seed)
        path = self.exported(module, name)
        with winattn.Model.load(path) as model:
            info = model.info
            self.assertEqual(info.num_stages, 4)
            self.assertEqual(tuple(info.depths), (2, 2, 6, 2))
            self.assertEqual(tuple(info.num_heads), (3, 6, 12, 24))
            self.assertEqual(info.embed_dim, 96)
            self.assertEqual(info.num_classes, 1000)
            reference = module.double()
            g = torch.Generator().manual_seed(seed + 1)
            for h, w in self.SIZES:
                x = torch.randn(3, 3, h, w, generator=g)
                with torch.no_grad():
                    xd = x.double()
                    logits = reference(xd).numpy()
                    feats = [f.numpy() for f in stage_outputs_2d(reference, xd)]
                what = "%s %dx%d" % (name, h, w)
                self.check(model, logits, feats, x.numpy(), what + " batch 3")
                self.check(model, logits[:1], [f[:1] for f in feats], x[:1].numpy(), what + " batch 1")

    def test_swin_t(self):
        self.run_model("swin_t", 10)

    def test_swin_v2_t(self):
        self.run_model("swin_v2_t", 20)


class ReferenceModels(ModelCase):
    """Video Swin 3D and timm's Swin v1/v2 against reference_models.py."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        import reference_models

        cls.ref = reference_models

    def compare(self, module, shapes, what, seed):
        module = module.eval()
        self.ref.init_random_(module, seed)
        path = self.exported(module, what.replace(" ", "_"))
        with winattn.Model.load(path) as model:
            reference = module.double()
            g = torch.Generator().manual_seed(seed + 1)
            for shape in shapes:
                x = torch.randn(*shape, generator=g)
                with torch.no_grad():
                    xd = x.double()
                    logits = reference(xd).numpy()
                    feats = [f.numpy() for f in reference.features(xd)]
                self.check(model, logits, feats, x.numpy(), "%s %s" % (what, tuple(shape)))
            return model.info

    def test_video_swin_3d(self):
        # swin3d_t's structure (patch 2x4x4, window 8x7x7, depths 2-2-6-2) at a reduced width.
        module = self.ref.VideoSwin3D(embed_dim=24, num_heads=(1, 2, 4, 8), num_classes=11)
        shapes = [
            (1, 3, 8, 112, 112),
            (2, 3, 16, 112, 112),
            (1, 3, 8, 224, 224),
            (1, 3, 16, 224, 224),
            (2, 3, 5, 90, 70),  # shorter than the window in time, padded on every axis
        ]
        info = self.compare(module, shapes, "video swin 3d", 30)
        self.assertEqual(tuple(info.window), (8, 7, 7))
        self.assertEqual(tuple(info.patch), (2, 4, 4))
        self.assertEqual(info.family, "swin_3d")

    def test_video_swin_original_names(self):
        module = self.ref.VideoSwin3D(
            embed_dim=16, depths=(2, 2), num_heads=(1, 2), window=(4, 4, 4), num_classes=5, naming="videoswin"
        )
        self.compare(module, [(2, 3, 6, 40, 48), (1, 3, 16, 64, 64)], "video swin original", 40)

    def test_video_swin_mmaction_names(self):
        # mmaction2's checkpoints: the backbone under "backbone.", the head "cls_head.fc_cls".
        module = self.ref.VideoSwin3D(
            embed_dim=16, depths=(2, 2), num_heads=(1, 2), window=(4, 4, 4), num_classes=5, naming="mmaction"
        )
        self.compare(module, [(1, 3, 8, 48, 40)], "video swin mmaction", 41)

    def test_swin3d_t_full_width(self):
        module = self.ref.VideoSwin3D()
        self.compare(module, [(1, 3, 8, 112, 112)], "swin3d_t", 45)

    def test_timm_swin_v1(self):
        for layout in ("new", "old"):
            module = self.ref.TimmSwin(
                img_size=224, embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window=7,
                num_classes=7, version=1, layout=layout,
            )
            self.compare(module, [(2, 3, 224, 224)], "timm swin v1 " + layout, 50)

    def test_timm_swin_v2_pretrained_window(self):
        module = self.ref.TimmSwin(
            img_size=256, embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window=16,
            num_classes=7, version=2, pretrained_window_size=8,
        )
        self.compare(module, [(1, 3, 256, 256)], "timm swinv2 window 16 pretrained 8", 60)


def _tiny_swin(seed=0):
    from torchvision.models.swin_transformer import SwinTransformer

    torch.manual_seed(seed)
    m = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[1, 2], window_size=[4, 4],
                        num_classes=10)
    return perturb_(m, seed)


class RefusedFiles(ModelCase):
    """Every bad file is a WinattnError with a message that says what is wrong."""

    def expect_error(self, path, *fragments):
        with self.assertRaises(winattn.WinattnError) as ctx:
            winattn.Model.load(path)
        message = str(ctx.exception)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def write(self, state_dict, name):
        path = os.path.join(self.tmp.name, name + ".safetensors")
        export.export_state_dict(state_dict, path)
        return path

    def test_good_file_loads(self):
        path = self.write(_tiny_swin().state_dict(), "good")
        with winattn.Model.load(path) as model:
            self.assertEqual(model.info.num_classes, 10)

    def test_truncated(self):
        path = self.write(_tiny_swin().state_dict(), "truncated")
        with open(path, "rb") as f:
            data = f.read()
        for cut in (4, 8 + 10, len(data) - 7):
            with open(path, "wb") as f:
                f.write(data[:cut])
            self.expect_error(path, path)

    def test_corrupted_header(self):
        path = self.write(_tiny_swin().state_dict(), "corrupt")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        (n,) = struct.unpack("<Q", bytes(data[:8]))
        data[8 + n // 2] = ord("}")
        with open(path, "wb") as f:
            f.write(bytes(data))
        self.expect_error(path, path)
        data[:8] = struct.pack("<Q", 1 << 40)
        with open(path, "wb") as f:
            f.write(bytes(data))
        self.expect_error(path, path)

    def test_wrong_shape(self):
        sd = _tiny_swin().state_dict()
        sd["features.1.0.attn.proj.weight"] = torch.zeros(16, 15)
        self.expect_error(self.write(sd, "shape"), "features.1.0.attn.proj.weight", "[16, 15]")

    def test_missing_tensor(self):
        sd = _tiny_swin().state_dict()
        del sd["features.3.1.mlp.3.weight"]
        self.expect_error(self.write(sd, "missing"), "features.3.1.mlp.3.weight", "missing")

    def test_nan_weight(self):
        sd = _tiny_swin().state_dict()
        sd["features.2.reduction.weight"][3, 5] = float("nan")
        self.expect_error(self.write(sd, "nan"), "features.2.reduction.weight", "non-finite")

    def test_unexpected_tensor(self):
        sd = _tiny_swin().state_dict()
        sd["features.1.0.attn.extra"] = torch.zeros(3)
        self.expect_error(self.write(sd, "extra"), "features.1.0.attn.extra")

    def test_wrong_index_buffer(self):
        sd = _tiny_swin().state_dict()
        index = sd["features.1.1.attn.relative_position_index"].clone()
        index.view(-1)[7] += 1
        sd["features.1.1.attn.relative_position_index"] = index
        self.expect_error(self.write(sd, "index"), "features.1.1.attn.relative_position_index")

    def test_not_a_swin(self):
        self.expect_error(self.write({"weight": torch.zeros(3, 3)}, "other"), "patch embedding")

    def test_missing_file(self):
        self.expect_error(os.path.join(self.tmp.name, "absent.safetensors"), "absent.safetensors")

    def test_half_precision_weights(self):
        # F16 and BF16 tensors load, converted exactly; the model equals one made from the rounded weights.
        module = _tiny_swin(3)
        for dtype in (torch.float16, torch.bfloat16):
            sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in module.state_dict().items()}
            rounded = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
            x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
            with winattn.Model.load(self.write(sd, "half")) as a, winattn.Model.load(self.write(rounded, "rounded")) as b:
                np.testing.assert_array_equal(a.classify(x), b.classify(x))


if __name__ == "__main__":
    unittest.main()
