// The lookup's gather, written once over an xsimd architecture and instantiated per ISA in its own
// translation unit (bias_lookup_avx2.cpp, bias_lookup_avx512.cpp).
#pragma once

#include <xsimd/xsimd.hpp>

#include <cstdint>

namespace winattn::detail {

template <class Arch>
void gather_f32_xsimd(const float *column, const int32_t *scaled_index, int64_t count, float *out) {
  using FloatBatch = xsimd::batch<float, Arch>;
  using IndexBatch = xsimd::batch<int32_t, Arch>;
  constexpr int64_t kWidth = static_cast<int64_t>(FloatBatch::size);
  int64_t t = 0;
  for (; t + kWidth <= count; t += kWidth) {
    const IndexBatch index = IndexBatch::load_unaligned(scaled_index + t);
    FloatBatch::gather(column, index).store_unaligned(out + t);
  }
  for (; t < count; ++t) out[t] = column[scaled_index[t]];  // < one vector, once per head: load time only
}

}  // namespace winattn::detail
