// AVX2+FMA instantiation of the fused attention kernel (compiled with -mavx2 -mfma).
#include <immintrin.h>

#include "attention/f32_attention_impl.h"
#include "attention/f32_attention_tr_impl.h"

namespace winattn::detail {
namespace {

struct Avx2 {
  using Vec = __m256;
  using Mask = __m256i;  // all-ones lanes are active
  static constexpr int kWidth = 8;
  static constexpr int kRows = 4;  // 16 registers: 4 x 3 accumulators + 3 K vectors + 1 broadcast
  static constexpr int kColVecs = 3;
  static constexpr int kOutVecs = 3;
  // Query-major kernel: blocks of up to 3 query vectors; tiles of 12 accumulators.
  static constexpr int kTrBlockVecs = 3;
  static constexpr int tr_key_rows(int vecs) { return vecs == 3 ? 4 : vecs == 2 ? 6 : 12; }
  static constexpr int tr_out_cols(int vecs) { return tr_key_rows(vecs); }  // out^T tiles (long windows)
  // Its P V row-major up to kTrRowMajorOutputMaxN tokens: output tiles of pv_rows(vecs) rows by `vecs`
  // channel vectors (at most kPvMaxVecs), about 12 accumulators. Measured on Zen 3 (1 thread, against the
  // out^T tiles and their transposes): n = 16 head_dim 32 1.06-1.10x, T = 16 head_dim 64 1.05-1.12x, n = 25
  // 1.04-1.05x, but n = 32 0.94-0.96x, n = 49..128 0.99-1.02x, n = 98 0.93-0.99x; slabs of 8 vectors
  // (head_dim 64 in one) 0.78x at n = 64 (9 loads per 8 FMAs), of 2 vectors 0.96-0.98x of 4.
  static constexpr int kRegs = 16;
  static constexpr int kPvMaxVecs = 4;
  static constexpr int64_t kTrRowMajorOutputMaxN = 31;
  static constexpr int pv_rows(int vecs) { return vecs >= 12 ? 1 : 12 / vecs; }

  static Vec zero() { return _mm256_setzero_ps(); }
  static Vec set1(float x) { return _mm256_set1_ps(x); }
  static Vec load(const float *p) { return _mm256_load_ps(p); }
  static Vec loadu(const float *p) { return _mm256_loadu_ps(p); }
  static void store(float *p, Vec x) { _mm256_store_ps(p, x); }
  static void storeu(float *p, Vec x) { _mm256_storeu_ps(p, x); }
  static Vec broadcast(const float *p) { return _mm256_broadcast_ss(p); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
  static Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
  static Vec max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
  static Mask first_lanes(int64_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Vec maskz_loadu(Mask m, const float *p) { return _mm256_maskload_ps(p, m); }
  static void mask_storeu(float *p, Mask m, Vec x) { _mm256_maskstore_ps(p, m, x); }
  static Vec neg_inf_outside(Mask m, Vec x) {
    return _mm256_blendv_ps(_mm256_set1_ps(-std::numeric_limits<float>::infinity()), x,
                            _mm256_castsi256_ps(m));
  }
  static Vec neg_inf_to_zero(Vec x) {
    const Vec inf = _mm256_cmp_ps(x, _mm256_set1_ps(-std::numeric_limits<float>::infinity()), _CMP_EQ_OQ);
    return _mm256_andnot_ps(inf, x);
  }
  // Whether any lane has |x| >= limit (NaN lanes do not count).
  static bool any_abs_ge(Vec x, float limit) {
    const Vec abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    return _mm256_movemask_ps(_mm256_cmp_ps(abs, _mm256_set1_ps(limit), _CMP_GE_OQ)) != 0;
  }
  // 1 / x, and 0 where x is 0.
  static Vec recip_or_zero(Vec x) {
    const Vec nonzero = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ);
    return _mm256_and_ps(nonzero, _mm256_div_ps(_mm256_set1_ps(1.0f), x));
  }
  // Lane t of the result = the sum of the lanes of x[t], t < 8 (x is clobbered).
  __attribute__((always_inline)) static inline Vec sum_rows(Vec *x) {
    Vec y[4];
#pragma GCC unroll 16
    for (int k = 0; k < 4; ++k)  // lane L: x[2k] pair sums 0, x[2k+1] 0, x[2k] 1, x[2k+1] 1
      y[k] = _mm256_add_ps(_mm256_unpacklo_ps(x[2 * k], x[2 * k + 1]),
                           _mm256_unpackhi_ps(x[2 * k], x[2 * k + 1]));
    Vec z[2];
#pragma GCC unroll 16
    for (int k = 0; k < 2; ++k) {  // lane L, element m: the sum of lane L of x[4k + m]
      const __m256d c = _mm256_castps_pd(y[2 * k]), d = _mm256_castps_pd(y[2 * k + 1]);
      z[k] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(c, d)),
                           _mm256_castpd_ps(_mm256_unpackhi_pd(c, d)));
    }
    return _mm256_add_ps(_mm256_permute2f128_ps(z[0], z[1], 0x20), _mm256_permute2f128_ps(z[0], z[1], 0x31));
  }
  static float reduce_max(Vec x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  static float reduce_add(Vec x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // In-register transpose of an 8 x 8 block: rows[i][j] -> rows[j][i].
  __attribute__((always_inline)) static inline void transpose(Vec *rows) {
    Vec t[8], u[8];
#pragma GCC unroll 16
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int g = 0; g < 2; ++g) {  // u[4g + m], lane L: column 4L + m of rows 4g..4g+3
      const __m256d a = _mm256_castps_pd(t[4 * g]), b = _mm256_castps_pd(t[4 * g + 1]);
      const __m256d c = _mm256_castps_pd(t[4 * g + 2]), d = _mm256_castps_pd(t[4 * g + 3]);
      u[4 * g + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, c));
      u[4 * g + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, c));
      u[4 * g + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(b, d));
      u[4 * g + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(b, d));
    }
#pragma GCC unroll 16
    for (int m = 0; m < 4; ++m) {
      rows[m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x20);
      rows[4 + m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x31);
    }
  }

  // exp(s - m) for a softmax, given m_log2e = m * log2(e); see the AVX-512 version. 2^floor(u) is built
  // in the exponent field: floor(u) in [-127, 0] after the clamp, and -127 (every u below -126, -inf
  // included) gives the field 0, the float +0, so those results are zero without a mask, as the AVX-512
  // version's. NaN in u is returned as is by the max and stays NaN.
  static Vec exp_diff(Vec s, Vec m_log2e) {
    const Vec u = _mm256_fmsub_ps(s, _mm256_set1_ps(1.44269504088896341f), m_log2e);
    const Vec uc = _mm256_max_ps(_mm256_set1_ps(-127.0f), u);
    const Vec whole = _mm256_floor_ps(uc);
    const Vec f = _mm256_sub_ps(uc, whole);
    Vec p = _mm256_set1_ps(0.0018671301659196615f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.009017029777169228f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.05579991266131401f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.24016444385051727f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.6931512951850891f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i exponent =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(whole), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(exponent));
  }
};

void run_rowmajor(const AttentionShape &shape, const float *q, const float *k, const float *v, float scale,
                  const AttentionTerms &terms, float *out, float *workspace) {
  attention_impl::Kernel<Avx2>::run(shape, q, k, v, scale, terms, out, workspace);
}

void run_qmajor(const AttentionShape &shape, const float *q, const float *k, const float *v, float scale,
                const AttentionTerms &terms, float *out, float *workspace) {
  attention_tr_impl::Kernel<Avx2>::run(shape, q, k, v, scale, terms, out, workspace);
}

}  // namespace

// Row-major: kRows query rows by kColVecs key vectors; picked for the shortest windows.
const AttentionKernelInfo f32_attention_rowmajor_4x24_avx2 = {
    "f32_attention_rowmajor_4x24_avx2",
    kFeatureAvx2,
    run_rowmajor,
    nullptr,
    1,
    false,
    Avx2::kRows,
    Avx2::kColVecs *Avx2::kWidth,
    1,
    kRowMajorMaxNAvx2,
    INT64_MAX,
    attention_impl::workspace_floats<Avx2>,
};

// Query-major: blocks of kTrBlockVecs query vectors (in the lanes) by tr_key_rows key rows.
const AttentionKernelInfo f32_attention_qmajor_24x4_avx2 = {
    "f32_attention_qmajor_24x4_avx2",
    kFeatureAvx2,
    run_qmajor,
    nullptr,
    1,
    true,
    Avx2::kTrBlockVecs *Avx2::kWidth,
    Avx2::tr_key_rows(Avx2::kTrBlockVecs),
    kRowMajorMaxNAvx2 + 1,
    INT64_MAX,
    INT64_MAX,
    attention_tr_impl::workspace_floats<Avx2>,
};

const TransposeTermsInfo f32_transpose_terms_8x8_avx2 = {"f32_transpose_terms_8x8_avx2", kFeatureAvx2,
                                                         attention_tr_impl::transpose_terms<Avx2>};

}  // namespace winattn::detail
