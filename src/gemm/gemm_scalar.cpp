// Packing, the reference GEMM and the GEMM kernel table, in dispatch order. A new ISA is one file defining
// its GemmKernelInfo, one line here and one line in CMakeLists.txt.
//
// The reference rounds exactly as the vector kernels do (one fused multiply-add per product, the sum
// started from dst + bias, k-blocks in order), so it also checks them bit for bit.
#include <cmath>

#include "activation/gelu_xsimd.h"
#include "gemm/gemm.h"

namespace winattn::detail {

GemmLayout::GemmLayout(int64_t in_features, int64_t out_features)
    : in(in_features),
      out(out_features),
      panels((out_features + kNr - 1) / kNr),
      kblocks((in_features + kMaxKc - 1) / kMaxKc) {}

void pack_gemm_weights(const GemmLayout &layout, const float *weight, float *packed) {
  const int64_t nr = GemmLayout::kNr;
  for (int64_t b = 0; b < layout.kblocks; ++b) {
    const int64_t k0 = layout.block_begin(b), kc = layout.block_size(b);
    for (int64_t p = 0; p < layout.panels; ++p) {
      float *panel = packed + k0 * layout.panels * nr + p * kc * nr;
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t j = 0; j < nr; ++j) {
          const int64_t o = p * nr + j;
          panel[k * nr + j] = o < layout.out ? weight[o * layout.in + k0 + k] : 0.0f;
        }
      }
    }
  }
}

void unpack_gemm_weights(const GemmLayout &layout, const float *packed, float *weight) {
  const int64_t nr = GemmLayout::kNr;
  for (int64_t b = 0; b < layout.kblocks; ++b) {
    const int64_t k0 = layout.block_begin(b), kc = layout.block_size(b);
    for (int64_t p = 0; p < layout.panels; ++p) {
      const float *panel = packed + k0 * layout.panels * nr + p * kc * nr;
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t j = 0; j < nr && p * nr + j < layout.out; ++j)
          weight[(p * nr + j) * layout.in + k0 + k] = panel[k * nr + j];
      }
    }
  }
}

namespace {

void gemm(const GemmArgs &a) {
  const GemmLayout &layout = *a.layout;
  const int64_t nr = GemmLayout::kNr;
  for (int64_t m = 0; m < a.rows; ++m) {
    const float *src = a.src + m * a.lda;
    float *dst = a.dst + m * a.ldc;
    for (int64_t o = 0; o < layout.out; ++o) {
      const int64_t p = o / nr, j = o % nr;
      float acc = a.accumulate ? dst[o] : 0.0f;
      if (a.bias != nullptr) acc = a.accumulate ? acc + a.bias[o] : a.bias[o];
      for (int64_t b = 0; b < layout.kblocks; ++b) {
        const int64_t k0 = layout.block_begin(b), kc = layout.block_size(b);
        const float *panel = a.packed + k0 * layout.panels * nr + p * kc * nr;
        for (int64_t k = 0; k < kc; ++k) acc = std::fmaf(src[k0 + k], panel[k * nr + j], acc);
      }
      dst[o] = a.gelu ? gelu_rational(acc) : acc;
    }
  }
}

}  // namespace

const GemmKernelInfo f32_gemm_scalar = {"f32_gemm_scalar", 0, gemm};

const GemmKernelInfo *const *f32_gemm_kernels(size_t *count) {
  static const GemmKernelInfo *const kKernels[] = {
      &f32_gemm_12x32_broadcast_avx512,
      &f32_gemm_6x16_broadcast_avx2,
      &f32_gemm_scalar,
  };
  *count = sizeof kKernels / sizeof kKernels[0];
  return kKernels;
}

const GemmKernelInfo &select_f32_gemm_kernel(CpuFeatures features) {
  size_t count = 0;
  const GemmKernelInfo *const *kernels = f32_gemm_kernels(&count);
  for (size_t i = 0; i < count; ++i)
    if (has_features(features, kernels[i]->required)) return *kernels[i];
  return f32_gemm_scalar;
}

}  // namespace winattn::detail
