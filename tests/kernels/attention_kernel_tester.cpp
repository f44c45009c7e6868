#include "attention_kernel_tester.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <vector>

namespace wt_kernels {
namespace {

using winattn::detail::AttentionItem;
using winattn::detail::AttentionKernelInfo;
using winattn::detail::AttentionShape;
using winattn::detail::AttentionTerms;

constexpr float kGuard = -12345.5f;  // written around every buffer a kernel may not touch

struct AlignedFloats {
  explicit AlignedFloats(size_t count) : size(count) {
    const size_t bytes = (count * sizeof(float) + 63) / 64 * 64 + 64;
    data = static_cast<float *>(std::aligned_alloc(64, bytes));
    REQUIRE(data != nullptr);
  }
  ~AlignedFloats() { std::free(data); }
  AlignedFloats(const AlignedFloats &) = delete;
  AlignedFloats &operator=(const AlignedFloats &) = delete;
  float *data;
  size_t size;
};

// One (window, head) problem with its own data.
struct Item {
  std::vector<float> q, k, v, out;       // rows of ld floats
  std::vector<float> bias, mask;         // [n][n] or empty
  std::vector<float> bias_t, mask_t;     // [n][ld_t] or empty
};

// out[i] = softmax_j(scale * q_i . k_j (cosine: over the norms) + bias + mask) v, in float64. A row with a NaN
// logit is NaN; a row whose logits are all -inf is zero.
std::vector<double> oracle(const Item &item, int64_t n, int64_t d, int64_t ld, float scale, bool cosine) {
  std::vector<double> out(static_cast<size_t>(n * d), 0.0);
  std::vector<double> logits(static_cast<size_t>(n));
  auto norm = [&](const std::vector<float> &x, int64_t row) {
    double sum = 0.0;
    for (int64_t c = 0; c < d; ++c) sum += static_cast<double>(x[row * ld + c]) * x[row * ld + c];
    return std::max(std::sqrt(sum), 1e-12);
  };
  for (int64_t i = 0; i < n; ++i) {
    bool has_nan = false, all_neg_inf = true;
    double row_max = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0.0;
      for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(item.q[i * ld + c]) * item.k[j * ld + c];
      if (cosine) dot /= norm(item.q, i) * norm(item.k, j);
      double logit = dot * scale;
      if (!item.bias.empty()) logit += item.bias[i * n + j];
      if (!item.mask.empty()) logit += item.mask[i * n + j];
      logits[j] = logit;
      if (std::isnan(logit)) has_nan = true;
      if (logit != -std::numeric_limits<double>::infinity()) all_neg_inf = false;
      if (logit > row_max) row_max = logit;
    }
    double *o = out.data() + i * d;
    if (has_nan) {
      std::fill(o, o + d, std::numeric_limits<double>::quiet_NaN());
      continue;
    }
    if (all_neg_inf) continue;
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) sum += logits[j] = std::exp(logits[j] - row_max);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t c = 0; c < d; ++c) o[c] += logits[j] / sum * item.v[j * ld + c];
  }
  return out;
}

std::vector<float> transpose_padded(const std::vector<float> &x, int64_t n, int64_t ld_t) {
  std::vector<float> t(static_cast<size_t>(n * ld_t), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) t[j * ld_t + i] = x[i * n + j];
  return t;
}

}  // namespace

std::string AttentionKernelTester::describe() const {
  std::ostringstream s;
  s << "n=" << n_ << " head_dim=" << head_dim_ << " row_padding=" << row_padding_ << " items=" << items_
    << " cosine=" << cosine_ << " bias=" << bias_ << " mask=" << mask_ << " logit_range=" << logit_range_
    << " special=" << special_ << " seed=" << seed_;
  return s.str();
}

double AttentionKernelTester::test(const AttentionKernelInfo &kernel) const {
  INFO(kernel.name, ": ", describe());
  const int64_t n = n_, d = head_dim_, ld = head_dim_ + row_padding_;
  const int64_t ld_t = winattn::detail::transposed_terms_ld(n);
  std::mt19937_64 engine(seed_ * 7919 + static_cast<uint64_t>(n * 131 + d));
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  // The scale that puts typical |logits| near logit_range: a dot of two uniform [-1, 1] vectors has a
  // standard deviation of sqrt(d) / 3; a cosine is at most 1.
  const float scale = cosine_ ? logit_range_ : logit_range_ * 3.0f / std::sqrt(static_cast<float>(d));

  std::vector<Item> items(static_cast<size_t>(items_));
  for (int64_t it = 0; it < items_; ++it) {
    Item &item = items[it];
    auto rows = [&](std::vector<float> &x) {
      x.assign(static_cast<size_t>(n * ld), kGuard);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < d; ++c) x[r * ld + c] = unit(engine);
    };
    rows(item.q);
    rows(item.k);
    rows(item.v);
    item.out.assign(static_cast<size_t>(n * ld), kGuard);
    if (bias_) {
      item.bias.resize(static_cast<size_t>(n * n));
      for (float &b : item.bias) b = 2.0f * unit(engine);
    }
    if (mask_) {  // a shifted window's pattern, with one asymmetric entry: kernels must not assume symmetry
      item.mask.resize(static_cast<size_t>(n * n));
      const int64_t split = static_cast<int64_t>(engine() % static_cast<uint64_t>(n + 1));
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) item.mask[i * n + j] = (i < split) == (j < split) ? 0.0f : -100.0f;
      if (n > 1) item.mask[n - 1] = -3.0f;  // mask[0][n-1]
    }
    if (special_ && it == 0) {
      if (item.mask.empty()) item.mask.assign(static_cast<size_t>(n * n), 0.0f);
      for (int64_t j = 0; j < n; ++j) item.mask[j] = -std::numeric_limits<float>::infinity();  // row 0
      if (n > 1) item.mask[1 * n + (n - 1)] = std::numeric_limits<float>::quiet_NaN();          // row 1
    }
    if (kernel.transposed_terms) {
      if (!item.bias.empty()) item.bias_t = transpose_padded(item.bias, n, ld_t);
      if (!item.mask.empty()) item.mask_t = transpose_padded(item.mask, n, ld_t);
    }
  }

  AttentionShape shape;
  shape.n = n;
  shape.head_dim = d;
  shape.ld_q = shape.ld_k = shape.ld_v = shape.ld_out = ld;
  shape.cosine = cosine_;
  // Prefetch hints over the inputs (what the batched call asks for the next item), in both variants.
  shape.prefetch[0] = {items[0].q.data(), n * ld};
  shape.prefetch[1] = {items[0].v.data(), n * ld};
  shape.prefetch_to_l1 = (seed_ & 1) != 0;
  std::vector<AttentionItem> calls(static_cast<size_t>(items_));
  for (int64_t it = 0; it < items_; ++it) {
    Item &item = items[it];
    AttentionItem &call = calls[it];
    call.q = item.q.data();
    call.k = item.k.data();
    call.v = item.v.data();
    call.out = item.out.data();
    call.scale = scale;
    AttentionTerms &terms = call.terms;
    terms.bias = item.bias.empty() ? nullptr : item.bias.data();
    terms.mask = item.mask.empty() ? nullptr : item.mask.data();
    terms.bias_t = item.bias_t.empty() ? nullptr : item.bias_t.data();
    terms.mask_t = item.mask_t.empty() ? nullptr : item.mask_t.data();
    terms.ld_bias_t = terms.ld_mask_t = ld_t;
  }

  // The workspace the entry asks for, followed by guard floats that must survive.
  const size_t workspace = kernel.workspace_floats(n, d);
  constexpr size_t kGuardFloats = 64;
  AlignedFloats scratch(workspace + kGuardFloats);
  for (size_t i = 0; i < workspace + kGuardFloats; ++i) scratch.data[i] = kGuard;
  if (kernel.run_batch != nullptr) {
    REQUIRE(items_ <= kernel.max_batch);
    kernel.run_batch(shape, calls.data(), items_, scratch.data);
  } else {
    for (const AttentionItem &call : calls)
      kernel.run(shape, call.q, call.k, call.v, call.scale, call.terms, call.out, scratch.data);
  }
  bool guard_intact = true;
  for (size_t i = workspace; i < workspace + kGuardFloats; ++i) guard_intact &= scratch.data[i] == kGuard;
  CHECK_MESSAGE(guard_intact, "the kernel wrote past the workspace its entry declares");

  double worst = 0.0;
  for (int64_t it = 0; it < items_; ++it) {
    const Item &item = items[it];
    const std::vector<double> expected = oracle(item, n, d, ld, scale, cosine_);
    double v_max = 0.0;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < d; ++c) v_max = std::max(v_max, std::fabs(static_cast<double>(item.v[r * ld + c])));
    // fp32 logits carry a relative error of a few ulps, which exp turns into an absolute one on the weights:
    // the tolerance grows with the logits' magnitude.
    const double tolerance = std::max(v_max, 1e-30) * 1e-5 * std::max(1.0, logit_range_ / 8.0);
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t c = 0; c < ld; ++c) {
        const float got = item.out[i * ld + c];
        if (c >= d) {  // row padding: never written
          if (got != kGuard && bad++ < 3) FAIL_CHECK("item " << it << " wrote padding at row " << i << " col " << c);
          continue;
        }
        const double want = expected[i * d + c];
        if (std::isnan(want)) {
          if (!std::isnan(got) && bad++ < 3) FAIL_CHECK("item " << it << " out[" << i << "][" << c << "] = " << got << ", expected NaN");
          continue;
        }
        if (special_ && it == 0 && i == 0) {  // all -inf: exact zeros
          if (got != 0.0f && bad++ < 3) FAIL_CHECK("fully masked row gave " << got << " at col " << c);
          continue;
        }
        const double err = std::fabs(got - want);
        if (!(err <= tolerance)) {
          if (bad++ < 3)
            FAIL_CHECK("item " << it << " out[" << i << "][" << c << "] = " << got << ", expected " << want
                               << " (tolerance " << tolerance << ")");
          continue;
        }
        worst = std::max(worst, err / tolerance);
      }
    }
  }
  return worst;
}

}  // namespace wt_kernels
