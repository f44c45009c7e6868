"""3D (Video Swin) shifted-window attention against a PyTorch float64 reference written here.

The reference follows Video Swin's WindowAttention3D / SwinTransformerBlock3D: zero-pad D, H, W at the end
to window multiples, roll by -shift over the three axes (the shift of an axis whose window covers the whole
padded axis is dropped, as the header specifies), partition into windows row-major, qkv, q * head_dim^-0.5,
relative position bias from a [(2Wd-1)(2Wh-1)(2Ww-1)][heads] table through a 3D index built from
coordinates, the -100 mask from 3D regions when any shift > 0, softmax, @ v, proj, reverse.
"""

import math
import unittest
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from winattn_testutil import assert_rel_close, supported_isas, winattn

RTOL = 1e-4

# (grid (D, H, W), window, shift, batch, channels, heads, qkv_bias, proj_bias)
CASES = [
    ((8, 14, 14), (2, 7, 7), (1, 3, 3), 1, 96, 3, True, True),
    ((4, 8, 8), (2, 4, 4), (0, 0, 0), 2, 64, 2, True, True),
    ((3, 10, 9), (2, 4, 4), (1, 2, 2), 2, 96, 3, True, False),  # padding on every axis
    ((4, 8, 8), (2, 4, 4), (1, 0, 2), 1, 64, 2, False, True),  # shift on some axes only
    ((2, 6, 5), (2, 4, 4), (1, 2, 2), 2, 64, 2, False, False),  # depth == window: its shift is dropped
    ((1, 9, 9), (1, 4, 4), (0, 2, 2), 2, 64, 2, True, True),  # 2D problem written in 3D
]


def relative_position_index_3d(window):
    """The Video Swin 3D index, built from token coordinates: [N][N] int64."""
    wd, wh, ww = window
    coords = torch.stack(
        torch.meshgrid(torch.arange(wd), torch.arange(wh), torch.arange(ww), indexing="ij")
    ).flatten(1)  # 3, N
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()  # N, N, 3
    rel[:, :, 0] += wd - 1
    rel[:, :, 1] += wh - 1
    rel[:, :, 2] += ww - 1
    rel[:, :, 0] *= (2 * wh - 1) * (2 * ww - 1)
    rel[:, :, 1] *= 2 * ww - 1
    return rel.sum(-1)


def partition(x, window):
    """[B, D, H, W, C] (multiples of window) -> [B * nW, N, C], windows row-major."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


def reverse(xw, window, b, d, h, w):
    """Inverse of partition."""
    wd, wh, ww = window
    c = xw.shape[-1]
    x = xw.view(b, d // wd, h // wh, w // ww, wd, wh, ww, c)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, c)


def region_mask_3d(padded, window, shift):
    """The [nW, N, N] mask (0 / -100) from the 3D regions of the shifted grid, Video Swin's compute_mask."""
    dp, hp, wp = padded
    img = torch.zeros(1, dp, hp, wp, 1, dtype=torch.float64)
    cnt = 0
    for sd in (slice(-window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
        for sh in (slice(-window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
            for sw in (slice(-window[2]), slice(-window[2], -shift[2]), slice(-shift[2], None)):
                img[:, sd, sh, sw, :] = cnt
                cnt += 1
    mw = partition(img, window).squeeze(-1)  # nW, N
    m = mw.unsqueeze(1) - mw.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def video_swin_reference(x, qkv_w, qkv_b, proj_w, proj_b, bias, window, shift, heads):
    """Float64 reference of Video Swin's (shifted) window attention. bias: [heads][N][N] or None."""
    b, d, h, w, c = x.shape
    pads = [(-s) % win for s, win in zip((d, h, w), window)]
    x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
    padded = x.shape[1:4]
    shift = [0 if window[i] >= padded[i] else shift[i] for i in range(3)]
    if any(s > 0 for s in shift):
        x = torch.roll(x, shifts=(-shift[0], -shift[1], -shift[2]), dims=(1, 2, 3))
    xw = partition(x, window)
    bw, n, _ = xw.shape
    hd = c // heads
    qkv = F.linear(xw, qkv_w, qkv_b).reshape(bw, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
    attn = q @ k.transpose(-2, -1)
    if bias is not None:
        attn = attn + bias.unsqueeze(0)
    if any(s > 0 for s in shift):
        mask = region_mask_3d(padded, window, shift)
        nw = mask.shape[0]
        attn = attn.view(bw // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, n, n)
    attn = torch.softmax(attn, dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(bw, n, c)
    out = F.linear(out, proj_w, proj_b)
    out = reverse(out, window, b, *padded)
    if any(s > 0 for s in shift):
        out = torch.roll(out, shifts=tuple(shift), dims=(1, 2, 3))
    return out[:, :d, :h, :w, :].contiguous()


def make_case(case):
    """Random float64 weights, bias table, looked-up bias and input for a case."""
    grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
    g = torch.Generator().manual_seed(zlib.crc32(repr(case).encode()))
    rows = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
    p = dict(
        qkv_w=torch.randn(3 * c, c, generator=g, dtype=torch.float64) * (1.5 / math.sqrt(c)),
        qkv_b=torch.randn(3 * c, generator=g, dtype=torch.float64) * 0.5 if qkv_bias else None,
        proj_w=torch.randn(c, c, generator=g, dtype=torch.float64) / math.sqrt(c),
        proj_b=torch.randn(c, generator=g, dtype=torch.float64) * 0.5 if proj_bias else None,
        table=torch.randn(rows, heads, generator=g, dtype=torch.float64),
    )
    n = window[0] * window[1] * window[2]
    idx = relative_position_index_3d(window)
    p["bias"] = p["table"][idx.reshape(-1)].reshape(n, n, heads).permute(2, 0, 1).contiguous()
    x = torch.randn(batch, *grid, c, generator=g, dtype=torch.float64)
    return x, p


def f32(t):
    """A torch tensor (or None) as a float32 numpy array (or None)."""
    return None if t is None else t.to(torch.float32).numpy()


class TestVideoSwin3D(unittest.TestCase):
    """winattn's 3D stateless function and Layer against the reference above."""

    def setUp(self):
        winattn.set_max_isa("native")

    def test_stateless_and_layer(self):
        for case in CASES:
            with self.subTest(case=case):
                grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
                x, p = make_case(case)
                ref = video_swin_reference(
                    x, p["qkv_w"], p["qkv_b"], p["proj_w"], p["proj_b"], p["bias"], window, shift, heads
                ).numpy()
                x32 = f32(x)
                kw = dict(qkv_bias=f32(p["qkv_b"]), proj_bias=f32(p["proj_b"]))
                out_fn = winattn.shifted_window_attention(
                    x32, f32(p["qkv_w"]), f32(p["proj_w"]), heads, window, shift,
                    relative_position_bias=f32(p["bias"]), **kw
                )
                self.assertEqual(out_fn.shape, x32.shape)
                assert_rel_close(self, out_fn, ref, RTOL, "3D stateless %s" % (case,))
                with winattn.Layer(
                    c, heads, window, shift, f32(p["qkv_w"]), f32(p["proj_w"]),
                    relative_position_bias_table=f32(p["table"]), **kw
                ) as layer:
                    out_layer = layer.forward(x32)
                assert_rel_close(self, out_layer, ref, RTOL, "3D Layer %s" % (case,))
                assert_rel_close(self, out_layer, out_fn, 1e-5, "3D Layer vs stateless %s" % (case,))

    def test_no_bias(self):
        case = CASES[2]
        grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
        x, p = make_case(case)
        ref = video_swin_reference(
            x, p["qkv_w"], p["qkv_b"], p["proj_w"], p["proj_b"], None, window, shift, heads
        ).numpy()
        out = winattn.shifted_window_attention(
            f32(x), f32(p["qkv_w"]), f32(p["proj_w"]), heads, window, shift,
            qkv_bias=f32(p["qkv_b"]), proj_bias=f32(p["proj_b"])
        )
        assert_rel_close(self, out, ref, RTOL, "3D stateless without bias")

    def test_every_isa(self):
        try:
            for isa in supported_isas():
                winattn.set_max_isa(isa)
                case = CASES[2]
                with self.subTest(isa=isa):
                    grid, window, shift, batch, c, heads, qkv_bias, proj_bias = case
                    x, p = make_case(case)
                    ref = video_swin_reference(
                        x, p["qkv_w"], p["qkv_b"], p["proj_w"], p["proj_b"], p["bias"], window, shift, heads
                    ).numpy()
                    with winattn.Layer(
                        c, heads, window, shift, f32(p["qkv_w"]), f32(p["proj_w"]),
                        qkv_bias=f32(p["qkv_b"]), proj_bias=f32(p["proj_b"]),
                        relative_position_bias_table=f32(p["table"])
                    ) as layer:
                        assert_rel_close(self, layer.forward(f32(x)), ref, RTOL, "3D Layer under %s" % isa)
        finally:
            winattn.set_max_isa("native")

    def test_index_and_mask_3d(self):
        """The 3D lookups: relative_position_index and shifted_window_mask against the reference's."""
        for window in [(2, 7, 7), (2, 4, 4), (3, 2, 5)]:
            with self.subTest(window=window):
                got = winattn.relative_position_index(window)
                self.assertEqual(got.dtype, np.int64)
                np.testing.assert_array_equal(got, relative_position_index_3d(window).numpy())
        for grid, window, shift in [
            ((8, 14, 14), (2, 7, 7), (1, 3, 3)),
            ((4, 8, 12), (2, 4, 4), (1, 0, 2)),
            ((6, 8, 8), (3, 4, 4), (2, 3, 1)),
        ]:
            with self.subTest(grid=grid, window=window, shift=shift):
                got = winattn.shifted_window_mask(grid, window, shift)
                np.testing.assert_array_equal(got, region_mask_3d(grid, window, shift).numpy())


if __name__ == "__main__":
    unittest.main()
