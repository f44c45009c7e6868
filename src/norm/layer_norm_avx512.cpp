#include "norm/layer_norm.h"
#include "norm/layer_norm_xsimd.h"

namespace winattn::detail {

namespace {

void layer_norm(const float *x, const float *residual, float *y, int64_t rows, int64_t channels, int64_t ld,
                const float *gamma, const float *beta, float eps) {
  layer_norm_f32_xsimd<xsimd::avx512f>(x, residual, y, rows, channels, ld, gamma, beta, eps);
}

}  // namespace

const LayerNormKernelInfo f32_layernorm_xsimd_avx512 = {"f32_layernorm_xsimd_avx512", kFeatureAvx512,
                                                        layer_norm};

}  // namespace winattn::detail
