#include "position_bias/position_bias.h"

namespace winattn::detail {

void gather_f32_scalar(const float *column, const int32_t *scaled_index, int64_t count, float *out) {
  for (int64_t t = 0; t < count; ++t) out[t] = column[scaled_index[t]];
}

}  // namespace winattn::detail
