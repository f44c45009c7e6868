// Lets the AVX-512 kernel files compile and run on a CPU without AVX-512, for the kernel tests, through
// SIMDe's portable AVX-512 (Debian libsimde-dev), forced in with `-include` before the kernel's own
// <immintrin.h>. Correctness only: the emulation says nothing of speed. GCC's header comes first so that the kernel's include is a no-op; SIMDe's native aliases
// then turn every _mm512_* call into its emulation. The few intrinsics SIMDe 0.7.4 lacks are defined here,
// lane by lane, from their documented semantics (masked-off lanes are never touched in memory).
#pragma once
// (Each file compiled with it must be compiled with -DWINATTN_AVX512_EMULATED, which renames its entries.)

#include <immintrin.h>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <cmath>
#include <cstring>

static inline simde__m512 emu_maskz_loadu_ps(simde__mmask16 m, const void *p) {
  float lanes[16];
  for (int i = 0; i < 16; ++i) {
    lanes[i] = 0.0f;
    if ((m >> i) & 1) std::memcpy(&lanes[i], static_cast<const char *>(p) + 4 * i, 4);
  }
  return simde_mm512_loadu_ps(lanes);
}
static inline void emu_mask_storeu_ps(void *p, simde__mmask16 m, simde__m512 x) {
  float lanes[16];
  simde_mm512_storeu_ps(lanes, x);
  for (int i = 0; i < 16; ++i)
    if ((m >> i) & 1) std::memcpy(static_cast<char *>(p) + 4 * i, &lanes[i], 4);
}
// vreduceps with imm 0x09 only (no fraction bits kept, round toward -inf): x - floor(x); infinities give 0.
static inline simde__m512 emu_reduce_ps(simde__m512 x, int imm) {
  if (imm != (_MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)) __builtin_trap();
  float lanes[16];
  simde_mm512_storeu_ps(lanes, x);
  for (float &v : lanes) v = std::isinf(v) ? 0.0f : v - std::floor(v);
  return simde_mm512_loadu_ps(lanes);
}

static inline float emu_reduce_max_ps(simde__m512 x) {
  float lanes[16];
  simde_mm512_storeu_ps(lanes, x);
  float m = lanes[0];
  for (int i = 1; i < 16; ++i) m = lanes[i] > m ? lanes[i] : m;
  return m;
}
// The tree vreduce... uses in GCC's header: halves added pairwise (the order matters for the bits).
static inline float emu_reduce_add_ps(simde__m512 x) {
  float lanes[16];
  simde_mm512_storeu_ps(lanes, x);
  for (int width = 8; width >= 1; width /= 2)
    for (int i = 0; i < width; ++i) lanes[i] = lanes[i] + lanes[i + width];
  return lanes[0];
}

#ifndef _mm512_shuffle_f32x4  // SIMDe 0.7.4 has the function but no alias
#define _mm512_shuffle_f32x4(a, b, imm) simde_mm512_shuffle_f32x4((a), (b), (imm))
#endif
#undef _mm512_maskz_loadu_ps
#undef _mm512_mask_storeu_ps
#undef _mm512_reduce_ps
#define _mm512_maskz_loadu_ps(m, p) emu_maskz_loadu_ps((m), (p))
#define _mm512_mask_storeu_ps(p, m, x) emu_mask_storeu_ps((p), (m), (x))
#define _mm512_reduce_ps(x, imm) emu_reduce_ps((x), (imm))
#undef _mm512_reduce_max_ps
#undef _mm512_reduce_add_ps
#define _mm512_reduce_max_ps(x) emu_reduce_max_ps(x)
#define _mm512_reduce_add_ps(x) emu_reduce_add_ps(x)
