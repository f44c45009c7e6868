// Fused attention for windows of at most one vector of tokens on an 8-lane ISA (AVX2: AIM's temporal T = 8,
// 2x2 windows), one (window, head) item at a time, all of its query rows in the lanes of one vector.
// Written over the short kernel's ISA traits (f32_attention_short_avx2.cpp instantiates it).
//
// Per item:
//   1. logits^T, one vector per key j with query row i in lane i: dot products with the channels in the
//      lanes, q and k rows read where they are, in register tiles of 4 rows by up to 3 keys (12
//      accumulators, 7 loads per 12 FMAs); each tile ends in in-lane unpacks and adds (quad_sum) that
//      leave the 4 rows' half sums in lanes i and 4 + i, and one join per key puts rows 0-3 and 4-7 side by
//      side. Then scale (and the cosine norms), plus bias^T and mask^T rows loaded straight into the lanes.
//   2. softmax along the keys, element-wise between vectors (maximum, exp, sum, 1 / sum folded into P^T).
//   3. out = P V: tiles of 4 rows by up to 3 channel vectors, the weights broadcast from P^T, the rows of
//      v read where they are, stored straight into the output rows.
// The batch kernel (f32_attention_short_impl.h) packs quads of rows from several items into a slot and
// keeps rings of probabilities, so that 4-row items share a vector; at 5..8 rows one item fills the
// vector, and this kernel does the same arithmetic without that bookkeeping (paired on Zen 3: see the
// entry in f32_attention_short_avx2.cpp). Rows past n compute on copies of row n - 1 and are never stored.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "attention/attention.h"
#include "attention/f32_attention_common.h"
#include "attention/f32_attention_short_impl.h"

namespace winattn::detail {
namespace attention_onevec_impl {

// logits^T / P^T [8][8]; bias and mask scratch [8][8] each (items with terms but no transposes); row scales
// [8]; key scales [8] (cosine attention).
inline size_t workspace_floats(int64_t /*n*/, int64_t /*head_dim*/) {
  return 3 * 64 + 8 + 8;
}

template <class T>
struct Kernel {
  using V = typename T::Vec;
  using M = typename T::Mask;
  static constexpr int W = T::kWidth;
  static_assert(W == 8, "one vector of queries is two quads of rows: an 8-lane ISA");
  static constexpr int64_t kMaxN = W;
  static constexpr int kKeys = 3;  // keys per logits tile
  static constexpr int kVecs = 3;  // channel vectors per P V tile

  struct Item {
    int64_t n, d;
    const float *q, *k, *v;
    int64_t ld_q, ld_k, ld_v, ld_out;
    float *out;
    M tail;  // the lanes of the last channel vector
  };

  // out[kk] = quad sums (lanes m and 4 + m: row m's half sums) of the dot products of rows q[0..3] with keys
  // k[0..K).
  template <int K>
  __attribute__((always_inline)) static inline void dot_tile(const float *const *q, const float *const *k,
                                                             int64_t d, M tail, V (&out)[K]) {
    V acc[4][K];
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r)
#pragma GCC unroll 3
      for (int kk = 0; kk < K; ++kk) acc[r][kk] = T::zero();
    const float *q0 = q[0], *q1 = q[1], *q2 = q[2], *q3 = q[3];
    const float *k0 = k[0], *k1 = K > 1 ? k[1] : k[0], *k2 = K > 2 ? k[2] : k[0];
    auto step = [&](V(&kv)[K], V q0v, V q1v, V q2v, V q3v) __attribute__((always_inline)) {
      const V qv[4] = {q0v, q1v, q2v, q3v};
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r)
#pragma GCC unroll 3
        for (int kk = 0; kk < K; ++kk) acc[r][kk] = T::fmadd(qv[r], kv[kk], acc[r][kk]);
    };
    int64_t c = 0;
    for (; c + W <= d; c += W) {
      V kv[K];
      kv[0] = T::loadu(k0 + c);
      if constexpr (K > 1) kv[1] = T::loadu(k1 + c);
      if constexpr (K > 2) kv[2] = T::loadu(k2 + c);
        // Loaded once: folded into the FMAs, each key vector would be loaded once per row (16 loads for 12
        // FMAs, more than the two a cycle the core does).
#pragma GCC unroll 3
      for (int kk = 0; kk < K; ++kk) T::in_register(kv[kk]);
      step(kv, T::loadu(q0 + c), T::loadu(q1 + c), T::loadu(q2 + c), T::loadu(q3 + c));
    }
    if (c < d) {
      V kv[K];
      kv[0] = T::maskz_loadu(tail, k0 + c);
      if constexpr (K > 1) kv[1] = T::maskz_loadu(tail, k1 + c);
      if constexpr (K > 2) kv[2] = T::maskz_loadu(tail, k2 + c);
      step(kv, T::maskz_loadu(tail, q0 + c), T::maskz_loadu(tail, q1 + c), T::maskz_loadu(tail, q2 + c),
           T::maskz_loadu(tail, q3 + c));
    }
#pragma GCC unroll 3
    for (int kk = 0; kk < K; ++kk) out[kk] = T::quad_sum(acc[0][kk], acc[1][kk], acc[2][kk], acc[3][kk]);
  }

  // Keys [j0, j0 + K) of logits^T into st (scaled, plus terms), their maximum folded into row_max.
  template <int K>
  __attribute__((always_inline)) static inline void logits_keys(const Item &it, const float *const *qr,
                                                                const float *const *kr, int64_t j0,
                                                                const float *bias_t, int64_t ld_bias_t,
                                                                const float *mask_t, int64_t ld_mask_t,
                                                                M rows, V row_scale, const float *key_scale,
                                                                float *st, V &row_max) {
    V lo[K], hi[K];
    dot_tile<K>(qr, kr + j0, it.d, it.tail, lo);
    if (it.n > 4) {
      dot_tile<K>(qr + 4, kr + j0, it.d, it.tail, hi);
    } else {
#pragma GCC unroll 3
      for (int kk = 0; kk < K; ++kk) hi[kk] = T::zero();
    }
#pragma GCC unroll 3
    for (int kk = 0; kk < K; ++kk) {
      const int64_t j = j0 + kk;
      V x = T::join(lo[kk], hi[kk]);
      if (key_scale != nullptr) x = T::mul(x, T::set1(key_scale[j]));
      V sum = T::zero();
      if (bias_t != nullptr) sum = T::add(sum, T::maskz_loadu(rows, bias_t + j * ld_bias_t));
      if (mask_t != nullptr) sum = T::add(sum, T::maskz_loadu(rows, mask_t + j * ld_mask_t));
      x = T::fmadd(x, row_scale, sum);
      T::store(st + j * W, x);
      row_max = T::max(row_max, x);
    }
  }

  // Output rows [r0, r0 + rows) (rows <= 4) x channel vectors [c0, c0 + NV) of out = P V, P^T in pt.
  template <int NV, bool kPartial>
  __attribute__((always_inline)) static inline void pv_tile(const Item &it, const float *pt, int64_t r0,
                                                            int64_t rows, int64_t c0) {
    // Key 0 starts the sums (a product, not an FMA on zeros: 12 accumulators, 3 v vectors and a weight
    // fill the 16 registers, with none left for a zero).
    V acc[4][NV];
    const float *vj = it.v + c0;
    const float *p = pt + r0;
    auto load_v = [&](V(&vv)[NV]) __attribute__((always_inline)) {
#pragma GCC unroll 3
      for (int u = 0; u < NV; ++u)
        vv[u] = kPartial && u == NV - 1 ? T::maskz_loadu(it.tail, vj + u * W) : T::loadu(vj + u * W);
    };
    {
      V vv[NV];
      load_v(vv);
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        const V w = T::broadcast(p + r);
#pragma GCC unroll 3
        for (int u = 0; u < NV; ++u) acc[r][u] = T::mul(w, vv[u]);
      }
    }
    const int64_t n = it.n, ld_v = it.ld_v;
#pragma GCC unroll 1
    for (int64_t j = 1; j < n; ++j) {
      vj += ld_v;
      p += W;
      V vv[NV];
      load_v(vv);
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        const V w = T::broadcast(p + r);
#pragma GCC unroll 3
        for (int u = 0; u < NV; ++u) acc[r][u] = T::fmadd(w, vv[u], acc[r][u]);
      }
    }
    float *dst = it.out + r0 * it.ld_out + c0;
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r, dst += it.ld_out) {
      if (r >= rows) break;
#pragma GCC unroll 3
      for (int u = 0; u < NV; ++u) {
        if (kPartial && u == NV - 1) {
          T::mask_storeu(dst + u * W, it.tail, acc[r][u]);
        } else {
          T::storeu(dst + u * W, acc[r][u]);
        }
      }
    }
  }

  template <int NV>
  __attribute__((always_inline)) static inline void pv_columns(const Item &it, const float *pt, int64_t c0,
                                                               attention_common::SpreadPrefetch &pf) {
    const bool partial = c0 + NV * W > it.d;
    for (int64_t r0 = 0; r0 < it.n; r0 += 4) {
      pf.step();
      const int64_t rows = std::min<int64_t>(4, it.n - r0);
      if (partial) {
        pv_tile<NV, true>(it, pt, r0, rows, c0);
      } else {
        pv_tile<NV, false>(it, pt, r0, rows, c0);
      }
    }
  }

  // One item. pf: the prefetches of the next item's lines, a share at every tile. kN: n when it is known at
  // compile time (8: the loops over keys and rows unrolled), else 0.
  template <int kN>
  static void item(const AttentionShape &shape, const AttentionItem &a, float *workspace,
                   attention_common::SpreadPrefetch &pf) {
    const int64_t n = kN > 0 ? kN : shape.n, d = shape.head_dim;
    Item it{n,
            d,
            a.q,
            a.k,
            a.v,
            shape.ld_q,
            shape.ld_k,
            shape.ld_v,
            shape.ld_out,
            a.out,
            T::lanes(0, d % W == 0 ? W : d % W)};
    float *st = workspace;             // [8][8] logits^T, then P^T
    float *bias_s = st + 64;           // [8][8]
    float *mask_s = bias_s + 64;       // [8][8]
    float *row_scale = mask_s + 64;    // [8]
    float *key_scale = row_scale + 8;  // [8], cosine attention only

    const float *qr[W], *kr[W];
    for (int64_t i = 0; i < W; ++i) qr[i] = a.q + std::min<int64_t>(i, n - 1) * shape.ld_q;
    for (int64_t j = 0; j < n; ++j) kr[j] = a.k + j * shape.ld_k;
    const M rows = T::lanes(0, n);
    V scale_v = T::set1(a.scale);
    if (shape.cosine) {
      using Short = attention_short_impl::Kernel<T>;
      for (int64_t i = 0; i < W; ++i) row_scale[i] = a.scale / Short::norm_or_eps(qr[i], d);
      for (int64_t j = 0; j < n; ++j) key_scale[j] = 1.0f / Short::norm_or_eps(kr[j], d);
      scale_v = T::loadu(row_scale);
    }
    // The terms transposed (key j, query i), in place or, for an item that has none, into scratch.
    auto transposed = [&](const float *term_t, int64_t &ld, const float *term, float *scratch) {
      if (term_t != nullptr || term == nullptr) return term_t;
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < n; ++i) scratch[j * W + i] = term[i * n + j];
      ld = W;
      return static_cast<const float *>(scratch);
    };
    int64_t ld_bias_t = a.terms.ld_bias_t, ld_mask_t = a.terms.ld_mask_t;
    const float *bias_t = transposed(a.terms.bias_t, ld_bias_t, a.terms.bias, bias_s);
    const float *mask_t = transposed(a.terms.mask_t, ld_mask_t, a.terms.mask, mask_s);

    // 1. logits^T and their maxima, keys in groups of 3 (the last of 1 or 2).
    V row_max = T::set1(-std::numeric_limits<float>::infinity());
    const float *ks = shape.cosine ? key_scale : nullptr;
    int64_t j0 = 0;
    for (; j0 + kKeys <= n; j0 += kKeys) {
      pf.step();
      logits_keys<kKeys>(it, qr, kr, j0, bias_t, ld_bias_t, mask_t, ld_mask_t, rows, scale_v, ks, st,
                         row_max);
    }
    if (n - j0 == 2) {
      logits_keys<2>(it, qr, kr, j0, bias_t, ld_bias_t, mask_t, ld_mask_t, rows, scale_v, ks, st, row_max);
    } else if (n - j0 == 1) {
      logits_keys<1>(it, qr, kr, j0, bias_t, ld_bias_t, mask_t, ld_mask_t, rows, scale_v, ks, st, row_max);
    }

    // 2. softmax along the keys. A row whose logits are all -inf takes maximum 0: its weights are
    // exp(-inf) = 0, its sum 0 and its output 0.
    const V m = T::neg_inf_to_zero(row_max);
    V sum = T::zero();
    for (int64_t j = 0; j < n; ++j) {
      const V p = T::exp_neg(T::sub(T::load(st + j * W), m));
      T::store(st + j * W, p);
      sum = T::add(sum, p);
    }
    const V inv = T::recip_or_zero(sum);
    for (int64_t j = 0; j < n; ++j) T::store(st + j * W, T::mul(T::load(st + j * W), inv));

    // 3. out = P V, channel vectors in tiles of nearly equal width (8 = 3 + 3 + 2).
    const int64_t vecs = (d + W - 1) / W;
    const int64_t tiles = (vecs + kVecs - 1) / kVecs;
    int64_t v0 = 0;
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t width = (vecs - v0 + (tiles - t) - 1) / (tiles - t);
      if (width == 3) {
        pv_columns<3>(it, st, v0 * W, pf);
      } else if (width == 2) {
        pv_columns<2>(it, st, v0 * W, pf);
      } else {
        pv_columns<1>(it, st, v0 * W, pf);
      }
      v0 += width;
    }
    pf.finish();
  }

  static void run(const AttentionShape &shape, const AttentionItem *items, int64_t count, float *workspace) {
    const int64_t n = shape.n, d = shape.head_dim;
    // Prefetch steps per item: the logits tiles (a group of 3 keys) and the P V tiles.
    const int64_t vecs = (d + W - 1) / W;
    const int64_t steps = n / kKeys + ((vecs + kVecs - 1) / kVecs) * ((n + 3) / 4);
    for (int64_t b = 0; b < count; ++b) {
      // The next item's rows that are contiguous (window_attention's [item][n][d] arrays), into cache while
      // this one computes; none for strided rows (a layer's chunk, in cache already) or a call that fits
      // in L2 (shape.prefetch_items).
      AttentionShape next;
      next.prefetch_to_l1 = shape.prefetch_to_l1;
      if (shape.prefetch_items && b + 1 < count) {
        const AttentionItem &a = items[b + 1];
        const float *arrays[4] = {a.q, a.k, a.v, a.out};
        const int64_t ld[4] = {shape.ld_q, shape.ld_k, shape.ld_v, shape.ld_out};
        for (int r = 0; r < 4; ++r)
          if (ld[r] == d) next.prefetch[r] = {arrays[r], n * d};
      }
      attention_common::SpreadPrefetch pf(next, steps);
      if (n == W) {
        item<W>(shape, items[b], workspace, pf);
      } else {
        item<0>(shape, items[b], workspace, pf);
      }
    }
  }
};

}  // namespace attention_onevec_impl
}  // namespace winattn::detail
