// Target "shapes": large valid shapes with bounded work, run for real and checked on sampled rows (long
// windows n up to 1024, head_dim up to 16384, tens of thousands of (window, head) items, feature maps of
// hundreds of thousands of tokens with 1-4 channels, windows larger than the grid, long index and mask
// tables), and sizes built right at the int64 boundary, where every product the contract names either just
// fits or just overflows: those calls get tiny buffers and must fail without touching them, and UBSan checks
// that the library's own size arithmetic does not overflow.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "fuzz_common.h"
#include "layer_model.h"
#include "oracle.h"
#include "targets.h"

namespace fz {
namespace {

void big_attention(Reader &r) {
  const uint8_t kind = r.u8() % 3;
  int64_t nw, heads, n, hd;
  if (kind == 0) {  // long windows
    nw = 1 + r.u8() % 2, heads = 1 + r.u8() % 2, n = 65 + r.u16() % 960, hd = 1 + r.u8() % 4;
  } else if (kind == 1) {  // wide heads
    nw = 1 + r.u8() % 2, heads = 1 + r.u8() % 2, n = 1 + r.u8() % 8, hd = 64 + r.u16() % 16321;
  } else {  // many small items
    nw = 1 + r.u16() % 4096, heads = 1 + r.u8() % 8, n = 1 + r.u8() % 4, hd = 1 + r.u8() % 8;
  }
  // Bound the work and the buffers: shrink the largest dimension.
  while (mul(mul(nw, heads), mul(mul(n, n), hd)) > kBigWork || mul(mul(nw, heads), mul(n, hd)) > kMaxElems) {
    int64_t &d = kind == 0 ? n : kind == 1 ? hd : nw;
    if (d == 1) return;  // cannot shrink further (does not happen with the ranges above)
    d = d * 3 / 4 > 0 ? d * 3 / 4 : 1;
  }
  const uint8_t opt = r.u8();
  const bool use_bias = (opt & 1) && heads * n * n <= kMaxElems, use_mask = (opt & 2) && n * n <= kMaxElems;
  const int64_t mask_windows =
      use_mask ? std::max<int64_t>(1, std::min<int64_t>(nw, kMaxElems / (n * n))) : 1;
  const size_t S = static_cast<size_t>(nw * heads * n * hd);
  std::vector<float> q(S), k(S), v(S), out(S), bias, mask;
  fill(r, q.data(), S), fill(r, k.data(), S), fill(r, v.data(), S);
  if (use_bias) bias.resize(static_cast<size_t>(heads * n * n)), fill(r, bias.data(), bias.size());
  if (use_mask) {
    mask.resize(static_cast<size_t>(mask_windows * n * n));
    const uint64_t seed = r.u8();
    for (size_t i = 0; i < mask.size(); ++i) mask[i] = mix(seed ^ (i * 7919)) % 4 == 0 ? -100.0f : 0.0f;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  set_ctx(
      "winattn_window_attention(nw=%lld, heads=%lld, n=%lld, d=%lld, bias=%d, mask=%d, mask_windows=%lld)",
      (long long)nw, (long long)heads, (long long)n, (long long)hd, use_bias, use_mask,
      (long long)mask_windows);
  const std::string prev = last_msg();
  const winattn_status s = winattn_window_attention(
      nw, heads, n, hd, q.data(), k.data(), v.data(), scale, use_bias ? bias.data() : nullptr,
      use_mask ? mask.data() : nullptr, mask_windows, out.data());
  check_status(s, Expect::kOk, prev);
  Rng rng = call_rng();
  check_window_attention(nw, heads, n, hd, q.data(), k.data(), v.data(), scale,
                         use_bias ? bias.data() : nullptr, use_mask ? mask.data() : nullptr, mask_windows,
                         out.data(), rng, 3, 3);
}

// Big grids with tiny channels, windows up to 16 per axis (often larger than the grid), 2D and 3D.
void big_layer(Reader &r) {
  LayerModel m;
  ModelLimits limits;
  limits.max_heads = 2;
  limits.max_head_dim = 2;
  limits.max_window = 16;
  read_model(r, limits, m);
  int64_t batch = 1 + r.u8() % 2;
  int64_t grid[3] = {1, 1, 1};
  if (forward_work(m, 1, grid) > kBigWork) return;  // one window alone is too much work (3D, 16x16)
  if (m.window[0] > 1 || r.u8() >= 224) grid[0] = 1 + r.u8() % 64;
  grid[1] = 1 + r.u16() % 512, grid[2] = 1 + r.u16() % 512;
  while (activation_size(m, batch, grid) > (size_t(1) << 18) || forward_work(m, batch, grid) > kBigWork) {
    const int d = grid[0] >= grid[1] && grid[0] >= grid[2] ? 0 : grid[1] >= grid[2] ? 1 : 2;
    if (grid[d] == 1)
      batch = 1;  // one window of one image fits (checked above)
    else
      grid[d] = (grid[d] + 1) / 2;
  }
  const size_t elems = activation_size(m, batch, grid);
  std::vector<float> in(elems), out(elems);
  fill(r, in.data(), elems);
  const bool stateless = r.u8() & 1;
  set_ctx("%s(%s, batch=%lld, grid={%lld,%lld,%lld})",
          stateless ? "shifted_window_attention" : "layer_forward", m.describe().c_str(), (long long)batch,
          (long long)grid[0], (long long)grid[1], (long long)grid[2]);
  winattn_status s;
  std::string prev = last_msg();
  if (stateless) {
    s = run_stateless(m, in.data(), batch, grid, out.data());
  } else {
    winattn_layer *layer = create_layer(m);
    prev = last_msg();
    s = winattn_layer_forward(layer, in.data(), batch, grid, out.data());
    destroy_layer(layer);
  }
  check_status(s, Expect::kOk, prev);
  Rng rng = call_rng();
  check_layer_tokens(m.ref(), batch, grid, in.data(), out.data(), rng, 2, int64_t(1) << 17, "big grid");
}

// Long index tables and many mask windows.
void big_tables(Reader &r) {
  if (r.u8() & 1) {
    const int ndim = 1 + r.u8() % 3;
    int64_t window[3] = {1, 1, 1};
    for (int d = 0; d < ndim; ++d) window[d] = 1 + r.u16() % (ndim == 1 ? 1024 : ndim == 2 ? 32 : 10);
    int64_t N = window[0] * window[1] * window[2];
    while (N * N > kMaxElems) {
      int d = 0;
      for (int e = 1; e < ndim; ++e)
        if (window[e] > window[d]) d = e;
      window[d] = (window[d] + 1) / 2;
      N = window[0] * window[1] * window[2];
    }
    std::vector<int64_t> index(static_cast<size_t>(N * N));
    set_ctx("winattn_relative_position_index(ndim=%d, window={%lld,%lld,%lld})", ndim, (long long)window[0],
            (long long)window[1], (long long)window[2]);
    const std::string prev = last_msg();
    check_status(winattn_relative_position_index(ndim, window, index.data()), Expect::kOk, prev);
    Rng rng = call_rng();
    for (int k = 0; k < 256; ++k) {
      const int64_t i = k == 0 ? N - 1 : static_cast<int64_t>(rng.below(static_cast<size_t>(N)));
      const int64_t j = k == 0 ? 0 : static_cast<int64_t>(rng.below(static_cast<size_t>(N)));
      CHECK(index[i * N + j] == relative_index(ndim, window, i, j), "index[%lld][%lld] = %lld, expected %lld",
            (long long)i, (long long)j, (long long)index[i * N + j],
            (long long)relative_index(ndim, window, i, j));
    }
    return;
  }
  int64_t window[3], grid[3], shift[3];
  for (int d = 0; d < 3; ++d) {
    window[d] = 1 + r.u8() % (d == 0 ? 3 : 8);
    grid[d] = window[d] * (1 + r.u8() % (d == 0 ? 16 : 64));
    shift[d] = r.u8() % window[d];
  }
  const int64_t N = window[0] * window[1] * window[2];
  int64_t nw = (grid[0] / window[0]) * (grid[1] / window[1]) * (grid[2] / window[2]);
  while (mul(nw, N * N) > kMaxElems) {
    int d = grid[1] / window[1] >= grid[2] / window[2] ? 1 : 2;
    if (grid[0] / window[0] > grid[d] / window[d]) d = 0;
    grid[d] = (grid[d] / window[d] + 1) / 2 * window[d];
    nw = (grid[0] / window[0]) * (grid[1] / window[1]) * (grid[2] / window[2]);
  }
  std::vector<float> mask(static_cast<size_t>(nw * N * N));
  set_ctx(
      "winattn_shifted_window_mask(grid={%lld,%lld,%lld}, window={%lld,%lld,%lld}, shift={%lld,%lld,%lld})",
      (long long)grid[0], (long long)grid[1], (long long)grid[2], (long long)window[0], (long long)window[1],
      (long long)window[2], (long long)shift[0], (long long)shift[1], (long long)shift[2]);
  const std::string prev = last_msg();
  check_status(winattn_shifted_window_mask(grid, window, shift, mask.data()), Expect::kOk, prev);
  // Window w, tokens i and j: the same region on every axis (header: [0, G-w), [G-w, G-s), [G-s, G)).
  const int64_t per[3] = {grid[0] / window[0], grid[1] / window[1], grid[2] / window[2]};
  Rng rng = call_rng();
  for (int k = 0; k < 256; ++k) {
    const int64_t w = k == 0 ? nw - 1 : static_cast<int64_t>(rng.below(static_cast<size_t>(nw)));
    const int64_t i = static_cast<int64_t>(rng.below(static_cast<size_t>(N)));
    const int64_t j = static_cast<int64_t>(rng.below(static_cast<size_t>(N)));
    const int64_t wc[3] = {w / (per[1] * per[2]), w / per[2] % per[1], w % per[2]};
    bool same = true;
    for (int d = 0; d < 3; ++d) {
      const int64_t stride = d == 0 ? window[1] * window[2] : d == 1 ? window[2] : 1;
      const int64_t pi = wc[d] * window[d] + i / stride % window[d],
                    pj = wc[d] * window[d] + j / stride % window[d];
      auto region = [&](int64_t p) { return p < grid[d] - window[d] ? 0 : p < grid[d] - shift[d] ? 1 : 2; };
      same = same && region(pi) == region(pj);
    }
    const float want = same ? 0.0f : -100.0f;
    CHECK(mask[(w * N + i) * N + j] == want, "mask[%lld][%lld][%lld] = %g, expected %g", (long long)w,
          (long long)i, (long long)j, mask[(w * N + i) * N + j], want);
  }
}

// ---- the int64 boundary -----------------------------------------------------------------------------------
// floor(INT64_MAX / d) + delta: the largest factor that keeps a product with d in int64, and its neighbours.
int64_t edge(i128 d, int delta) {
  if (d <= 0) d = 1;
  const i128 v = i128(kI64Max) / d + delta;
  return v > kI64Max ? kI64Max : v < 1 ? 1 : static_cast<int64_t>(v);
}

// A call with sizes built at the boundary; every buffer is tiny, so a call the contract allows would need
// more memory than exists: the harness passes NULL for one required pointer then, and either way the call
// must fail without writing anything.
void boundary(Reader &r) {
  const uint8_t which = r.u8() % 6;
  const int delta = static_cast<int>(r.u8() % 4) - 1;  // -1 .. 2
  std::vector<float> f1(kTiny, 1.0f), f2(kTiny, 1.0f), f3(kTiny, 1.0f), f4(kTiny, 1.0f), f5(kTiny, 1.0f),
      out(kTiny, 1.0f);
  std::vector<int64_t> idx(kTiny, 0), iout(kTiny, 7);
  std::memset(out.data(), 0xA5, out.size() * sizeof(float));
  Frozen frozen;
  frozen.add(out.data(), out.size() * sizeof(float), "output");
  frozen.add(iout.data(), iout.size() * sizeof(int64_t), "index output");
  for (auto *b : {&f1, &f2, &f3, &f4, &f5}) frozen.add(b->data(), b->size() * sizeof(float), "input");
  bool overflow = false;  // some product the contract names leaves int64
  winattn_status s = WINATTN_STATUS_OK;
  const std::string prev = last_msg();
  auto pick = [&](int64_t a, int64_t b) { return (r.u8() & 1) ? a : b; };
  switch (which) {
    case 0: {  // window attention: q size, n*n, bias, mask
      int64_t nw = 1 + r.u8() % 4, heads = 1 + r.u8() % 4, n = 1 + r.u16(), hd = 1 + r.u8() % 64;
      const uint8_t t = r.u8() % 4;
      if (t == 0) hd = edge(mul(mul(nw, heads), n), delta);
      if (t == 1) n = pick(3037000499, 3037000500) + delta, nw = heads = hd = 1;  // n*n at the edge
      if (t == 2) heads = edge(mul(n, n), delta), nw = hd = 1;                    // bias heads*n*n
      int64_t mask_windows = t == 3 ? edge(mul(n, n), delta) : 1;
      const i128 S = mul(mul(nw, heads), mul(n, hd)), NN = mul(n, n);
      const bool use_bias = t == 2 || (r.u8() & 1), use_mask = t == 3;
      overflow = !fits_i64(S) || !fits_i64(NN) || !fits_i64(mul(heads, mul(n, hd))) ||
                 !fits_i64(mul(nw, heads)) || (use_bias && !fits_i64(mul(heads, NN))) ||
                 (use_mask && !fits_i64(mul(mask_windows, NN)));
      set_ctx(
          "winattn_window_attention(nw=%lld, heads=%lld, n=%lld, d=%lld, bias=%d, mask_windows=%lld) at the "
          "int64 edge (overflow %d)",
          (long long)nw, (long long)heads, (long long)n, (long long)hd, use_bias,
          use_mask ? (long long)mask_windows : -1LL, overflow);
      s = winattn_window_attention(nw, heads, n, hd, f1.data(), f2.data(), overflow ? f3.data() : nullptr,
                                   0.5f, use_bias ? f4.data() : nullptr, use_mask ? f5.data() : nullptr,
                                   mask_windows, out.data());
      break;
    }
    case 1: {  // layer geometry: C*C*3, heads*N*N, batch*grid*C, grid + window - 1
      winattn_window_attention_args a;
      std::memset(&a, 0, sizeof a);
      a.batch = 1 + r.u8() % 4, a.channels = 1 + r.u8() % 8, a.num_heads = 1;
      for (int d = 0; d < 3; ++d) a.grid[d] = 1 + r.u8() % 8, a.window[d] = 1, a.shift[d] = 0;
      const uint8_t t = r.u8() % 5;
      if (t == 0) a.channels = pick(1753413056, 1753413057) + delta, a.num_heads = 1;  // 3*C*C at the edge
      if (t == 1) a.window[1] = a.window[2] = pick(55109, 55110) + delta;              // heads*N*N, N = Wh*Ww
      if (t == 2) a.batch = edge(mul(mul(mul(a.grid[0], a.grid[1]), a.grid[2]), a.channels), delta);
      if (t == 3) a.grid[2] = kI64Max - 1 - delta, a.window[2] = 1 + r.u8() % 8;  // grid + window at the edge
      if (t == 4) a.grid[1] = a.grid[2] = pick(3037000499, 2147483648) + delta;
      a.qkv_weight = f1.data(), a.proj_weight = f2.data();
      i128 N = 1, tokens = a.batch, padded = a.batch;
      for (int d = 0; d < 3; ++d) {
        N = mul(N, a.window[d]);
        tokens = mul(tokens, a.grid[d]);
        padded = mul(padded, (i128(a.grid[d]) + a.window[d] - 1) / a.window[d] * a.window[d]);
      }
      overflow = !fits_i64(mul(3, mul(a.channels, a.channels))) || !fits_i64(mul(a.num_heads, mul(N, N))) ||
                 !fits_i64(mul(tokens, a.channels)) || !fits_i64(mul(padded, a.channels)) ||
                 !fits_i64(i128(a.grid[2]) + a.window[2]);
      set_ctx(
          "winattn_shifted_window_attention(batch=%lld, grid={%lld,%lld,%lld}, C=%lld, "
          "window={%lld,%lld,%lld}) "
          "at the int64 edge (overflow %d)",
          (long long)a.batch, (long long)a.grid[0], (long long)a.grid[1], (long long)a.grid[2],
          (long long)a.channels, (long long)a.window[0], (long long)a.window[1], (long long)a.window[2],
          overflow);
      s = winattn_shifted_window_attention(&a, f3.data(), overflow ? out.data() : nullptr);
      break;
    }
    case 2: {  // index: N*N
      const int ndim = 1 + r.u8() % 3;
      int64_t window[3] = {1, 1, 1};
      if (ndim == 1) window[0] = pick(3037000499, 3037000500) + delta;
      if (ndim == 2) window[0] = pick(65536, 55109) + delta, window[1] = pick(65536, 55109);
      if (ndim == 3) window[0] = window[1] = pick(2048, 1448) + delta, window[2] = pick(1024, 1448);
      i128 N = 1;
      for (int d = 0; d < ndim; ++d) N = mul(N, window[d]);
      overflow = !fits_i64(mul(N, N));
      set_ctx(
          "winattn_relative_position_index(ndim=%d, window={%lld,%lld,%lld}) at the int64 edge (overflow %d)",
          ndim, (long long)window[0], (long long)window[1], (long long)window[2], overflow);
      s = winattn_relative_position_index(ndim, window, overflow ? iout.data() : nullptr);
      break;
    }
    case 3: {  // bias lookup and gradient: heads*n*n, rows*heads
      const bool backward = r.u8() & 1;
      int64_t rows = 1 + r.u8() % 8, heads = 1 + r.u8() % 4, n = 1 + r.u8() % 4;
      const uint8_t t = r.u8() % 3;
      if (t == 0) heads = edge(mul(n, n), delta);
      if (t == 1) rows = edge(heads, delta);
      if (t == 2) n = pick(3037000499, 3037000500) + delta;
      overflow = !fits_i64(mul(heads, mul(n, n))) || !fits_i64(mul(n, n)) || !fits_i64(mul(rows, heads));
      set_ctx(
          "winattn_relative_position_bias%s(rows=%lld, heads=%lld, n=%lld) at the int64 edge (overflow %d)",
          backward ? "_backward" : "", (long long)rows, (long long)heads, (long long)n, overflow);
      // Index entries are 0: in range for any rows >= 1.
      s = backward ? winattn_relative_position_bias_backward(f1.data(), rows, heads, idx.data(), n,
                                                             overflow ? out.data() : nullptr)
                   : winattn_relative_position_bias(f1.data(), rows, heads, idx.data(), n,
                                                    overflow ? out.data() : nullptr);
      break;
    }
    case 4: {  // mask: windows*N*N
      int64_t grid[3], window[3] = {1, 1, 1}, shift[3] = {0, 0, 0};
      window[1] = window[2] = 1 + r.u8() % 8;
      const i128 N2 = mul(window[1] * window[2], window[1] * window[2]);
      const int64_t across = 1 + r.u16();            // windows along the height
      int64_t along = edge(mul(across, N2), delta);  // windows along the width: nw * N * N at the edge
      if (along > kI64Max / window[2]) along = kI64Max / window[2];
      grid[0] = 1, grid[1] = window[1] * across, grid[2] = window[2] * along;
      const i128 nw = mul(grid[1] / window[1], grid[2] / window[2]);
      const i128 N = window[1] * window[2];
      overflow = !fits_i64(mul(nw, mul(N, N)));
      set_ctx(
          "winattn_shifted_window_mask(grid={%lld,%lld,%lld}, window={1,%lld,%lld}) at the int64 edge "
          "(overflow %d)",
          (long long)grid[0], (long long)grid[1], (long long)grid[2], (long long)window[1],
          (long long)window[2], overflow);
      s = winattn_shifted_window_mask(grid, window, shift, overflow ? out.data() : nullptr);
      break;
    }
    default: {  // continuous table: (2wh-1)(2ww-1)*heads, hidden*2, heads*hidden
      int64_t wh = 1 + r.u8() % 8, ww = 1 + r.u8() % 8, hidden = 1 + r.u8() % 8, heads = 1 + r.u8() % 4;
      const uint8_t t = r.u8() % 4;
      if (t == 0) wh = kI64Max / 4 + delta;
      if (t == 1) hidden = edge(2, delta);
      if (t == 2) heads = edge(hidden, delta);
      if (t == 3) wh = ww = pick(1518500249, 1518500500) + delta;  // (2w-1)^2 just fits / overflows
      const i128 rows = mul(2 * i128(wh) - 1, 2 * i128(ww) - 1);
      overflow = !fits_i64(2 * i128(wh)) || !fits_i64(2 * i128(ww)) || !fits_i64(mul(rows, heads)) ||
                 !fits_i64(mul(hidden, 2)) || !fits_i64(mul(heads, hidden));
      set_ctx(
          "winattn_continuous_position_bias_table(wh=%lld, ww=%lld, hidden=%lld, heads=%lld) at the int64 "
          "edge "
          "(overflow %d)",
          (long long)wh, (long long)ww, (long long)hidden, (long long)heads, overflow);
      s = winattn_continuous_position_bias_table(wh, ww, f1.data(), f2.data(), f3.data(), hidden, heads,
                                                 overflow ? out.data() : nullptr);
      break;
    }
  }
  check_status(s, Expect::kFail, prev);
  if (overflow)
    CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "sizes overflowing int64: status %d", static_cast<int>(s));
  frozen.check("a call at the int64 edge");
}

}  // namespace

void target_shapes(Reader &r) {
  // One large call (they cost milliseconds each under the sanitizers) or a few at the int64 edge.
  const uint8_t sel = r.u8();
  switch (sel % 8) {
    case 0:
      big_attention(r);
      break;
    case 1:
      big_layer(r);
      break;
    case 2:
      big_tables(r);
      break;
    default:
      for (int step = 0; step < 4 && !r.done(); ++step) boundary(r);
      break;
  }
}

}  // namespace fz
