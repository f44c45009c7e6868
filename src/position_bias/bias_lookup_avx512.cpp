#include "position_bias/gather_f32_xsimd.h"
#include "position_bias/position_bias.h"

namespace winattn::detail {

namespace {

void gather(const float *column, const int32_t *scaled_index, int64_t count, float *out) {
  gather_f32_xsimd<xsimd::avx512f>(column, scaled_index, count, out);
}

}  // namespace

const GatherKernelInfo f32_bias_gather_xsimd_avx512 = {"f32_bias_gather_xsimd_avx512", kFeatureAvx2 | kFeatureAvx512, gather};

}  // namespace winattn::detail
