"""AIM-style temporal attention (attention across the T frames of each spatial token) through winattn.

A video adapter such as AIM ("AIM: Adapting Image Models for Efficient Video Action Recognition") runs, in
each block, an attention over the frames of every spatial token: the activation is rearranged to
[T][B*L][C] (L spatial tokens per frame), multi-head attention runs along the T axis with a per-head
temporal relative position bias added to the logits, and the output goes back to the block's layout. With
winattn this is the layer with window (T, 1, 1) and no shift: on a [batch][depth = T][height][width][C]
input every spatial token's T frames form one window, and a v1 bias table of (2T-1) x heads rows is
indexed by t_i - t_j + T - 1 (winattn_relative_position_index with ndim 1, and with ndim 3 for (T, 1, 1)).

The reference is written here in float64 from the published formulation:
    q, k, v = x W_qkv^T + b_qkv                (per frame, per spatial token; heads split the channels)
    logits[h][i][j] = head_dim^-0.5 q_i.k_j + temporal_position_bias_table[t_relative_coords[i][j]][h]
    t_relative_coords[i][j] = t_i - t_j + T - 1
    out = softmax_j(logits) v, heads merged, then x W_proj^T + b_proj
plus two PyTorch float32 versions of the same module, as AIM's code computes it on [T][B*L][C]: explicit
ops (qkv Linear, reshape, q k^T * scale + bias, softmax, @ v, proj) and nn.MultiheadAttention with the
bias passed as a per-(batch, head) additive attn_mask.

The layouts: winattn's window (T, 1, 1) never mixes spatial tokens, so every layout in which each token's T
frames sit at a fixed stride maps onto its [batch][depth][height][width][C] input as a numpy *view* (no copy):
    [B*T][L][C]  (batch-first ViT: frames of a clip adjacent)  -> [B][T][H][W][C]  (or [B][T][1][L][C])
    [L][B*T][C]  (sequence-first CLIP ViT, AIM's block input)  -> [L*B][T][1][1][C]
    [T][B*L][C]  (AIM's temporal layout after its rearrange)    -> [1][T][B*L][1][C]
and the output comes back in the same layout (reshape back, again a view). The tests below feed each view
and check it against the reference computed on [T][B*L][C].

The tests are made to fail on the mistakes that matter: the bias table is random and not symmetric
(t_i - t_j and t_j - t_i pick different rows; a flipped sign moves the result far past the tolerance, which
is checked), and the bias, the projections' biases and every head contribute well above the tolerance.
"""

import unittest
import zlib

import numpy as np
import torch
import torch.nn as nn

from winattn_testutil import assert_rel_close, max_abs, supported_isas, winattn

# fp32 against float64, relative to max|output| (seen: ~1e-7 to 1e-6).
RTOL = 1e-5

# (T, B, H, W, C, heads, qkv_bias, proj_bias): H x W spatial tokens per frame, L = H * W.
CASES = [
    (8, 2, 2, 3, 768, 12, True, True),  # ViT-B/16 width, small grid
    (8, 1, 3, 3, 768, 12, False, False),
    (16, 2, 2, 2, 768, 12, True, False),
    (16, 1, 2, 3, 768, 12, False, True),
    (8, 3, 3, 2, 64, 4, True, True),  # head_dim 16
    (16, 2, 1, 5, 96, 3, True, True),  # head_dim 32
    (8, 1, 1, 197, 96, 3, True, True),  # L = 197: 196 patches + CLS, as one row of tokens
    (8, 1, 1, 1, 32, 2, True, True),  # a single spatial token
]


def t_relative_coords(t):
    """AIM's temporal relative position index: [T][T], entry t_i - t_j + T - 1 (from coordinates)."""
    frames = np.arange(t)
    return frames[:, None] - frames[None, :] + (t - 1)


def make_case(case):
    """Random float64 input in AIM's [T][B*L][C] layout, weights, and a non-symmetric bias table."""
    t, b, h, w, c, heads, with_qkv_bias, with_proj_bias = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    p = dict(
        qkv_w=rng.standard_normal((3 * c, c)) * (1.5 / np.sqrt(c)),
        qkv_b=rng.standard_normal(3 * c) * 0.5 if with_qkv_bias else None,
        proj_w=rng.standard_normal((c, c)) / np.sqrt(c),
        proj_b=rng.standard_normal(c) * 0.5 if with_proj_bias else None,
        # temporal_position_bias_table: (2T-1) x heads, random, so row T-1+d differs from row T-1-d.
        table=rng.standard_normal((2 * t - 1, heads)) * 1.5,
    )
    x = rng.standard_normal((t, b * h * w, c))  # [T][B*L][C]
    return x, p


def f32(a):
    """An array (or None) as float32 numpy (or None)."""
    return None if a is None else np.ascontiguousarray(a, dtype=np.float32)


def aim_reference(x, qkv_w, qkv_b, proj_w, proj_b, table, heads, index=None):
    """Float64 temporal attention of AIM on x [T][N][C] (N = B*L); returns [T][N][C].

    index: the [T][T] row index into table (default t_relative_coords(T)); None table: no bias.
    """
    t, n, c = x.shape
    hd = c // heads
    qkv = x @ qkv_w.T
    if qkv_b is not None:
        qkv = qkv + qkv_b
    qkv = qkv.reshape(t, n, 3, heads, hd).transpose(2, 1, 3, 0, 4)  # [3][N][heads][T][hd]
    q, k, v = qkv[0], qkv[1], qkv[2]
    logits = (q @ k.transpose(0, 1, 3, 2)) * hd ** -0.5  # [N][heads][T][T]
    if table is not None:
        idx = t_relative_coords(t) if index is None else index
        logits = logits + table[idx].transpose(2, 0, 1)[None]  # bias[h][i][j] = table[idx[i][j]][h]
    logits = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=-1, keepdims=True)
    out = (weights @ v).transpose(2, 0, 1, 3).reshape(t, n, c)  # [T][N][heads*hd]
    out = out @ proj_w.T
    if proj_b is not None:
        out = out + proj_b
    return out


class AimTemporalAttention(nn.Module):
    """AIM's temporal attention on [T][N][C] in PyTorch, written with explicit ops: qkv Linear, split heads,
    q k^T * scale + temporal_position_bias_table[t_relative_coords], softmax over the frames, @ v, proj."""

    def __init__(self, dim, num_heads, num_frames, qkv_bias=True, proj_bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.temporal_position_bias_table = nn.Parameter(torch.zeros(2 * num_frames - 1, num_heads))
        frames = torch.arange(num_frames)
        self.register_buffer("t_relative_coords", frames[:, None] - frames[None, :] + num_frames - 1)

    def temporal_bias(self):
        """[heads][T][T]: the table looked up through t_relative_coords."""
        t = self.t_relative_coords.shape[0]
        bias = self.temporal_position_bias_table[self.t_relative_coords.reshape(-1)]
        return bias.reshape(t, t, self.num_heads).permute(2, 0, 1)

    def forward(self, x):
        t, n, c = x.shape
        qkv = self.qkv(x).reshape(t, n, 3, self.num_heads, c // self.num_heads).permute(2, 1, 3, 0, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [N][heads][T][hd]
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.temporal_bias().unsqueeze(0)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).permute(2, 0, 1, 3).reshape(t, n, c)
        return self.proj(out)


def aim_torch_module(c, heads, t, p):
    """The explicit-ops module in float32, loaded with the case's weights."""
    m = AimTemporalAttention(c, heads, t, qkv_bias=p["qkv_b"] is not None, proj_bias=p["proj_b"] is not None)
    with torch.no_grad():
        m.qkv.weight.copy_(torch.from_numpy(p["qkv_w"]))
        if p["qkv_b"] is not None:
            m.qkv.bias.copy_(torch.from_numpy(p["qkv_b"]))
        m.proj.weight.copy_(torch.from_numpy(p["proj_w"]))
        if p["proj_b"] is not None:
            m.proj.bias.copy_(torch.from_numpy(p["proj_b"]))
        m.temporal_position_bias_table.copy_(torch.from_numpy(p["table"]))
    return m.eval()


def mha_forward(x, c, heads, t, p):
    """The same attention through nn.MultiheadAttention (as CLIP-based blocks hold it), float32: in_proj_weight
    is the stacked [q; k; v] weight, and the temporal bias goes in as an additive float attn_mask of shape
    [N*heads][T][T] (entry n*heads + h)."""
    bias = p["qkv_b"] is not None or p["proj_b"] is not None
    mha = nn.MultiheadAttention(c, heads, bias=bias).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.from_numpy(p["qkv_w"]))
        mha.out_proj.weight.copy_(torch.from_numpy(p["proj_w"]))
        if bias:
            zero3, zero = np.zeros(3 * c), np.zeros(c)
            mha.in_proj_bias.copy_(torch.from_numpy(p["qkv_b"] if p["qkv_b"] is not None else zero3))
            mha.out_proj.bias.copy_(torch.from_numpy(p["proj_b"] if p["proj_b"] is not None else zero))
    n = x.shape[1]
    table = torch.from_numpy(p["table"]).to(torch.float32)
    rel = torch.from_numpy(t_relative_coords(t)).reshape(-1)
    bias_hij = table[rel].reshape(t, t, heads).permute(2, 0, 1)  # [heads][T][T]
    mask = bias_hij.unsqueeze(0).expand(n, heads, t, t).reshape(n * heads, t, t)
    xt = torch.from_numpy(x).to(torch.float32)
    with torch.no_grad():
        out, _ = mha(xt, xt, xt, need_weights=False, attn_mask=mask)
    return out.numpy()


def views_of(x_tnc, b, h, w):
    """The three AIM/ViT layouts of one activation as numpy arrays, each with the zero-copy winattn view.

    Returns [(name, layout array, winattn input view, back-to-layout function)]; x_tnc is [T][B*L][C] float32.
    """
    t, n, c = x_tnc.shape
    l = h * w
    assert n == b * l
    x_btlc = np.ascontiguousarray(x_tnc.reshape(t, b, l, c).transpose(1, 0, 2, 3))  # [B][T][L][C]
    x_bt_l_c = x_btlc.reshape(b * t, l, c)  # batch-first ViT: [B*T][L][C]
    x_l_bt_c = np.ascontiguousarray(x_btlc.transpose(2, 0, 1, 3)).reshape(l, b * t, c)  # CLIP: [L][B*T][C]
    x_t_bl_c = np.ascontiguousarray(x_tnc)  # AIM's temporal layout [T][B*L][C]
    return [
        ("[B*T][L][C] -> [B][T][H][W][C]", x_bt_l_c, x_bt_l_c.reshape(b, t, h, w, c),
         lambda y: y.reshape(b * t, l, c)),
        ("[L][B*T][C] -> [L*B][T][1][1][C]", x_l_bt_c, x_l_bt_c.reshape(l * b, t, 1, 1, c),
         lambda y: y.reshape(l, b * t, c)),
        ("[T][B*L][C] -> [1][T][B*L][1][C]", x_t_bl_c, x_t_bl_c.reshape(1, t, b * l, 1, c),
         lambda y: y.reshape(t, b * l, c)),
    ]


def to_tnc(name, y, t, b, h, w):
    """A result in one of the layouts of views_of back to [T][B*L][C] (for comparing with the reference)."""
    l, c = h * w, y.shape[-1]
    if name.startswith("[B*T][L][C]"):
        return y.reshape(b, t, l, c).transpose(1, 0, 2, 3).reshape(t, b * l, c)
    if name.startswith("[L][B*T][C]"):
        return y.reshape(l, b, t, c).transpose(2, 1, 0, 3).reshape(t, b * l, c)
    return y.reshape(t, b * l, c)


def winattn_layer(c, heads, t, p):
    """winattn.Layer for AIM's temporal attention: window (T, 1, 1), no shift, the (2T-1) x heads table."""
    return winattn.Layer(c, heads, (t, 1, 1), (0, 0, 0), f32(p["qkv_w"]), f32(p["proj_w"]),
                         qkv_bias=f32(p["qkv_b"]), proj_bias=f32(p["proj_b"]),
                         relative_position_bias_table=f32(p["table"]))


def stateless(x5, c, heads, t, p, table=None):
    """winattn.shifted_window_attention with window (T, 1, 1): the bias looked up from the 1D index."""
    table = p["table"] if table is None else table
    bias = winattn.relative_position_bias(f32(table), winattn.relative_position_index((t,)))
    return winattn.shifted_window_attention(x5, f32(p["qkv_w"]), f32(p["proj_w"]), heads, (t, 1, 1), (0, 0, 0),
                                            qkv_bias=f32(p["qkv_b"]), proj_bias=f32(p["proj_b"]),
                                            relative_position_bias=bias)


class TestTemporalIndex(unittest.TestCase):
    def test_index_is_t_relative_coords(self):
        """relative_position_index((T,)) and ((T, 1, 1)) are both t_i - t_j + T - 1, rows 0..2T-2."""
        for t in (1, 2, 8, 16):
            with self.subTest(T=t):
                expected = t_relative_coords(t)
                np.testing.assert_array_equal(winattn.relative_position_index((t,)), expected)
                np.testing.assert_array_equal(winattn.relative_position_index((t, 1, 1)), expected)
                self.assertEqual(int(expected.min()), 0)
                self.assertEqual(int(expected.max()), 2 * t - 2)
                # Not symmetric (for T > 1): a transposed index would read other rows.
                if t > 1:
                    self.assertFalse(np.array_equal(expected, expected.T))

    def test_lookup_is_table_at_t_relative_coords(self):
        t, heads = 8, 12
        table = np.random.default_rng(3).standard_normal((2 * t - 1, heads)).astype(np.float32)
        got = winattn.relative_position_bias(table, winattn.relative_position_index((t,)))
        np.testing.assert_array_equal(got, table[t_relative_coords(t)].transpose(2, 0, 1))


class TestAimTemporalParity(unittest.TestCase):
    """The layer and the stateless function against the float64 reference and the PyTorch modules."""

    def setUp(self):
        winattn.set_max_isa("native")

    def test_table_is_not_symmetric(self):
        """The check below depends on it: a flipped index sign must change the bias of every head."""
        for case in CASES:
            t, heads = case[0], case[5]
            _, p = make_case(case)
            table = p["table"]
            self.assertGreater(float(np.min(np.max(np.abs(table - table[::-1]), axis=0))), 0.5, case)

    def test_layer_and_stateless_vs_reference(self):
        for case in CASES:
            t, b, h, w, c, heads = case[:6]
            with self.subTest(case=case):
                x, p = make_case(case)
                ref = aim_reference(x, p["qkv_w"], p["qkv_b"], p["proj_w"], p["proj_b"], p["table"], heads)
                x32 = f32(x)
                with winattn_layer(c, heads, t, p) as layer:
                    for name, arr, view, back in views_of(x32, b, h, w):
                        self.assertTrue(np.shares_memory(view, arr), name)  # a view, not a copy
                        y = layer.forward(view)
                        self.assertEqual(y.shape, view.shape)
                        y_layout = back(y)
                        self.assertTrue(np.shares_memory(y_layout, y), name)
                        assert_rel_close(self, to_tnc(name, y_layout, t, b, h, w), ref, RTOL,
                                         "Layer %s %s" % (name, case))
                    y_fn = stateless(views_of(x32, b, h, w)[2][2], c, heads, t, p)
                    assert_rel_close(self, y_fn.reshape(t, b * h * w, c), ref, RTOL, "stateless %s" % (case,))

    def test_vs_pytorch_float32(self):
        """The explicit-ops AIM module and nn.MultiheadAttention (float32) agree with the reference, and
        winattn agrees with them."""
        for case in CASES[:6]:
            t, b, h, w, c, heads = case[:6]
            with self.subTest(case=case):
                x, p = make_case(case)
                ref = aim_reference(x, p["qkv_w"], p["qkv_b"], p["proj_w"], p["proj_b"], p["table"], heads)
                module = aim_torch_module(c, heads, t, p)
                with torch.no_grad():
                    y_torch = module(torch.from_numpy(f32(x))).numpy()
                y_mha = mha_forward(x, c, heads, t, p)
                # The PyTorch implementations are themselves fp32: first they against the float64 reference.
                assert_rel_close(self, y_torch, ref, RTOL, "torch explicit ops %s" % (case,))
                assert_rel_close(self, y_mha, ref, RTOL, "torch nn.MultiheadAttention %s" % (case,))
                with winattn_layer(c, heads, t, p) as layer:
                    y = layer.forward(f32(x).reshape(1, t, b * h * w, 1, c)).reshape(t, b * h * w, c)
                assert_rel_close(self, y, y_torch, 2 * RTOL, "winattn vs torch explicit ops %s" % (case,))
                assert_rel_close(self, y, y_mha, 2 * RTOL, "winattn vs torch MHA %s" % (case,))

    def test_wrong_sign_or_missing_bias_is_caught(self):
        """The reference with the transposed index (t_j - t_i + T - 1), or without the bias, is far from
        winattn's output: the parity checks above would catch either mistake."""
        for case in (CASES[0], CASES[2], CASES[5]):
            t, b, h, w, c, heads = case[:6]
            with self.subTest(case=case):
                x, p = make_case(case)
                args = (x, p["qkv_w"], p["qkv_b"], p["proj_w"], p["proj_b"])
                ref = aim_reference(*args, p["table"], heads)
                flipped = aim_reference(*args, p["table"], heads, index=t_relative_coords(t).T)
                none = aim_reference(*args, None, heads)
                scale = max_abs(ref)
                self.assertGreater(max_abs(flipped - ref), 100 * RTOL * scale, "flipped sign: too close")
                self.assertGreater(max_abs(none - ref), 100 * RTOL * scale, "no bias: too close")
                with winattn_layer(c, heads, t, p) as layer:
                    y = layer.forward(f32(x).reshape(1, t, b * h * w, 1, c)).reshape(t, b * h * w, c)
                self.assertGreater(max_abs(y - flipped), 100 * RTOL * scale)
                # The table given transposed in time (rows reversed) is the flipped index: winattn follows it.
                with winattn_layer(c, heads, t, dict(p, table=p["table"][::-1].copy())) as layer:
                    y_rev = layer.forward(f32(x).reshape(1, t, b * h * w, 1, c)).reshape(t, b * h * w, c)
                assert_rel_close(self, y_rev, flipped, RTOL, "reversed table = transposed index %s" % (case,))

    def test_each_head_and_bias_term_matters(self):
        """Changing one head's table column, the qkv bias or the proj bias changes the output beyond the
        tolerance (so none of them can be dropped silently)."""
        case = CASES[4]
        t, b, h, w, c, heads = case[:6]
        x, p = make_case(case)
        x5 = f32(x).reshape(1, t, b * h * w, 1, c)
        with winattn_layer(c, heads, t, p) as layer:
            base = layer.forward(x5)
        scale = max_abs(base)
        for hh in range(heads):
            table = p["table"].copy()
            table[:, hh] = np.random.default_rng(hh).standard_normal(2 * t - 1) * 1.5
            with winattn_layer(c, heads, t, dict(p, table=table)) as layer:
                self.assertGreater(max_abs(layer.forward(x5) - base), 100 * RTOL * scale, "head %d" % hh)
        for key in ("qkv_b", "proj_b"):
            with winattn_layer(c, heads, t, dict(p, **{key: None})) as layer:
                self.assertGreater(max_abs(layer.forward(x5) - base), 100 * RTOL * scale, key)

    def test_window_attention_kernel(self):
        """The raw kernel with n = T and the looked-up bias, no mask: the attention part alone."""
        for t in (8, 16):
            rng = np.random.default_rng(t)
            heads, hd, windows = 12, 64, 10
            q, k, v = (rng.standard_normal((windows, heads, t, hd)) for _ in range(3))
            table = rng.standard_normal((2 * t - 1, heads)) * 1.5
            bias = table[t_relative_coords(t)].transpose(2, 0, 1)
            logits = (q @ k.transpose(0, 1, 3, 2)) * hd ** -0.5 + bias[None]
            wts = np.exp(logits - logits.max(-1, keepdims=True))
            ref = (wts / wts.sum(-1, keepdims=True)) @ v
            got = winattn.window_attention(f32(q), f32(k), f32(v), hd ** -0.5,
                                           bias=winattn.relative_position_bias(f32(table),
                                                                               winattn.relative_position_index((t,))))
            assert_rel_close(self, got, ref, RTOL, "window_attention T=%d" % t)

    def test_every_isa_and_thread_count(self):
        """Every dispatch level the CPU has, and the same bits on 1 and 2 threads."""
        try:
            for case in (CASES[4], CASES[5]):
                t, b, h, w, c, heads = case[:6]
                x, p = make_case(case)
                ref = aim_reference(x, p["qkv_w"], p["qkv_b"], p["proj_w"], p["proj_b"], p["table"], heads)
                x5 = f32(x).reshape(1, t, b * h * w, 1, c)
                for isa in supported_isas():
                    winattn.set_max_isa(isa)
                    with self.subTest(case=case, isa=isa), winattn_layer(c, heads, t, p) as layer:
                        winattn.set_num_threads(1)
                        one = layer.forward(x5)
                        winattn.set_num_threads(2)
                        two = layer.forward(x5)
                        np.testing.assert_array_equal(one, two)
                        assert_rel_close(self, one.reshape(t, -1, c), ref, RTOL, "Layer under %s" % isa)
        finally:
            winattn.set_max_isa("native")
            winattn.set_num_threads(0)


if __name__ == "__main__":
    unittest.main()
