#include "partition/window_partition.h"

#include <cstring>

namespace winattn::detail {
namespace {

// For token t of window w: the offset of its source row in the input, or -1 for a padding token.
inline int64_t source_row(const WindowGeometry &g, int64_t w, int64_t t) {
  const int64_t b = w / g.windows_per_image, win = w % g.windows_per_image;
  const int64_t wd = win / (g.windows_per_axis[1] * g.windows_per_axis[2]);
  const int64_t wh = win / g.windows_per_axis[2] % g.windows_per_axis[1];
  const int64_t ww = win % g.windows_per_axis[2];
  const int64_t td = t / (g.window[1] * g.window[2]), th = t / g.window[2] % g.window[1],
                tw = t % g.window[2];
  // torch.roll(x, -shift): shifted[p] = x[(p + shift) mod padded].
  int64_t sd = wd * g.window[0] + td + g.shift[0];
  int64_t sh = wh * g.window[1] + th + g.shift[1];
  int64_t sw = ww * g.window[2] + tw + g.shift[2];
  if (sd >= g.padded[0]) sd -= g.padded[0];
  if (sh >= g.padded[1]) sh -= g.padded[1];
  if (sw >= g.padded[2]) sw -= g.padded[2];
  if (sd >= g.grid[0] || sh >= g.grid[1] || sw >= g.grid[2]) return -1;
  return ((b * g.grid[0] + sd) * g.grid[1] + sh) * g.grid[2] + sw;
}

}  // namespace

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
  const size_t row_bytes = static_cast<size_t>(g.channels) * sizeof(float);
  for (int64_t w = 0; w < count; ++w) {
    for (int64_t t = 0; t < g.tokens; ++t) {
      float *dst = x + (w * g.tokens + t) * g.channels;
      const int64_t src = source_row(g, first + w, t);
      if (src < 0) {
        std::memset(dst, 0, row_bytes);
      } else {
        std::memcpy(dst, input + src * g.channels, row_bytes);
      }
    }
  }
}

void scatter_windows(const WindowGeometry &g, const float *y, int64_t ld_y, int64_t first, int64_t count,
                     float *output) {
  const size_t row_bytes = static_cast<size_t>(g.channels) * sizeof(float);
  for (int64_t w = 0; w < count; ++w) {
    for (int64_t t = 0; t < g.tokens; ++t) {
      const int64_t dst = source_row(g, first + w, t);
      if (dst >= 0) std::memcpy(output + dst * g.channels, y + (w * g.tokens + t) * ld_y, row_bytes);
    }
  }
}

}  // namespace winattn::detail
