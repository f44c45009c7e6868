// The exact (erf) GELU of nn.GELU(), GELU(x) = x/2 * (1 + erf(x/sqrt(2))), applied in place to the hidden
// activations of a Swin block's MLP between its two matmuls.
//
// Why not oneDNN's eltwise_gelu_erf post-op: on AVX2 it costs as much as the GEMM it is fused into
// (fc1 of Swin-T stage 1: 84% of the FMA peak without it, 54% with it); this pass over the chunk's hidden
// rows, still in L2, costs a fraction of that.
//
// The vector kernels evaluate erf(z) = z * P(z^2) / Q(z^2) on z clamped to [-4, 4] (|erf(4)| is 1 to 1.5e-8),
// P of degree 6 and Q of degree 4, coefficients fitted here (minimax on relative error, float64); the float32
// result is within 3e-7 of the float64 GELU relative to max(|x|, 1), as torch's own float32 GELU is (1.7e-7).
// NaN gives NaN, +inf gives +inf, -inf gives NaN (-inf * 0), as torch's x/2 * (1 + erf(x/sqrt(2))) does.
// The scalar kernel is the reference: std::erf in double.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/dispatch.h"

namespace winattn::detail {

// x[i] = GELU(x[i]) for i in [0, count).
using GeluFn = void (*)(float *x, int64_t count);

struct GeluKernelInfo {
  const char *name;      // "f32_gelu_xsimd_avx2"
  CpuFeatures required;  // features it needs (all of them)
  GeluFn run;
};

extern const GeluKernelInfo f32_gelu_xsimd_avx512;
extern const GeluKernelInfo f32_gelu_xsimd_avx2;
extern const GeluKernelInfo f32_gelu_scalar;  // the reference: std::erf in double
// In dispatch order, the scalar one last; `count` receives the number of entries.
const GeluKernelInfo *const *f32_gelu_kernels(size_t *count);
// The first whose features are all in `features`.
const GeluKernelInfo &select_f32_gelu_kernel(CpuFeatures features);

}  // namespace winattn::detail
