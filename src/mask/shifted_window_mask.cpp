#include "mask/shifted_window_mask.h"

#include <vector>

#include "common/error.h"
#include "cpu/threading.h"

namespace winattn::detail {
namespace {

// Region of coordinate x on an axis of size g, window w, shift s: [0, g-w) -> 0, [g-w, g-s) -> 1, [g-s, g)
// -> 2.
int32_t axis_region(int64_t x, int64_t g, int64_t w, int64_t s) {
  if (x < g - w) return 0;
  if (x < g - s) return 1;
  return 2;
}

}  // namespace

int64_t validate_mask_geometry(const int64_t *grid, const int64_t *window, const int64_t *shift,
                               int64_t *tokens) {
  require_not_null(grid, "grid");
  require_not_null(window, "window");
  require_not_null(shift, "shift");
  int64_t num_windows = 1, n = 1;
  for (int d = 0; d < 3; ++d) {
    if (grid[d] <= 0)
      invalid_argument("grid[%d] must be positive, got %lld", d, static_cast<long long>(grid[d]));
    if (window[d] <= 0) {
      invalid_argument("window[%d] must be positive, got %lld", d, static_cast<long long>(window[d]));
    }
    if (grid[d] % window[d] != 0) {
      invalid_argument("grid[%d] = %lld is not a multiple of window[%d] = %lld", d,
                       static_cast<long long>(grid[d]), d, static_cast<long long>(window[d]));
    }
    if (shift[d] < 0 || shift[d] >= window[d]) {
      invalid_argument("shift[%d] = %lld is outside [0, window[%d] = %lld)", d,
                       static_cast<long long>(shift[d]), d, static_cast<long long>(window[d]));
    }
    num_windows = checked_mul(num_windows, grid[d] / window[d], "number of windows");
    n = checked_mul(n, window[d], "window token count");
  }
  checked_elements(checked_mul(num_windows, checked_mul(n, n, "mask size"), "mask size"), "mask size");
  *tokens = n;
  return num_windows;
}

void shifted_window_labels(const int64_t *grid, const int64_t *window, const int64_t *shift,
                           int32_t *labels) {
  const int64_t nw[3] = {grid[0] / window[0], grid[1] / window[1], grid[2] / window[2]};
  const int64_t num_windows = nw[0] * nw[1] * nw[2];
  const int64_t n = window[0] * window[1] * window[2];
  for (int64_t w = 0; w < num_windows; ++w) {
    const int64_t wd = w / (nw[1] * nw[2]), wh = w / nw[2] % nw[1], ww = w % nw[2];
    for (int64_t t = 0; t < n; ++t) {
      const int64_t td = t / (window[1] * window[2]), th = t / window[2] % window[1], tw = t % window[2];
      const int32_t rd = axis_region(wd * window[0] + td, grid[0], window[0], shift[0]);
      const int32_t rh = axis_region(wh * window[1] + th, grid[1], window[1], shift[1]);
      const int32_t rw = axis_region(ww * window[2] + tw, grid[2], window[2], shift[2]);
      labels[w * n + t] = (rd * 3 + rh) * 3 + rw;
    }
  }
}

void shifted_window_mask(const int64_t *grid, const int64_t *window, const int64_t *shift, float *mask) {
  const int64_t num_windows = (grid[0] / window[0]) * (grid[1] / window[1]) * (grid[2] / window[2]);
  const int64_t n = window[0] * window[1] * window[2];
  // Allocated before any output is written and outside the parallel region; may throw (OUT_OF_MEMORY).
  std::vector<int32_t> labels(static_cast<size_t>(num_windows * n));
  shifted_window_labels(grid, window, shift, labels.data());
  auto fill_window = [&](int64_t w) {
    const int32_t *label = labels.data() + w * n;
    float *out = mask + w * n * n;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) out[i * n + j] = label[i] == label[j] ? 0.0f : -100.0f;
  };
  // A small mask is written by the calling thread alone: no team is started.
  const int threads = team_size_for_work(num_windows, num_windows * n * n);
  if (threads <= 1) {
    for (int64_t w = 0; w < num_windows; ++w) fill_window(w);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t w = 0; w < num_windows; ++w) fill_window(w);
}

}  // namespace winattn::detail
