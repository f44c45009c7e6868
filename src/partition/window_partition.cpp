#include "partition/window_partition.h"

#include <cstring>

namespace winattn::detail {

WindowGeometry make_window_geometry(int64_t batch, const int64_t *grid, int64_t channels,
                                    const int64_t *window, const int64_t *shift) {
  WindowGeometry g;
  g.batch = batch;
  g.channels = channels;
  g.windows_per_image = 1;
  g.tokens = 1;
  for (int d = 0; d < 3; ++d) {
    g.grid[d] = grid[d];
    g.window[d] = window[d];
    g.padded[d] = (grid[d] + window[d] - 1) / window[d] * window[d];
    g.shift[d] = window[d] >= g.padded[d] ? 0 : shift[d];
    g.windows_per_axis[d] = g.padded[d] / window[d];
    g.windows_per_image *= g.windows_per_axis[d];
    g.tokens *= window[d];
  }
  return g;
}

void gather_windows(const WindowGeometry &g, const float *input, int64_t first, int64_t count, float *x) {
  const int64_t c = g.channels;
  const size_t row_bytes = static_cast<size_t>(c) * sizeof(float);
  for_each_window_row(g, first, count, [&](int64_t row, int64_t source) {
    if (source < 0) {
      std::memset(x + row * c, 0, row_bytes);
    } else {
      std::memcpy(x + row * c, input + source * c, row_bytes);
    }
  });
}

void scatter_windows(const WindowGeometry &g, const float *y, int64_t ld_y, int64_t first, int64_t count,
                     float *output) {
  const int64_t c = g.channels;
  const size_t row_bytes = static_cast<size_t>(c) * sizeof(float);
  for_each_window_row(g, first, count, [&](int64_t row, int64_t source) {
    if (source >= 0) std::memcpy(output + source * c, y + row * ld_y, row_bytes);
  });
}

}  // namespace winattn::detail
