// Fused windowed softmax attention: one (window, head) at a time, scores kept in registers and a few rows
// of L1-resident buffer; the [n][n] score matrix of a head is never formed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/dispatch.h"

namespace winattn::detail {

// Geometry of one (window, head) problem. q, k and v rows are head_dim floats at the given row strides, so
// the kernel reads them where a projection wrote them ([tokens][3][heads][head_dim]) without a copy.
struct AttentionShape {
  int64_t n = 0;                                     // tokens per window
  int64_t head_dim = 0;                              // channels per head
  int64_t ld_q = 0, ld_k = 0, ld_v = 0, ld_out = 0;  // row strides in floats
  // SwinV2 cosine attention: q and k rows are L2-normalised (eps 1e-12) inside the kernel, and `scale`
  // multiplies the cosine similarity (exp(min(logit_scale, ln 100)) for the layer).
  bool cosine = false;
  // Memory the next call will read or write (the next item's q, k, v and out): prefetched into L2 (into L1
  // with prefetch_to_l1) a few lines at a time while this call computes. Empty ranges are skipped.
  struct Range {
    const float *data = nullptr;
    int64_t floats = 0;
  };
  static constexpr int kPrefetchRanges = 4;
  Range prefetch[kPrefetchRanges];
  // Prefetch into L1 (T0) rather than L2 (T1). AMD documents T1 as filling L2 only since Zen 4, and T1
  // prefetches have been reported to be dropped at times there; on this Zen 5, T0 made Swin-T stage 1 at
  // B = 8, which streams from DRAM, 1.15x faster and temporal T = 8 1.5x, at no cost to B = 1. On Intel,
  // T1 is what was measured (1.4x at 16 threads).
  bool prefetch_to_l1 = false;
};

// The bias and mask of one (window, head), [n][n] (query i, key j) or null, and their transposes
// (key j, query i) for the query-major kernels: [n][ld_*_t] rows, ld_*_t >= n, where lanes past n may hold
// anything finite. A symmetric mask (Swin's) is its own transpose: mask_t = mask, ld_mask_t = n.
struct AttentionTerms {
  const float *bias = nullptr, *mask = nullptr;
  const float *bias_t = nullptr, *mask_t = nullptr;
  int64_t ld_bias_t = 0, ld_mask_t = 0;
};

// out[i][c] = sum_j softmax_j(scale * q_i . k_j + bias[i][j] + mask[i][j]) v[j][c]
// A row whose logits are all -inf gives zeros. workspace: at least attention_workspace_floats(n, head_dim)
// floats, 64-byte aligned, used as scratch.
using AttentionFn = void (*)(const AttentionShape &shape, const float *q, const float *k, const float *v,
                             float scale, const AttentionTerms &terms, float *out, float *workspace);

// One (window, head) problem of a batch: its q, k, v rows (at the shape's strides), its output rows, its
// scale and its terms.
struct AttentionItem {
  const float *q = nullptr, *k = nullptr, *v = nullptr;
  float *out = nullptr;
  float scale = 1.0f;
  AttentionTerms terms;
};
// A kernel that runs `count` items of one shape per call (the short-window kernels batch several small
// items per pass). shape.prefetch is not used. workspace: at least the entry's workspace floats for
// (n, head_dim), 64-byte aligned.
using AttentionBatchFn = void (*)(const AttentionShape &shape, const AttentionItem *items, int64_t count,
                                  float *workspace);

// The kernel for an ISA and window length, and what it reads: with `transposed` set it needs bias_t and
// mask_t beside bias and mask (present together).
struct AttentionKernel {
  AttentionFn run = nullptr;
  bool transposed = false;
};
AttentionKernel select_attention_kernel(Isa isa, int64_t n);

void f32_attention_scalar(const AttentionShape &, const float *, const float *, const float *, float,
                          const AttentionTerms &, float *, float *);
void f32_attention_avx2(const AttentionShape &, const float *, const float *, const float *, float,
                        const AttentionTerms &, float *, float *);
void f32_attention_avx512(const AttentionShape &, const float *, const float *, const float *, float,
                          const AttentionTerms &, float *, float *);
void f32_attention_tr_avx2(const AttentionShape &, const float *, const float *, const float *, float,
                           const AttentionTerms &, float *, float *);
void f32_attention_tr_avx512(const AttentionShape &, const float *, const float *, const float *, float,
                             const AttentionTerms &, float *, float *);

// Row length of transposed terms as the library lays them out: n rounded up to 16 floats (64 bytes).
inline int64_t transposed_terms_ld(int64_t n) {
  return (n + 15) / 16 * 16;
}
// dst[j][i] = src[i][j] for one [n][n] matrix; dst: [n][transposed_terms_ld(n)], zero past column n.
// Vectorised for the active ISA.
void transpose_terms(const float *src, int64_t n, float *dst);
void transpose_terms_avx2(const float *src, int64_t n, int64_t ld, float *dst);
void transpose_terms_avx512(const float *src, int64_t n, int64_t ld, float *dst);

// Scratch floats any of the kernels needs for one (window, head) (an upper bound over ISAs).
size_t attention_workspace_floats(int64_t n, int64_t head_dim);

// The batched kernel of winattn_window_attention (arguments validated): OpenMP over (window, head).
// Throws OUT_OF_MEMORY before any output is written when the workspace cannot be allocated.
void window_attention(int64_t num_windows, int64_t num_heads, int64_t n, int64_t head_dim, const float *q,
                      const float *k, const float *v, float scale, const float *bias, const float *mask,
                      int64_t mask_windows, float *out);

}  // namespace winattn::detail
