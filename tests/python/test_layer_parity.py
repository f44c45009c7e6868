"""Parity of winattn's shifted-window attention layer with torchvision itself.

The reference is torchvision.models.swin_transformer.shifted_window_attention (and the
ShiftedWindowAttention / ShiftedWindowAttentionV2 modules) evaluated in float64; winattn runs in float32.
Criterion: max|err| <= 1e-4 * max|out_ref|.
"""

import math
import unittest
import zlib

import numpy as np
import torch
from torchvision.models.swin_transformer import (
    ShiftedWindowAttention,
    ShiftedWindowAttentionV2,
    shifted_window_attention,
)

from winattn_testutil import assert_rel_close, supported_isas, winattn

RTOL = 1e-4

# (grid (H, W), window, shift, batch, channels, heads, qkv_bias, proj_bias)
CASES = [
    ((56, 56), (7, 7), (0, 0), 1, 96, 3, True, True),
    ((56, 56), (7, 7), (3, 3), 2, 96, 3, True, True),
    ((30, 30), (7, 7), (3, 3), 2, 192, 6, False, True),
    ((30, 30), (7, 7), (0, 0), 1, 64, 2, True, False),
    ((13, 17), (7, 7), (3, 3), 3, 64, 2, True, False),
    ((13, 17), (7, 7), (0, 0), 2, 96, 3, False, False),
    ((7, 7), (7, 7), (3, 3), 4, 96, 3, True, True),  # window == grid: torchvision drops the shift
    ((7, 7), (7, 7), (0, 0), 1, 64, 2, False, False),
    ((5, 5), (7, 7), (3, 3), 2, 64, 2, True, True),  # grid smaller than the window
    ((12, 18), (4, 6), (2, 3), 2, 96, 3, True, True),  # non-square window
    ((9, 14), (4, 6), (2, 3), 1, 64, 2, True, False),
    ((9, 14), (4, 6), (0, 0), 2, 192, 6, False, True),
    ((12, 18), (4, 6), (0, 3), 1, 64, 2, True, True),  # shift on one axis only
]

# A smaller set for SwinV2 (cosine attention, continuous position bias).
CASES_V2 = [
    ((56, 56), (7, 7), (3, 3), 1, 96, 3, True, True),
    ((30, 30), (7, 7), (0, 0), 2, 192, 6, True, False),
    ((13, 17), (7, 7), (3, 3), 2, 64, 2, False, True),
    ((7, 7), (7, 7), (3, 3), 3, 96, 3, True, True),
    ((5, 5), (7, 7), (3, 3), 2, 64, 2, True, False),
    ((12, 18), (4, 6), (2, 3), 2, 96, 3, True, True),
    ((9, 14), (4, 6), (2, 3), 4, 64, 2, False, False),
]


def _seed(case, salt):
    """A deterministic seed per case."""
    return (zlib.crc32(repr(case).encode()) ^ salt) & 0x7FFFFFFF


def make_v1(case, seed):
    """A float64 eval-mode torchvision ShiftedWindowAttention with random parameters, and an input."""
    grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
    torch.manual_seed(seed)
    m = ShiftedWindowAttention(c, list(window), list(shift), heads, qkv_bias=qkv_bias, proj_bias=proj_bias)
    m = m.double().eval()
    with torch.no_grad():
        # Large enough weights that the softmax is far from uniform and the bias matters.
        m.qkv.weight.normal_(0.0, 1.5 / math.sqrt(c))
        m.proj.weight.normal_(0.0, 1.0 / math.sqrt(c))
        if qkv_bias:
            m.qkv.bias.normal_(0.0, 0.5)
        if proj_bias:
            m.proj.bias.normal_(0.0, 0.5)
        m.relative_position_bias_table.normal_(0.0, 1.0)
    x = torch.randn(batch, grid[0], grid[1], c, dtype=torch.float64)
    return m, x


def make_v2(case, seed):
    """A float64 eval-mode torchvision ShiftedWindowAttentionV2 with random parameters, and an input.

    logit_scale is drawn in [log 5, log 200], so some heads hit the clamp at log 100.
    """
    grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
    torch.manual_seed(seed)
    m = ShiftedWindowAttentionV2(c, list(window), list(shift), heads, qkv_bias=qkv_bias, proj_bias=proj_bias)
    m = m.double().eval()
    with torch.no_grad():
        m.qkv.weight.normal_(0.0, 1.0 / math.sqrt(c))
        m.proj.weight.normal_(0.0, 1.0 / math.sqrt(c))
        if qkv_bias:
            m.qkv.bias.normal_(0.0, 0.5)  # includes the k third, which v2 must ignore
        if proj_bias:
            m.proj.bias.normal_(0.0, 0.5)
        ls = torch.empty(heads).uniform_(math.log(5.0), math.log(200.0))
        ls[0] = math.log(150.0)  # at least one head above the clamp
        m.logit_scale.copy_(ls.view(heads, 1, 1))
        m.cpb_mlp[0].weight.normal_(0.0, 1.0)
        m.cpb_mlp[0].bias.normal_(0.0, 1.0)
        m.cpb_mlp[2].weight.normal_(0.0, 0.1)
    x = torch.randn(batch, grid[0], grid[1], c, dtype=torch.float64)
    return m, x


def f32(t):
    """A torch tensor (or None) as a float32 numpy array (or None)."""
    return None if t is None else t.detach().to(torch.float32).numpy()


def reference(m, x, logit_scale=None):
    """torchvision's functional shifted_window_attention in float64 with the module's own bias."""
    with torch.no_grad():
        bias = m.get_relative_position_bias()
        out = shifted_window_attention(
            x,
            m.qkv.weight,
            m.proj.weight,
            bias,
            m.window_size,
            m.num_heads,
            shift_size=list(m.shift_size),
            qkv_bias=m.qkv.bias,
            proj_bias=m.proj.bias,
            logit_scale=logit_scale,
        )
    return out.numpy(), bias


class TestV1Parity(unittest.TestCase):
    """Swin v1: scaled dot product + relative position bias table."""

    def setUp(self):
        winattn.set_max_isa("native")

    def test_stateless_and_layer(self):
        for i, case in enumerate(CASES):
            with self.subTest(case=case):
                m, x = make_v1(case, _seed(case, 1))
                grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
                ref, bias = reference(m, x)
                x32 = f32(x)
                out_fn = winattn.shifted_window_attention(
                    x32,
                    f32(m.qkv.weight),
                    f32(m.proj.weight),
                    heads,
                    window,
                    shift,
                    qkv_bias=f32(m.qkv.bias),
                    proj_bias=f32(m.proj.bias),
                    relative_position_bias=f32(bias[0]),
                )
                self.assertEqual(out_fn.dtype, np.float32)
                assert_rel_close(self, out_fn, ref, RTOL, "stateless %s" % (case,))
                with winattn.Layer(
                    c,
                    heads,
                    window,
                    shift,
                    f32(m.qkv.weight),
                    f32(m.proj.weight),
                    qkv_bias=f32(m.qkv.bias),
                    proj_bias=f32(m.proj.bias),
                    relative_position_bias_table=f32(m.relative_position_bias_table),
                ) as layer:
                    out_layer = layer.forward(x32)
                assert_rel_close(self, out_layer, ref, RTOL, "Layer %s" % (case,))
                # Layer (own bias lookup, prepacked weights) against the stateless function: same float32 inputs.
                assert_rel_close(self, out_layer, out_fn, 1e-5, "Layer vs stateless %s" % (case,))

    def test_no_relative_position_bias(self):
        for case in [CASES[1], CASES[4], CASES[9]]:
            with self.subTest(case=case):
                m, x = make_v1(case, _seed(case, 2))
                with torch.no_grad():
                    m.relative_position_bias_table.zero_()
                grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
                ref, _ = reference(m, x)
                args = (f32(m.qkv.weight), f32(m.proj.weight))
                kw = dict(qkv_bias=f32(m.qkv.bias), proj_bias=f32(m.proj.bias))
                out_fn = winattn.shifted_window_attention(f32(x), args[0], args[1], heads, window, shift, **kw)
                assert_rel_close(self, out_fn, ref, RTOL, "stateless, no bias %s" % (case,))
                with winattn.Layer(c, heads, window, shift, *args, **kw) as layer:
                    assert_rel_close(self, layer.forward(f32(x)), ref, RTOL, "Layer, no bias %s" % (case,))

    def test_module_state_dict(self):
        """torchvision's ShiftedWindowAttention module (eval, double) vs a Layer built from its state_dict."""
        for case in [CASES[1], CASES[2], CASES[4], CASES[8], CASES[9], CASES[11]]:
            with self.subTest(case=case):
                m, x = make_v1(case, _seed(case, 3))
                grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
                with torch.no_grad():
                    ref = m(x).numpy()
                sd = {k: v.to(torch.float32).numpy() for k, v in m.state_dict().items()}
                layer = winattn.Layer(
                    c,
                    heads,
                    m.window_size,
                    m.shift_size,
                    sd["qkv.weight"],
                    sd["proj.weight"],
                    qkv_bias=sd.get("qkv.bias"),
                    proj_bias=sd.get("proj.bias"),
                    relative_position_bias_table=sd["relative_position_bias_table"],
                )
                try:
                    out = layer.forward(x.numpy())  # float64 input: the binding converts it
                finally:
                    layer.close()
                assert_rel_close(self, out, ref, RTOL, "module %s" % (case,))

    def test_every_isa(self):
        """A few cases under every dispatch level the CPU supports."""
        try:
            for isa in supported_isas():
                winattn.set_max_isa(isa)
                self.assertEqual(winattn.active_isa(), isa)
                for case in [CASES[4], CASES[10]]:
                    with self.subTest(isa=isa, case=case):
                        m, x = make_v1(case, _seed(case, 4))
                        grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
                        ref, bias = reference(m, x)
                        out = winattn.shifted_window_attention(
                            f32(x),
                            f32(m.qkv.weight),
                            f32(m.proj.weight),
                            heads,
                            window,
                            shift,
                            qkv_bias=f32(m.qkv.bias),
                            proj_bias=f32(m.proj.bias),
                            relative_position_bias=f32(bias),  # torchvision's [1][H][N][N] is accepted
                        )
                        assert_rel_close(self, out, ref, RTOL, "%s %s" % (isa, case))
        finally:
            winattn.set_max_isa("native")


class TestV2Parity(unittest.TestCase):
    """SwinV2: cosine attention, clamped logit scale, continuous position bias (16*sigmoid(MLP))."""

    def setUp(self):
        winattn.set_max_isa("native")

    def test_stateless_and_layer(self):
        for case in CASES_V2:
            with self.subTest(case=case):
                m, x = make_v2(case, _seed(case, 5))
                grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
                ref, bias = reference(m, x, logit_scale=m.logit_scale)
                x32 = f32(x)
                weights = (f32(m.qkv.weight), f32(m.proj.weight))
                kw = dict(qkv_bias=f32(m.qkv.bias), proj_bias=f32(m.proj.bias), logit_scale=f32(m.logit_scale))
                out_fn = winattn.shifted_window_attention(
                    x32, weights[0], weights[1], heads, window, shift, relative_position_bias=f32(bias[0]), **kw
                )
                assert_rel_close(self, out_fn, ref, RTOL, "v2 stateless %s" % (case,))
                with winattn.Layer(
                    c,
                    heads,
                    window,
                    shift,
                    *weights,
                    cpb_weight1=f32(m.cpb_mlp[0].weight),
                    cpb_bias1=f32(m.cpb_mlp[0].bias),
                    cpb_weight2=f32(m.cpb_mlp[2].weight),
                    **kw,
                ) as layer:
                    out_layer = layer.forward(x32)
                assert_rel_close(self, out_layer, ref, RTOL, "v2 Layer %s" % (case,))
                # The Layer computes its bias from the MLP in float32, the stateless call got torch's float64 one
                # rounded: compare at the same tolerance as against torch.
                assert_rel_close(self, out_layer, out_fn, RTOL, "v2 Layer vs stateless %s" % (case,))

    def test_module_state_dict(self):
        """torchvision's ShiftedWindowAttentionV2 module (eval, double) vs a Layer built from its state_dict."""
        for case in [CASES_V2[0], CASES_V2[2], CASES_V2[4], CASES_V2[5]]:
            with self.subTest(case=case):
                m, x = make_v2(case, _seed(case, 6))
                grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
                with torch.no_grad():
                    ref = m(x).numpy()
                sd = {k: v.to(torch.float32).numpy() for k, v in m.state_dict().items()}
                with winattn.Layer(
                    c,
                    heads,
                    m.window_size,
                    m.shift_size,
                    sd["qkv.weight"],
                    sd["proj.weight"],
                    qkv_bias=sd.get("qkv.bias"),
                    proj_bias=sd.get("proj.bias"),
                    logit_scale=sd["logit_scale"],  # [heads][1][1] as torchvision stores it
                    cpb_weight1=sd["cpb_mlp.0.weight"],
                    cpb_bias1=sd["cpb_mlp.0.bias"],
                    cpb_weight2=sd["cpb_mlp.2.weight"],
                ) as layer:
                    out = layer.forward(x.numpy())
                assert_rel_close(self, out, ref, RTOL, "v2 module %s" % (case,))

    def test_v2_without_position_bias(self):
        """v2 with logit_scale but no position bias at all (Layer with no cpb, stateless with no bias)."""
        case = CASES_V2[3]
        m, x = make_v2(case, _seed(case, 7))
        grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
        with torch.no_grad():
            zero = torch.zeros(1, heads, window[0] * window[1], window[0] * window[1], dtype=torch.float64)
            ref = shifted_window_attention(
                x,
                m.qkv.weight,
                m.proj.weight,
                zero,
                list(window),
                heads,
                shift_size=list(shift),
                qkv_bias=m.qkv.bias,
                proj_bias=m.proj.bias,
                logit_scale=m.logit_scale,
            ).numpy()
        weights = (f32(m.qkv.weight), f32(m.proj.weight))
        kw = dict(qkv_bias=f32(m.qkv.bias), proj_bias=f32(m.proj.bias), logit_scale=f32(m.logit_scale))
        out_fn = winattn.shifted_window_attention(f32(x), weights[0], weights[1], heads, window, shift, **kw)
        assert_rel_close(self, out_fn, ref, RTOL, "v2 stateless, no bias")
        with winattn.Layer(c, heads, window, shift, *weights, **kw) as layer:
            assert_rel_close(self, layer.forward(f32(x)), ref, RTOL, "v2 Layer, no bias")


if __name__ == "__main__":
    unittest.main()
