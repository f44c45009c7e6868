// LayerNorm over the channels of token rows (torch's nn.LayerNorm: biased variance, eps inside the square
// root), optionally added to a residual in the same pass: the norms of a Swin block, fused into the passes
// that already touch each row (the gather of the pre-norm block, the residual add of the res-post-norm one).
//
// A kernel family of its own: one table of self-describing entries (layer_norm_config.cpp), one file per
// ISA, a scalar reference. oneDNN's layer_normalization primitive would be one more pass over the chunk
// and fuses neither a gather nor a residual add in oneDNN 2.6.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/dispatch.h"

namespace winattn::detail {

// For r in [0, rows):
//   y[r][c] = (x[r][c] - mean_r) / sqrt(var_r + eps) * gamma[c] + beta[c]  (+ residual[r][c] if not null)
// mean_r and var_r over the `channels` entries of row r (var biased, as torch). x, residual and y: rows
// at a stride of ld floats (ld >= channels; ignored when rows is 1). y may be x or residual itself (each
// element is read before it is written), never a partial overlap. gamma, beta: [channels].
using LayerNormFn = void (*)(const float *x, const float *residual, float *y, int64_t rows, int64_t channels,
                             int64_t ld, const float *gamma, const float *beta, float eps);

struct LayerNormKernelInfo {
  const char *name;      // "f32_layernorm_xsimd_avx2": dtype, operation, implementation, ISA
  CpuFeatures required;  // features it needs (all of them)
  LayerNormFn run;
};

extern const LayerNormKernelInfo f32_layernorm_xsimd_avx512;
extern const LayerNormKernelInfo f32_layernorm_xsimd_avx2;
extern const LayerNormKernelInfo f32_layernorm_scalar;  // the reference: sums in double
// In dispatch order, the scalar one last; `count` receives the number of entries.
const LayerNormKernelInfo *const *f32_layernorm_kernels(size_t *count);
// The first whose features are all in `features`.
const LayerNormKernelInfo &select_f32_layernorm_kernel(CpuFeatures features);

}  // namespace winattn::detail
