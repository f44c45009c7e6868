// Fused windowed softmax attention: one (window, head) at a time, scores kept in registers and a few rows
// of L1-resident buffer; the [n][n] score matrix of a head is never formed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/dispatch.h"

namespace winattn {

// Geometry of one (window, head) problem. q, k and v rows are head_dim floats at the given row strides, so
// the kernel reads them where a projection wrote them ([tokens][3][heads][head_dim]) without a copy.
struct AttentionShape {
  int64_t n = 0;                                     // tokens per window
  int64_t head_dim = 0;                              // channels per head
  int64_t ld_q = 0, ld_k = 0, ld_v = 0, ld_out = 0;  // row strides in floats
  // SwinV2 cosine attention: q and k rows are L2-normalised (eps 1e-12) inside the kernel, and `scale`
  // multiplies the cosine similarity (exp(min(logit_scale, ln 100)) for the layer).
  bool cosine = false;
};

// out[i][c] = sum_j softmax_j(scale * q_i . k_j + bias[i][j] + mask[i][j]) v[j][c]
// bias and mask: [n][n] or nullptr. A row whose logits are all -inf gives zeros. workspace: at least
// attention_workspace_floats(n, head_dim) floats, 64-byte aligned, used as scratch.
using AttentionFn = void (*)(const AttentionShape &shape, const float *q, const float *k, const float *v,
                             float scale, const float *bias, const float *mask, float *out, float *workspace);

void f32_attention_scalar(const AttentionShape &, const float *, const float *, const float *, float,
                          const float *, const float *, float *, float *);
void f32_attention_avx2(const AttentionShape &, const float *, const float *, const float *, float,
                        const float *, const float *, float *, float *);
void f32_attention_avx512(const AttentionShape &, const float *, const float *, const float *, float,
                          const float *, const float *, float *, float *);

// Scratch floats any of the kernels needs for one (window, head) (an upper bound over ISAs).
size_t attention_workspace_floats(int64_t n, int64_t head_dim);

AttentionFn select_attention_kernel(Isa isa);

// The batched kernel of winattn_window_attention (arguments validated): OpenMP over (window, head).
// Throws OUT_OF_MEMORY before any output is written when the workspace cannot be allocated.
void window_attention(int64_t num_windows, int64_t num_heads, int64_t n, int64_t head_dim, const float *q,
                      const float *k, const float *v, float scale, const float *bias, const float *mask,
                      int64_t mask_windows, float *out);

}  // namespace winattn
