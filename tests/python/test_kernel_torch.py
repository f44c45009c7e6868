"""winattn's kernels and lookups against PyTorch / torchvision, under every dispatch level in turn.

window_attention vs float64 softmax attention; relative_position_index vs torchvision's module buffer;
relative_position_bias (and its backward) vs a torch gather (and autograd); shifted_window_mask vs the slice
code of torchvision's shifted_window_attention (replicated here); continuous_position_bias_table vs
ShiftedWindowAttentionV2's cpb_mlp over its relative_coords_table.
"""

import threading
import unittest

import numpy as np
import torch
from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2

from winattn_testutil import assert_rel_close, supported_isas, winattn

RTOL = 1e-4


def torch_attention(q, k, v, scale, bias=None, mask=None):
    """Float64 reference: softmax(scale q k^T + bias + mask[w % nW]) v, Swin's WindowAttention.forward."""
    q, k, v = (torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (q, k, v))
    attn = scale * (q @ k.transpose(-2, -1))
    nwin, heads, n, _ = q.shape
    if bias is not None:
        attn = attn + torch.from_numpy(np.asarray(bias, dtype=np.float64)).unsqueeze(0)
    if mask is not None:
        m = torch.from_numpy(np.asarray(mask, dtype=np.float64))
        nw = m.shape[0]
        attn = attn.view(nwin // nw, nw, heads, n, n) + m.unsqueeze(1).unsqueeze(0)
        attn = attn.view(nwin, heads, n, n)
    return (torch.softmax(attn, dim=-1) @ v).numpy()


def torchvision_mask(pad_h, pad_w, window, shift):
    """The mask torchvision's shifted_window_attention builds (its slice code, replicated): [nW][N][N]."""
    num_windows = (pad_h // window[0]) * (pad_w // window[1])
    attn_mask = torch.zeros((pad_h, pad_w), dtype=torch.float64)
    h_slices = ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None))
    w_slices = ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None))
    count = 0
    for h in h_slices:
        for w in w_slices:
            attn_mask[h[0] : h[1], w[0] : w[1]] = count
            count += 1
    attn_mask = attn_mask.view(pad_h // window[0], window[0], pad_w // window[1], window[1])
    attn_mask = attn_mask.permute(0, 2, 1, 3).reshape(num_windows, window[0] * window[1])
    attn_mask = attn_mask.unsqueeze(1) - attn_mask.unsqueeze(2)
    return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0).numpy()


class IsaTestCase(unittest.TestCase):
    """Runs each check once per supported dispatch level (self.isas), restoring "native" afterwards."""

    def setUp(self):
        self.isas = supported_isas()

    def tearDown(self):
        winattn.set_max_isa("native")

    def each_isa(self):
        """Yields each supported ISA after capping the dispatch at it."""
        for isa in self.isas:
            winattn.set_max_isa(isa)
            self.assertEqual(winattn.active_isa(), isa)
            yield isa


class TestWindowAttention(IsaTestCase):
    # (batch, nW, heads, n, head_dim, with bias, with mask)
    SHAPES = [
        (2, 4, 3, 49, 32, True, True),  # Swin-T stage 1: num_windows = B * nW, mask has nW windows
        (3, 4, 6, 49, 32, True, True),
        (1, 1, 3, 49, 32, True, False),
        (2, 2, 2, 64, 32, True, True),  # 8x8 windows
        (2, 3, 4, 16, 16, False, True),
        (1, 5, 2, 24, 24, False, False),  # (4, 6) windows, head_dim not a multiple of 16
        (2, 2, 3, 13, 7, True, True),  # odd sizes: vector tails everywhere
        (1, 3, 1, 98, 64, True, True),
        (1, 2, 2, 1, 8, True, False),  # a single token
        (4, 1, 2, 33, 5, True, True),
    ]

    def _inputs(self, shape, seed):
        b, nw, heads, n, d, with_bias, with_mask = shape
        rng = np.random.default_rng(seed)
        q, k, v = (rng.standard_normal((b * nw, heads, n, d)).astype(np.float32) for _ in range(3))
        bias = rng.standard_normal((heads, n, n)).astype(np.float32) if with_bias else None
        mask = None
        if with_mask:
            mask = np.where(rng.random((nw, n, n)) < 0.3, -100.0, 0.0).astype(np.float32)
        return q, k, v, d ** -0.5, bias, mask

    def test_against_torch(self):
        for isa in self.each_isa():
            for i, shape in enumerate(self.SHAPES):
                with self.subTest(isa=isa, shape=shape):
                    q, k, v, scale, bias, mask = self._inputs(shape, i)
                    got = winattn.window_attention(q, k, v, scale, bias=bias, mask=mask)
                    self.assertEqual(got.dtype, np.float32)
                    ref = torch_attention(q, k, v, scale, bias, mask)
                    assert_rel_close(self, got, ref, RTOL, "window_attention %s %s" % (isa, shape))

    def test_large_logits(self):
        """Logits in the hundreds: the row maximum must be subtracted before exp."""
        rng = np.random.default_rng(7)
        q = (rng.standard_normal((2, 2, 49, 32)) * 4).astype(np.float32)
        k = (rng.standard_normal((2, 2, 49, 32)) * 4).astype(np.float32)
        v = rng.standard_normal((2, 2, 49, 32)).astype(np.float32)
        ref = torch_attention(q, k, v, 1.0)
        for isa in self.each_isa():
            with self.subTest(isa=isa):
                assert_rel_close(self, winattn.window_attention(q, k, v, 1.0), ref, RTOL, "large logits %s" % isa)

    def test_all_minus_inf_row_is_zero(self):
        """A row whose logits are all -inf gives a zero output row; the other rows are normal attention."""
        rng = np.random.default_rng(8)
        q, k, v = (rng.standard_normal((2, 1, 16, 8)).astype(np.float32) for _ in range(3))
        mask = np.zeros((1, 16, 16), dtype=np.float32)
        mask[0, 5, :] = -np.inf
        for isa in self.each_isa():
            with self.subTest(isa=isa):
                got = winattn.window_attention(q, k, v, 0.5, mask=mask)
                np.testing.assert_array_equal(got[:, :, 5, :], 0.0)
                keep = [r for r in range(16) if r != 5]
                ref = torch_attention(q, k, v, 0.5)[:, :, keep, :]
                assert_rel_close(self, got[:, :, keep, :], ref, RTOL, "rows other than the -inf row, %s" % isa)

    def test_thread_counts_bit_identical(self):
        q, k, v, scale, bias, mask = self._inputs(self.SHAPES[1], 11)
        try:
            winattn.set_num_threads(1)
            self.assertEqual(winattn.get_num_threads(), 1)
            one = winattn.window_attention(q, k, v, scale, bias=bias, mask=mask)
            winattn.set_num_threads(2)
            two = winattn.window_attention(q, k, v, scale, bias=bias, mask=mask)
        finally:
            winattn.set_num_threads(0)
        np.testing.assert_array_equal(one, two)

    def test_concurrent_calls(self):
        """Calls from several Python threads at once (ctypes releases the GIL) give the serial results."""
        inputs = [self._inputs(s, 20 + i) for i, s in enumerate(self.SHAPES[:4])]
        expected = [winattn.window_attention(q, k, v, sc, bias=b, mask=m) for q, k, v, sc, b, m in inputs]
        results = [None] * len(inputs)

        def work(i):
            q, k, v, sc, b, m = inputs[i]
            for _ in range(3):
                results[i] = winattn.window_attention(q, k, v, sc, bias=b, mask=m)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for got, exp in zip(results, expected):
            np.testing.assert_array_equal(got, exp)


class TestLookups(IsaTestCase):
    def test_relative_position_index_vs_torchvision(self):
        for window in [(7, 7), (8, 8), (4, 6), (1, 5), (12, 12)]:
            with self.subTest(window=window):
                m = ShiftedWindowAttention(16, list(window), [0, 0], 2)
                n = window[0] * window[1]
                expected = m.relative_position_index.numpy().reshape(n, n)
                got = winattn.relative_position_index(window)
                self.assertEqual(got.dtype, np.int64)
                np.testing.assert_array_equal(got, expected)

    def test_relative_position_index_1d(self):
        for t in [1, 2, 8, 16]:
            with self.subTest(T=t):
                pos = np.arange(t)
                expected = pos[:, None] - pos[None, :] + t - 1
                np.testing.assert_array_equal(winattn.relative_position_index((t,)), expected)

    def test_relative_position_bias_vs_gather(self):
        for isa in self.each_isa():
            for window, heads in [((7, 7), 3), ((8, 8), 6), ((4, 6), 2), ((7, 7), 1), ((12, 12), 5)]:
                with self.subTest(isa=isa, window=window, heads=heads):
                    m = ShiftedWindowAttention(heads * 8, list(window), [0, 0], heads).double()
                    with torch.no_grad():
                        m.relative_position_bias_table.normal_()
                    expected = m.get_relative_position_bias()[0].detach().numpy()  # torchvision's own gather
                    table = m.relative_position_bias_table.detach().to(torch.float32).numpy()
                    # with torchvision's flat index buffer and with winattn's own index
                    got_tv = winattn.relative_position_bias(table, m.relative_position_index.numpy())
                    got_wa = winattn.relative_position_bias(table, winattn.relative_position_index(window))
                    np.testing.assert_array_equal(got_tv, expected.astype(np.float32))
                    np.testing.assert_array_equal(got_wa, expected.astype(np.float32))

    def test_relative_position_bias_backward_vs_autograd(self):
        for isa in self.each_isa():
            for window, heads in [((7, 7), 3), ((4, 6), 2), ((8, 8), 4)]:
                with self.subTest(isa=isa, window=window, heads=heads):
                    n = window[0] * window[1]
                    rows = (2 * window[0] - 1) * (2 * window[1] - 1)
                    rng = np.random.default_rng(n * heads)
                    grad = rng.standard_normal((heads, n, n)).astype(np.float32)
                    index = winattn.relative_position_index(window)
                    table = torch.zeros(rows, heads, dtype=torch.float64, requires_grad=True)
                    bias = table[torch.from_numpy(index).reshape(-1)].view(n, n, heads).permute(2, 0, 1)
                    bias.backward(torch.from_numpy(grad.astype(np.float64)))
                    got = winattn.relative_position_bias_backward(grad, index, rows)
                    assert_rel_close(self, got, table.grad.numpy(), 1e-5, "bias backward %s" % isa)

    def test_shifted_window_mask_vs_torchvision(self):
        for isa in self.each_isa():
            for grid, window, shift in [
                ((56, 56), (7, 7), (3, 3)),
                ((14, 14), (7, 7), (3, 3)),
                ((14, 21), (7, 7), (3, 0)),
                ((12, 18), (4, 6), (2, 3)),
                ((8, 8), (4, 4), (1, 3)),
            ]:
                with self.subTest(isa=isa, grid=grid, window=window, shift=shift):
                    got = winattn.shifted_window_mask((1,) + grid, (1,) + window, (0,) + shift)
                    np.testing.assert_array_equal(got, torchvision_mask(grid[0], grid[1], window, shift))

    def test_continuous_position_bias_table_vs_torchvision(self):
        for isa in self.each_isa():
            for window, heads in [((7, 7), 3), ((8, 8), 6), ((4, 6), 2), ((12, 12), 4)]:
                with self.subTest(isa=isa, window=window, heads=heads):
                    torch.manual_seed(heads * 100 + window[1])
                    m = ShiftedWindowAttentionV2(heads * 8, list(window), [0, 0], heads).double()
                    with torch.no_grad():
                        m.cpb_mlp[0].weight.normal_(0.0, 1.0)
                        m.cpb_mlp[0].bias.normal_(0.0, 1.0)
                        m.cpb_mlp[2].weight.normal_(0.0, 0.1)
                        # The header's table is 16*sigmoid(MLP(coords)) per entry; torchvision applies the
                        # 16*sigmoid after the lookup, which is the same values.
                        expected = 16 * torch.sigmoid(m.cpb_mlp(m.relative_coords_table).view(-1, heads))
                    w1 = m.cpb_mlp[0].weight.detach().to(torch.float32).numpy()
                    b1 = m.cpb_mlp[0].bias.detach().to(torch.float32).numpy()
                    w2 = m.cpb_mlp[2].weight.detach().to(torch.float32).numpy()
                    got = winattn.continuous_position_bias_table(window[0], window[1], w1, b1, w2)
                    assert_rel_close(self, got, expected.numpy(), RTOL, "cpb table %s" % isa)
                    # and the full bias, as ShiftedWindowAttentionV2.get_relative_position_bias gives it
                    full = winattn.relative_position_bias(got, winattn.relative_position_index(window))
                    with torch.no_grad():
                        ref_full = m.get_relative_position_bias()[0].numpy()
                    assert_rel_close(self, full, ref_full, RTOL, "cpb bias %s" % isa)

    def test_continuous_position_bias_table_without_b1(self):
        torch.manual_seed(3)
        heads, window = 2, (5, 7)
        lin1 = torch.nn.Linear(2, 64, bias=False).double()
        lin2 = torch.nn.Linear(64, heads, bias=False).double()
        m = ShiftedWindowAttentionV2(16, list(window), [0, 0], heads)
        coords = m.relative_coords_table.double()
        with torch.no_grad():
            expected = 16 * torch.sigmoid(lin2(torch.relu(lin1(coords))).view(-1, heads))
        for isa in self.each_isa():
            with self.subTest(isa=isa):
                got = winattn.continuous_position_bias_table(
                    window[0], window[1], lin1.weight.detach().float().numpy(), None, lin2.weight.detach().float().numpy()
                )
                assert_rel_close(self, got, expected.numpy(), RTOL, "cpb table without b1, %s" % isa)


if __name__ == "__main__":
    unittest.main()
