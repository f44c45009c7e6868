// The LayerNorm rows kernel, written once over an xsimd architecture and instantiated per ISA in its own
// translation unit (layer_norm_avx2.cpp, layer_norm_avx512.cpp). Two passes over a row for the mean and the
// variance (the row stays in L1), a third writes; the channels past the last full vector go one at a time.
#pragma once

#include <xsimd/xsimd.hpp>

#include <cmath>
#include <cstdint>

namespace winattn::detail {

template <class Arch>
void layer_norm_f32_xsimd(const float *x, const float *residual, float *y, int64_t rows, int64_t channels,
                          int64_t ld, const float *gamma, const float *beta, float eps) {
  using Batch = xsimd::batch<float, Arch>;
  constexpr int64_t kWidth = static_cast<int64_t>(Batch::size);
  const int64_t full = channels / kWidth * kWidth;
  const float count = static_cast<float>(channels);
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * ld;
    // Everything on x - x[0] (exact for x near x[0]), mean included: small sums and a small mean whatever
    // the offset of the row, so neither loses the deviations to rounding. Two accumulators: two
    // dependency chains.
    const float pivot = xr[0];
    const Batch vpivot(pivot);
    Batch sum0(0.0f), sum1(0.0f);
    int64_t c = 0;
    for (; c + 2 * kWidth <= full; c += 2 * kWidth) {
      sum0 += Batch::load_unaligned(xr + c) - vpivot;
      sum1 += Batch::load_unaligned(xr + c + kWidth) - vpivot;
    }
    if (c < full) sum0 += Batch::load_unaligned(xr + c) - vpivot;
    float sum = xsimd::hadd(sum0 + sum1);
    for (c = full; c < channels; ++c) sum += xr[c] - pivot;
    const float mean = sum / count;  // of x - pivot

    const Batch vmean(mean);
    Batch sq0(0.0f), sq1(0.0f);
    for (c = 0; c + 2 * kWidth <= full; c += 2 * kWidth) {
      const Batch d0 = (Batch::load_unaligned(xr + c) - vpivot) - vmean;
      const Batch d1 = (Batch::load_unaligned(xr + c + kWidth) - vpivot) - vmean;
      sq0 = xsimd::fma(d0, d0, sq0);
      sq1 = xsimd::fma(d1, d1, sq1);
    }
    if (c < full) {
      const Batch d = (Batch::load_unaligned(xr + c) - vpivot) - vmean;
      sq0 = xsimd::fma(d, d, sq0);
    }
    float squares = xsimd::hadd(sq0 + sq1);
    for (c = full; c < channels; ++c) squares += ((xr[c] - pivot) - mean) * ((xr[c] - pivot) - mean);
    const float rstd = 1.0f / std::sqrt(squares / count + eps);

    const Batch vrstd(rstd);
    const float *rr = residual != nullptr ? residual + r * ld : nullptr;
    float *yr = y + r * ld;
    for (c = 0; c < full; c += kWidth) {
      const Batch normed = ((Batch::load_unaligned(xr + c) - vpivot) - vmean) * vrstd;
      Batch value = xsimd::fma(normed, Batch::load_unaligned(gamma + c), Batch::load_unaligned(beta + c));
      if (rr != nullptr) value += Batch::load_unaligned(rr + c);
      value.store_unaligned(yr + c);
    }
    for (c = full; c < channels; ++c) {
      float value = ((xr[c] - pivot) - mean) * rstd * gamma[c] + beta[c];
      if (rr != nullptr) value += rr[c];
      yr[c] = value;
    }
  }
}

}  // namespace winattn::detail
