#include "activation/gelu.h"
#include "activation/gelu_xsimd.h"

namespace winattn::detail {

namespace {

void gelu(float *x, int64_t count) {
  gelu_f32_xsimd<xsimd::fma3<xsimd::avx2>>(x, count);
}

}  // namespace

const GeluKernelInfo f32_gelu_xsimd_avx2 = {"f32_gelu_xsimd_avx2", kFeatureAvx2, gelu};

}  // namespace winattn::detail
