// The f32 attention kernel table: every kernel of the family, in dispatch order. A new ISA or variant is one
// file defining its AttentionKernelInfo, one line here and one line in CMakeLists.txt.
#include <cstddef>
#include <cstdint>

#include "attention/attention.h"

namespace winattn::detail {

const AttentionKernelInfo *const *f32_attention_kernels(size_t *count) {
  static const AttentionKernelInfo *const kKernels[] = {
      &f32_attention_short_16x2_avx512,     // n <= 16: several items per pass
      &f32_attention_rowmajor_6x64_avx512,  // n <= 16 (a fallback: the short kernel comes first)
      &f32_attention_qmajor_64x6_avx512,    // n > 16
      &f32_attention_onevec_4x3_avx2,       // n <= 8: one vector of queries per item
      &f32_attention_short_8x2_avx2,        // n <= 8: several items per pass (a fallback: onevec first)
      &f32_attention_rowmajor_4x24_avx2,    // n <= 8 (a fallback: the kernels above come first)
      &f32_attention_qmajor_24x4_avx2,      // n > 8
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

namespace {

void transpose_scalar(const float *src, int64_t n, int64_t ld, float *dst) {
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < ld; ++i) dst[j * ld + i] = i < n ? src[i * n + j] : 0.0f;
  }
}

}  // namespace

const TransposeTermsInfo f32_transpose_terms_scalar = {"f32_transpose_terms_scalar", 0, transpose_scalar};

const TransposeTermsInfo *const *f32_transpose_terms_kernels(size_t *count) {
  static const TransposeTermsInfo *const kKernels[] = {
      &f32_transpose_terms_16x16_avx512,
      &f32_transpose_terms_8x8_avx2,
      &f32_transpose_terms_scalar,
  };
  *count = sizeof kKernels / sizeof kKernels[0];
  return kKernels;
}

void transpose_terms(const float *src, int64_t n, float *dst) {
  size_t count = 0;
  const TransposeTermsInfo *const *kernels = f32_transpose_terms_kernels(&count);
  const CpuFeatures features = active_features();
  for (size_t i = 0; i < count; ++i) {
    if (has_features(features, kernels[i]->required)) {
      kernels[i]->run(src, n, transposed_terms_ld(n), dst);
      return;
    }
  }
}

}  // namespace winattn::detail
