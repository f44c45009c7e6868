// The query-major ("transposed") fused attention kernel, written once over an ISA traits class. It computes
// S^T = K Q^T with the query index i in the vector lanes, so that everything the softmax reduces over the
// key index j is a vertical operation between vectors:
//   1. Q^T packed into [head_dim][n_pad], scale (and 1/||q_i|| for cosine attention) folded in;
//   2. per block of up to kBlockVecs query vectors: logits^T tiles (key rows x query vectors) start from
//      bias^T + mask^T and accumulate k_j (broadcast) times Q^T; the column maxima are vector maxima;
//   3. softmax in place: exp(s - max) and the column sums, all element-wise;
//   4. short windows (up to the ISA's kTrRowMajorOutputMaxN): out = P V row-major, the weights P[i][j]
//      broadcast from P^T and the rows of v read where they are, each output row scaled by its 1/sum and
//      stored straight into its strided destination row; longer ones: out^T = V^T P^T (v_jc broadcast),
//      scaled by 1/sum element-wise and transposed in registers into the destination rows.
// No horizontal reduction anywhere. Bias and mask come transposed and padded ([n][ld_bias_t], see
// AttentionTerms). Lanes past n compute on zero queries and are never stored.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "attention/attention.h"
#include "attention/f32_attention_common.h"

namespace winattn::detail {
namespace attention_tr_impl {

using attention_common::round_up;

template <class T>
struct Kernel {
  using V = typename T::Vec;
  static constexpr int W = T::kWidth;
  static constexpr int kBlockVecs = T::kTrBlockVecs;  // query vectors per block
  static constexpr int kBlock = kBlockVecs * W;       // row stride of the block's scratch
  static constexpr int64_t kMaxSingleRows = 2;
  // P V row-major (pv_tile) up to this window length, out^T tiles past it (the ISA's choice, measured).
  static constexpr int64_t kRowMajorOutputMaxN = T::kTrRowMajorOutputMaxN;

  struct Context {
    int64_t n, d, n_pad;
    const float *q;  // [n][ld_q], for single_row
    int64_t ld_q;
    const float *row_scale;  // [n]: scale, or scale / ||q_i|| for cosine attention
    float *row;              // [n_pad]: one row of logits, then weights (single_row)
    const float *qt;         // [d][n_pad]
    const float *k;          // [n][ld_k]
    int64_t ld_k;
    const float *v;  // [n][ld_v]
    int64_t ld_v;
    const float *bias_t, *mask_t;  // transposed: [n][ld_bias_t], [n][ld_mask_t], or null
    int64_t ld_bias_t, ld_mask_t;
    const float *bias, *mask;  // the same, not transposed ([n][n]), for single_row
    float *ot;                 // [d_pad][kBlock]: out^T of the block (n > kRowMajorOutputMaxN)
    float *st;                 // [n][kBlock]: logits^T, then probabilities^T, of the block
    // [2][kBlock]: column maxima, then 1 / column sums. In memory, not registers: a tile's 24 accumulators,
    // its query vectors and these would not fit the register file together.
    float *stats;
    float *out;
    int64_t ld_out;
    attention_common::SpreadPrefetch *prefetch;
  };

  // acc[r][u] += sum over s < steps of a[r * a_row + s * a_step] (broadcast) * b[s * b_step + u * W]: the
  // rank-1 updates both products are made of. Small tiles have too few accumulators to cover the FMA
  // latency: a second set takes the odd s. The split depends on the shape only, so results do not depend
  // on the thread count. kRowPointers: the rows of a are far apart (the logits' key rows): each gets its own
  // pointer, so that one offset per step addresses all of them (no address arithmetic per row in the loop;
  // n = 16 1.04x, T = 16 1.04x), from 6 rows on (4: 0.98-0.99x). Adjacent rows (P V's channels) keep one
  // pointer and constant offsets.
  template <int R, int IV, bool kRowPointers>
  __attribute__((always_inline)) static inline void accumulate(const float *a, int64_t a_row, int64_t a_step,
                                                               const float *b, int64_t b_step, int64_t steps,
                                                               V (&acc)[R][IV]) {
    constexpr bool kSplit = R * IV < 8;
    V odd[R][IV];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int u = 0; u < IV; ++u) odd[r][u] = T::zero();
    const float *ar[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      ar[r] = a + r * a_row;
      if constexpr (kRowPointers) asm("" : "+r"(ar[r]));  // opaque: else rebuilt from a and a_row
    }
    auto step = [&](int64_t s, V(&x)[R][IV]) {
      V bv[IV];
#pragma GCC unroll 16
      for (int u = 0; u < IV; ++u) bv[u] = T::load(b + s * b_step + u * W);
      const int64_t offset = s * a_step;
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const V ab = T::broadcast(ar[r] + offset);
#pragma GCC unroll 16
        for (int u = 0; u < IV; ++u) x[r][u] = T::fmadd(ab, bv[u], x[r][u]);
      }
    };
    int64_t s = 0;
    if constexpr (kSplit) {
      for (; s + 1 < steps; s += 2) {
        step(s, acc);
        step(s + 1, odd);
      }
      if (s < steps) step(s, acc);
    } else {
      // Two steps per iteration: the counter, compare and branch once per 2 x R x IV FMAs.
#pragma GCC unroll 2
      for (; s < steps; ++s) step(s, acc);
    }
    if constexpr (kSplit) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
        for (int u = 0; u < IV; ++u) acc[r][u] = T::add(acc[r][u], odd[r][u]);
    }
  }

  // Key rows [j0, j0 + R) x query vectors [i0, i0 + IV*W) of logits^T into ctx.st; updates col_max.
  template <int R, int IV>
  __attribute__((always_inline)) static inline void logits_tile(const Context &ctx, int64_t j0, int64_t i0) {
    ctx.prefetch->step();
    V acc[R][IV];
    // The terms' rows may end at n (a symmetric mask passed as its own transpose): the last vector of a
    // block that runs past n loads only its valid lanes.
    const bool ragged = i0 + IV * W > ctx.n;
    const auto tail = T::first_lanes(ragged ? ctx.n - (i0 + (IV - 1) * W) : W);
    auto load_term = [&](const float *p, int u) {
      return ragged && u == IV - 1 ? T::maskz_loadu(tail, p) : T::loadu(p);
    };
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
      for (int u = 0; u < IV; ++u) {
        const int64_t i = i0 + u * W;
        V init = ctx.bias_t != nullptr ? load_term(ctx.bias_t + (j0 + r) * ctx.ld_bias_t + i, u) : T::zero();
        if (ctx.mask_t != nullptr)
          init = T::add(init, load_term(ctx.mask_t + (j0 + r) * ctx.ld_mask_t + i, u));
        acc[r][u] = init;
      }
    }
    // While the next item is being prefetched, its lines go out in two steps per logits tile, one before
    // each half of the channels: a tile's worth at once held the miss buffers its own loads need (T = 16
    // streaming 1.07x). Without prefetches, one loop (the split costs n = 32 0.95x).
    const int64_t half = ctx.prefetch->active() ? ctx.d / 2 : 0;
    if (half > 0) {
      accumulate<R, IV, (R >= 6)>(ctx.k + j0 * ctx.ld_k, ctx.ld_k, 1, ctx.qt + i0, ctx.n_pad, half, acc);
      ctx.prefetch->step();
    }
    accumulate<R, IV, (R >= 6)>(ctx.k + j0 * ctx.ld_k + half, ctx.ld_k, 1, ctx.qt + i0 + half * ctx.n_pad,
                                ctx.n_pad, ctx.d - half, acc);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int u = 0; u < IV; ++u) T::store(ctx.st + (j0 + r) * kBlock + u * W, acc[r][u]);
#pragma GCC unroll 16
    for (int u = 0; u < IV; ++u) {
      V m = T::load(ctx.stats + u * W);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) m = T::max(m, acc[r][u]);
      T::store(ctx.stats + u * W, m);
    }
  }

  template <int R, int IV>
  static inline void logits_rows(const Context &ctx, int64_t j0, int rows, int64_t i0) {
    if constexpr (R > 1) {
      if (rows < R) return logits_rows<R - 1, IV>(ctx, j0, rows, i0);
    }
    logits_tile<R, IV>(ctx, j0, i0);
  }

  // Output rows [r0, r0 + RO) of the block (query i0 + r0 + t) x channel vectors [c0, c0 + CV * W), the
  // last one `last` lanes wide: out_i = (sum_j P^T[j][i] v_j) / sum_i, the weights broadcast from the
  // block's probabilities^T and the rows of v read where they are, stored straight into the output rows
  // (no out^T and no transpose). Accumulates over j in order, one chain per (row, vector).
  template <int RO, int CV>
  __attribute__((always_inline)) static inline void pv_tile(const Context &ctx, int64_t i0, int64_t r0,
                                                            int64_t c0, int last) {
    ctx.prefetch->step();
    constexpr bool kPreloadV = RO * CV + CV + 1 <= T::kRegs;  // else the weights first, v a vector at a time
    const bool partial = last < W;
    const auto tail = T::first_lanes(last);
    auto load_v = [&](const float *p, int u) __attribute__((always_inline)) {
      return partial && u == CV - 1 ? T::maskz_loadu(tail, p) : T::loadu(p);
    };
    V acc[RO][CV];
#pragma GCC unroll 16
    for (int t = 0; t < RO; ++t)
#pragma GCC unroll 16
      for (int u = 0; u < CV; ++u) acc[t][u] = T::zero();
    const float *p = ctx.st + r0;
    const float *v = ctx.v + c0;
    const int64_t n = ctx.n, ld_v = ctx.ld_v;
#pragma GCC unroll 2
    for (int64_t j = 0; j < n; ++j, p += kBlock, v += ld_v) {
      if constexpr (kPreloadV) {
        V vv[CV];
#pragma GCC unroll 16
        for (int u = 0; u < CV; ++u) vv[u] = load_v(v + u * W, u);
#pragma GCC unroll 16
        for (int t = 0; t < RO; ++t) {
          const V w = T::broadcast(p + t);
#pragma GCC unroll 16
          for (int u = 0; u < CV; ++u) acc[t][u] = T::fmadd(w, vv[u], acc[t][u]);
        }
      } else {
        V w[RO];
#pragma GCC unroll 16
        for (int t = 0; t < RO; ++t) w[t] = T::broadcast(p + t);
#pragma GCC unroll 16
        for (int u = 0; u < CV; ++u) {
          const V vu = load_v(v + u * W, u);
#pragma GCC unroll 16
          for (int t = 0; t < RO; ++t) acc[t][u] = T::fmadd(w[t], vu, acc[t][u]);
        }
      }
    }
#pragma GCC unroll 16
    for (int t = 0; t < RO; ++t) {
      const V inv = T::broadcast(ctx.stats + kBlock + r0 + t);
      float *dst = ctx.out + (i0 + r0 + t) * ctx.ld_out + c0;
#pragma GCC unroll 16
      for (int u = 0; u < CV; ++u) {
        const V y = T::mul(acc[t][u], inv);
        if (partial && u == CV - 1) {
          T::mask_storeu(dst + u * W, tail, y);
        } else {
          T::storeu(dst + u * W, y);
        }
      }
    }
  }

  // Output rows [r0, r0 + rows) of the block, rows <= pv_rows(CV), as one tile.
  template <int RO, int CV>
  static inline void pv_rows(const Context &ctx, int64_t i0, int64_t r0, int rows, int64_t c0, int last) {
    if constexpr (RO > 1) {
      if (rows < RO) return pv_rows<RO - 1, CV>(ctx, i0, r0, rows, c0, last);
    }
    pv_tile<RO, CV>(ctx, i0, r0, c0, last);
  }

  // Output rows [0, rows) of the block, channels [c0, c0 + CV * W) (the last vector `last` lanes wide), in
  // tiles of nearly equal height.
  template <int CV>
  static void pv_slab(const Context &ctx, int64_t i0, int64_t rows, int64_t c0, int last) {
    constexpr int RO = T::pv_rows(CV);
    const int64_t tiles = (rows + RO - 1) / RO;
    int64_t r0 = 0;
    for (int64_t t = 0; t < tiles; ++t) {
      const int height = static_cast<int>((rows - r0 + (tiles - t) - 1) / (tiles - t));
      pv_rows<RO, CV>(ctx, i0, r0, height, c0, last);
      r0 += height;
    }
  }

  // Long windows: channels [c0, c0 + CT) x query vectors of out^T = (V^T P^T) / sum into ctx.ot (the
  // v_jc broadcast, P^T rows loaded), transposed into the output afterwards (output_transposed).
  template <int CT, int IV>
  __attribute__((always_inline)) static inline void out_t_tile(const Context &ctx, int64_t c0) {
    ctx.prefetch->step();
    V acc[CT][IV];
#pragma GCC unroll 16
    for (int t = 0; t < CT; ++t)
#pragma GCC unroll 16
      for (int u = 0; u < IV; ++u) acc[t][u] = T::zero();
    accumulate<CT, IV, false>(ctx.v + c0, 1, ctx.ld_v, ctx.st, kBlock, ctx.n, acc);
    // 1 / sum loaded once and the pointer in a local: see logits_tile.
    V inv[IV];
#pragma GCC unroll 16
    for (int u = 0; u < IV; ++u) inv[u] = T::load(ctx.stats + kBlock + u * W);
    float *const ot = ctx.ot + c0 * kBlock;
#pragma GCC unroll 16
    for (int t = 0; t < CT; ++t)
#pragma GCC unroll 16
      for (int u = 0; u < IV; ++u) T::store(ot + t * kBlock + u * W, T::mul(acc[t][u], inv[u]));
  }

  template <int CT, int IV>
  static inline void out_t_cols(const Context &ctx, int64_t c0, int cols) {
    if constexpr (CT > 1) {
      if (cols < CT) return out_t_cols<CT - 1, IV>(ctx, c0, cols);
    }
    out_t_tile<CT, IV>(ctx, c0);
  }

  // out of the block's query rows [i0, i0 + IV*W) through out^T: tiles of channels x query vectors, then
  // W x W blocks transposed in registers; rows past n and channels past d are not stored.
  template <int IV>
  static void output_transposed(const Context &ctx, int64_t i0) {
    constexpr int CT = T::tr_out_cols(IV);
    int64_t c0 = 0;
    for (; c0 + CT <= ctx.d; c0 += CT) {
      // Two tiles of similar width rather than a full one and a sliver.
      if (ctx.d - c0 > CT && ctx.d - c0 < CT + CT / 2) break;
      out_t_tile<CT, IV>(ctx, c0);
    }
    while (c0 < ctx.d) {
      const int64_t rest = ctx.d - c0;
      const int cols = static_cast<int>(rest > CT ? (rest + 1) / 2 : rest);
      out_t_cols<CT, IV>(ctx, c0, cols);
      c0 += cols;
    }
    const int64_t n = ctx.n, d = ctx.d, ld_out = ctx.ld_out;  // locals: see logits_tile
    const float *const ot = ctx.ot;
    float *const out = ctx.out;
    for (int u = 0; u < IV; ++u) {
      const int64_t row0 = i0 + u * W;
      if (row0 >= n) break;
      const int64_t rows = n - row0 < W ? n - row0 : W;
      for (int64_t cb = 0; cb < d; cb += W) {
        const int64_t width = d - cb < W ? d - cb : W;
        V x[W];
#pragma GCC unroll 16
        for (int t = 0; t < W; ++t) x[t] = t < width ? T::load(ot + (cb + t) * kBlock + u * W) : T::zero();
        T::transpose(x);
        float *dst = out + row0 * ld_out + cb;
        if (width == W && rows == W) {  // constant indices: x stays in registers
#pragma GCC unroll 16
          for (int r = 0; r < W; ++r) T::storeu(dst + r * ld_out, x[r]);
        } else if (width == W) {
          for (int64_t r = 0; r < rows; ++r) T::storeu(dst + r * ld_out, x[r]);
        } else {
          const auto valid = T::first_lanes(width);
          for (int64_t r = 0; r < rows; ++r) T::mask_storeu(dst + r * ld_out, valid, x[r]);
        }
      }
    }
  }

  // out = P V / sum of the block's query rows [i0, i0 + IV*W) (those below n), row-major, in slabs of at
  // most kPvMaxVecs channel vectors of nearly equal width.
  template <int IV>
  static void output_row_major(const Context &ctx, int64_t i0) {
    static_assert(T::kPvMaxVecs == 4 || T::kPvMaxVecs == 8, "slab width cases below");
    const int64_t rows = ctx.n - i0 < IV * W ? ctx.n - i0 : IV * W;  // below n and the block's vectors
    const int64_t d_vecs = (ctx.d + W - 1) / W;
    const int64_t slabs = (d_vecs + T::kPvMaxVecs - 1) / T::kPvMaxVecs;
    int64_t vec0 = 0;
    for (int64_t s = 0; s < slabs; ++s) {
      const int64_t vecs = (d_vecs - vec0 + (slabs - s) - 1) / (slabs - s);
      const int64_t c0 = vec0 * W;
      const int last = static_cast<int>(ctx.d - c0 - (vecs - 1) * W < W ? ctx.d - c0 - (vecs - 1) * W : W);
      if (vecs == 1) {
        pv_slab<1>(ctx, i0, rows, c0, last);
      } else if (vecs == 2) {
        pv_slab<2>(ctx, i0, rows, c0, last);
      } else if (vecs == 3) {
        pv_slab<3>(ctx, i0, rows, c0, last);
      } else if (vecs == 4) {
        pv_slab<4>(ctx, i0, rows, c0, last);
      } else if constexpr (T::kPvMaxVecs == 8) {
        if (vecs == 5) {
          pv_slab<5>(ctx, i0, rows, c0, last);
        } else if (vecs == 6) {
          pv_slab<6>(ctx, i0, rows, c0, last);
        } else if (vecs == 7) {
          pv_slab<7>(ctx, i0, rows, c0, last);
        } else {
          pv_slab<8>(ctx, i0, rows, c0, last);
        }
      }
      vec0 += vecs;
    }
  }

  // Query rows [i0, i0 + IV*W) (those below n) of the output; P V row-major or through out^T (two
  // instantiations, so that each keeps the code it was measured with).
  template <int IV, bool kRowMajorOut>
  static void block(const Context &ctx, int64_t i0) {
    constexpr int R = T::tr_key_rows(IV);
#pragma GCC unroll 16
    for (int u = 0; u < IV; ++u)
      T::store(ctx.stats + u * W, T::set1(-std::numeric_limits<float>::infinity()));
    int64_t j0 = 0;
    for (; j0 + R <= ctx.n; j0 += R) logits_tile<R, IV>(ctx, j0, i0);
    if (j0 < ctx.n) logits_rows<R - 1, IV>(ctx, j0, static_cast<int>(ctx.n - j0), i0);

    // A column whose logits are all -inf takes max 0: its weights are exp(-inf) = 0 and its output 0.
    bool huge = false;
    V col_max[IV], m_log2e[IV], sum[IV];
#pragma GCC unroll 16
    for (int u = 0; u < IV; ++u) {
      col_max[u] = T::neg_inf_to_zero(T::load(ctx.stats + u * W));
      huge = huge || T::any_abs_ge(col_max[u], 32768.0f);
      m_log2e[u] = T::mul(col_max[u], T::set1(1.44269504088896341f));
      sum[u] = T::zero();
    }
    if (!huge) {
      // s log2(e) - m log2(e) in one FMA: the rounding of m log2(e) (below 2^-8 here) is common to the
      // column and cancels in the normalisation.
      // Locals: through ctx, GCC reloaded st and n on every row (the stores below are floats, but it
      // would not keep them).
      float *row = ctx.st;
      const int64_t n = ctx.n;
      for (int64_t j = 0; j < n; ++j, row += kBlock) {
#pragma GCC unroll 16
        for (int u = 0; u < IV; ++u) {
          const V p = T::exp_diff(T::load(row + u * W), m_log2e[u]);
          T::store(row + u * W, p);
          sum[u] = T::add(sum[u], p);
        }
      }
    } else {
      // Huge logits: subtract first, so the maximum maps to exactly exp(0) = 1.
      float *row = ctx.st;
      const int64_t n = ctx.n;
      for (int64_t j = 0; j < n; ++j, row += kBlock) {
#pragma GCC unroll 16
        for (int u = 0; u < IV; ++u) {
          const V p = T::exp_diff(T::sub(T::load(row + u * W), col_max[u]), T::zero());
          T::store(row + u * W, p);
          sum[u] = T::add(sum[u], p);
        }
      }
    }
#pragma GCC unroll 16
    for (int u = 0; u < IV; ++u) T::store(ctx.stats + kBlock + u * W, T::recip_or_zero(sum[u]));

    if constexpr (kRowMajorOut) {
      output_row_major<IV>(ctx, i0);
    } else {
      output_transposed<IV>(ctx, i0);
    }
  }

  // Query row i in the usual orientation, for the few rows past the last full vector (n = 49 is 3 vectors
  // and one row): logits as dot products, W of them reduced together by a transpose, a horizontal
  // softmax, and P V with the weights broadcast. Cheaper than a vector of mostly empty lanes.
  static void single_row(const Context &ctx, int64_t i) {
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    const int64_t n = ctx.n, d = ctx.d;
    const float *qi = ctx.q + i * ctx.ld_q;
    const auto last = T::first_lanes(d - (round_up(d, W) - W));  // lanes of the last channel vector
    const V scale = T::broadcast(ctx.row_scale + i);
    V vmax = T::set1(kNegInf);
    for (int64_t j0 = 0; j0 < n; j0 += W) {
      const float *kr[W];
#pragma GCC unroll 16
      for (int t = 0; t < W; ++t)
        kr[t] = ctx.k + (j0 + t < n ? j0 + t : n - 1) * ctx.ld_k;  // lanes past n: unused
      V dots[W];
#pragma GCC unroll 16
      for (int t = 0; t < W; ++t) dots[t] = T::zero();
      for (int64_t c = 0; c < d; c += W) {
        const bool partial = c + W > d;
        const V qv = partial ? T::maskz_loadu(last, qi + c) : T::loadu(qi + c);
#pragma GCC unroll 16
        for (int t = 0; t < W; ++t)
          dots[t] = T::fmadd(qv, partial ? T::maskz_loadu(last, kr[t] + c) : T::loadu(kr[t] + c), dots[t]);
      }
      V x = T::mul(T::sum_rows(dots), scale);
      const bool partial = j0 + W > n;
      const auto valid = T::first_lanes(partial ? n - j0 : W);
      if (ctx.bias != nullptr) {
        const float *b = ctx.bias + i * n + j0;
        x = T::add(x, partial ? T::maskz_loadu(valid, b) : T::loadu(b));
      }
      if (ctx.mask != nullptr) {
        const float *b = ctx.mask + i * n + j0;
        x = T::add(x, partial ? T::maskz_loadu(valid, b) : T::loadu(b));
      }
      if (partial) x = T::neg_inf_outside(valid, x);
      T::store(ctx.row + j0, x);
      vmax = T::max(vmax, x);
    }
    float *row = ctx.row;
    float m = T::reduce_max(vmax);
    if (m == kNegInf) m = 0.0f;  // fully masked row: weights 0, output 0
    V vsum = T::zero();
    const bool huge = !(std::fabs(m) < 32768.0f);
    const V m_log2e = T::set1(m * 1.44269504088896341f), vm = T::set1(m);
    for (int64_t j = 0; j < ctx.n_pad; j += W) {
      const V p = huge ? T::exp_diff(T::sub(T::load(row + j), vm), T::zero())
                       : T::exp_diff(T::load(row + j), m_log2e);
      T::store(row + j, p);
      vsum = T::add(vsum, p);
    }
    const float total = T::reduce_add(vsum);
    const V inv = T::set1(total == 0.0f ? 0.0f : 1.0f / total);
    float *dst = ctx.out + i * ctx.ld_out;
    // Two channel vectors at a time share each broadcast weight; even and odd j take separate accumulators
    // so four FMA chains cover the latency.
    for (int64_t c = 0; c < d; c += 2 * W) {
      const float *v = ctx.v + c;
      const bool partial0 = c + W > d, has1 = c + W<d, partial1 = c + 2 * W> d;
      auto load_v = [&](int64_t j, int64_t offset, bool partial) {
        return partial ? T::maskz_loadu(last, v + j * ctx.ld_v + offset)
                       : T::loadu(v + j * ctx.ld_v + offset);
      };
      V a0 = T::zero(), a1 = T::zero(), b0 = T::zero(), b1 = T::zero();
      int64_t j = 0;
      for (; j + 2 <= n; j += 2) {
        const V p0 = T::broadcast(row + j), p1 = T::broadcast(row + j + 1);
        a0 = T::fmadd(p0, load_v(j, 0, partial0), a0);
        b0 = T::fmadd(p1, load_v(j + 1, 0, partial0), b0);
        if (has1) {
          a1 = T::fmadd(p0, load_v(j, W, partial1), a1);
          b1 = T::fmadd(p1, load_v(j + 1, W, partial1), b1);
        }
      }
      if (j < n) {
        const V p0 = T::broadcast(row + j);
        a0 = T::fmadd(p0, load_v(j, 0, partial0), a0);
        if (has1) a1 = T::fmadd(p0, load_v(j, W, partial1), a1);
      }
      const V y0 = T::mul(T::add(a0, b0), inv);
      if (partial0) {
        T::mask_storeu(dst + c, last, y0);
      } else {
        T::storeu(dst + c, y0);
      }
      if (has1) {
        const V y1 = T::mul(T::add(a1, b1), inv);
        if (partial1) {
          T::mask_storeu(dst + c + W, last, y1);
        } else {
          T::storeu(dst + c + W, y1);
        }
      }
    }
  }

  using Common = attention_common::Common<T>;

  // terms: both forms of whichever of bias and mask is present (see AttentionTerms).
  static void run(const AttentionShape &shape, const float *q, const float *k, const float *v, float scale,
                  const AttentionTerms &terms, float *out, float *workspace) {
    const int64_t n = shape.n, d = shape.head_dim;
    const int64_t n_pad = round_up(n, W), d_pad = round_up(d, W);
    float *qt = workspace;              // [d][n_pad]
    float *row_scale = qt + d * n_pad;  // [n_pad]
    float *st = row_scale + n_pad;      // [n][kBlock]
    float *ot = st + n * kBlock;        // [d_pad][kBlock], n > kRowMajorOutputMaxN only
    float *stats = ot + (n > kRowMajorOutputMaxN ? d_pad * kBlock : 0);  // [2][kBlock]
    float *row = stats + 2 * kBlock;                                     // [n_pad]
    float *k_unit = row + n_pad;                                         // [n][d], cosine attention only

    const float *keys = k;
    int64_t ld_k = shape.ld_k;
    if (shape.cosine) {
      for (int64_t i = 0; i < n; ++i) row_scale[i] = scale / Common::norm_or_eps(q + i * shape.ld_q, d);
    } else {
      std::fill_n(row_scale, n, scale);
    }
    // Rows past the last full vector run one at a time when they are few (single_row); blocks take the
    // rest.
    const int64_t n_full = n / W * W;
    const int64_t block_rows = n_full > 0 && n - n_full <= kMaxSingleRows ? n_full : n_pad;
    Common::pack_scaled_transposed(q, shape.ld_q, n, d, shape.cosine ? row_scale : nullptr, scale, qt, n_pad,
                                   block_rows);
    if (shape.cosine) {
      for (int64_t j = 0; j < n; ++j) {
        const float *src = k + j * shape.ld_k;
        const float inv = 1.0f / Common::norm_or_eps(src, d);
        for (int64_t c = 0; c < d; ++c) k_unit[j * d + c] = src[c] * inv;
      }
      keys = k_unit;
      ld_k = d;
    }
    const int64_t blocks_estimate = (n_pad + kBlock - 1) / kBlock;
    // About one step per tile, two per logits tile: blocks x (2 x key tiles + channel tiles), tiles of at
    // least 6.
    attention_common::SpreadPrefetch prefetch(shape, blocks_estimate * (2 * ((n + 5) / 6) + (d + 5) / 6));
    const Context ctx{n,
                      d,
                      n_pad,
                      q,
                      shape.ld_q,
                      row_scale,
                      row,
                      qt,
                      keys,
                      ld_k,
                      v,
                      shape.ld_v,
                      terms.bias_t,
                      terms.mask_t,
                      terms.ld_bias_t,
                      terms.ld_mask_t,
                      terms.bias,
                      terms.mask,
                      ot,
                      st,
                      stats,
                      out,
                      shape.ld_out,
                      &prefetch};
    for (int64_t i = block_rows; i < n; ++i) single_row(ctx, i);
    if constexpr (kRowMajorOutputMaxN > 0) {
      if (n <= kRowMajorOutputMaxN) return blocks<true>(ctx, block_rows, prefetch);
    }
    blocks<false>(ctx, block_rows, prefetch);
  }

  // The query rows [0, block_rows) in blocks of nearly equal width: 9 vectors run as 3 + 3 + 3, not
  // 4 + 4 + 1.
  template <bool kRowMajorOut>
  static void blocks(const Context &ctx, int64_t block_rows, attention_common::SpreadPrefetch &prefetch) {
    const int64_t vecs = block_rows / W;
    const int64_t count = (vecs + kBlockVecs - 1) / kBlockVecs;
    int64_t i0 = 0;
    for (int64_t b = 0; b < count; ++b) {
      const int64_t width = (vecs - i0 / W + (count - b) - 1) / (count - b);
      // width <= kBlockVecs: the widths an ISA's block cannot reach are not instantiated.
      static_assert(kBlockVecs >= 3 && kBlockVecs <= 4, "width cases below");
      if (width == 1) {
        block<1, kRowMajorOut>(ctx, i0);
      } else if (width == 2) {
        block<2, kRowMajorOut>(ctx, i0);
      } else if (width == 3) {
        block<3, kRowMajorOut>(ctx, i0);
      } else if constexpr (kBlockVecs == 4) {
        block<4, kRowMajorOut>(ctx, i0);
      }
      i0 += width * W;
    }
    prefetch.finish();
  }
};

// dst[j][i] = src[i][j] for an [n][n] src; dst is [n][ld], ld >= round_up(n, W), zero past column n.
template <class T>
void transpose_terms(const float *src, int64_t n, int64_t ld, float *dst) {
  using V = typename T::Vec;
  constexpr int W = T::kWidth;
  for (int64_t i0 = 0; i0 < n; i0 += W) {    // src rows, dst columns
    for (int64_t j0 = 0; j0 < n; j0 += W) {  // src columns, dst rows
      const int64_t width = n - j0 < W ? n - j0 : W;
      const auto columns = T::first_lanes(width);
      V rows[W];
#pragma GCC unroll 16
      for (int r = 0; r < W; ++r) {
        const float *p = src + (i0 + r) * n + j0;
        rows[r] = i0 + r >= n ? T::zero() : width == W ? T::loadu(p) : T::maskz_loadu(columns, p);
      }
      T::transpose(rows);
      for (int64_t c = 0; c < width; ++c) T::storeu(dst + (j0 + c) * ld + i0, rows[c]);
    }
  }
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = round_up(n, W); i < ld; ++i) dst[j * ld + i] = 0.0f;
}

// Scratch of Kernel<T>::run, in floats.
template <class T>
size_t workspace_floats(int64_t n, int64_t d) {
  const int64_t w = T::kWidth, block_vecs = T::kTrBlockVecs;
  const int64_t n_pad = round_up(n, w), d_pad = round_up(d, w);
  return static_cast<size_t>(d * n_pad + n_pad + n * block_vecs * w + d_pad * block_vecs * w +
                             2 * block_vecs * w + n_pad + n * d + 64);
}

}  // namespace attention_tr_impl
}  // namespace winattn::detail
