// AVX2+FMA instantiation of the short-window batched attention kernel (compiled with -mavx2 -mfma): 8 query
// rows per pass, two quads of 4 rows.
#include <immintrin.h>

#include "attention/f32_attention_onevec_impl.h"
#include "attention/f32_attention_short_impl.h"

namespace winattn::detail {
namespace {

struct ShortAvx2 {
  using Vec = __m256;
  using Mask = __m256i;  // all-ones lanes are active
  static constexpr int kWidth = 8;
  // P V tiles: 16 registers hold 12 accumulators, the v vectors and a broadcast weight (4 x 3 would spill).
  static constexpr int kPvVecs = 2;
  static constexpr int pv_rows(int vecs) { return vecs >= 2 ? 6 : 12; }

  // Keeps x in a register from here on: a load feeding it is not folded into each of its uses.
  static void in_register(Vec &x) { asm("" : "+x"(x)); }
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
  // Lanes [first, first + count).
  static Mask lanes(int64_t first, int64_t count) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(first + count)), lane),
                            _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(static_cast<int>(first - 1))));
  }
  static Mask mask_or(Mask a, Mask b) { return _mm256_or_si256(a, b); }
  static Vec maskz_loadu(Mask m, const float *p) { return _mm256_maskload_ps(p, m); }
  static void mask_storeu(float *p, Mask m, Vec x) { _mm256_maskstore_ps(p, m, x); }
  static Vec neg_inf_to_zero(Vec x) {
    const Vec inf = _mm256_cmp_ps(x, _mm256_set1_ps(-std::numeric_limits<float>::infinity()), _CMP_EQ_OQ);
    return _mm256_andnot_ps(inf, x);
  }
  // 1 / x, and 0 where x is 0 (NaN stays NaN).
  static Vec recip_or_zero(Vec x) {
    const Vec nonzero = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ);
    return _mm256_and_ps(nonzero, _mm256_div_ps(_mm256_set1_ps(1.0f), x));
  }
  static float hsum(Vec x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // exp(x) for x <= 0 or NaN (x = logit - row maximum); see the AVX-512 version. 2^floor(u) is built in the
  // exponent field: floor(u) in [-127, 0] after the clamp, and -127 (every u below -126, -inf included)
  // gives the field 0, the float +0, so those results are zero without a mask, as the AVX-512 version's.
  static Vec exp_neg(Vec x) {
    const Vec u = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
    const Vec clamped = _mm256_max_ps(_mm256_set1_ps(-127.0f), u);  // NaN in u is kept
    const Vec whole = _mm256_floor_ps(clamped);
    const Vec f = _mm256_sub_ps(clamped, whole);
    Vec p = _mm256_set1_ps(0.0018671301659196615f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.009017029777169228f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.05579991266131401f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.24016444385051727f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.6931512951850891f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i two_to_whole =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(whole), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(two_to_whole));
  }

  // Lane 4L + m of the result (m < 4, L the 128-bit lane) = the sum of the four elements of 128-bit lane L
  // of x[m]: in-lane unpacks and adds only.
  __attribute__((always_inline)) static inline Vec quad_sum(Vec x0, Vec x1, Vec x2, Vec x3) {
    const __m256d a = _mm256_castps_pd(_mm256_add_ps(_mm256_unpacklo_ps(x0, x1), _mm256_unpackhi_ps(x0, x1)));
    const __m256d b = _mm256_castps_pd(_mm256_add_ps(_mm256_unpacklo_ps(x2, x3), _mm256_unpackhi_ps(x2, x3)));
    return _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)),
                         _mm256_castpd_ps(_mm256_unpackhi_pd(a, b)));
  }
  // acc[k][r]: a half tile's (one quad's) 2 keys x 4 rows of per-lane partial dot products; out[k]: the
  // quad's rows per 128-bit lane.
  __attribute__((always_inline)) static inline void part(const Vec (&acc)[2][4], Vec (&out)[2]) {
    out[0] = quad_sum(acc[0][0], acc[0][1], acc[0][2], acc[0][3]);
    out[1] = quad_sum(acc[1][0], acc[1][1], acc[1][2], acc[1][3]);
  }
  // The slot's 8 rows: lanes 0-3 from lo, 4-7 from hi.
  __attribute__((always_inline)) static inline Vec join(Vec lo, Vec hi) {
    return _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20), _mm256_permute2f128_ps(lo, hi, 0x31));
  }
};

void run_short(const AttentionShape &shape, const AttentionItem *items, int64_t count, float *workspace) {
  attention_short_impl::Kernel<ShortAvx2>::run(shape, items, count, workspace);
}

void run_onevec(const AttentionShape &shape, const AttentionItem *items, int64_t count, float *workspace) {
  attention_onevec_impl::Kernel<ShortAvx2>::run(shape, items, count, workspace);
}

}  // namespace

// One item per pass, its n <= 8 query rows in the lanes of one vector, logits in tiles of 4 rows by 3 keys.
const AttentionKernelInfo f32_attention_onevec_4x3_avx2 = {
    "f32_attention_onevec_4x3_avx2",
    kFeatureAvx2,
    nullptr,
    run_onevec,
    kMaxBatchItems,
    true,
    4,
    3,
    1,
    kRowMajorMaxNAvx2,
    attention_onevec_impl::Kernel<ShortAvx2>::kMaxN,
    attention_onevec_impl::workspace_floats,
};

// 8 query rows (lanes, quads of consecutive items) by 2 keys per logits step; any n in [1, kMaxN]. Its range
// is n <= 8, where the one-vector kernel above comes first in the table (paired on Zen 3: 1.04x at n = 4,
// 1.31-1.42x at n = 8): a tested fallback.
const AttentionKernelInfo f32_attention_short_8x2_avx2 = {
    "f32_attention_short_8x2_avx2",
    kFeatureAvx2,
    nullptr,
    run_short,
    attention_short_impl::kMaxBatch,
    true,
    ShortAvx2::kWidth,
    2,
    1,
    kRowMajorMaxNAvx2,  // past one vector of queries the query-major kernel wins on AVX2 (attention.h)
    attention_short_impl::kMaxN,
    attention_short_impl::workspace_floats<ShortAvx2>,
};

}  // namespace winattn::detail
