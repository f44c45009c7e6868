// The f32 LayerNorm kernel table, in dispatch order. A new ISA is one file defining its LayerNormKernelInfo,
// one line here and one line in CMakeLists.txt.
#include "norm/layer_norm.h"

namespace winattn::detail {

const LayerNormKernelInfo *const *f32_layernorm_kernels(size_t *count) {
  static const LayerNormKernelInfo *const kKernels[] = {
      &f32_layernorm_xsimd_avx512,
      &f32_layernorm_xsimd_avx2,
      &f32_layernorm_scalar,
  };
  *count = sizeof kKernels / sizeof kKernels[0];
  return kKernels;
}

const LayerNormKernelInfo &select_f32_layernorm_kernel(CpuFeatures features) {
  size_t count = 0;
  const LayerNormKernelInfo *const *kernels = f32_layernorm_kernels(&count);
  for (size_t i = 0; i < count; ++i)
    if (has_features(features, kernels[i]->required)) return *kernels[i];
  return f32_layernorm_scalar;
}

}  // namespace winattn::detail
