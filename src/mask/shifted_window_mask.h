// The -100 mask between tokens that a cyclic shift brought into one window.
#pragma once

#include <cstdint>

namespace winattn::detail {

// Validates grid/window/shift as winattn_shifted_window_mask documents; returns the number of windows and
// writes N to *tokens.
int64_t validate_mask_geometry(const int64_t *grid, const int64_t *window, const int64_t *shift,
                               int64_t *tokens);

// Region label of every token of every window: labels[w][t], [num_windows][N]. Two tokens of a window are
// masked (-100) exactly when their labels differ.
void shifted_window_labels(const int64_t *grid, const int64_t *window, const int64_t *shift, int32_t *labels);

// mask: [num_windows][N][N].
void shifted_window_mask(const int64_t *grid, const int64_t *window, const int64_t *shift, float *mask);

}  // namespace winattn::detail
