// Float64 references for sampled checks: a few output rows of a call are recomputed in double next to a
// bound of the float32 rounding error the library may make (from the magnitudes of the terms it sums), and
// the library's value must lie within that bound. Data whose error cannot be bounded (logits so large that
// float32 cannot resolve the softmax) falls back to the weaker hull check: an attention output is a convex
// combination of the v rows.
#pragma once

#include <cstdint>

#include "fuzz_common.h"

namespace fz {

// index[i][j] of winattn_relative_position_index, from the header's formula (tokens row-major).
int64_t relative_index(int ndim, const int64_t *window, int64_t i, int64_t j);

// One row of winattn_window_attention: out_row (head_dim values) for query row q_row against the n rows of
// k and v (row stride head_dim), with bias_row / mask_row (n values, either may be NULL). Checks the
// contract's rules for that row: NaN propagation, all--inf rows give zeros, and the value itself.
void check_attention_row(int64_t n, int64_t head_dim, const float *q_row, const float *k, const float *v,
                         float scale, const float *bias_row, const float *mask_row, const float *out_row,
                         const char *where);

// Checks sampled rows of a winattn_window_attention result: `rows` rows (the first and last among them) of
// `items` (window, head) items (the last one among them), with check_attention_row.
void check_window_attention(int64_t num_windows, int64_t heads, int64_t n, int64_t head_dim, const float *q,
                            const float *k, const float *v, float scale, const float *bias, const float *mask,
                            int64_t mask_windows, const float *out, Rng &rng, int items, int rows);

// The layer (stateless and prepacked): every array as in winattn_window_attention_args, bias already
// looked up ([heads][N][N] or NULL), logit_scale NULL for v1.
struct LayerRef {
  int64_t channels = 0, heads = 0, window[3] = {1, 1, 1}, shift[3] = {0, 0, 0};
  const float *qkv_weight = nullptr, *qkv_bias = nullptr, *proj_weight = nullptr, *proj_bias = nullptr;
  const float *bias = nullptr, *logit_scale = nullptr;
};

// Whether the weights are such that check_layer_tokens can bound its error (finite, moderate, no
// denormals); the input is checked per sampled window.
bool layer_ref_clean(const LayerRef &m);

// Checks up to `samples` output tokens (all channels) of a layer call on input -> output, chosen by rng,
// against a float64 reference of torchvision's shifted_window_attention (pad, roll, partition, qkv,
// attention with bias and the -100 mask, proj, reverse). Skips when the weights are not clean or one window
// costs more than `max_work` multiply-adds to recompute.
void check_layer_tokens(const LayerRef &m, int64_t batch, const int64_t grid[3], const float *input,
                        const float *output, Rng &rng, int samples, int64_t max_work, const char *where);

// Checks rows of a SwinV2 continuous position bias table ([(2wh-1)(2ww-1)][heads]) chosen by rng.
void check_cpb_rows(int64_t wh, int64_t ww, const float *w1, const float *b1, const float *w2, int64_t hidden,
                    int64_t heads, const float *table, Rng &rng, int rows);

}  // namespace fz
