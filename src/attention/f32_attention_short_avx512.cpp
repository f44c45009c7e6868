// AVX-512 instantiation of the short-window batched attention kernel (compiled with -mavx512f/bw/dq/vl):
// 16 query rows per pass, four quads of 4 rows.
#include <immintrin.h>

#include "attention/f32_attention_short_impl.h"

namespace winattn::detail {
namespace {

struct ShortAvx512 {
  using Vec = __m512;
  using Mask = __mmask16;
  static constexpr int kWidth = 16;
  // P V tiles: up to 4 channel vectors; rows so that about 24 accumulators stay in registers.
  static constexpr int kPvVecs = 4;
  static constexpr int pv_rows(int vecs) { return vecs >= 4 ? 6 : vecs == 3 ? 8 : vecs == 2 ? 12 : 16; }

  // Keeps x in a register from here on: a load feeding it is not folded into each of its uses.
  static void in_register(Vec &x) {
#ifdef __AVX512F__  // (not when the dev test builds this file over an emulation)
    asm("" : "+v"(x));
#else
    (void)x;
#endif
  }
  static Vec zero() {
    return _mm512_setzero_ps();
  }
  static Vec set1(float x) {
    return _mm512_set1_ps(x);
  }
  static Vec load(const float *p) {
    return _mm512_load_ps(p);
  }
  static Vec loadu(const float *p) {
    return _mm512_loadu_ps(p);
  }
  static void store(float *p, Vec x) {
    _mm512_store_ps(p, x);
  }
  static void storeu(float *p, Vec x) {
    _mm512_storeu_ps(p, x);
  }
  static Vec broadcast(const float *p) {
    return _mm512_set1_ps(*p);
  }
  static Vec fmadd(Vec a, Vec b, Vec c) {
    return _mm512_fmadd_ps(a, b, c);
  }
  static Vec mul(Vec a, Vec b) {
    return _mm512_mul_ps(a, b);
  }
  static Vec add(Vec a, Vec b) {
    return _mm512_add_ps(a, b);
  }
  static Vec sub(Vec a, Vec b) {
    return _mm512_sub_ps(a, b);
  }
  static Vec max(Vec a, Vec b) {
    return _mm512_max_ps(a, b);
  }
  // Lanes [first, first + count).
  static Mask lanes(int64_t first, int64_t count) {
    return static_cast<Mask>(((1u << count) - 1u) << first);
  }
  static Mask mask_or(Mask a, Mask b) {
    return static_cast<Mask>(a | b);
  }
  static Vec maskz_loadu(Mask m, const float *p) {
    return _mm512_maskz_loadu_ps(m, p);
  }
  static void mask_storeu(float *p, Mask m, Vec x) {
    _mm512_mask_storeu_ps(p, m, x);
  }
  static Vec neg_inf_to_zero(Vec x) {
    const Mask inf =
        _mm512_cmp_ps_mask(x, _mm512_set1_ps(-std::numeric_limits<float>::infinity()), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(x, inf, _mm512_setzero_ps());
  }
  // 1 / x, and 0 where x is 0 (NaN stays NaN).
  static Vec recip_or_zero(Vec x) {
    const Mask nonzero = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    return _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0f), x);
  }
  static float hsum(Vec x) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(x),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // exp(x) for x <= 0 or NaN (x = logit - row maximum): u = x log2(e); 2^u = 2^floor(u) * 2^f with
  // f = u - floor(u) from vreduceps, 2^f by a degree-5 polynomial on [0, 1) (relative error 9.4e-8, exact at
  // 0; the coefficients of the per-item kernels), 2^floor(u) by vscalefps. u below -126 (-inf included)
  // gives exactly 0; NaN stays NaN.
  static Vec exp_neg(Vec x) {
    const Vec u = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    const Mask keep = _mm512_cmp_ps_mask(u, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);  // u >= -126 or NaN
    const Vec f = _mm512_reduce_ps(u, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    Vec p = _mm512_set1_ps(0.0018671301659196615f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.009017029777169228f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05579991266131401f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24016444385051727f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931512951850891f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, u);
  }

  // Lane 4L + m of the result (m < 4, L the 128-bit lane) = the sum of the four elements of 128-bit lane L
  // of x[m]: in-lane unpacks and adds only. Every lane of every x goes through the same additions.
  __attribute__((always_inline)) static inline Vec quad_sum(Vec x0, Vec x1, Vec x2, Vec x3) {
    const __m512d a = _mm512_castps_pd(_mm512_add_ps(_mm512_unpacklo_ps(x0, x1), _mm512_unpackhi_ps(x0, x1)));
    const __m512d b = _mm512_castps_pd(_mm512_add_ps(_mm512_unpacklo_ps(x2, x3), _mm512_unpackhi_ps(x2, x3)));
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  // acc[k][r]: a half tile's 2 keys x 8 rows of per-lane partial dot products. out[k], 128-bit lane by lane:
  // rows 0-3 (lanes 0+2, lanes 1+3), rows 4-7 (the same).
  __attribute__((always_inline)) static inline void part(const Vec (&acc)[2][8], Vec (&out)[2]) {
#pragma GCC unroll 2
    for (int k = 0; k < 2; ++k) {
      const Vec a = quad_sum(acc[k][0], acc[k][1], acc[k][2], acc[k][3]);
      const Vec b = quad_sum(acc[k][4], acc[k][5], acc[k][6], acc[k][7]);
      out[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    }
  }
  // The slot's 16 rows from its two halves' parts: lanes 0-7 from lo, 8-15 from hi.
  __attribute__((always_inline)) static inline Vec join(Vec lo, Vec hi) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(lo, hi, 0x88), _mm512_shuffle_f32x4(lo, hi, 0xDD));
  }
};

void run_short(const AttentionShape &shape, const AttentionItem *items, int64_t count, float *workspace) {
  attention_short_impl::Kernel<ShortAvx512>::run(shape, items, count, workspace);
}

}  // namespace

// 16 query rows (lanes, quads of consecutive items) by 2 keys per logits step; any n in [1, kMaxN].
const AttentionKernelInfo f32_attention_short_16x2_avx512 = {
    "f32_attention_short_16x2_avx512",
    kFeatureAvx2 | kFeatureAvx512,
    nullptr,
    run_short,
    attention_short_impl::kMaxBatch,
    true,
    ShortAvx512::kWidth,
    2,
    1,
    attention_short_impl::kDispatchMaxN,
    attention_short_impl::kMaxN,
    attention_short_impl::workspace_floats<ShortAvx512>,
};

}  // namespace winattn::detail
