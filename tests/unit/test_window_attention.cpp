// winattn_window_attention against a float64 reference softmax(scale q k^T + bias + mask) v, on every ISA the
// CPU offers, plus thread-count determinism, NaN containment and the invalid-argument contract.
#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace {

enum class MaskKind { kNone, kHundred, kInf };
enum class ScaleKind { kWide, kNormal };

struct Problem {
  int64_t windows = 1, heads = 1, n = 1, dim = 1;
  std::vector<float> q, k, v, bias, mask;
  float scale = 1.0f;
  int64_t mask_windows = 0;
  bool has_bias() const { return !bias.empty(); }
  bool has_mask() const { return !mask.empty(); }
  size_t qkv_size() const { return static_cast<size_t>(windows * heads * n * dim); }
  std::string describe() const {
    std::ostringstream s;
    s << "W=" << windows << " H=" << heads << " n=" << n << " d=" << dim << " scale=" << scale
      << " bias=" << has_bias() << " mask_windows=" << (has_mask() ? mask_windows : 0);
    return s.str();
  }
};

// Random q/k/v; scale either 1/sqrt(d) or chosen so the largest |scale q.k| is exactly 50.
Problem make_problem(wt::Rng &rng, int64_t windows, int64_t heads, int64_t n, int64_t dim, bool bias,
                     MaskKind mask_kind, ScaleKind scale_kind) {
  Problem p;
  p.windows = windows, p.heads = heads, p.n = n, p.dim = dim;
  p.q = rng.vec(p.qkv_size());
  p.k = rng.vec(p.qkv_size());
  p.v = rng.vec(p.qkv_size(), -2.0f, 2.0f);
  if (scale_kind == ScaleKind::kWide) {
    double largest = 0.0;
    for (int64_t wh = 0; wh < windows * heads; ++wh)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double dot = 0.0;
          for (int64_t c = 0; c < dim; ++c)
            dot += double(p.q[(wh * n + i) * dim + c]) * p.k[(wh * n + j) * dim + c];
          largest = std::max(largest, std::fabs(dot));
        }
    p.scale = static_cast<float>(50.0 / std::max(largest, 1e-3));
  } else {
    p.scale = 1.0f / std::sqrt(static_cast<float>(dim));
  }
  if (bias) p.bias = rng.vec(static_cast<size_t>(heads * n * n), -4.0f, 4.0f);
  if (mask_kind != MaskKind::kNone) {
    // Fewer mask windows than windows, so window w must use mask w % mask_windows.
    p.mask_windows = windows > 1 ? windows - 1 : 1;
    p.mask.assign(static_cast<size_t>(p.mask_windows * n * n), 0.0f);
    const float blocked = mask_kind == MaskKind::kHundred ? -100.0f : -wt::kInf;
    for (int64_t m = 0; m < p.mask_windows; ++m)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
          if (i != j && rng.uniform(0.0f, 1.0f) < 0.4f) p.mask[(m * n + i) * n + j] = blocked;
    if (mask_kind == MaskKind::kInf) {
      // Fully masked rows: the first row of mask 0 and the last row of the last mask.
      for (int64_t j = 0; j < n; ++j) p.mask[j] = -wt::kInf;
      for (int64_t j = 0; j < n; ++j) p.mask[((p.mask_windows - 1) * n + (n - 1)) * n + j] = -wt::kInf;
    }
  }
  return p;
}

// float64 reference. Rows whose logits are all -inf give zeros; NaN propagates naturally.
std::vector<double> reference(const Problem &p) {
  const int64_t n = p.n, d = p.dim;
  std::vector<double> out(p.qkv_size());
  std::vector<double> logits(n);
  for (int64_t w = 0; w < p.windows; ++w)
    for (int64_t h = 0; h < p.heads; ++h) {
      const size_t base = static_cast<size_t>((w * p.heads + h) * n * d);
      for (int64_t i = 0; i < n; ++i) {
        double row_max = -INFINITY;
        bool has_nan = false;
        for (int64_t j = 0; j < n; ++j) {
          double dot = 0.0;
          for (int64_t c = 0; c < d; ++c)
            dot += double(p.q[base + i * d + c]) * double(p.k[base + j * d + c]);
          double l = double(p.scale) * dot;
          if (p.has_bias()) l += p.bias[(h * n + i) * n + j];
          if (p.has_mask()) l += p.mask[((w % p.mask_windows) * n + i) * n + j];
          logits[j] = l;
          if (std::isnan(l))
            has_nan = true;
          else
            row_max = std::max(row_max, l);
        }
        double *o = &out[base + i * d];
        if (has_nan) {
          for (int64_t c = 0; c < d; ++c) o[c] = NAN;
          continue;
        }
        if (row_max == -INFINITY) {
          for (int64_t c = 0; c < d; ++c) o[c] = 0.0;
          continue;
        }
        double denom = 0.0;
        for (int64_t c = 0; c < d; ++c) o[c] = 0.0;
        for (int64_t j = 0; j < n; ++j) {
          const double e = std::exp(logits[j] - row_max);
          denom += e;
          for (int64_t c = 0; c < d; ++c) o[c] += e * double(p.v[base + j * d + c]);
        }
        for (int64_t c = 0; c < d; ++c) o[c] /= denom;
      }
    }
  return out;
}

std::vector<float> run(const Problem &p) {
  std::vector<float> out(p.qkv_size(), 777.0f);
  const winattn_status status =
      winattn_window_attention(p.windows, p.heads, p.n, p.dim, p.q.data(), p.k.data(), p.v.data(), p.scale,
                               p.has_bias() ? p.bias.data() : nullptr, p.has_mask() ? p.mask.data() : nullptr,
                               p.mask_windows, out.data());
  REQUIRE_MESSAGE(status == WINATTN_STATUS_OK, winattn_last_error_message());
  return out;
}

// max|got - expected| over elements; NaN must match NaN (a NaN mismatch counts as infinite error).
double max_error(const std::vector<float> &got, const std::vector<double> &expected) {
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(expected[i]) || std::isnan(got[i])) {
      if (std::isnan(expected[i]) != std::isnan(got[i])) return INFINITY;
      continue;
    }
    worst = std::max(worst, std::fabs(double(got[i]) - expected[i]));
  }
  return worst;
}

std::vector<double> widen(const std::vector<float> &x) {
  return std::vector<double>(x.begin(), x.end());
}

// Runs p on every available ISA against the reference and against the scalar path.
void check_all_isas(const Problem &p, const std::vector<std::string> &isas) {
  const auto expected = reference(p);
  const double tolerance = 1e-5 * wt::max_abs(p.v);
  // Rows that are fully masked (all -inf) in the reference must come out as exact zeros.
  std::vector<size_t> zero_rows;
  if (p.has_mask())
    for (int64_t w = 0; w < p.windows; ++w)
      for (int64_t i = 0; i < p.n; ++i) {
        bool all_inf = true;
        for (int64_t j = 0; j < p.n; ++j)
          all_inf = all_inf && p.mask[((w % p.mask_windows) * p.n + i) * p.n + j] == -wt::kInf;
        if (all_inf)
          for (int64_t h = 0; h < p.heads; ++h)
            zero_rows.push_back(static_cast<size_t>(((w * p.heads + h) * p.n + i) * p.dim));
      }
  std::vector<float> scalar_out;
  for (const std::string &isa : isas) {
    wt::force_isa(isa);
    const auto got = run(p);
    CAPTURE(isa);
    CAPTURE(p.describe());
    const double err = max_error(got, expected);
    CHECK_MESSAGE(err <= tolerance, "max error " << err << " > tolerance " << tolerance);
    for (size_t row : zero_rows)
      for (int64_t c = 0; c < p.dim; ++c) REQUIRE(got[row + c] == 0.0f);
    if (isa == "scalar") scalar_out = got;
  }
  if (!scalar_out.empty()) {
    for (const std::string &isa : isas) {
      wt::force_isa(isa);
      const auto got = run(p);
      CAPTURE(isa);
      CAPTURE(p.describe());
      const double err = max_error(got, widen(scalar_out));
      CHECK_MESSAGE(err <= tolerance, "max difference to scalar " << err << " > tolerance " << tolerance);
    }
  }
}

// p on every available ISA with 1, 2 and 3 threads: the same bits each time.
void check_thread_counts(const Problem &p, const std::vector<std::string> &isas) {
  for (const std::string &isa : isas) {
    wt::force_isa(isa);
    CAPTURE(isa);
    CAPTURE(p.describe());
    std::vector<std::vector<float>> outs;
    for (int threads : {1, 2, 3}) {
      REQUIRE(winattn_set_num_threads(threads) == WINATTN_STATUS_OK);
      REQUIRE(winattn_get_num_threads() == threads);
      outs.push_back(run(p));
    }
    winattn_set_num_threads(0);
    CHECK(std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * sizeof(float)) == 0);
    CHECK(std::memcmp(outs[0].data(), outs[2].data(), outs[0].size() * sizeof(float)) == 0);
  }
}

void check_configurations(wt::Rng &rng, int64_t n, int64_t dim, const std::vector<std::string> &isas) {
  const int64_t windows = 3, heads = 2;
  struct Config {
    bool bias;
    MaskKind mask;
    ScaleKind scale;
  };
  const Config configs[] = {
      {false, MaskKind::kNone, ScaleKind::kWide},    {true, MaskKind::kNone, ScaleKind::kNormal},
      {false, MaskKind::kHundred, ScaleKind::kWide}, {true, MaskKind::kHundred, ScaleKind::kWide},
      {false, MaskKind::kInf, ScaleKind::kNormal},   {true, MaskKind::kInf, ScaleKind::kWide},
  };
  for (const Config &c : configs)
    check_all_isas(make_problem(rng, windows, heads, n, dim, c.bias, c.mask, c.scale), isas);
}

}  // namespace

TEST_CASE("window_attention: every ISA is available and reported") {
  const auto isas = wt::available_isas();
  REQUIRE(!isas.empty());
  CHECK(isas.back() == "scalar");
  MESSAGE("ISAs under test: " << [&] {
    std::string s;
    for (const auto &x : isas) s += x + " ";
    return s;
  }());
}

TEST_CASE("window_attention: each n with head_dim 32, every ISA") {
  wt::DispatchGuard guard;
  const auto isas = wt::available_isas();
  wt::Rng rng(101);
  for (int64_t n : {1, 2, 17, 49, 64, 98, 144, 256, 392}) check_configurations(rng, n, 32, isas);
  // Each kernel layout: one to four query vectors per block, rows past the last vector run one at a time
  // (a few) or padded into a ragged vector (more), and the short windows of the row-major kernels.
  for (int64_t n : {8, 16, 24, 32, 40, 50, 100, 130}) check_configurations(rng, n, 32, isas);
}

TEST_CASE("window_attention: each head_dim with several n, every ISA") {
  wt::DispatchGuard guard;
  const auto isas = wt::available_isas();
  wt::Rng rng(102);
  for (int64_t dim : {1, 3, 16, 64, 80})
    for (int64_t n : {1, 2, 17, 49, 64}) check_configurations(rng, n, dim, isas);
}

TEST_CASE("window_attention: odd combinations, every ISA") {
  wt::DispatchGuard guard;
  const auto isas = wt::available_isas();
  wt::Rng rng(103);
  const int64_t combos[][2] = {{98, 3}, {144, 80}, {256, 1}, {2, 64}, {17, 80},
                               {33, 7}, {15, 17},  {98, 64}, {5, 48}};
  for (const auto &c : combos) check_configurations(rng, c[0], c[1], isas);
  // More windows and heads than masks, a single mask window.
  Problem p = make_problem(rng, 7, 5, 49, 32, true, MaskKind::kHundred, ScaleKind::kWide);
  p.mask.resize(49 * 49);
  p.mask_windows = 1;
  check_all_isas(p, isas);
  // mask_windows == num_windows (each window its own mask).
  Problem p2 = make_problem(rng, 4, 3, 16, 16, false, MaskKind::kHundred, ScaleKind::kNormal);
  p2.mask.resize(4 * 16 * 16, -100.0f);
  p2.mask_windows = 4;
  check_all_isas(p2, isas);
}

TEST_CASE("window_attention: calls larger than L2, where the kernels prefetch the items ahead, every ISA") {
  // Above the L2 size window_attention has each kernel prefetch the next items while it computes (the
  // query-major kernel then splits its logits tiles in two around a prefetch step; the batch kernel walks
  // its items' arrays): short and long windows, with and without bias and mask, 2.5-6 MiB per call.
  wt::DispatchGuard guard;
  const auto isas = wt::available_isas();
  wt::Rng rng(104);
  check_all_isas(make_problem(rng, 64, 12, 16, 64, false, MaskKind::kNone, ScaleKind::kNormal), isas);
  check_all_isas(make_problem(rng, 128, 12, 8, 64, false, MaskKind::kNone, ScaleKind::kWide), isas);
  check_all_isas(make_problem(rng, 96, 4, 25, 32, true, MaskKind::kHundred, ScaleKind::kWide), isas);
  check_all_isas(make_problem(rng, 24, 3, 98, 36, true, MaskKind::kInf, ScaleKind::kNormal), isas);
}

TEST_CASE("window_attention: inputs are not modified and mask_windows is ignored without a mask") {
  wt::Rng rng(104);
  Problem p = make_problem(rng, 2, 2, 17, 16, true, MaskKind::kInf, ScaleKind::kWide);
  const Problem copy = p;
  std::vector<float> out(p.qkv_size());
  REQUIRE(winattn_window_attention(p.windows, p.heads, p.n, p.dim, p.q.data(), p.k.data(), p.v.data(),
                                   p.scale, p.bias.data(), p.mask.data(), p.mask_windows,
                                   out.data()) == WINATTN_STATUS_OK);
  CHECK(std::memcmp(p.q.data(), copy.q.data(), p.q.size() * 4) == 0);
  CHECK(std::memcmp(p.k.data(), copy.k.data(), p.k.size() * 4) == 0);
  CHECK(std::memcmp(p.v.data(), copy.v.data(), p.v.size() * 4) == 0);
  CHECK(std::memcmp(p.bias.data(), copy.bias.data(), p.bias.size() * 4) == 0);
  CHECK(std::memcmp(p.mask.data(), copy.mask.data(), p.mask.size() * 4) == 0);
  // No mask: mask_windows 0 or negative is fine.
  for (int64_t mw : {int64_t{0}, int64_t{-3}}) {
    std::vector<float> a(p.qkv_size());
    CHECK(winattn_window_attention(p.windows, p.heads, p.n, p.dim, p.q.data(), p.k.data(), p.v.data(),
                                   p.scale, nullptr, nullptr, mw, a.data()) == WINATTN_STATUS_OK);
  }
}

TEST_CASE("window_attention: NaN stays in its row") {
  wt::DispatchGuard guard;
  const auto isas = wt::available_isas();
  wt::Rng rng(105);
  const int64_t shapes[][2] = {{17, 16}, {49, 32}, {64, 80}, {2, 3}};
  for (const auto &shape : shapes) {
    const int64_t n = shape[0], d = shape[1];
    // NaN in one q row: only that output row is NaN.
    Problem p = make_problem(rng, 2, 2, n, d, true, MaskKind::kHundred, ScaleKind::kWide);
    const int64_t w = 1, h = 0, i = n / 2;
    p.q[((w * 2 + h) * n + i) * d + (d - 1)] = wt::kNaN;
    const auto expected = reference(p);
    for (const std::string &isa : isas) {
      wt::force_isa(isa);
      CAPTURE(isa);
      CAPTURE(p.describe());
      const auto got = run(p);
      for (size_t e = 0; e < got.size(); ++e) {
        const bool in_row = e / d == static_cast<size_t>((w * 2 + h) * n + i);
        if (in_row)
          REQUIRE(std::isnan(got[e]));
        else
          REQUIRE(std::isfinite(got[e]));
      }
      CHECK(max_error(got, expected) <= 1e-5 * wt::max_abs(p.v));
    }
    // NaN in one k row enters every logit row of its (window, head): all those rows are NaN, nothing else.
    Problem pk = make_problem(rng, 2, 2, n, d, false, MaskKind::kNone, ScaleKind::kNormal);
    pk.k[((0 * 2 + 1) * n + (n - 1)) * d] = wt::kNaN;
    for (const std::string &isa : isas) {
      wt::force_isa(isa);
      CAPTURE(isa);
      CAPTURE(pk.describe());
      const auto got = run(pk);
      for (size_t e = 0; e < got.size(); ++e) {
        const bool in_block = e / (n * d) == 1;
        if (in_block)
          REQUIRE(std::isnan(got[e]));
        else
          REQUIRE(std::isfinite(got[e]));
      }
    }
  }
}

TEST_CASE("window_attention: thread counts 1, 2, 3 give identical bits on every ISA") {
  wt::DispatchGuard guard;
  const auto isas = wt::available_isas();
  wt::Rng rng(106);
  const Problem problems[] = {
      make_problem(rng, 5, 3, 49, 32, true, MaskKind::kHundred, ScaleKind::kWide),
      make_problem(rng, 4, 2, 64, 80, false, MaskKind::kInf, ScaleKind::kNormal),
      make_problem(rng, 3, 2, 17, 3, true, MaskKind::kNone, ScaleKind::kWide),
      make_problem(rng, 2, 3, 144, 16, true, MaskKind::kHundred, ScaleKind::kNormal),
  };
  for (const Problem &p : problems) {
    check_thread_counts(p, isas);
  }
}

// A batch of images shares the mask windows (window w uses mask w % mask_windows), and most of Swin's are
// all zeros: the library checks each once per call, skips the zero ones and transposes the others, on
// whichever thread first needs it. Zero windows written as -0.0 as well as +0.0; the rest Swin's -100
// pattern. Every ISA against the reference, and the same bits for 1, 2 and 3 threads (so that window
// preparation shared between threads cannot change a result).
TEST_CASE("window_attention: mask windows reused across images, some all zero, any thread count") {
  wt::DispatchGuard guard;
  const auto isas = wt::available_isas();
  wt::Rng rng(107);
  for (int64_t n : {16, 49, 64}) {
    Problem p = make_problem(rng, 12, 3, n, 32, true, MaskKind::kNone, ScaleKind::kNormal);
    p.mask_windows = 4;
    p.mask.assign(static_cast<size_t>(p.mask_windows * n * n), 0.0f);
    for (int64_t j = 0; j < n * n; j += 3) p.mask[static_cast<size_t>(2 * n * n + j)] = -0.0f;
    for (int64_t m : {1, 3})
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
          if ((i < n / 2) != (j < n / 2 + m)) p.mask[static_cast<size_t>((m * n + i) * n + j)] = -100.0f;
    check_all_isas(p, isas);
    check_thread_counts(p, isas);
  }
}

TEST_CASE("window_attention rejects invalid arguments and leaves out untouched") {
  wt::DispatchGuard guard;
  wt::Rng rng(107);
  const int64_t W = 2, H = 2, n = 9, d = 4;
  const auto q = rng.vec(W * H * n * d), k = rng.vec(W * H * n * d), v = rng.vec(W * H * n * d);
  const auto bias = rng.vec(H * n * n), mask = rng.vec(W * n * n);
  const float *Q = q.data(), *K = k.data(), *V = v.data(), *B = bias.data(), *M = mask.data();
  for (const std::string &isa : wt::available_isas()) {
    wt::force_isa(isa);
    CAPTURE(isa);
    auto out = wt::sentinel_buffer<float>(W * H * n * d);
    float *O = out.data();
    WT_CHECK_INVALID(winattn_window_attention(W, H, n, d, nullptr, K, V, 1.0f, B, M, W, O), out);
    WT_CHECK_INVALID(winattn_window_attention(W, H, n, d, Q, nullptr, V, 1.0f, B, M, W, O), out);
    WT_CHECK_INVALID(winattn_window_attention(W, H, n, d, Q, K, nullptr, 1.0f, B, M, W, O), out);
    CHECK(winattn_window_attention(W, H, n, d, Q, K, V, 1.0f, B, M, W, nullptr) ==
          WINATTN_STATUS_INVALID_ARGUMENT);
    for (int64_t bad : {int64_t{0}, int64_t{-1}, INT64_MIN}) {
      CAPTURE(bad);
      WT_CHECK_INVALID(winattn_window_attention(bad, H, n, d, Q, K, V, 1.0f, B, M, W, O), out);
      WT_CHECK_INVALID(winattn_window_attention(W, bad, n, d, Q, K, V, 1.0f, B, M, W, O), out);
      WT_CHECK_INVALID(winattn_window_attention(W, H, bad, d, Q, K, V, 1.0f, B, M, W, O), out);
      WT_CHECK_INVALID(winattn_window_attention(W, H, n, bad, Q, K, V, 1.0f, B, M, W, O), out);
      WT_CHECK_INVALID(winattn_window_attention(W, H, n, d, Q, K, V, 1.0f, B, M, bad, O),
                       out);  // with a mask
    }
    // Overflowing sizes.
    WT_CHECK_INVALID(winattn_window_attention(INT64_MAX / 2, H, n, d, Q, K, V, 1.0f, B, M, W, O), out);
    WT_CHECK_INVALID(winattn_window_attention(W, INT64_MAX / 2, n, d, Q, K, V, 1.0f, nullptr, nullptr, 0, O),
                     out);
    WT_CHECK_INVALID(
        winattn_window_attention(W, H, int64_t{1} << 32, d, Q, K, V, 1.0f, nullptr, nullptr, 0, O), out);
    WT_CHECK_INVALID(winattn_window_attention(W, H, n, INT64_MAX / 4, Q, K, V, 1.0f, nullptr, nullptr, 0, O),
                     out);
    WT_CHECK_INVALID(winattn_window_attention(W, H, n, d, Q, K, V, 1.0f, B, M, INT64_MAX / 2, O), out);
    WT_CHECK_INVALID(winattn_window_attention(int64_t{1} << 21, int64_t{1} << 21, int64_t{1} << 11,
                                              int64_t{1} << 11, Q, K, V, 1.0f, nullptr, nullptr, 0, O),
                     out);
  }
  // out aliasing or overlapping q, k or v: the would-be output (= an input) must stay unchanged.
  const size_t size = static_cast<size_t>(W * H * n * d);
  for (int which = 0; which < 3; ++which) {
    for (size_t offset : {size_t{0}, size_t{1}, size / 2, size - 1}) {
      CAPTURE(which);
      CAPTURE(offset);
      std::vector<float> qq = q, kk = k, vv = v;
      std::vector<float> big(2 * size);
      std::vector<float> *target = which == 0 ? &qq : which == 1 ? &kk : &vv;
      // Put the aliased input at the start of `big`, so out = big + offset overlaps it.
      std::copy(target->begin(), target->end(), big.begin());
      std::fill(big.begin() + size, big.end(), 5.5f);
      const std::vector<float> before = big;
      const float *QQ = which == 0 ? big.data() : qq.data();
      const float *KK = which == 1 ? big.data() : kk.data();
      const float *VV = which == 2 ? big.data() : vv.data();
      const winattn_status status =
          winattn_window_attention(W, H, n, d, QQ, KK, VV, 1.0f, B, M, W, big.data() + offset);
      CHECK(status == WINATTN_STATUS_INVALID_ARGUMENT);
      CHECK(std::strlen(winattn_last_error_message()) > 0);
      CHECK(std::memcmp(big.data(), before.data(), big.size() * sizeof(float)) == 0);
    }
  }
  // Output directly behind an input (touching, not overlapping) is allowed.
  {
    std::vector<float> big(2 * size);
    std::copy(q.begin(), q.end(), big.begin());
    CHECK(winattn_window_attention(W, H, n, d, big.data(), K, V, 1.0f, B, M, W, big.data() + size) ==
          WINATTN_STATUS_OK);
  }
}
