// The reference LayerNorm: one element at a time, mean and variance summed in double.
#include <cmath>

#include "norm/layer_norm.h"

namespace winattn::detail {

namespace {

void layer_norm(const float *x, const float *residual, float *y, int64_t rows, int64_t channels, int64_t ld,
                const float *gamma, const float *beta, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * ld;
    double sum = 0.0;
    for (int64_t c = 0; c < channels; ++c) sum += xr[c];
    const double mean = sum / static_cast<double>(channels);
    double squares = 0.0;
    for (int64_t c = 0; c < channels; ++c) squares += (xr[c] - mean) * (xr[c] - mean);
    const double rstd = 1.0 / std::sqrt(squares / static_cast<double>(channels) + static_cast<double>(eps));
    const float *rr = residual != nullptr ? residual + r * ld : nullptr;
    float *yr = y + r * ld;
    for (int64_t c = 0; c < channels; ++c) {
      const double value = (xr[c] - mean) * rstd * gamma[c] + beta[c];
      yr[c] = static_cast<float>(rr != nullptr ? rr[c] + value : value);
    }
  }
}

}  // namespace

const LayerNormKernelInfo f32_layernorm_scalar = {"f32_layernorm_scalar", 0, layer_norm};

}  // namespace winattn::detail
