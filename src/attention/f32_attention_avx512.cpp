// AVX-512 instantiation of the fused attention kernel (compiled with -mavx512f/bw/dq/vl).
#include <immintrin.h>

#include "attention/f32_attention_impl.h"
#include "attention/f32_attention_tr_impl.h"

namespace winattn::detail {
namespace {

struct Avx512 {
  using Vec = __m512;
  using Mask = __mmask16;
  static constexpr int kWidth = 16;
  static constexpr int kRows = 6;     // query rows per block
  static constexpr int kColVecs = 4;  // logits tile: 6 x 4 vectors = 24 accumulators
  static constexpr int kOutVecs = 4;  // output tile: up to 6 x 4 vectors
  // Query-major kernel: blocks of up to 4 query vectors; tiles of 24 accumulators (16 for one vector).
  static constexpr int kTrBlockVecs = 4;
  static constexpr int tr_key_rows(int vecs) { return vecs == 4 ? 6 : vecs == 3 ? 8 : vecs == 2 ? 12 : 16; }
  static constexpr int tr_out_cols(int vecs) { return tr_key_rows(vecs); }  // out^T tiles (long windows)
  // P V always through out^T tiles (kTrRowMajorOutputMaxN 0; the row-major P V and its tile parameters
  // kRegs, kPvMaxVecs, pv_rows are then not needed): this kernel runs from 17 tokens on, where on AVX2 the
  // row-major P V gained little or lost, and it has not been timed on AVX-512 hardware.
  static constexpr int64_t kTrRowMajorOutputMaxN = 0;

  static Vec zero() { return _mm512_setzero_ps(); }
  static Vec set1(float x) { return _mm512_set1_ps(x); }
  static Vec load(const float *p) { return _mm512_load_ps(p); }
  static Vec loadu(const float *p) { return _mm512_loadu_ps(p); }
  static void store(float *p, Vec x) { _mm512_store_ps(p, x); }
  static void storeu(float *p, Vec x) { _mm512_storeu_ps(p, x); }
  static Vec broadcast(const float *p) { return _mm512_set1_ps(*p); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
  static Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
  static Vec max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
  static Mask first_lanes(int64_t count) { return static_cast<Mask>((1u << count) - 1u); }
  static Vec maskz_loadu(Mask m, const float *p) { return _mm512_maskz_loadu_ps(m, p); }
  static void mask_storeu(float *p, Mask m, Vec x) { _mm512_mask_storeu_ps(p, m, x); }
  static Vec neg_inf_outside(Mask m, Vec x) {
    return _mm512_mask_mov_ps(_mm512_set1_ps(-std::numeric_limits<float>::infinity()), m, x);
  }
  static Vec neg_inf_to_zero(Vec x) {
    const __mmask16 inf =
        _mm512_cmp_ps_mask(x, _mm512_set1_ps(-std::numeric_limits<float>::infinity()), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(x, inf, _mm512_setzero_ps());
  }
  // Whether any lane has |x| >= limit (NaN lanes do not count).
  static bool any_abs_ge(Vec x, float limit) {
    return _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(limit), _CMP_GE_OQ) != 0;
  }
  // 1 / x, and 0 where x is 0.
  static Vec recip_or_zero(Vec x) {
    const __mmask16 nonzero = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    return _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0f), x);
  }
  static float reduce_max(Vec x) { return _mm512_reduce_max_ps(x); }
  static float reduce_add(Vec x) { return _mm512_reduce_add_ps(x); }

  // In-register transpose of a 16 x 16 block: rows[i][j] -> rows[j][i]. Unpacks transpose the 4 x 4 blocks
  // inside each 128-bit lane; two rounds of lane shuffles then move the blocks.
  __attribute__((always_inline)) static inline void transpose(Vec *rows) {
    Vec t[16], u[16];
#pragma GCC unroll 16
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int g = 0; g < 4; ++g) {  // u[4g + m], lane L: column 4L + m of rows 4g..4g+3
      const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
      const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
      u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
      u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
      u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
      u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
#pragma GCC unroll 16
    for (int m = 0; m < 4; ++m) {
      const Vec x01 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44);  // g0 L0, g0 L1, g1 L0, g1 L1
      const Vec y01 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);  // g0 L2, g0 L3, g1 L2, g1 L3
      const Vec x23 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44);
      const Vec y23 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);
      rows[m] = _mm512_shuffle_f32x4(x01, x23, 0x88);
      rows[4 + m] = _mm512_shuffle_f32x4(x01, x23, 0xDD);
      rows[8 + m] = _mm512_shuffle_f32x4(y01, y23, 0x88);
      rows[12 + m] = _mm512_shuffle_f32x4(y01, y23, 0xDD);
    }
  }

  // Lane t of the result = the sum of the lanes of x[t], t < 16 (x is clobbered): the transpose-and-add
  // tree, 30 shuffles and 15 adds.
  __attribute__((always_inline)) static inline Vec sum_rows(Vec *x) {
    Vec y[8], z[4];
#pragma GCC unroll 16
    for (int k = 0; k < 8; ++k)  // lane L: x[2k] pair sums 0, x[2k+1] 0, x[2k] 1, x[2k+1] 1
      y[k] = _mm512_add_ps(_mm512_unpacklo_ps(x[2 * k], x[2 * k + 1]),
                           _mm512_unpackhi_ps(x[2 * k], x[2 * k + 1]));
#pragma GCC unroll 16
    for (int k = 0; k < 4; ++k) {  // lane L, element m: the sum of lane L of x[4k + m]
      const __m512d c = _mm512_castps_pd(y[2 * k]), d = _mm512_castps_pd(y[2 * k + 1]);
      z[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(c, d)),
                           _mm512_castpd_ps(_mm512_unpackhi_pd(c, d)));
    }
    const Vec s01 =
        _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x44), _mm512_shuffle_f32x4(z[0], z[1], 0xEE));
    const Vec s23 =
        _mm512_add_ps(_mm512_shuffle_f32x4(z[2], z[3], 0x44), _mm512_shuffle_f32x4(z[2], z[3], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, 0x88), _mm512_shuffle_f32x4(s01, s23, 0xDD));
  }

  // exp(s - m) for a softmax, given m_log2e = m * log2(e): u = s log2(e) - m_log2e in one FMA (the rounding
  // of m_log2e is common to the row and cancels in the normalisation); 2^u = 2^floor(u) * 2^f with
  // f = u - floor(u) from vreduceps, 2^f by a degree-5 polynomial fitted for relative error (9.4e-8; exact at
  // 0) on [0, 1), and 2^floor(u) by vscalefps. u below -126 (including -inf) gives exactly 0, never a
  // denormal; NaN stays NaN.
  static Vec exp_diff(Vec s, Vec m_log2e) {
    const Vec u = _mm512_fmsub_ps(s, _mm512_set1_ps(1.44269504088896341f), m_log2e);
    const __mmask16 keep = _mm512_cmp_ps_mask(u, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);  // u >= -126 or NaN
    // No clamp needed: lanes below -126 (-inf included, where vreduceps gives 0) are zeroed by the mask.
    const Vec f = _mm512_reduce_ps(u, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    Vec p = _mm512_set1_ps(0.0018671301659196615f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.009017029777169228f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05579991266131401f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24016444385051727f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931512951850891f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, u);
  }
};

void run_rowmajor(const AttentionShape &shape, const float *q, const float *k, const float *v, float scale,
                  const AttentionTerms &terms, float *out, float *workspace) {
  attention_impl::Kernel<Avx512>::run(shape, q, k, v, scale, terms, out, workspace);
}

void run_qmajor(const AttentionShape &shape, const float *q, const float *k, const float *v, float scale,
                const AttentionTerms &terms, float *out, float *workspace) {
  attention_tr_impl::Kernel<Avx512>::run(shape, q, k, v, scale, terms, out, workspace);
}

}  // namespace

// Row-major: kRows query rows by kColVecs key vectors; picked for the shortest windows.
const AttentionKernelInfo f32_attention_rowmajor_6x64_avx512 = {
    "f32_attention_rowmajor_6x64_avx512",
    kFeatureAvx2 | kFeatureAvx512,
    run_rowmajor,
    nullptr,
    1,
    false,
    Avx512::kRows,
    Avx512::kColVecs *Avx512::kWidth,
    1,
    kRowMajorMaxN,
    INT64_MAX,
    attention_impl::workspace_floats<Avx512>,
};

// Query-major: blocks of kTrBlockVecs query vectors (in the lanes) by tr_key_rows key rows.
const AttentionKernelInfo f32_attention_qmajor_64x6_avx512 = {
    "f32_attention_qmajor_64x6_avx512",
    kFeatureAvx2 | kFeatureAvx512,
    run_qmajor,
    nullptr,
    1,
    true,
    Avx512::kTrBlockVecs *Avx512::kWidth,
    Avx512::tr_key_rows(Avx512::kTrBlockVecs),
    kRowMajorMaxN + 1,
    INT64_MAX,
    INT64_MAX,
    attention_tr_impl::workspace_floats<Avx512>,
};

const TransposeTermsInfo f32_transpose_terms_16x16_avx512 = {"f32_transpose_terms_16x16_avx512",
                                                             kFeatureAvx2 | kFeatureAvx512,
                                                             attention_tr_impl::transpose_terms<Avx512>};

}  // namespace winattn::detail
