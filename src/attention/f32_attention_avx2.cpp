// AVX2+FMA instantiation of the fused attention kernel (compiled with -mavx2 -mfma).
#include <immintrin.h>

#include "attention/f32_attention_impl.h"

namespace winattn {
namespace {

struct Avx2 {
  using Vec = __m256;
  using Mask = __m256i;  // all-ones lanes are active
  static constexpr int kWidth = 8;
  static constexpr int kRows = 4;  // 16 registers: 4 x 3 accumulators + 3 K vectors + 1 broadcast
  static constexpr int kColVecs = 3;
  static constexpr int kOutVecs = 3;

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
  static void transpose(Vec *rows) {
    Vec t[8], u[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
    }
    for (int g = 0; g < 2; ++g) {  // u[4g + m], lane L: column 4L + m of rows 4g..4g+3
      const __m256d a = _mm256_castps_pd(t[4 * g]), b = _mm256_castps_pd(t[4 * g + 1]);
      const __m256d c = _mm256_castps_pd(t[4 * g + 2]), d = _mm256_castps_pd(t[4 * g + 3]);
      u[4 * g + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, c));
      u[4 * g + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, c));
      u[4 * g + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(b, d));
      u[4 * g + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(b, d));
    }
    for (int m = 0; m < 4; ++m) {
      rows[m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x20);
      rows[4 + m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x31);
    }
  }

  // exp(s - m) for a softmax, given m_log2e = m * log2(e); see the AVX-512 version. 2^floor(u) is built
  // in the exponent field (floor(u) in [-127, 0] after the clamp; results below 2^-126 are zeroed).
  static Vec exp_diff(Vec s, Vec m_log2e) {
    const Vec u = _mm256_fmsub_ps(s, _mm256_set1_ps(1.44269504088896341f), m_log2e);
    const Vec keep = _mm256_cmp_ps(u, _mm256_set1_ps(-126.0f), _CMP_NLT_UQ);  // u >= -126 or NaN
    const Vec uc = _mm256_max_ps(_mm256_set1_ps(-127.0f), u);                 // NaN in u is returned as is
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
    return _mm256_and_ps(keep, _mm256_mul_ps(p, _mm256_castsi256_ps(exponent)));
  }
};

}  // namespace

void f32_attention_avx2(const AttentionShape &shape, const float *q, const float *k, const float *v,
                        float scale, const float *bias, const float *mask, float *out, float *workspace) {
  attention_impl::Kernel<Avx2>::run(shape, q, k, v, scale, bias, mask, out, workspace);
}

}  // namespace winattn
