// Every registered f32 GELU kernel the CPU supports, called directly, against a float64 oracle written here
// (0.5 x (1 + erf(x / sqrt 2)) with std::erf in double): values over [-12, 12] densely, the regions where
// the approximation changes character (around 0, the clamp at |x / sqrt 2| = 4), huge values, NaN and the
// infinities, every count around the vector widths (the tails). The xsimd template also runs at 4 lanes
// (SSE2, instantiated here), so its width-generic logic is exercised at two widths on any x86-64 CPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "activation/gelu.h"
#include "activation/gelu_xsimd.h"
#include "cpu/dispatch.h"

namespace {

using winattn::detail::GeluKernelInfo;

void gelu_sse2(float *x, int64_t count) {
  winattn::detail::gelu_f32_xsimd<xsimd::sse2>(x, count);
}
const GeluKernelInfo f32_gelu_xsimd_sse2_test = {"f32_gelu_xsimd_sse2 (test only)", 0, gelu_sse2};

std::vector<const GeluKernelInfo *> runnable_kernels() {
  size_t count = 0;
  const GeluKernelInfo *const *all = winattn::detail::f32_gelu_kernels(&count);
  std::vector<const GeluKernelInfo *> kernels;
  for (size_t i = 0; i < count; ++i)
    if (winattn::detail::has_features(winattn::detail::active_features(), all[i]->required))
      kernels.push_back(all[i]);
  kernels.push_back(&f32_gelu_xsimd_sse2_test);
  return kernels;
}

double oracle(double x) {
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}

// The bound every kernel meets: 4e-7 relative to max(|x|, 1) (torch's own float32 GELU is within 1.7e-7;
// the rational approximation within 3e-7, see gelu.h).
constexpr double kTolerance = 4e-7;

void check_values(const GeluKernelInfo &kernel, const std::vector<float> &input) {
  std::vector<float> x = input;
  kernel.run(x.data(), static_cast<int64_t>(x.size()));
  int failures = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = input[i], want = oracle(v);
    const double bound = kTolerance * std::fmax(std::fabs(v), 1.0);
    if (!(std::fabs(x[i] - want) <= bound) && failures++ < 5) {
      FAIL_CHECK(kernel.name << ": GELU(" << v << ") = " << x[i] << ", expected " << want << " (bound "
                             << bound << ")");
    }
  }
  CHECK_MESSAGE(failures == 0, kernel.name << ": " << failures << " values out of bounds");
}

}  // namespace

TEST_CASE("every GELU kernel matches the float64 oracle over [-12, 12]") {
  std::vector<float> values;
  for (int i = -1200000; i <= 1200000; ++i) values.push_back(static_cast<float>(i) * 1e-5f);
  // Around zero and the clamp (|x| = 4 sqrt 2 = 5.657), finely.
  for (float x = 5.6f; x < 5.72f; x = std::nextafter(x, 6.0f)) {
    values.push_back(x);
    values.push_back(-x);
  }
  for (float x = 1e-30f; x < 1e-3f; x *= 1.37f) {
    values.push_back(x);
    values.push_back(-x);
  }
  for (const GeluKernelInfo *kernel : runnable_kernels()) {
    CAPTURE(kernel->name);
    check_values(*kernel, values);
  }
}

TEST_CASE("every GELU kernel: large values, NaN, infinities and every tail length") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const GeluKernelInfo *kernel : runnable_kernels()) {
    CAPTURE(kernel->name);
    std::vector<float> big = {1e3f, -1e3f, 3e38f, -3e38f, 50.0f, -50.0f, 0.0f, -0.0f};
    check_values(*kernel, big);
    // As torch: NaN -> NaN, +inf -> +inf, -inf -> NaN (-inf * 0).
    for (int position = 0; position < 40; ++position) {
      std::vector<float> x(40, 1.0f);
      x[static_cast<size_t>(position)] = nan;
      kernel->run(x.data(), 40);
      CHECK(std::isnan(x[static_cast<size_t>(position)]));
      CHECK(x[static_cast<size_t>((position + 1) % 40)] == doctest::Approx(oracle(1.0)).epsilon(1e-6));
    }
    std::vector<float> x = {inf, -inf, inf, -inf, inf, -inf, inf, -inf, inf};
    kernel->run(x.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      if (i % 2 == 0) {
        CHECK(x[i] == inf);
      } else {
        CHECK(std::isnan(x[i]));
      }
    }
    // Every count from 0 to 70: the tail and nothing past count is touched.
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> dist(-6.0f, 6.0f);
    for (int64_t count = 0; count <= 70; ++count) {
      std::vector<float> in(static_cast<size_t>(count) + 8);
      for (float &v : in) v = dist(rng);
      std::vector<float> out = in;
      kernel->run(out.data(), count);
      for (int64_t i = 0; i < count + 8; ++i) {
        const double v = in[static_cast<size_t>(i)];
        if (i < count) {
          CHECK(std::fabs(out[static_cast<size_t>(i)] - oracle(v)) <=
                kTolerance * std::fmax(std::fabs(v), 1.0));
        } else {
          CHECK(out[static_cast<size_t>(i)] == in[static_cast<size_t>(i)]);
        }
      }
    }
  }
}
