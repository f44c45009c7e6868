// Fused attention for short windows (n <= 32: temporal T = 8 or 16, 4x4 and 5x5 windows), several
// (window, head) items per pass, written once over an ISA traits class (f32_attention_short_avx512.cpp,
// f32_attention_short_avx2.cpp instantiate it with their flags).
//
// One vector lane per query row. The query rows of a call are cut into quads (4 consecutive rows of one
// item; the last quad of an item is padded with copies of its last row) and the quads of consecutive items
// are packed in order, W / 4 of them to a slot of W lanes: at n = 8 a 16-lane slot holds two items, at
// n = 16 one, at n = 25 an item takes 7 quads and the next item starts in the same slot. Per slot:
//   1. logits^T, one vector per key j with the slot's rows in the lanes. Each logit is a dot product with
//      the channels in the lanes, q and k rows read where they are (no packing): a tile of two keys by
//      4 * W / 8 rows accumulates over the channels, then a reduction tree (in-lane unpacks and adds, one
//      round of lane shuffles per tile and one to join the slot's two half tiles) leaves each row's sum in
//      its lane. Then scale (and the cosine norms), plus bias^T and mask^T rows loaded straight into the
//      lanes.
//   2. softmax along the keys, all element-wise between vectors: maximum, exp, sum, and 1 / sum folded
//      into the probabilities P^T, kept for the slots an item spans.
//   3. once all of an item's rows have their probabilities: out = P V, channels in the lanes, the weights
//      broadcast from P^T, written to the item's strided output rows.
// No horizontal reduction in the softmax and no transposes; the only lane shuffles are the trees'. Every
// lane goes through the same operations in the same order whatever shares its vector, so an item's
// results do not depend on which batch it is in, its place there, or the batch size (the "huge logits"
// switch of the per-item kernels would break that: the maximum is always subtracted before the exp here).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include <xmmintrin.h>

#include "attention/attention.h"
#include "attention/f32_attention_common.h"

namespace winattn::detail {

// The short-window batched kernels (run_batch only), defined in f32_attention_short_avx512.cpp and
// f32_attention_short_avx2.cpp: "16x2" = logits^T computed 16 query rows (lanes, packed from consecutive
// items) by 2 keys at a time. They compute any n in [1, 32] (kMaxN) and any head_dim >= 1, and read the
// transposed terms: bias_t / mask_t (rows ld_bias_t / ld_mask_t >= n floats apart; a symmetric mask may be
// passed as its own transpose with ld n) of each item that has a bias or mask, in place; an item with a
// bias or mask but no transpose of it has it read from bias / mask, transposed into scratch per slot
// (correct, a little slower). Items may differ in scale and terms; results of an item are the same bits
// whatever batch it is run in.

namespace attention_short_impl {

constexpr int64_t kMaxN = 32;
// The window lengths the dispatch should pick them for: past 16 tokens a query-major per-item kernel has
// full vectors of queries, while here each 16 (8) dot products cost a reduction tree, which at head_dim 32
// is as much work as their FMAs (measured on AVX2, Zen 3: 0.8x the query-major kernel at n = 25, 0.9x at
// n = 32; against the kernels picked today 1.35x at n = 8, 1.1x at n = 16, 1.6x at n = 9).
constexpr int64_t kDispatchMaxN = 16;
// Nothing in the kernels depends on it (their scratch does not grow with the batch): the callers' bound.
constexpr int64_t kMaxBatch = kMaxBatchItems;

inline int64_t quads_of(int64_t n) {
  return (n + 3) / 4;
}
// Slots kept: at least as many as one item can span (q quads starting at the last quad of a slot of
// w / 4), a power of two so that the ring index is a mask.
inline int64_t ring_slots(int64_t n, int64_t width) {
  const int64_t per_slot = width / 4;
  const int64_t span = (per_slot - 1 + quads_of(n) + per_slot - 1) / per_slot;
  int64_t ring = 1;
  while (ring < span) ring *= 2;
  return ring;
}
// logits^T [n][W]; probabilities^T [ring_slots][n][W]; cosine key scales [n][W]; row scales [W]; key
// norms [n, padded]; bias and mask scratch [n][W] each.
inline size_t workspace_floats_for(int64_t n, int64_t width) {
  const int64_t n_pad = (n + width - 1) / width * width;
  return static_cast<size_t>(n * width * (4 + ring_slots(n, width)) + n_pad + width + 16);
}
template <class T>
size_t workspace_floats(int64_t n, int64_t /*head_dim*/) {
  return workspace_floats_for(n, T::kWidth);
}

template <class T>
struct Kernel {
  using V = typename T::Vec;
  using M = typename T::Mask;
  static constexpr int W = T::kWidth;
  static constexpr int kQuads = W / 4;           // quads per slot
  static constexpr int kTileQuads = kQuads / 2;  // quads per half tile
  static constexpr int kTileRows = 4 * kTileQuads;

  // Prefetches the rows (q, k, v, out) of the items ahead, a few lines per step: items [item, end) are not
  // yet prefetched; of `item`, arrays below `array` are, and of that array the span [next, stop) is still
  // to come (one span per array when its rows are contiguous, ld == d, else one per row, `row` the next).
  // A step costs a compare and two instructions per line; moving to the next span, a dozen.
  struct Prefetcher {
    const AttentionItem *items = nullptr;
    int64_t n = 0, d = 0, ld[4] = {0, 0, 0, 0};
    int64_t item = 0, end = 0, array = 0, row = 0;
    int64_t lines_per_step = 0;
    const char *next = nullptr, *stop = nullptr;
    bool to_l1 = true;

    __attribute__((always_inline)) void step(int64_t lines) {
      while (lines > 0) {
        if (next >= stop && !advance()) return;
        const int64_t left = (stop - next + 63) / 64;
        const int64_t take = lines < left ? lines : left;
        attention_common::prefetch_lines(next, take, to_l1);
        next += take * 64;
        lines -= take;
      }
    }
    // The next span into [next, stop), its first line rounded down; false when items up to `end` are done.
    bool advance() {
      if (item >= end) return false;
      const AttentionItem &it = items[item];
      const float *base = array == 0 ? it.q : array == 1 ? it.k : array == 2 ? it.v : it.out;
      const bool whole = ld[array] == d;
      const float *first = base + (whole ? 0 : row * ld[array]);
      const int64_t floats = whole ? n * d : d;
      next = reinterpret_cast<const char *>(reinterpret_cast<uintptr_t>(first) & ~static_cast<uintptr_t>(63));
      stop = reinterpret_cast<const char *>(first + floats);
      if (whole || ++row == n) {
        row = 0;
        if (++array == 4) {
          array = 0;
          ++item;
        }
      }
      return true;
    }
  };

  struct Call {
    int64_t n, d, nq, count, total_quads, ring;
    int64_t ld_q, ld_k, ld_v, ld_out;
    bool cosine;
    const AttentionItem *items;
    float *st;                           // [n][W] logits^T of the slot
    float *pt;                           // [ring][n][W] probabilities^T of the last slots
    float *key_scale;                    // [n][W] cosine: 1 / ||k_j|| of each lane's item
    float *key_norm;                     // [n] cosine: 1 / ||k_j|| of one item
    float *bias_scratch, *mask_scratch;  // [n][W] each: terms of items that have no transposes
    float *row_scale;                    // [W] scale, or scale / ||q_i|| for cosine attention
    Prefetcher *prefetch;
    // P V tiles of nearly equal size, split once per call (no division per tile): `tiles` tiles, the first
    // `extra` of base + 1 (channel vectors, or rows), the others of base. rows[NV]: for NV channel vectors.
    struct Split {
      int64_t tiles, base, extra;
    } cols, rows[T::kPvVecs + 1];
  };

  static typename Call::Split split(int64_t total, int64_t most) {
    const int64_t tiles = (total + most - 1) / most;
    return {tiles, total / tiles, total % tiles};
  }

  // 4 rows of one item.
  struct Quad {
    int64_t item;
    int64_t row0;  // first row
    int rows;      // rows below n, 1..4
  };

  // Rows of transposed terms that one or more consecutive quads of an item put into lanes [lane0, lane0 +
  // rows): the address of element (j, lane) is base + (j * ld + lane) floats, base being the term row 0
  // shifted back by lane0 floats. Held as an integer: it may point before the array (those lanes are
  // masked and never read).
  struct Segment {
    uintptr_t base;
    int64_t ld;
    M lanes;
    const float *row(int64_t j) const {
      return reinterpret_cast<const float *>(base + static_cast<uintptr_t>(j * ld) * sizeof(float));
    }
  };

  // max(||x||, 1e-12) over d floats (torch.nn.functional.normalize's eps): one fixed sequence per row.
  static float norm_or_eps(const float *x, int64_t d) {
    V acc = T::zero();
    int64_t c = 0;
    for (; c + W <= d; c += W) {
      const V v = T::loadu(x + c);
      acc = T::fmadd(v, v, acc);
    }
    if (c < d) {
      const V v = T::maskz_loadu(T::lanes(0, d - c), x + c);
      acc = T::fmadd(v, v, acc);
    }
    return std::fmax(std::sqrt(T::hsum(acc)), 1e-12f);
  }

  // acc[k][r] = q_r . key (j + k) of row r's item, k = 0, 1. Rows [0, 4) take the keys at ka, rows [4, 8)
  // those at kb (the same when kShared). key_step: floats from key j to key j + 1 (0 when j + 1 == n: the
  // second key repeats the first and is not used).
  template <bool kShared>
  __attribute__((always_inline)) static inline void dot_tile(const float *const (&q)[kTileRows],
                                                             const float *ka, const float *kb,
                                                             int64_t key_step, int64_t d,
                                                             V (&out)[2][kTileRows]) {
    V acc0[kTileRows], acc1[kTileRows];  // locals, so that they stay in registers
#pragma GCC unroll 8
    for (int r = 0; r < kTileRows; ++r) acc0[r] = acc1[r] = T::zero();
    auto step = [&](int64_t c, auto load) __attribute__((always_inline)) {
      const V a0 = load(ka + c), a1 = load(ka + key_step + c);
      V b0 = a0, b1 = a1;
      if constexpr (!kShared && kTileRows > 4) {
        b0 = load(kb + c);
        b1 = load(kb + key_step + c);
      }
#pragma GCC unroll 8
      for (int r = 0; r < kTileRows; ++r) {
        V x = load(q[r] + c);
        T::in_register(x);  // one load for both FMAs (the compiler would fold it into each)
        acc0[r] = T::fmadd(x, r < 4 ? a0 : b0, acc0[r]);
        acc1[r] = T::fmadd(x, r < 4 ? a1 : b1, acc1[r]);
      }
    };
    int64_t c = 0;
    for (; c + W <= d; c += W)
      step(
          c, [](const float *p) __attribute__((always_inline)) { return T::loadu(p); });
    if (c < d) {
      const M tail = T::lanes(0, d - c);
      step(
          c, [tail](const float *p) __attribute__((always_inline)) { return T::maskz_loadu(tail, p); });
    }
#pragma GCC unroll 8
    for (int r = 0; r < kTileRows; ++r) {
      out[0][r] = acc0[r];
      out[1][r] = acc1[r];
    }
  }

  // What a half tile reads: its rows' q pointers (the padding rows of a last quad repeat its last row)
  // and key row 0 of the items of its first and last quad.
  struct Half {
    const float *q[kTileRows];
    const float *ka, *kb;
    bool shared;  // one item
  };

  static Half half_of(const Call &c, const Quad *quads) {
    Half h;
#pragma GCC unroll 8
    for (int t = 0; t < kTileQuads; ++t) {
      const Quad &quad = quads[t];
      const float *base = c.items[quad.item].q + quad.row0 * c.ld_q;
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) h.q[4 * t + i] = base + (i < quad.rows ? i : quad.rows - 1) * c.ld_q;
    }
    h.ka = c.items[quads[0].item].k;
    h.kb = c.items[quads[kTileQuads - 1].item].k;
    h.shared = kTileRows == 4 || quads[0].item == quads[kTileQuads - 1].item;
    return h;
  }

  // Keys j and j + 1 of a half tile: out[k] holds its dot products for key j + k, partly reduced
  // (T::part), for T::join.
  __attribute__((always_inline)) static inline void half_tile(const Call &c, const Half &h, int64_t j,
                                                              V (&out)[2]) {
    const int64_t key_step = j + 1 < c.n ? c.ld_k : 0;
    V acc[2][kTileRows];
    if (h.shared) {
      dot_tile<true>(h.q, h.ka + j * c.ld_k, h.ka + j * c.ld_k, key_step, c.d, acc);
    } else {
      dot_tile<false>(h.q, h.ka + j * c.ld_k, h.kb + j * c.ld_k, key_step, c.d, acc);
    }
    T::part(acc, out);
  }

  struct Terms {
    const Segment *bias, *mask;
    int bias_count, mask_count;
  };

  // Logits^T of a slot into c.st (scaled, plus its terms); returns their maxima.
  static V logits(const Call &c, const Half &half0, const Half &half1, bool second_half, const Terms &terms,
                  V row_scale) {
    const int64_t n = c.n;
    V row_max = T::set1(-std::numeric_limits<float>::infinity());
    for (int64_t j = 0; j < n; j += 2) {
      c.prefetch->step(c.prefetch->lines_per_step);
      V lo[2], hi[2];
      half_tile(c, half0, j, lo);
      if (second_half) {
        half_tile(c, half1, j, hi);
      } else {
        hi[0] = hi[1] = T::zero();
      }
#pragma GCC unroll 2
      for (int k = 0; k < 2; ++k) {
        const int64_t key = j + k;
        if (key >= n) break;
        V x = T::join(lo[k], hi[k]);
        if (c.cosine) x = T::mul(x, T::load(c.key_scale + key * W));
        V sum = T::zero();
        for (int g = 0; g < terms.bias_count; ++g)
          sum = T::add(sum, T::maskz_loadu(terms.bias[g].lanes, terms.bias[g].row(key)));
        for (int g = 0; g < terms.mask_count; ++g)
          sum = T::add(sum, T::maskz_loadu(terms.mask[g].lanes, terms.mask[g].row(key)));
        x = T::fmadd(x, row_scale, sum);
        T::store(c.st + key * W, x);
        row_max = T::max(row_max, x);
      }
    }
    return row_max;
  }

  // Logits^T of slot s into c.st, probabilities^T into its ring entry. (cursor_item, cursor_rq): its first
  // quad, advanced past its last.
  static void slot(const Call &c, int64_t s, int64_t &cursor_item, int64_t &cursor_rq) {
    const int64_t n = c.n;
    // Prefetch the items that start in the next slot while this one computes.
    Prefetcher &prefetch = *c.prefetch;
    prefetch.end = std::min<int64_t>(c.count, ((s + 2) * kQuads + c.nq - 1) / c.nq);
    Quad quads[kQuads];
    int used = 0;
    for (int t = 0; t < kQuads && cursor_item < c.count; ++t) {
      const int64_t row0 = 4 * cursor_rq;
      quads[t] = Quad{cursor_item, row0, static_cast<int>(n - row0 < 4 ? n - row0 : 4)};
      used = t + 1;
      if (++cursor_rq == c.nq) {
        cursor_rq = 0;
        ++cursor_item;
      }
    }
    for (int t = used; t < kQuads; ++t) quads[t] = quads[used - 1];  // lanes computed, never used

    // Per-lane scales and the terms' segments.
    Segment bias[kQuads + 1], mask[kQuads + 1];
    int bias_count = 0, mask_count = 0;
    bool bias_scratch_used = false, mask_scratch_used = false;
    M bias_scratch_lanes = T::lanes(0, 0), mask_scratch_lanes = T::lanes(0, 0);
    int64_t norm_item = -1;
    for (int t = 0; t < kQuads; ++t) {
      const Quad &quad = quads[t];
      const AttentionItem &item = c.items[quad.item];
      for (int i = 0; i < 4; ++i) {
        const int64_t row = quad.row0 + (i < quad.rows ? i : quad.rows - 1);
        c.row_scale[4 * t + i] = t >= used  ? 0.0f
                                 : c.cosine ? item.scale / norm_or_eps(item.q + row * c.ld_q, c.d)
                                            : item.scale;
      }
      if (c.cosine) {
        if (quad.item != norm_item) {
          norm_item = quad.item;
          for (int64_t j = 0; j < n; ++j) c.key_norm[j] = 1.0f / norm_or_eps(item.k + j * c.ld_k, c.d);
        }
        for (int64_t j = 0; j < n; ++j)
          for (int i = 0; i < 4; ++i) c.key_scale[j * W + 4 * t + i] = c.key_norm[j];
      }
      if (t >= used) continue;
      // A quad continues the previous segment when it is the same item's next quad.
      const bool continues = t > 0 && quads[t - 1].item == quad.item;
      // An item's terms come transposed (bias_t, mask_t: read in place) or, failing that, as [n][n] only:
      // then this quad's rows are transposed into the slot's scratch, one segment for all such quads.
      auto add = [&](Segment *segments, int &count, const float *term_t, int64_t ld, const float *term,
                     float *scratch, bool &scratch_used, M &scratch_lanes) {
        if (term_t == nullptr) {
          if (term == nullptr) return;
          for (int64_t j = 0; j < n; ++j)
            for (int i = 0; i < quad.rows; ++i) scratch[j * W + 4 * t + i] = term[(quad.row0 + i) * n + j];
          scratch_lanes = scratch_used ? T::mask_or(scratch_lanes, T::lanes(4 * t, quad.rows))
                                       : T::lanes(4 * t, quad.rows);
          scratch_used = true;
          return;
        }
        if (continues) {
          segments[count - 1].lanes = T::mask_or(segments[count - 1].lanes, T::lanes(4 * t, quad.rows));
          return;
        }
        const uintptr_t row0 = reinterpret_cast<uintptr_t>(term_t + quad.row0);
        segments[count++] =
            Segment{row0 - static_cast<uintptr_t>(4 * t) * sizeof(float), ld, T::lanes(4 * t, quad.rows)};
      };
      add(bias, bias_count, item.terms.bias_t, item.terms.ld_bias_t, item.terms.bias, c.bias_scratch,
          bias_scratch_used, bias_scratch_lanes);
      add(mask, mask_count, item.terms.mask_t, item.terms.ld_mask_t, item.terms.mask, c.mask_scratch,
          mask_scratch_used, mask_scratch_lanes);
    }
    if (bias_scratch_used)
      bias[bias_count++] = Segment{reinterpret_cast<uintptr_t>(c.bias_scratch), W, bias_scratch_lanes};
    if (mask_scratch_used)
      mask[mask_count++] = Segment{reinterpret_cast<uintptr_t>(c.mask_scratch), W, mask_scratch_lanes};
    const V row_scale = T::load(c.row_scale);

    // 1. logits^T, two keys at a time, and their maxima.
    const Half half0 = half_of(c, quads), half1 = half_of(c, quads + kTileQuads);
    const Terms terms{bias, mask, bias_count, mask_count};
    const bool second_half = used > kTileQuads;
    const V row_max = logits(c, half0, half1, second_half, terms, row_scale);

    // 2. softmax along the keys. A row whose logits are all -inf takes maximum 0: its weights are
    // exp(-inf) = 0, its sum 0 and its output 0.
    const V m = T::neg_inf_to_zero(row_max);
    float *pt = c.pt + (s & (c.ring - 1)) * n * W;
    V sum = T::zero();
    for (int64_t j = 0; j < n; ++j) {
      const V p = T::exp_neg(T::sub(T::load(c.st + j * W), m));
      T::store(pt + j * W, p);
      sum = T::add(sum, p);
    }
    const V inv = T::recip_or_zero(sum);
    for (int64_t j = 0; j < n; ++j) T::store(pt + j * W, T::mul(T::load(pt + j * W), inv));
  }

  // out rows [0, R) x channel vectors [c0, c0 + NV) of an item: sum_j P^T[j][row] v_j. p[r]: row r's
  // lane of P^T for key 0 (key j is j * W floats further). kPartial: the last vector ends at d, inside.
  template <int R, int NV, bool kPartial>
  static inline void pv_tile(const float *const *p, const float *v, int64_t ld_v, int64_t n, int64_t c0,
                             int64_t d, float *out, int64_t ld_out) {
    V acc[R][NV];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int u = 0; u < NV; ++u) acc[r][u] = T::zero();
    const M tail = T::lanes(0, kPartial ? d - (c0 + (NV - 1) * W) : W);
    const float *pr[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) pr[r] = p[r];
    const float *vj = v + c0;
    for (int64_t j = 0; j < n; ++j, vj += ld_v) {
      V vv[NV];
#pragma GCC unroll 4
      for (int u = 0; u < NV; ++u)
        vv[u] = u == NV - 1 && kPartial ? T::maskz_loadu(tail, vj + u * W) : T::loadu(vj + u * W);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const V w = T::broadcast(pr[r] + j * W);
#pragma GCC unroll 4
        for (int u = 0; u < NV; ++u) acc[r][u] = T::fmadd(w, vv[u], acc[r][u]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      float *dst = out + r * ld_out + c0;
#pragma GCC unroll 4
      for (int u = 0; u < NV; ++u) {
        if (u == NV - 1 && kPartial) {
          T::mask_storeu(dst + u * W, tail, acc[r][u]);
        } else {
          T::storeu(dst + u * W, acc[r][u]);
        }
      }
    }
  }

  // Rows [0, rows) with rows <= R, in one tile.
  template <int R, int NV>
  static inline void pv_rows(int rows, bool partial, const float *const *p, const float *v, int64_t ld_v,
                             int64_t n, int64_t c0, int64_t d, float *out, int64_t ld_out) {
    if constexpr (R > 1) {
      if (rows < R) return pv_rows<R - 1, NV>(rows, partial, p, v, ld_v, n, c0, d, out, ld_out);
    }
    if (partial) {
      pv_tile<R, NV, true>(p, v, ld_v, n, c0, d, out, ld_out);
    } else {
      pv_tile<R, NV, false>(p, v, ld_v, n, c0, d, out, ld_out);
    }
  }

  // All rows of channel vectors [c0, c0 + NV).
  template <int NV>
  static void pv_columns(const Call &c, const float *const *p, const float *v, int64_t c0, float *out) {
    const bool partial = c0 + NV * W > c.d;
    const typename Call::Split &rows = c.rows[NV];
    int64_t r0 = 0;
    for (int64_t t = 0; t < rows.tiles; ++t) {
      c.prefetch->step(c.prefetch->lines_per_step);
      const int height = static_cast<int>(rows.base + (t < rows.extra ? 1 : 0));
      pv_rows<T::pv_rows(NV), NV>(height, partial, p + r0, v, c.ld_v, c.n, c0, c.d, out + r0 * c.ld_out,
                                  c.ld_out);
      r0 += height;
    }
  }

  // 3. out = P V for item b, whose probabilities are all in the ring.
  static void output(const Call &c, int64_t b) {
    const AttentionItem &item = c.items[b];
    const int64_t n = c.n;
    const float *p[kMaxN];
    for (int64_t r = 0; r < n; ++r) {
      const int64_t g = b * c.nq + r / 4;
      p[r] = c.pt + ((g / kQuads) & (c.ring - 1)) * n * W + (g % kQuads) * 4 + r % 4;
    }
    int64_t v0 = 0;
    for (int64_t t = 0; t < c.cols.tiles; ++t) {
      const int64_t width = c.cols.base + (t < c.cols.extra ? 1 : 0);
      const int64_t c0 = v0 * W;
      switch (width) {
        case 1:
          pv_columns<1>(c, p, item.v, c0, item.out);
          break;
        case 2:
          pv_columns<T::kPvVecs >= 2 ? 2 : 1>(c, p, item.v, c0, item.out);
          break;
        case 3:
          pv_columns<T::kPvVecs >= 3 ? 3 : 1>(c, p, item.v, c0, item.out);
          break;
        default:
          pv_columns<T::kPvVecs >= 4 ? 4 : 1>(c, p, item.v, c0, item.out);
          break;
      }
      v0 += width;
    }
  }

  static void run(const AttentionShape &shape, const AttentionItem *items, int64_t count, float *workspace) {
    if (count <= 0) return;
    const int64_t n = shape.n, nq = quads_of(n), ring = ring_slots(n, W);
    Call c;
    c.n = n;
    c.d = shape.head_dim;
    c.nq = nq;
    c.count = count;
    c.total_quads = count * nq;
    c.ring = ring;
    c.ld_q = shape.ld_q;
    c.ld_k = shape.ld_k;
    c.ld_v = shape.ld_v;
    c.ld_out = shape.ld_out;
    c.cosine = shape.cosine;
    c.items = items;
    c.st = workspace;
    c.pt = c.st + n * W;
    c.key_scale = c.pt + ring * n * W;
    c.row_scale = c.key_scale + n * W;
    c.key_norm = c.row_scale + W;
    c.bias_scratch = c.key_norm + (n + W - 1) / W * W;
    c.mask_scratch = c.bias_scratch + n * W;
    Prefetcher prefetch;
    prefetch.items = items;
    prefetch.n = n;
    prefetch.d = c.d;
    prefetch.ld[0] = c.ld_q, prefetch.ld[1] = c.ld_k, prefetch.ld[2] = c.ld_v, prefetch.ld[3] = c.ld_out;
    prefetch.item = kQuads / nq;  // the first slot's items are being read anyway
    prefetch.to_l1 = shape.prefetch_to_l1;
    c.prefetch = &prefetch;
    c.cols = split((c.d + W - 1) / W, T::kPvVecs);
    for (int nv = 1; nv <= T::kPvVecs; ++nv) c.rows[nv] = split(n, T::pv_rows(nv));
    // The lines of one slot's worth of rows (4 arrays x W rows of d floats, one line more per row for
    // strided unaligned rows) over the slot's steps: its (n + 1) / 2 key steps and the P V tiles of the
    // items it completes (W / 4 quads, nq per item), a few lines at a time: a burst would hold the miss
    // buffers the loads need. None when the call's data is in cache already.
    const int64_t row_lines = (c.d * static_cast<int64_t>(sizeof(float)) + 63) / 64 + 1;
    int64_t pv_tiles = 0;
    for (int64_t t = 0; t < c.cols.tiles; ++t)
      pv_tiles += c.rows[std::min<int64_t>(c.cols.base + (t < c.cols.extra ? 1 : 0), T::kPvVecs)].tiles;
    const int64_t slot_steps = (n + 1) / 2 + std::max<int64_t>(1, pv_tiles * kQuads / nq);
    prefetch.lines_per_step = shape.prefetch_items ? (4 * W * row_lines + slot_steps - 1) / slot_steps : 0;
    const int64_t slots = (c.total_quads + kQuads - 1) / kQuads;
    int64_t next = 0;          // the next item to output
    int64_t item = 0, rq = 0;  // the next quad
    for (int64_t s = 0; s < slots; ++s) {
      slot(c, s, item, rq);
      while (next < count && (next + 1) * nq <= (s + 1) * kQuads) output(c, next++);
    }
  }
};

}  // namespace attention_short_impl
}  // namespace winattn::detail
