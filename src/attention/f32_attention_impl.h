// The fused attention kernel, written once over an ISA traits class (f32_attention_avx2.cpp and
// f32_attention_avx512.cpp instantiate it with their flags). Per (window, head):
//   1. K^T packed into [head_dim][n_pad] (zero columns past n; rows L2-normalised for cosine attention), and
//      V packed to [n][d_pad] only when head_dim is not a multiple of the vector width;
//   2. per block of kRows query rows: logits = scale_i * q_i K^T + bias + mask into a [kRows][n_pad]
//      buffer (columns past n set to -inf), tracking the row maxima in registers;
//   3. softmax in place: exp(x - max), row sums;
//   4. out rows = (P V) / sum, written straight to their strided destination.
// Tiles are template parameters so every accumulator lives in a register; partial vectors use masked
// loads and stores.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "attention/attention.h"
#include "attention/f32_attention_common.h"

namespace winattn::detail {
namespace attention_impl {

using attention_common::round_up;

template <class T>
struct Kernel {
  using V = typename T::Vec;
  using M = typename T::Mask;
  static constexpr int W = T::kWidth;

  struct Context {
    int64_t n, d, n_pad;
    const float *q;
    int64_t ld_q;
    const float *kt;  // [d][n_pad]
    const float *v;   // [n][ld_v]
    int64_t ld_v;
    const float *bias, *mask;  // [n][n] or null
    const float *row_scale;    // [n]
    float *scores;             // [kRows][n_pad]
    float *out;
    int64_t ld_out;
    // Columns [vector_end, n) (a few, when n is just past a multiple of W) are computed as dot products of
    // q rows with these scaled key rows, [n - vector_end][d_pad], instead of as mostly empty vectors.
    int64_t vector_end;
    const float *key_tail;
    int64_t d_pad;
  };

  // Few columns past the last full vector: as many FMAs as a full vector costs per row are wasted on
  // them in a tile, so they are worth their horizontal sums only while they are few.
  static constexpr int64_t kMaxDotColumns = 2;

  // Logits of rows [i0, i0 + R), columns [vector_end, n), by dot products; updates row_max.
  template <int R>
  static inline void logits_dots(const Context &ctx, int64_t i0, V *row_max) {
    const M last = T::first_lanes(ctx.d - (ctx.d_pad - W));
    for (int64_t j = ctx.vector_end; j < ctx.n; ++j) {
      const float *kj = ctx.key_tail + (j - ctx.vector_end) * ctx.d_pad;
      V acc[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r] = T::zero();
      for (int64_t c = 0; c < ctx.d_pad; c += W) {
        const V kv = T::load(kj + c);
        const bool partial = c + W > ctx.d;
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const float *qr = ctx.q + (i0 + r) * ctx.ld_q + c;
          acc[r] = T::fmadd(partial ? T::maskz_loadu(last, qr) : T::loadu(qr), kv, acc[r]);
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const int64_t i = i0 + r;
        float x = T::reduce_add(acc[r]);
        if (ctx.row_scale != nullptr) x *= ctx.row_scale[i];
        if (ctx.bias != nullptr) x += ctx.bias[i * ctx.n + j];
        if (ctx.mask != nullptr) x += ctx.mask[i * ctx.n + j];
        ctx.scores[r * ctx.n_pad + j] = x;
        row_max[r] = T::max(row_max[r], T::set1(x));
      }
    }
    for (int r = 0; r < R; ++r)
      for (int64_t j = ctx.n; j < ctx.n_pad; ++j)
        ctx.scores[r * ctx.n_pad + j] = -std::numeric_limits<float>::infinity();
  }

  // acc += q[rows][c] (broadcast) * kt[c][tile] for one c.
  template <int R, int NV>
  static inline void logits_step(const Context &ctx, const float *q, const float *kt, int64_t c,
                                 V (&acc)[R][NV]) {
    V kv[NV];
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) kv[u] = T::load(kt + c * ctx.n_pad + u * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const V qb = T::broadcast(q + r * ctx.ld_q + c);
#pragma GCC unroll 8
      for (int u = 0; u < NV; ++u) acc[r][u] = T::fmadd(qb, kv[u], acc[r][u]);
    }
  }

  // Logits of rows [i0, i0 + R) and columns [j0, j0 + NV*W) into ctx.scores; updates row_max.
  template <int R, int NV>
  static inline void logits_tile(const Context &ctx, int64_t i0, int64_t j0, V *row_max) {
    // Small tiles (short windows, row tails) have too few accumulators to cover the FMA latency: give them a
    // second set for odd c. The split depends on the shapes only, so results stay the same for any thread
    // count.
    constexpr bool kSplit = R * NV < 8;
    V acc[R][NV], odd[R][NV];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int u = 0; u < NV; ++u) acc[r][u] = odd[r][u] = T::zero();
    const float *kt = ctx.kt + j0;
    const float *q = ctx.q + i0 * ctx.ld_q;
    int64_t c = 0;
    if constexpr (kSplit) {
      for (; c + 1 < ctx.d; c += 2) {
        logits_step<R, NV>(ctx, q, kt, c, acc);
        logits_step<R, NV>(ctx, q, kt, c + 1, odd);
      }
    }
    for (; c < ctx.d; ++c) logits_step<R, NV>(ctx, q, kt, c, acc);
    if constexpr (kSplit) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int u = 0; u < NV; ++u) acc[r][u] = T::add(acc[r][u], odd[r][u]);
    }
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) {
      const int64_t j = j0 + u * W;
      const bool partial = j + W > ctx.n;
      const M valid = T::first_lanes(partial ? ctx.n - j : W);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const int64_t i = i0 + r;
        V x = ctx.row_scale != nullptr ? T::mul(acc[r][u], T::broadcast(ctx.row_scale + i)) : acc[r][u];
        if (ctx.bias != nullptr) {
          x = T::add(x, partial ? T::maskz_loadu(valid, ctx.bias + i * ctx.n + j)
                                : T::loadu(ctx.bias + i * ctx.n + j));
        }
        if (ctx.mask != nullptr) {
          x = T::add(x, partial ? T::maskz_loadu(valid, ctx.mask + i * ctx.n + j)
                                : T::loadu(ctx.mask + i * ctx.n + j));
        }
        if (partial) x = T::neg_inf_outside(valid, x);
        T::store(ctx.scores + r * ctx.n_pad + j, x);
        row_max[r] = T::max(row_max[r], x);
      }
    }
  }

  // out rows [i0, i0 + R), columns [c0, c0 + NV*W) = P V * inv_sum.
  template <int R, int NV>
  static inline void output_tile(const Context &ctx, int64_t i0, int64_t c0, const float *inv_sum) {
    V acc[R][NV];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int u = 0; u < NV; ++u) acc[r][u] = T::zero();
    const float *v = ctx.v + c0;
    for (int64_t j = 0; j < ctx.n; ++j) {
      V vv[NV];
#pragma GCC unroll 8
      for (int u = 0; u < NV; ++u) vv[u] = T::loadu(v + j * ctx.ld_v + u * W);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const V pb = T::broadcast(ctx.scores + r * ctx.n_pad + j);
#pragma GCC unroll 8
        for (int u = 0; u < NV; ++u) acc[r][u] = T::fmadd(pb, vv[u], acc[r][u]);
      }
    }
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) {
      const int64_t c = c0 + u * W;
      const bool partial = c + W > ctx.d;
      const M valid = T::first_lanes(partial ? ctx.d - c : W);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const V y = T::mul(acc[r][u], T::broadcast(inv_sum + r));
        float *dst = ctx.out + (i0 + r) * ctx.ld_out + c;
        if (partial) {
          T::mask_storeu(dst, valid, y);
        } else {
          T::storeu(dst, y);
        }
      }
    }
  }

  template <int R>
  static void row_block(const Context &ctx, int64_t i0) {
    V row_max[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) row_max[r] = T::set1(-std::numeric_limits<float>::infinity());
    int64_t j0 = 0;
    for (; j0 + T::kColVecs * W <= ctx.vector_end; j0 += T::kColVecs * W) {
      logits_tile<R, T::kColVecs>(ctx, i0, j0, row_max);
    }
    // The rest: fewer than kColVecs vectors (the cases an ISA's tile cannot leave are not instantiated).
    static_assert(T::kColVecs >= 3 && T::kColVecs <= 4, "remainder cases below");
    const int64_t rest = (ctx.vector_end - j0 + W - 1) / W;
    if (rest == 1) {
      logits_tile<R, 1>(ctx, i0, j0, row_max);
    } else if (rest == 2) {
      logits_tile<R, 2>(ctx, i0, j0, row_max);
    } else if constexpr (T::kColVecs == 4) {
      if (rest == 3) logits_tile<R, 3>(ctx, i0, j0, row_max);
    }
    if (ctx.vector_end < ctx.n) logits_dots<R>(ctx, i0, row_max);
    float inv_sum[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      float m = T::reduce_max(row_max[r]);
      if (m == -std::numeric_limits<float>::infinity()) m = 0.0f;  // fully masked row: weights 0, output 0
      V sum = T::zero();
      float *row = ctx.scores + r * ctx.n_pad;
      if (std::fabs(m) < 32768.0f) {
        // s log2(e) - m log2(e) in one FMA: the rounding of m log2(e) (below 2^-8 here) is common to the row
        // and cancels in the normalisation.
        const V m_log2e = T::set1(m * 1.44269504088896341f);
        for (int64_t j = 0; j < ctx.n_pad; j += W) {
          const V p = T::exp_diff(T::load(row + j), m_log2e);
          T::store(row + j, p);
          sum = T::add(sum, p);
        }
      } else {
        // Huge logits: subtract first, so the maximum maps to exactly exp(0) = 1.
        const V vm = T::set1(m);
        for (int64_t j = 0; j < ctx.n_pad; j += W) {
          const V p = T::exp_diff(T::sub(T::load(row + j), vm), T::zero());
          T::store(row + j, p);
          sum = T::add(sum, p);
        }
      }
      const float total = T::reduce_add(sum);
      inv_sum[r] = total == 0.0f ? 0.0f : 1.0f / total;
    }
    const int64_t d_pad = round_up(ctx.d, W);
    int64_t c0 = 0;
    for (; c0 + T::kOutVecs * W <= d_pad; c0 += T::kOutVecs * W)
      output_tile<R, T::kOutVecs>(ctx, i0, c0, inv_sum);
    static_assert(T::kOutVecs >= 3 && T::kOutVecs <= 4, "remainder cases below");
    const int64_t out_rest = (d_pad - c0) / W;
    if (out_rest == 1) {
      output_tile<R, 1>(ctx, i0, c0, inv_sum);
    } else if (out_rest == 2) {
      output_tile<R, 2>(ctx, i0, c0, inv_sum);
    } else if constexpr (T::kOutVecs == 4) {
      if (out_rest == 3) output_tile<R, 3>(ctx, i0, c0, inv_sum);
    }
  }

  template <int R>
  static void row_block_tail(const Context &ctx, int64_t i0, int rows) {
    if constexpr (R > 1) {
      if (rows == R) {
        row_block<R>(ctx, i0);
      } else {
        row_block_tail<R - 1>(ctx, i0, rows);
      }
    } else {
      row_block<1>(ctx, i0);
    }
  }

  using Common = attention_common::Common<T>;

  // kt[c][j] = scale * k[j][c] (and / ||k_j|| for cosine attention), zero for j in [n, n_pad). Folding the
  // scale into the keys saves a multiply per logit. key_scale: n_pad floats of scratch.
  static void pack_keys(const AttentionShape &shape, const float *k, float scale, float *kt, int64_t n_pad,
                        float *key_scale) {
    const int64_t n = shape.n, d = shape.head_dim;
    if (shape.cosine) {
      for (int64_t j = 0; j < n; ++j) key_scale[j] = scale / Common::norm_or_eps(k + j * shape.ld_k, d);
    } else {
      std::fill_n(key_scale, n, scale);
    }
    Common::pack_scaled_transposed(k, shape.ld_k, n, d, shape.cosine ? key_scale : nullptr, scale, kt, n_pad,
                                   n_pad);
  }

  static void run(const AttentionShape &shape, const float *q, const float *k, const float *v, float scale,
                  const AttentionTerms &terms, float *out, float *workspace) {
    attention_common::SpreadPrefetch(shape, 0).finish();  // short windows: a few lines, all at once
    const int64_t n = shape.n, d = shape.head_dim;
    const float *bias = terms.bias, *mask = terms.mask;
    const int64_t n_pad = round_up(n, W), d_pad = round_up(d, W);
    float *kt = workspace;                        // [d][n_pad]
    float *row_scale = kt + d * n_pad;            // [n_pad]
    float *scores = row_scale + n_pad;            // [kRows][n_pad]
    float *v_packed = scores + T::kRows * n_pad;  // [n][d_pad] when needed
    float *key_tail = v_packed + n * d_pad;       // [kMaxDotColumns][d_pad]

    pack_keys(shape, k, scale, kt, n_pad, row_scale);
    const int64_t n_full = n / W * W;
    const int64_t vector_end = n_full > 0 && n - n_full <= kMaxDotColumns ? n_full : n_pad;
    for (int64_t j = vector_end; j < n; ++j) {  // row_scale holds the key scales here (see pack_keys)
      float *dst = key_tail + (j - vector_end) * d_pad;
      for (int64_t c = 0; c < d_pad; ++c) dst[c] = c < d ? k[j * shape.ld_k + c] * row_scale[j] : 0.0f;
    }
    if (shape.cosine) {  // 1 / ||q_i||; plain attention needs no per-row factor
      for (int64_t i = 0; i < n; ++i) {
        row_scale[i] = 1.0f / Common::norm_or_eps(q + i * shape.ld_q, d);
      }
    }
    const float *v_rows = v;
    int64_t ld_v = shape.ld_v;
    if (d != d_pad) {  // pad rows so the P V loop reads whole vectors
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t c = 0; c < d; ++c) v_packed[j * d_pad + c] = v[j * shape.ld_v + c];
        for (int64_t c = d; c < d_pad; ++c) v_packed[j * d_pad + c] = 0.0f;
      }
      v_rows = v_packed;
      ld_v = d_pad;
    }
    Context ctx{n,
                d,
                n_pad,
                q,
                shape.ld_q,
                kt,
                v_rows,
                ld_v,
                bias,
                mask,
                shape.cosine ? row_scale : nullptr,
                scores,
                out,
                shape.ld_out,
                vector_end,
                key_tail,
                d_pad};
    int64_t i0 = 0;
    for (; i0 + T::kRows <= n; i0 += T::kRows) row_block<T::kRows>(ctx, i0);
    if (i0 < n) row_block_tail<T::kRows - 1>(ctx, i0, static_cast<int>(n - i0));
  }
};

// Scratch of Kernel<T>::run, in floats: kt, row_scale, scores, v_packed and key_tail as laid out in run.
template <class T>
size_t workspace_floats(int64_t n, int64_t d) {
  const int64_t n_pad = round_up(n, T::kWidth), d_pad = round_up(d, T::kWidth);
  return static_cast<size_t>(d * n_pad + n_pad + T::kRows * n_pad + n * d_pad +
                             Kernel<T>::kMaxDotColumns * d_pad + 64);
}

}  // namespace attention_impl
}  // namespace winattn::detail
