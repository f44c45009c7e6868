// The reference GELU (std::erf in double) and the GELU kernel table, in dispatch order. A new ISA is one
// file defining its GeluKernelInfo, one line here and one line in CMakeLists.txt.
#include <cmath>

#include "activation/gelu.h"

namespace winattn::detail {

namespace {

void gelu(float *x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const double v = x[i];
    x[i] = static_cast<float>(0.5 * v * (1.0 + std::erf(v * 0.70710678118654752440)));
  }
}

}  // namespace

const GeluKernelInfo f32_gelu_scalar = {"f32_gelu_scalar", 0, gelu};

const GeluKernelInfo *const *f32_gelu_kernels(size_t *count) {
  static const GeluKernelInfo *const kKernels[] = {
      &f32_gelu_xsimd_avx512,
      &f32_gelu_xsimd_avx2,
      &f32_gelu_scalar,
  };
  *count = sizeof kKernels / sizeof kKernels[0];
  return kKernels;
}

const GeluKernelInfo &select_f32_gelu_kernel(CpuFeatures features) {
  size_t count = 0;
  const GeluKernelInfo *const *kernels = f32_gelu_kernels(&count);
  for (size_t i = 0; i < count; ++i)
    if (has_features(features, kernels[i]->required)) return *kernels[i];
  return f32_gelu_scalar;
}

}  // namespace winattn::detail
