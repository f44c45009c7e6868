// Relative position bias: the index of a window's token pairs into the bias table, the table lookup and its
// gradient, and SwinV2's continuous position bias table. Arguments are validated by the callers in capi/
// (except where a function says it validates).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cpu/dispatch.h"

namespace winattn::detail {

// Tokens of a window: prod(window[0..ndim)). Validates ndim, window entries and the N*N size.
int64_t window_tokens(int ndim, const int64_t *window);
// index[i*N + j] as documented in winattn.h.
void relative_position_index(int ndim, const int64_t *window, int64_t *index);

// Throws INVALID_ARGUMENT naming the first entry outside [0, table_rows).
void validate_index(const int64_t *index, int64_t count, int64_t table_rows);

// bias[h][i][j] = table[index[i*n + j]][h]; index already validated.
void relative_position_bias(const float *table, int64_t table_rows, int64_t num_heads, const int64_t *index,
                            int64_t n, float *bias);
// grad_table[index[i*n + j]][h] += grad_bias[h][i][j], deterministic; index already validated.
void relative_position_bias_backward(const float *grad_bias, int64_t table_rows, int64_t num_heads,
                                     const int64_t *index, int64_t n, float *grad_table);

// SwinV2 table, [(2Wh-1)(2Ww-1)][num_heads] = 16 * sigmoid(MLP(log-spaced coords)). The coordinates are
// normalised by the window minus one, or by the pretrained window minus one where pretrained_h/_w > 0
// (timm's pretrained_window_size).
void continuous_position_bias_table(int64_t window_h, int64_t window_w, const float *w1, const float *b1,
                                    const float *w2, int64_t hidden, int64_t num_heads, float *table,
                                    int64_t pretrained_h = 0, int64_t pretrained_w = 0);

// The gather kernels of the lookup: out[t] = column[scaled_index[t]], t in [0, count).
using GatherF32Fn = void (*)(const float *column, const int32_t *scaled_index, int64_t count, float *out);
struct GatherKernelInfo {
  const char *name;      // "f32_bias_gather_xsimd_avx512": dtype, operation, implementation, ISA
  CpuFeatures required;  // features it needs (all of them)
  GatherF32Fn run;
};
extern const GatherKernelInfo f32_bias_gather_xsimd_avx512;
extern const GatherKernelInfo f32_bias_gather_xsimd_avx2;
extern const GatherKernelInfo f32_bias_gather_scalar;
// The gather kernels in dispatch order, the scalar one last; `count` receives the number of entries.
const GatherKernelInfo *const *f32_bias_gather_kernels(size_t *count);
// The first whose features are all in `features`.
const GatherKernelInfo &select_f32_gather_kernel(CpuFeatures features);

}  // namespace winattn::detail
