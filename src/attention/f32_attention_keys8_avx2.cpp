// f32_attention_keys8_8x8_avx2: one (window, head) item of at most 8 tokens (temporal attention over T = 8
// frames, 2x2x2 windows) with the keys in the lanes of one AVX2 vector, compiled with -mavx2 -mfma.
//
// Why a kernel of its own: with the channels in the lanes (the other kernels), every logit is a dot
// product that ends in a reduction tree, which at n = 8 costs as much as its FMAs; with the keys in the
// lanes no logit needs a reduction. Per item:
//   1. K^T [head_dim][8] in scratch: 8 x 8 in-register transposes of k's rows (lanes past n zero);
//   2. logits, 8 query rows at once: acc_i += q[i][c] (broadcast) * K^T[c], 8 independent FMA chains;
//   3. per row: scale, bias and mask rows loaded into the lanes, lanes past n -inf, the row's maximum and
//      sum by in-register reductions of one vector, exp, 1 / sum folded in; P [8][8] in scratch;
//   4. out = P V: tiles of 3 rows x 4 channel vectors (12 accumulators), P broadcast, v rows read in place.
// A row whose logits are all -inf takes maximum 0 and gives zeros (as every kernel); NaN in a row's logits
// makes its output NaN. One item at a time: results do not depend on the threads or the batch.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "attention/attention.h"
#include "attention/f32_attention_common.h"

namespace winattn::detail {
namespace {

constexpr int64_t kKeys = 8;

// exp(x) for x <= 0 or NaN, the formula of the AVX2 short-window kernel (f32_attention_short_avx2.cpp):
// 2^floor(u) in the exponent field, a degree-5 polynomial for 2^frac, results below 2^-126 zeroed.
inline __m256 exp_neg(__m256 x) {
  const __m256 u = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
  const __m256 keep = _mm256_cmp_ps(u, _mm256_set1_ps(-126.0f), _CMP_NLT_UQ);  // u >= -126 or NaN
  const __m256 clamped = _mm256_max_ps(_mm256_set1_ps(-127.0f), u);            // NaN in u is kept
  const __m256 whole = _mm256_floor_ps(clamped);
  const __m256 f = _mm256_sub_ps(clamped, whole);
  __m256 p = _mm256_set1_ps(0.0018671301659196615f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.009017029777169228f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.05579991266131401f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.24016444385051727f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.6931512951850891f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  const __m256i two_to_whole =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(whole), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(keep, _mm256_mul_ps(p, _mm256_castsi256_ps(two_to_whole)));
}

// The first `count` lanes.
inline __m256i first_lanes(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Every lane = the maximum (sum) of x's lanes. A NaN lane makes the result NaN (the comparisons pick the
// NaN operand: max(a, b) returns b when either is NaN, and the NaN is in both operands' lanes by the end).
inline __m256 all_max(__m256 x) {
  __m256 y = _mm256_max_ps(x, _mm256_permute2f128_ps(x, x, 1));
  y = _mm256_max_ps(y, _mm256_permute_ps(y, 0x4e));
  y = _mm256_max_ps(y, _mm256_permute_ps(y, 0xb1));
  // max drops a NaN in its first operand: put any NaN of x back (x != x in some lane -> NaN everywhere).
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  const int any_nan = _mm256_movemask_ps(nan);
  return any_nan != 0 ? _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN()) : y;
}
inline __m256 all_sum(__m256 x) {
  __m256 y = _mm256_add_ps(x, _mm256_permute2f128_ps(x, x, 1));
  y = _mm256_add_ps(y, _mm256_permute_ps(y, 0x4e));
  return _mm256_add_ps(y, _mm256_permute_ps(y, 0xb1));
}

// max(||x||, 1e-12) over d floats (torch.nn.functional.normalize's eps).
inline float norm_or_eps(const float *x, int64_t d) {
  __m256 acc = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= d; c += 8) {
    const __m256 v = _mm256_loadu_ps(x + c);
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  if (c < d) {
    const __m256 v = _mm256_maskload_ps(x + c, first_lanes(d - c));
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  return std::fmax(std::sqrt(_mm_cvtss_f32(_mm256_castps256_ps128(all_sum(acc)))), 1e-12f);
}

// dst[c][j] = src_j[c] for 8 channels c (8 rows j; rows past `rows` are zero).
inline void transpose8(const __m256 (&r)[8], float *dst) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
  _mm256_store_ps(dst + 0 * 8, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_store_ps(dst + 1 * 8, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_store_ps(dst + 2 * 8, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_store_ps(dst + 3 * 8, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_store_ps(dst + 4 * 8, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_store_ps(dst + 5 * 8, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_store_ps(dst + 6 * 8, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_store_ps(dst + 7 * 8, _mm256_permute2f128_ps(u3, u7, 0x31));
}

// out rows [r0, r0 + R) x channel vectors [v0, v0 + NV) = P V; the last vector may end at d (masked).
template <int R, int NV>
inline void pv_tile(const float *p, int64_t r0, int64_t n, const float *v, int64_t ld_v, int64_t v0,
                    int64_t d, float *out, int64_t ld_out) {
  __m256 acc[R][NV];
#pragma GCC unroll 3
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int u = 0; u < NV; ++u) acc[r][u] = _mm256_setzero_ps();
  const int64_t c0 = v0 * 8;
  const bool partial = c0 + NV * 8 > d;
  const __m256i tail = first_lanes(d - (c0 + (NV - 1) * 8));
  for (int64_t j = 0; j < n; ++j) {
    const float *vj = v + j * ld_v + c0;
    __m256 vv[NV];
#pragma GCC unroll 4
    for (int u = 0; u < NV; ++u)
      vv[u] = u == NV - 1 && partial ? _mm256_maskload_ps(vj + u * 8, tail) : _mm256_loadu_ps(vj + u * 8);
#pragma GCC unroll 3
    for (int r = 0; r < R; ++r) {
      const __m256 w = _mm256_broadcast_ss(p + (r0 + r) * kKeys + j);
#pragma GCC unroll 4
      for (int u = 0; u < NV; ++u) acc[r][u] = _mm256_fmadd_ps(w, vv[u], acc[r][u]);
    }
  }
#pragma GCC unroll 3
  for (int r = 0; r < R; ++r) {
    float *dst = out + (r0 + r) * ld_out + c0;
#pragma GCC unroll 4
    for (int u = 0; u < NV; ++u) {
      if (u == NV - 1 && partial) {
        _mm256_maskstore_ps(dst + u * 8, tail, acc[r][u]);
      } else {
        _mm256_storeu_ps(dst + u * 8, acc[r][u]);
      }
    }
  }
}

template <int NV>
inline void pv_columns(const float *p, int64_t n, const float *v, int64_t ld_v, int64_t v0, int64_t d,
                       float *out, int64_t ld_out) {
  int64_t r0 = 0;
  for (; r0 + 3 <= n; r0 += 3) pv_tile<3, NV>(p, r0, n, v, ld_v, v0, d, out, ld_out);
  if (n - r0 == 2) pv_tile<2, NV>(p, r0, n, v, ld_v, v0, d, out, ld_out);
  if (n - r0 == 1) pv_tile<1, NV>(p, r0, n, v, ld_v, v0, d, out, ld_out);
}

void run(const AttentionShape &shape, const float *q, const float *k, const float *v, float scale,
         const AttentionTerms &terms, float *out, float *workspace) {
  const int64_t n = shape.n, d = shape.head_dim;
  const int64_t vecs = (d + 7) / 8;
  float *const kt = workspace;             // [vecs * 8][8]
  float *const p = kt + vecs * 8 * kKeys;  // [8][8]
  float *const key_scale = p + 64;         // [8] cosine: 1 / ||k_j||
  // The next item's rows, a share per K^T block and per softmax row (all at once stalls on the fill
  // buffers: measured 8% of the kernel's time).
  attention_common::SpreadPrefetch prefetch(shape, vecs + n);

  // 1. K^T, 8 channels at a time; rows past n are zero.
  for (int64_t b = 0; b < vecs; ++b) {
    const int64_t c0 = b * 8;
    __m256 r[8];
    if (c0 + 8 <= d) {
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j)
        r[j] = j < n ? _mm256_loadu_ps(k + j * shape.ld_k + c0) : _mm256_setzero_ps();
    } else {
      const __m256i lanes = first_lanes(d - c0);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j)
        r[j] = j < n ? _mm256_maskload_ps(k + j * shape.ld_k + c0, lanes) : _mm256_setzero_ps();
    }
    transpose8(r, kt + c0 * kKeys);
    prefetch.step();
  }
  __m256 key_norms = _mm256_set1_ps(1.0f);
  if (shape.cosine) {
    for (int64_t j = 0; j < kKeys; ++j)
      key_scale[j] = j < n ? 1.0f / norm_or_eps(k + j * shape.ld_k, d) : 0.0f;
    key_norms = _mm256_loadu_ps(key_scale);
  }

  // 2. Logits of 8 query rows (rows past n repeat the last one), keys in the lanes.
  const float *row[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) row[i] = q + (i < n ? i : n - 1) * shape.ld_q;
  __m256 acc[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int64_t c = 0; c < d; ++c) {
    const __m256 kc = _mm256_load_ps(kt + c * kKeys);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(row[i] + c), kc, acc[i]);
  }

  // 3. Softmax per row, into P.
  const __m256i keys = first_lanes(n);
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < n; ++i) {
    prefetch.step();
    float row_scale = scale;
    if (shape.cosine) row_scale = scale / norm_or_eps(row[i], d);
    __m256 x = acc[i];
    if (shape.cosine) x = _mm256_mul_ps(x, key_norms);
    __m256 sum_terms = _mm256_setzero_ps();
    if (terms.bias != nullptr)
      sum_terms = _mm256_add_ps(sum_terms, _mm256_maskload_ps(terms.bias + i * n, keys));
    if (terms.mask != nullptr)
      sum_terms = _mm256_add_ps(sum_terms, _mm256_maskload_ps(terms.mask + i * n, keys));
    x = _mm256_fmadd_ps(x, _mm256_set1_ps(row_scale), sum_terms);
    x = _mm256_blendv_ps(neg_inf, x, _mm256_castsi256_ps(keys));
    __m256 m = all_max(x);
    m = _mm256_andnot_ps(_mm256_cmp_ps(m, neg_inf, _CMP_EQ_OQ), m);  // all -inf: maximum 0
    const __m256 e = exp_neg(_mm256_sub_ps(x, m));
    const __m256 sum = all_sum(e);
    const __m256 nonzero = _mm256_cmp_ps(sum, _mm256_setzero_ps(), _CMP_NEQ_UQ);
    const __m256 inv = _mm256_and_ps(nonzero, _mm256_div_ps(_mm256_set1_ps(1.0f), sum));
    _mm256_store_ps(p + i * kKeys, _mm256_mul_ps(e, inv));
  }

  // 4. out = P V, channel vectors 4 at a time (the last group 1-3).
  int64_t v0 = 0;
  for (; v0 + 4 <= vecs; v0 += 4) pv_columns<4>(p, n, v, shape.ld_v, v0, d, out, shape.ld_out);
  switch (vecs - v0) {
    case 3:
      pv_columns<3>(p, n, v, shape.ld_v, v0, d, out, shape.ld_out);
      break;
    case 2:
      pv_columns<2>(p, n, v, shape.ld_v, v0, d, out, shape.ld_out);
      break;
    case 1:
      pv_columns<1>(p, n, v, shape.ld_v, v0, d, out, shape.ld_out);
      break;
    default:
      break;
  }
}

size_t workspace_floats(int64_t /*n*/, int64_t head_dim) {
  return static_cast<size_t>((head_dim + 7) / 8 * 8 * kKeys + 64 + 16);
}

}  // namespace

// Keys in the lanes (one vector of 8), logits 8 query rows x 8 keys; n <= 8.
const AttentionKernelInfo f32_attention_keys8_8x8_avx2 = {
    "f32_attention_keys8_8x8_avx2",
    kFeatureAvx2,
    run,
    nullptr,
    1,
    false,
    8,
    8,
    1,
    kKeys,
    kKeys,
    workspace_floats,
};

}  // namespace winattn::detail
