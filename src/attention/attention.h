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
  // Prefetch into L1 (T0) rather than L2 (T1): AMD documents T1 as filling L2 only since Zen 4 (the
  // measurements behind the choice are in the README's performance notes).
  bool prefetch_to_l1 = false;
  // Batch kernels (run_batch): prefetch the rows of the items ahead. Off for a call whose q, k, v and out
  // fit in L2 already (window_attention: they are in cache, and the prefetches cost instructions only).
  bool prefetch_items = true;
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
// A row whose logits are all -inf gives zeros. workspace: at least the kernel's workspace_floats(n, head_dim)
// floats (AttentionKernelInfo), 64-byte aligned, used as scratch.
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
// items per pass). shape.prefetch is not used; shape.prefetch_to_l1 chooses the hint of the kernel's own
// prefetches of the next items. workspace: at least the entry's workspace floats for
// (n, head_dim), 64-byte aligned.
using AttentionBatchFn = void (*)(const AttentionShape &shape, const AttentionItem *items, int64_t count,
                                  float *workspace);

// dst[j][i] = src[i][j] for one [n][n] matrix; dst: [n][ld] with ld >= transposed_terms_ld(n), zero past
// column n.
using TransposeTermsFn = void (*)(const float *src, int64_t n, int64_t ld, float *dst);

// One kernel of the f32 attention family, describing itself: everything a caller needs to run it (which
// function, what terms it reads, how much scratch) comes from here, never from constants retyped elsewhere.
struct AttentionKernelInfo {
  // dtype, operation, layout, register tile and ISA, as XNNPACK names microkernels:
  // "f32_attention_qmajor_64x6_avx512" runs query-major blocks of 64 queries (lanes) by 6 keys.
  const char *name;
  CpuFeatures required;        // features it needs (all of them)
  AttentionFn run;             // one (window, head) item per call; null for a batched kernel
  AttentionBatchFn run_batch;  // up to max_batch items per call; null for a single-item kernel
  int64_t max_batch;           // 1 for a single-item kernel; callers pass at most kMaxBatchItems
  // Reads bias_t and mask_t (transposed, rows of transposed_terms_ld(n) floats) beside bias and mask.
  bool transposed_terms;
  int tile_rows, tile_cols;  // register tile of the logits, as in the name: query rows x keys (row-major),
                             // queries (in lanes) x key rows (query-major)
  // The window lengths the dispatch picks it for, within [1, limit_n].
  int64_t min_n, max_n;
  int64_t limit_n;  // the longest window it computes correctly (INT64_MAX: any)
  size_t (*workspace_floats)(int64_t n, int64_t head_dim);  // scratch per call, floats
};

// The most items a caller passes to one run_batch call.
constexpr int64_t kMaxBatchItems = 64;

// The row-major kernels are picked up to this window length, the query-major ones past it (queries in the
// lanes pay off past one AVX-512 vector of them; the same bound serves AVX2).
constexpr int64_t kRowMajorMaxN = 16;
// On AVX2 (8 lanes), one vector of queries: the query-major kernel is picked from 9 tokens on (measured on
// Zen 3, paired, 1 thread: 1.10x at T = 16 head_dim 64, 1.30x at n = 16 head_dim 32, in cache 1.0-1.12x at
// n = 9 and 12, 0.93x at n = 12 head_dim 64; see README, session 7).
constexpr int64_t kRowMajorMaxNAvx2 = 8;

// The f32 attention kernels, in dispatch order (the best first for the shapes it covers), the scalar
// reference last. Built once; `count` receives the number of entries.
const AttentionKernelInfo *const *f32_attention_kernels(size_t *count);
// The first kernel whose features are all in `features` and whose [min_n, max_n] contains n.
const AttentionKernelInfo &select_f32_attention_kernel(CpuFeatures features, int64_t n);

extern const AttentionKernelInfo f32_attention_rowmajor_1x1_scalar;
extern const AttentionKernelInfo f32_attention_short_8x2_avx2;
extern const AttentionKernelInfo f32_attention_onevec_4x3_avx2;
extern const AttentionKernelInfo f32_attention_short_16x2_avx512;
extern const AttentionKernelInfo f32_attention_rowmajor_4x24_avx2;
extern const AttentionKernelInfo f32_attention_qmajor_24x4_avx2;
extern const AttentionKernelInfo f32_attention_rowmajor_6x64_avx512;
extern const AttentionKernelInfo f32_attention_qmajor_64x6_avx512;

// Row length of transposed terms as the library lays them out: n rounded up to 16 floats (64 bytes).
inline int64_t transposed_terms_ld(int64_t n) {
  return (n + 15) / 16 * 16;
}
// dst[j][i] = src[i][j] for one [n][n] matrix; dst: [n][transposed_terms_ld(n)], zero past column n.
// Vectorised for the active features (a transpose is exact: every ISA writes the same bits).
void transpose_terms(const float *src, int64_t n, float *dst);

// The transposers of terms for the query-major kernels, a family of their own.
struct TransposeTermsInfo {
  const char *name;  // "f32_transpose_terms_16x16_avx512": dtype, operation, in-register block, ISA
  CpuFeatures required;
  TransposeTermsFn run;
};
extern const TransposeTermsInfo f32_transpose_terms_16x16_avx512;
extern const TransposeTermsInfo f32_transpose_terms_8x8_avx2;
extern const TransposeTermsInfo f32_transpose_terms_scalar;
// In dispatch order, the scalar one last; `count` receives the number of entries.
const TransposeTermsInfo *const *f32_transpose_terms_kernels(size_t *count);

// The batched kernel of winattn_window_attention (arguments validated): OpenMP over (window, head), with
// at most `budget` threads (0 = the process setting). Throws OUT_OF_MEMORY before any output is written
// when the workspace cannot be allocated.
void window_attention(int64_t num_windows, int64_t num_heads, int64_t n, int64_t head_dim, const float *q,
                      const float *k, const float *v, float scale, const float *bias, const float *mask,
                      int64_t mask_windows, float *out, int budget = 0);

}  // namespace winattn::detail
