"""Parity of winattn's Swin transformer block (winattn.Block) with torchvision itself, and Video Swin 3D.

The references are torchvision 0.14's SwinTransformerBlock and SwinTransformerBlockV2 modules, random-initialised
with a fixed seed and evaluated in eval mode in float64, and (torchvision has no 3D Swin) a float64 Video Swin
block written here from the published formulation (norm1, pad, roll, 3D window partition, attention with the
3D relative position bias and the -100 mask, reverse, residual, norm2, MLP, residual). winattn runs in float32.

Criteria: max|out - ref| <= 1e-4 * max|ref|, and the same for what the block adds to its input
(out - x against ref - x), so that the residual cannot hide an error in the attention or the MLP.
"""

import math
import unittest
import zlib

import numpy as np
import torch
from torchvision.models.swin_transformer import SwinTransformerBlock, SwinTransformerBlockV2

from winattn_testutil import assert_rel_close, supported_isas, winattn

RTOL = 1e-4

# (grid (H, W), channels, heads, window, shift, batch)
CASES = [
    ((56, 56), 96, 3, (7, 7), (0, 0), 1),
    ((56, 56), 96, 3, (7, 7), (3, 3), 2),
    ((28, 28), 192, 6, (7, 7), (0, 0), 2),
    ((28, 28), 192, 6, (7, 7), (3, 3), 1),
    ((13, 17), 64, 2, (7, 7), (3, 3), 3),  # padding on both axes, shifted
    ((13, 17), 96, 3, (7, 7), (0, 0), 1),  # padding, unshifted
]


def _seed(case, salt):
    return (zlib.crc32(repr(case).encode()) ^ salt) & 0x7FFFFFFF


def make_block(cls, case, seed):
    """A float64 eval-mode torchvision block with every parameter random (norms and biases included), and an
    input. Weights are scaled so that the attention and the MLP add as much as the residual carries."""
    grid, c, heads, window, shift, batch = case
    torch.manual_seed(seed)
    m = cls(c, heads, list(window), list(shift)).double().eval()
    with torch.no_grad():
        for norm in (m.norm1, m.norm2):
            norm.weight.normal_(1.0, 0.3)
            norm.bias.normal_(0.0, 0.3)  # beta != 0: padding tokens must enter v1's attention as zeros
        a = m.attn
        a.qkv.weight.normal_(0.0, (1.5 if cls is SwinTransformerBlock else 1.0) / math.sqrt(c))
        a.qkv.bias.normal_(0.0, 0.5)  # v2: the k third is ignored, as torchvision does
        a.proj.weight.normal_(0.0, 1.0 / math.sqrt(c))
        a.proj.bias.normal_(0.0, 0.5)
        if cls is SwinTransformerBlock:
            a.relative_position_bias_table.normal_(0.0, 1.0)
        else:
            ls = torch.empty(heads).uniform_(math.log(5.0), math.log(200.0))
            ls[0] = math.log(150.0)  # above the clamp at log 100
            a.logit_scale.copy_(ls.view(heads, 1, 1))
            a.cpb_mlp[0].weight.normal_(0.0, 1.0)
            a.cpb_mlp[0].bias.normal_(0.0, 1.0)
            a.cpb_mlp[2].weight.normal_(0.0, 0.1)
        fc1, fc2 = m.mlp[0], m.mlp[3]
        fc1.weight.normal_(0.0, 1.0 / math.sqrt(c))
        fc1.bias.normal_(0.0, 0.5)
        fc2.weight.normal_(0.0, 1.0 / math.sqrt(fc1.out_features))
        fc2.bias.normal_(0.0, 0.5)
    x = torch.randn(batch, grid[0], grid[1], c, dtype=torch.float64)
    return m, x


def f32(t):
    return None if t is None else t.detach().to(torch.float32).numpy()


def block_from_state_dict(m, v2):
    """winattn.Block built from the module's state_dict tensors (torchvision's key names)."""
    sd = {k: v.to(torch.float32).numpy() for k, v in m.state_dict().items()}
    if v2:
        bias = dict(logit_scale=sd["attn.logit_scale"], cpb_weight1=sd["attn.cpb_mlp.0.weight"],
                    cpb_bias1=sd["attn.cpb_mlp.0.bias"], cpb_weight2=sd["attn.cpb_mlp.2.weight"])
    else:
        bias = dict(relative_position_bias_table=sd["attn.relative_position_bias_table"])
    return winattn.Block(
        m.norm1.weight.shape[0], m.attn.num_heads, m.attn.window_size, m.attn.shift_size,
        sd["attn.qkv.weight"], sd["attn.proj.weight"], qkv_bias=sd["attn.qkv.bias"], proj_bias=sd["attn.proj.bias"],
        norm1_weight=sd["norm1.weight"], norm1_bias=sd["norm1.bias"],
        norm2_weight=sd["norm2.weight"], norm2_bias=sd["norm2.bias"],
        fc1_weight=sd["mlp.0.weight"], fc1_bias=sd["mlp.0.bias"], fc2_weight=sd["mlp.3.weight"], fc2_bias=sd["mlp.3.bias"],
        post_norm=v2, norm_eps=m.norm1.eps, **bias)


def check_block(tc, out, ref, x, what):
    """The whole output and the block's own contribution (out - x) against the reference."""
    x = np.asarray(x, dtype=np.float64)
    assert_rel_close(tc, out, ref, RTOL, what)
    delta_ref = ref - x
    tc.assertGreater(np.max(np.abs(delta_ref)), 0.1 * np.max(np.abs(ref)), "%s: the block adds almost nothing" % what)
    assert_rel_close(tc, np.asarray(out, dtype=np.float64) - x, delta_ref, RTOL, what + " (out - x)")


class TestTorchvisionBlocks(unittest.TestCase):
    """SwinTransformerBlock (v1, pre-norm) and SwinTransformerBlockV2 (res-post-norm) in eval mode, float64."""

    def setUp(self):
        winattn.set_max_isa("native")

    def _parity(self, cls, cases, salt, isa="native"):
        v2 = cls is SwinTransformerBlockV2
        for case in cases:
            with self.subTest(block=cls.__name__, case=case, isa=isa):
                m, x = make_block(cls, case, _seed(case, salt))
                with torch.no_grad():
                    ref = m(x).numpy()
                with block_from_state_dict(m, v2) as block:
                    self.assertEqual(block.post_norm, v2)
                    check_block(self, block.forward(f32(x)), ref, f32(x), "%s state_dict %s %s" % (cls.__name__, case, isa))
                with winattn.Block.from_torchvision(m) as block:
                    check_block(self, block(x.numpy()), ref, f32(x), "%s from_torchvision %s %s" % (cls.__name__, case, isa))

    def test_v1(self):
        self._parity(SwinTransformerBlock, CASES, 1)

    def test_v2(self):
        self._parity(SwinTransformerBlockV2, CASES, 2)

    def test_every_isa(self):
        """The padded cases and one Swin-T stage 1 shape under every dispatch level the CPU supports."""
        try:
            for isa in supported_isas():
                winattn.set_max_isa(isa)
                self.assertEqual(winattn.active_isa(), isa)
                self._parity(SwinTransformerBlock, [CASES[4], CASES[5], CASES[1]], 3, isa)
                self._parity(SwinTransformerBlockV2, [CASES[4], CASES[5]], 4, isa)
        finally:
            winattn.set_max_isa("native")

    def test_threads_give_the_same_bits(self):
        m, x = make_block(SwinTransformerBlock, CASES[1], 5)
        x32 = f32(x)
        try:
            with winattn.Block.from_torchvision(m) as block:
                winattn.set_num_threads(1)
                one = block.forward(x32)
                winattn.set_num_threads(2)
                np.testing.assert_array_equal(block.forward(x32), one)
                for budget in (1, 2, 3):
                    block.num_threads = budget
                    self.assertEqual(block.num_threads, budget)
                    np.testing.assert_array_equal(block.forward(x32), one)
        finally:
            winattn.set_num_threads(0)


class TestBinding(unittest.TestCase):
    """The Python side of winattn.Block: argument checks, closing, torchvision modules it refuses."""

    def test_shapes_checked_before_c(self):
        m, x = make_block(SwinTransformerBlock, CASES[4], 6)
        with winattn.Block.from_torchvision(m) as block:
            with self.assertRaises(ValueError):
                block.forward(np.zeros((1, 13, 17, 63), dtype=np.float32))  # channels
            self.assertIn("pre-norm", repr(block))
        args = (64, 2, (7, 7), (3, 3), f32(m.attn.qkv.weight), f32(m.attn.proj.weight))
        parts = dict(norm1_weight=f32(m.norm1.weight), norm1_bias=f32(m.norm1.bias), norm2_weight=f32(m.norm2.weight),
                     norm2_bias=f32(m.norm2.bias), fc1_weight=f32(m.mlp[0].weight), fc2_weight=f32(m.mlp[3].weight))
        with self.assertRaises(ValueError):
            winattn.Block(*args, **dict(parts, norm1_bias=np.zeros(63, np.float32)))
        with self.assertRaises(ValueError):
            winattn.Block(*args, **dict(parts, fc2_weight=np.zeros((64, 255), np.float32)))
        with self.assertRaises(TypeError):
            winattn.Block(*args)  # the norms and the MLP are required
        with self.assertRaises(winattn.WinattnError) as err:
            winattn.Block(*args, norm_eps=-1.0, **parts)
        self.assertEqual(err.exception.status, winattn.STATUS_INVALID_ARGUMENT)
        self.assertIn("norm_eps", err.exception.message)
        with winattn.Block(*args, **parts) as block:  # the MLP biases may be None
            self.assertEqual(block.mlp_hidden, 256)
            with self.assertRaises(winattn.WinattnError):
                block.num_threads = winattn.MAX_THREADS + 1
        self.assertTrue(block.closed)
        with self.assertRaisesRegex(ValueError, "block: the block is closed"):
            block.forward(f32(x))
        block.close()  # once only

    def test_from_torchvision_refuses_an_approximate_gelu(self):
        m, _ = make_block(SwinTransformerBlock, CASES[4], 7)
        m.mlp[1] = torch.nn.GELU(approximate="tanh")
        with self.assertRaises(ValueError):
            winattn.Block.from_torchvision(m)


# ---- Video Swin (3D), float64 reference from the published formulation ------------------------------------


def video_swin_mask(padded, window, shift):
    """[nW][N][N] 0/-100 mask over the padded grid: regions [0, -w), [-w, -s), [-s, end) per axis."""
    img = torch.zeros(1, *padded, 1, dtype=torch.float64)
    label = 0
    for d in (slice(0, -window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
        for h in (slice(0, -window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
            for w in (slice(0, -window[2]), slice(-window[2], -shift[2]), slice(-shift[2], None)):
                img[:, d, h, w, :] = label
                label += 1
    windows = partition_3d(img, window).squeeze(-1)  # [nW][N]
    mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def partition_3d(x, window):
    """[B][D][H][W][C] -> [B * nW][N][C], windows in row-major order."""
    b, d, h, w, c = x.shape
    x = x.view(b, d // window[0], window[0], h // window[1], window[1], w // window[2], window[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, window[0] * window[1] * window[2], c)


def reverse_3d(windows, window, b, d, h, w):
    x = windows.view(b, d // window[0], h // window[1], w // window[2], window[0], window[1], window[2], -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, -1)


def relative_position_index_3d(window):
    coords = torch.stack(torch.meshgrid(*[torch.arange(s) for s in window], indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += window[0] - 1
    rel[:, :, 1] += window[1] - 1
    rel[:, :, 2] += window[2] - 1
    rel[:, :, 0] *= (2 * window[1] - 1) * (2 * window[2] - 1)
    rel[:, :, 1] *= 2 * window[2] - 1
    return rel.sum(-1)


class VideoSwinBlock:
    """Video Swin's SwinTransformerBlock3D in eval mode (float64), parameters random from a seed. post_norm
    swaps in SwinV2's order (x + norm1(attn(x)), x + norm2(mlp(x))) over the same attention."""

    def __init__(self, c, heads, window, shift, post_norm, seed):
        g = torch.Generator().manual_seed(seed)

        def rand(*shape, std=1.0, mean=0.0):
            return torch.randn(*shape, generator=g, dtype=torch.float64) * std + mean

        self.c, self.heads, self.window, self.shift, self.post_norm = c, heads, window, shift, post_norm
        n_table = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        hidden = 4 * c
        self.p = {
            "norm1.weight": rand(c, std=0.3, mean=1.0), "norm1.bias": rand(c, std=0.3),
            "norm2.weight": rand(c, std=0.3, mean=1.0), "norm2.bias": rand(c, std=0.3),
            "attn.qkv.weight": rand(3 * c, c, std=1.5 / math.sqrt(c)), "attn.qkv.bias": rand(3 * c, std=0.5),
            "attn.proj.weight": rand(c, c, std=1.0 / math.sqrt(c)), "attn.proj.bias": rand(c, std=0.5),
            "attn.relative_position_bias_table": rand(n_table, heads),
            "mlp.fc1.weight": rand(hidden, c, std=1.0 / math.sqrt(c)), "mlp.fc1.bias": rand(hidden, std=0.5),
            "mlp.fc2.weight": rand(c, hidden, std=1.0 / math.sqrt(hidden)), "mlp.fc2.bias": rand(c, std=0.5),
        }

    def _norm(self, x, which):
        return torch.nn.functional.layer_norm(x, (self.c,), self.p[which + ".weight"], self.p[which + ".bias"], 1e-5)

    def _attention(self, x):
        p, window = self.p, self.window
        b, d, h, w, c = x.shape
        pads = [(window[i] - s % window[i]) % window[i] for i, s in enumerate((d, h, w))]
        x = torch.nn.functional.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        padded = x.shape[1:4]
        shifted = any(s > 0 for s in self.shift)
        if shifted:
            x = torch.roll(x, shifts=tuple(-s for s in self.shift), dims=(1, 2, 3))
        windows = partition_3d(x, window)  # [B * nW][N][C]
        bw, n, _ = windows.shape
        hd = c // self.heads
        qkv = torch.nn.functional.linear(windows, p["attn.qkv.weight"], p["attn.qkv.bias"])
        qkv = qkv.reshape(bw, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        index = relative_position_index_3d(window).reshape(-1)
        bias = p["attn.relative_position_bias_table"][index].reshape(n, n, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if shifted:
            mask = video_swin_mask(padded, window, self.shift)
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, n, n)
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        out = torch.nn.functional.linear(out, p["attn.proj.weight"], p["attn.proj.bias"])
        x = reverse_3d(out, window, b, *padded)
        if shifted:
            x = torch.roll(x, shifts=tuple(self.shift), dims=(1, 2, 3))
        return x[:, :d, :h, :w, :].contiguous()

    def _mlp(self, x):
        p = self.p
        x = torch.nn.functional.gelu(torch.nn.functional.linear(x, p["mlp.fc1.weight"], p["mlp.fc1.bias"]))
        return torch.nn.functional.linear(x, p["mlp.fc2.weight"], p["mlp.fc2.bias"])

    def __call__(self, x):
        if not self.post_norm:
            x = x + self._attention(self._norm(x, "norm1"))  # Video Swin pads after norm1
            return x + self._mlp(self._norm(x, "norm2"))
        x = x + self._norm(self._attention(x), "norm1")
        return x + self._norm(self._mlp(x), "norm2")

    def winattn_block(self):
        p = {k: v.to(torch.float32).numpy() for k, v in self.p.items()}
        return winattn.Block(
            self.c, self.heads, self.window, self.shift, p["attn.qkv.weight"], p["attn.proj.weight"],
            qkv_bias=p["attn.qkv.bias"], proj_bias=p["attn.proj.bias"],
            relative_position_bias_table=p["attn.relative_position_bias_table"],
            norm1_weight=p["norm1.weight"], norm1_bias=p["norm1.bias"], norm2_weight=p["norm2.weight"],
            norm2_bias=p["norm2.bias"], fc1_weight=p["mlp.fc1.weight"], fc1_bias=p["mlp.fc1.bias"],
            fc2_weight=p["mlp.fc2.weight"], fc2_bias=p["mlp.fc2.bias"], post_norm=self.post_norm)


# (grid (D, H, W), channels, heads, window, shift, batch); every grid axis larger than its window, where
# Video Swin's rule (shrink the window to the input) and torchvision's (pad, drop the shift) agree.
CASES_3D = [
    ((4, 14, 14), 96, 3, (2, 7, 7), (1, 3, 3), 1),
    ((5, 9, 10), 48, 2, (2, 7, 7), (1, 3, 3), 2),  # padding on every axis
    ((4, 9, 9), 48, 2, (2, 7, 7), (0, 0, 0), 1),
    ((9, 8, 8), 32, 2, (8, 7, 7), (4, 3, 3), 1),  # 8x7x7 windows (n = 392), padded
]


class TestVideoSwin3D(unittest.TestCase):
    def test_3d_blocks(self):
        try:
            for isa in supported_isas():
                winattn.set_max_isa(isa)
                for case in CASES_3D:
                    for post_norm in (False, True):
                        if isa == "scalar" and case[3][0] == 8:
                            continue  # n = 392 on the scalar reference: slow, covered by the other ISAs
                        with self.subTest(case=case, post_norm=post_norm, isa=isa):
                            grid, c, heads, window, shift, batch = case
                            ref_block = VideoSwinBlock(c, heads, window, shift, post_norm, _seed(case, 8 + post_norm))
                            torch.manual_seed(_seed(case, 10))
                            x = torch.randn(batch, *grid, c, dtype=torch.float64)
                            ref = ref_block(x).numpy()
                            with ref_block.winattn_block() as block:
                                out = block.forward(f32(x))
                            check_block(self, out, ref, f32(x), "3D %s post_norm=%s %s" % (case, post_norm, isa))
        finally:
            winattn.set_max_isa("native")


if __name__ == "__main__":
    unittest.main()
