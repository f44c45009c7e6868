#include "position_bias/position_bias.h"

namespace winattn::detail {

namespace {

void gather(const float *column, const int32_t *scaled_index, int64_t count, float *out) {
  for (int64_t t = 0; t < count; ++t) out[t] = column[scaled_index[t]];
}

}  // namespace

const GatherKernelInfo f32_bias_gather_scalar = {"f32_bias_gather_scalar", 0, gather};

}  // namespace winattn::detail
