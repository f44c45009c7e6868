#include "activation/gelu.h"
#include "activation/gelu_xsimd.h"

namespace winattn::detail {

namespace {

void gelu(float *x, int64_t count) {
  gelu_f32_xsimd<xsimd::avx512f>(x, count);
}

}  // namespace

const GeluKernelInfo f32_gelu_xsimd_avx512 = {"f32_gelu_xsimd_avx512", kFeatureAvx512, gelu};

}  // namespace winattn::detail
