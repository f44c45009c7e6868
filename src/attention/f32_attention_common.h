// Pieces both fused kernels use (f32_attention_impl.h, row-major; f32_attention_tr_impl.h, query-major),
// written over the same ISA traits class.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include <xmmintrin.h>

#include "attention/attention.h"

namespace winattn::detail {
namespace attention_common {

inline int64_t round_up(int64_t x, int64_t m) {
  return (x + m - 1) / m * m;
}

// `lines` cache lines from p (64-byte aligned) on, into L1 (T0) or L2 (T1): both kernels' prefetchers.
__attribute__((always_inline)) inline void prefetch_lines(const char *p, int64_t lines, bool to_l1) {
  const char *const stop = p + lines * 64;
  if (to_l1) {
#pragma GCC unroll 4
    for (; p < stop; p += 64) _mm_prefetch(p, _MM_HINT_T0);
  } else {
#pragma GCC unroll 4
    for (; p < stop; p += 64) _mm_prefetch(p, _MM_HINT_T1);
  }
}

// Prefetches of AttentionShape::prefetch, spread over the steps (tiles) of a kernel: a burst of a whole
// item's lines at once would stall on the miss buffers. The ranges are walked one after the other (q, k, v,
// out: the order the next item touches them) with a single cursor, so that a step costs a few instructions
// plus two per line rather than a loop over every range.
class SpreadPrefetch {
 public:
  SpreadPrefetch(const AttentionShape &shape, int64_t steps) : to_l1_(shape.prefetch_to_l1) {
    int64_t total = 0;
    for (const AttentionShape::Range &r : shape.prefetch) {
      if (r.data == nullptr || r.floats <= 0) continue;
      Stream &s = streams_[count_++];
      s.base = reinterpret_cast<const char *>(r.data);
      s.lines = (r.floats * static_cast<int64_t>(sizeof(float)) + 63) / 64;
      total += s.lines;
    }
    per_step_ = steps > 0 ? (total + steps - 1) / steps : total;
    if (count_ > 0) start(0);
  }
  __attribute__((always_inline)) void step() {
    if (next_ != nullptr) issue(per_step_);
  }
  void finish() {
    while (next_ != nullptr) issue(std::numeric_limits<int64_t>::max() / 64);
  }
  // Lines left to issue.
  bool active() const { return next_ != nullptr; }

 private:
  struct Stream {
    const char *base = nullptr;
    int64_t lines = 0;
  };
  void start(int i) {
    current_ = i;
    next_ = streams_[i].base;
    end_ = next_ + streams_[i].lines * 64;
  }
  // Up to `lines` lines from the cursor, moving on to the next range when one ends.
  __attribute__((always_inline)) void issue(int64_t lines) {
    while (lines > 0) {
      const int64_t left = (end_ - next_) / 64;
      const int64_t take = lines < left ? lines : left;
      prefetch_lines(next_, take, to_l1_);
      next_ += take * 64;
      lines -= take;
      if (next_ == end_) {
        if (current_ + 1 >= count_) {
          next_ = nullptr;
          return;
        }
        start(current_ + 1);
      }
    }
  }
  Stream streams_[AttentionShape::kPrefetchRanges];
  int count_ = 0, current_ = 0;
  int64_t per_step_ = 0;
  const char *next_ = nullptr, *end_ = nullptr;  // the cursor in range current_; next_ null: all issued
  bool to_l1_;
};

template <class T>
struct Common {
  using V = typename T::Vec;
  static constexpr int W = T::kWidth;

  // max(||x||, 1e-12) over x[0, d): the divisor of cosine attention's L2 normalisation (the eps of
  // torch.nn.functional.normalize). Vectors, since a scalar loop is one long FMA dependency chain.
  static float norm_or_eps(const float *x, int64_t d) {
    V acc = T::zero();
    int64_t c = 0;
    for (; c + W <= d; c += W) {
      const V v = T::loadu(x + c);
      acc = T::fmadd(v, v, acc);
    }
    if (c < d) {
      const V v = T::maskz_loadu(T::first_lanes(d - c), x + c);
      acc = T::fmadd(v, v, acc);
    }
    return std::fmax(std::sqrt(T::reduce_add(acc)), 1e-12f);
  }

  // dst[c][i] = scale[i] * src[i][c] for c < d and i < n, zero for i in [n, used) (used a multiple of W):
  // W x W blocks loaded as rows and transposed in registers. src rows are ld floats apart, dst rows ld_dst.
  // scale == nullptr: every row takes `uniform` (one broadcast per call instead of one per row and block:
  // plain attention, whose rows all share the softmax scale).
  static void pack_scaled_transposed(const float *src, int64_t ld, int64_t n, int64_t d, const float *scale,
                                     float uniform, float *dst, int64_t ld_dst, int64_t used) {
    if (scale == nullptr) {
      pack_scaled_transposed_impl<false>(src, ld, n, d, nullptr, uniform, dst, ld_dst, used);
    } else {
      pack_scaled_transposed_impl<true>(src, ld, n, d, scale, uniform, dst, ld_dst, used);
    }
  }

 private:
  template <bool kPerRow>
  static void pack_scaled_transposed_impl(const float *src, int64_t ld, int64_t n, int64_t d,
                                          const float *scale, float uniform, float *dst, int64_t ld_dst,
                                          int64_t used) {
    const V same = T::set1(uniform);
    auto factor = [&](int64_t i) __attribute__((always_inline)) {
      if constexpr (kPerRow) {
        return T::broadcast(scale + i);
      } else {
        (void)i;
        return same;
      }
    };
    for (int64_t i0 = 0; i0 < used; i0 += W) {
      for (int64_t c0 = 0; c0 < d; c0 += W) {
        const int64_t width = d - c0 < W ? d - c0 : W;
        if (width == W && i0 + W <= n) {
          // Full blocks, the common case: every index a constant, so the block stays in registers (the
          // general path below goes through the stack for its run-time row and column counts).
          V rows[W];
#pragma GCC unroll 16
          for (int r = 0; r < W; ++r) rows[r] = T::mul(T::loadu(src + (i0 + r) * ld + c0), factor(i0 + r));
          T::transpose(rows);
#pragma GCC unroll 16
          for (int cc = 0; cc < W; ++cc) T::store(dst + (c0 + cc) * ld_dst + i0, rows[cc]);
          continue;
        }
        const auto columns = T::first_lanes(width);
        V rows[W];
#pragma GCC unroll 16
        for (int r = 0; r < W; ++r) {
          const int64_t i = i0 + r;
          if (i >= n) {
            rows[r] = T::zero();
            continue;
          }
          const float *p = src + i * ld + c0;
          rows[r] = T::mul(width == W ? T::loadu(p) : T::maskz_loadu(columns, p), factor(i));
        }
        T::transpose(rows);
        for (int64_t cc = 0; cc < width; ++cc) T::store(dst + (c0 + cc) * ld_dst + i0, rows[cc]);
      }
    }
  }
};

}  // namespace attention_common
}  // namespace winattn::detail
