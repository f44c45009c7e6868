// Every registered f32 LayerNorm kernel the CPU supports, called directly (whatever the dispatch would
// pick), on channel counts around the vector widths, with and without the residual, in place, with strided
// rows, against a float64 oracle written here. The xsimd kernel's template is also run at 4 lanes (SSE2,
// instantiated here): with the AVX2 entry (8 lanes) that exercises its width-generic logic at two widths on
// any x86-64 CPU, since the 16-lane AVX-512 entry only runs where the CPU has AVX-512.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cpu/dispatch.h"
#include "norm/layer_norm.h"
#include "norm/layer_norm_xsimd.h"

namespace {

using winattn::detail::LayerNormKernelInfo;

void layer_norm_sse2(const float *x, const float *residual, float *y, int64_t rows, int64_t channels,
                     int64_t ld, const float *gamma, const float *beta, float eps) {
  winattn::detail::layer_norm_f32_xsimd<xsimd::sse2>(x, residual, y, rows, channels, ld, gamma, beta, eps);
}
const LayerNormKernelInfo f32_layernorm_xsimd_sse2_test = {"f32_layernorm_xsimd_sse2 (test only)", 0,
                                                           layer_norm_sse2};

// The registered kernels the CPU runs, and the template at 4 lanes.
std::vector<const LayerNormKernelInfo *> runnable_kernels() {
  size_t count = 0;
  const LayerNormKernelInfo *const *all = winattn::detail::f32_layernorm_kernels(&count);
  std::vector<const LayerNormKernelInfo *> kernels;
  for (size_t i = 0; i < count; ++i)
    if (winattn::detail::has_features(winattn::detail::active_features(), all[i]->required))
      kernels.push_back(all[i]);
  kernels.push_back(&f32_layernorm_xsimd_sse2_test);
  return kernels;
}

struct Problem {
  int64_t rows, channels, ld;
  std::vector<float> x, residual, gamma, beta;
};

Problem make_problem(std::mt19937 &rng, int64_t rows, int64_t channels, int64_t ld, float offset) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Problem p{rows, channels, ld, {}, {}, {}, {}};
  p.x.resize(static_cast<size_t>(rows * ld));
  p.residual.resize(p.x.size());
  for (float &v : p.x) v = offset + 2.0f * u(rng);
  for (float &v : p.residual) v = u(rng);
  for (int64_t c = 0; c < channels; ++c) {
    p.gamma.push_back(1.0f + 0.5f * u(rng));
    p.beta.push_back(0.5f * u(rng));
  }
  return p;
}

// y = LN(x) (+ residual) in float64, rows of `channels` at stride ld; entries between rows untouched.
std::vector<double> oracle(const Problem &p, bool with_residual, double eps) {
  std::vector<double> y(p.x.begin(), p.x.end());
  for (int64_t r = 0; r < p.rows; ++r) {
    double mean = 0.0, var = 0.0;
    for (int64_t c = 0; c < p.channels; ++c) mean += p.x[r * p.ld + c];
    mean /= double(p.channels);
    for (int64_t c = 0; c < p.channels; ++c) var += std::pow(p.x[r * p.ld + c] - mean, 2);
    var /= double(p.channels);
    for (int64_t c = 0; c < p.channels; ++c) {
      const size_t i = static_cast<size_t>(r * p.ld + c);
      y[i] = (p.x[i] - mean) / std::sqrt(var + eps) * p.gamma[c] + p.beta[c] +
             (with_residual ? p.residual[i] : 0.0);
    }
  }
  return y;
}

// Runs the kernel into a fresh buffer (or in place on x / on residual) and compares with the oracle.
void check(const LayerNormKernelInfo &kernel, Problem p, bool with_residual, int in_place, float eps) {
  const std::string name = kernel.name;
  CAPTURE(name);
  CAPTURE(p.rows);
  CAPTURE(p.channels);
  CAPTURE(p.ld);
  CAPTURE(with_residual);
  CAPTURE(in_place);  // 0: separate y, 1: y = x, 2: y = residual
  const std::vector<double> expected = oracle(p, with_residual, eps);
  std::vector<float> y(p.x.size(), -777.0f);
  float *dst = y.data();
  if (in_place == 1) dst = p.x.data();
  if (in_place == 2) dst = p.residual.data();
  const std::vector<float> untouched(dst, dst + p.x.size());
  kernel.run(p.x.data(), with_residual ? p.residual.data() : nullptr, dst, p.rows, p.channels, p.ld,
             p.gamma.data(), p.beta.data(), eps);
  double worst = 0.0;
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < p.ld; ++c) {
      const size_t i = static_cast<size_t>(r * p.ld + c);
      if (c >= p.channels) {
        REQUIRE(dst[i] == untouched[i]);  // between rows: never written
        continue;
      }
      worst = std::max(worst, std::fabs(dst[i] - expected[i]) / std::max(1.0, std::fabs(expected[i])));
    }
  // The scalar reference sums in double; the vector kernels in float (two-pass: no cancellation).
  CHECK(worst <= 4e-6);
}

}  // namespace

TEST_CASE("layernorm table: names, features, the scalar reference last") {
  size_t count = 0;
  const LayerNormKernelInfo *const *all = winattn::detail::f32_layernorm_kernels(&count);
  REQUIRE(count >= 1);
  std::set<std::string> names;
  for (size_t i = 0; i < count; ++i) {
    const std::string name = all[i]->name;
    CAPTURE(name);
    CHECK(std::string(all[i]->name).rfind("f32_layernorm_", 0) == 0);
    CHECK(names.insert(all[i]->name).second);
    CHECK(static_cast<bool>(all[i]->run));
  }
  CHECK(all[count - 1] == &winattn::detail::f32_layernorm_scalar);
  CHECK(all[count - 1]->required == 0);
  CHECK(&winattn::detail::select_f32_layernorm_kernel(0) == &winattn::detail::f32_layernorm_scalar);
}

TEST_CASE("every runnable layernorm kernel against the float64 oracle") {
  std::mt19937 rng(1234);
  std::vector<int64_t> channels;
  for (int64_t c = 1; c <= 40; ++c) channels.push_back(c);
  for (int64_t c : {47, 48, 49, 63, 64, 65, 96, 127, 192, 384, 385, 768}) channels.push_back(c);
  for (const LayerNormKernelInfo *kernel : runnable_kernels()) {
    for (int64_t c : channels) {
      for (bool residual : {false, true}) {
        check(*kernel, make_problem(rng, 3, c, c, 0.0f), residual, 0, 1e-5f);
        check(*kernel, make_problem(rng, 2, c, c + 5, 0.0f), residual, 0, 1e-5f);  // strided rows
        check(*kernel, make_problem(rng, 1, c, c, 0.0f), residual, 1, 1e-5f);      // y = x
      }
      check(*kernel, make_problem(rng, 2, c, c, 0.0f), true, 2, 1e-5f);  // y = residual
    }
    // A mean far from zero (|mean| / deviation ~ 500): the deviation is not lost to cancellation.
    for (int64_t c : {7, 96, 385}) check(*kernel, make_problem(rng, 2, c, c, 500.0f), true, 0, 1e-5f);
    // A constant row (variance 0) gives beta; a large eps shrinks the normalised part.
    Problem flat = make_problem(rng, 1, 40, 40, 0.0f);
    std::fill(flat.x.begin(), flat.x.end(), 3.0f);
    check(*kernel, flat, false, 0, 1e-5f);
    check(*kernel, make_problem(rng, 2, 96, 96, 0.0f), true, 0, 10.0f);
  }
}
