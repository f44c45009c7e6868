// The f32 attention kernel table: every kernel of the family, in dispatch order. A new ISA or variant is one
// file defining its AttentionKernelInfo, one line here and one line in CMakeLists.txt.
#include <cstddef>
#include <cstdint>

#include "attention/attention.h"

namespace winattn::detail {

const AttentionKernelInfo *const *f32_attention_kernels(size_t *count) {
  static const AttentionKernelInfo *const kKernels[] = {
      &f32_attention_rowmajor_6x64_avx512,  // n <= 16
      &f32_attention_qmajor_64x6_avx512,    // n > 16
      &f32_attention_rowmajor_4x24_avx2,    // n <= 16
      &f32_attention_qmajor_24x4_avx2,      // n > 16
      &f32_attention_rowmajor_1x1_scalar,   // any n, any CPU
  };
  *count = sizeof kKernels / sizeof kKernels[0];
  return kKernels;
}

const AttentionKernelInfo &select_f32_attention_kernel(CpuFeatures features, int64_t n) {
  size_t count = 0;
  const AttentionKernelInfo *const *kernels = f32_attention_kernels(&count);
  for (size_t i = 0; i < count; ++i) {
    const AttentionKernelInfo &kernel = *kernels[i];
    if (has_features(features, kernel.required) && kernel.min_n <= n && n <= kernel.max_n) return kernel;
  }
  return f32_attention_rowmajor_1x1_scalar;
}

}  // namespace winattn::detail
