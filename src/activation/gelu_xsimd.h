// The vector GELU kernel, written once over an xsimd architecture and instantiated per ISA in its own
// translation unit (gelu_avx2.cpp, gelu_avx512.cpp). See gelu.h for the approximation and its accuracy.
#pragma once

#include <xsimd/xsimd.hpp>

#include <cmath>
#include <cstdint>

namespace winattn::detail {

// erf(z) / z = P(z^2) / Q(z^2) on [0, 4]: P's and Q's coefficients, lowest degree first.
inline constexpr float kGeluErfP[7] = {
    1.1283790943814365e+00f, 2.0708708374007265e-01f,  5.1519468007721295e-02f, 3.9887580029492210e-03f,
    1.4722970724034240e-04f, -1.9418189511398612e-06f, 1.9107043857044520e-08f};
inline constexpr float kGeluErfQ[5] = {1.0f, 5.1685740738719420e-01f, 1.1795463329896577e-01f,
                                       1.4954545218382709e-02f, 1.0206293234633448e-03f};

// GELU of one value with the vector kernels' formula (the tail of a row).
inline float gelu_rational(float x) {
  float z = x * 0.70710678118654752f;
  z = std::fmin(std::fmax(z, -4.0f), 4.0f);
  const float t = z * z;
  float p = kGeluErfP[6];
  for (int k = 5; k >= 0; --k) p = std::fma(p, t, kGeluErfP[k]);
  float q = kGeluErfQ[4];
  for (int k = 3; k >= 0; --k) q = std::fma(q, t, kGeluErfQ[k]);
  // erf(4) is 1 in float32: saturate exactly, so -inf gives NaN (-inf * 0) and large negatives -0, as torch.
  const float erf = z >= 4.0f ? 1.0f : (z <= -4.0f ? -1.0f : z * (p / q));
  return 0.5f * x * (1.0f + erf);
}

// GELU of one vector (also applied by the GEMM kernels to their accumulators, gemm/gemm.h).
template <class Arch>
inline xsimd::batch<float, Arch> gelu_batch(xsimd::batch<float, Arch> v) {
  using Batch = xsimd::batch<float, Arch>;
  const Batch lo(-4.0f), hi(4.0f), half(0.5f), one(1.0f), rsqrt2(0.70710678118654752f);
  // NaN: max/min would drop it (xsimd's max(NaN, c) = c), so z keeps it through a blend.
  const Batch clamped = xsimd::min(xsimd::max(v * rsqrt2, lo), hi);
  const Batch z = xsimd::select(v != v, v, clamped);
  const Batch t = z * z;
  Batch p(kGeluErfP[6]);
  for (int k = 5; k >= 0; --k) p = xsimd::fma(p, t, Batch(kGeluErfP[k]));
  Batch q(kGeluErfQ[4]);
  for (int k = 3; k >= 0; --k) q = xsimd::fma(q, t, Batch(kGeluErfQ[k]));
  // erf(4) is 1 in float32: saturate exactly (see gelu_rational).
  const Batch erf = xsimd::select(z >= hi, one, xsimd::select(z <= lo, -one, z * (p / q)));
  return half * v * (one + erf);
}

template <class Arch>
void gelu_f32_xsimd(float *x, int64_t count) {
  using Batch = xsimd::batch<float, Arch>;
  constexpr int64_t kWidth = static_cast<int64_t>(Batch::size);
  auto gelu = [](Batch v) { return gelu_batch<Arch>(v); };
  int64_t i = 0;
  // Two vectors a step: two independent chains for the divisions' latency.
  for (; i + 2 * kWidth <= count; i += 2 * kWidth) {
    const Batch a = gelu(Batch::load_unaligned(x + i));
    const Batch b = gelu(Batch::load_unaligned(x + i + kWidth));
    a.store_unaligned(x + i);
    b.store_unaligned(x + i + kWidth);
  }
  for (; i + kWidth <= count; i += kWidth) gelu(Batch::load_unaligned(x + i)).store_unaligned(x + i);
  for (; i < count; ++i) x[i] = gelu_rational(x[i]);
}

}  // namespace winattn::detail
