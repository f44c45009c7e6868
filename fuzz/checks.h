// Exact and float64 checks of the small functions' outputs (index, bias lookup and its gradient, masks).
// Kept out of the coverage-instrumented decoders: their loops say nothing about the input's structure.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fz {

// index [n][n] of winattn_relative_position_index: every entry when there are few, else whole sampled rows
// and columns (the last among them).
void check_index_values(int ndim, const int64_t *window, const int64_t *index, int64_t n);
// bias [heads][n][n] of winattn_relative_position_bias: exact copies of the table's entries (sampled).
void check_bias_values(const float *table, int64_t heads, const int64_t *index, int64_t n, const float *bias);
// grad_table after winattn_relative_position_bias_backward (before: its values before the call) against a
// float64 sum with the bound of a sequential float32 sum.
void check_bias_gradient(const float *grad_bias, int64_t heads, const int64_t *index, int64_t n,
                         const float *before, const float *after, size_t table_n);
// mask [num_windows][N][N] of winattn_shifted_window_mask from region labels (sampled when large).
void check_mask_values(const int64_t *grid, const int64_t *window, const int64_t *shift, const float *mask,
                       int64_t num_windows, int64_t n);

}  // namespace fz
