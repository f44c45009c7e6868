// Window partition of a [batch][D][H][W][C] feature map, with the zero padding and the cyclic shift of
// shifted-window attention fused into one gather, and the inverse (reverse partition, unshift, crop) into
// one scatter.
#pragma once

#include <cstdint>

namespace winattn::detail {

struct WindowGeometry {
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t grid[3] = {0, 0, 0};    // input grid
  int64_t padded[3] = {0, 0, 0};  // grid rounded up to window multiples
  int64_t window[3] = {1, 1, 1};
  int64_t shift[3] = {0, 0, 0};  // effective shift (0 on axes whose window covers the padded grid)
  int64_t windows_per_axis[3] = {0, 0, 0};
  int64_t windows_per_image = 0;
  int64_t tokens = 0;  // N = prod(window)
  bool shifted() const { return shift[0] + shift[1] + shift[2] > 0; }
};

// torchvision's rules: pad each axis at its end to a window multiple; no shift where window >= padded size.
// Sizes must have been validated (products fit in int64).
WindowGeometry make_window_geometry(int64_t batch, const int64_t *grid, int64_t channels,
                                    const int64_t *window, const int64_t *shift);

// x[(w - first) * N + t][c] = token t of window w (w = b * windows_per_image + window, row-major), zero for
// padding. x: [count * N][channels].
void gather_windows(const WindowGeometry &g, const float *input, int64_t first, int64_t count, float *x);
// The inverse: writes the non-padding tokens of y ([count * N][ld_y], channels used) back to output.
void scatter_windows(const WindowGeometry &g, const float *y, int64_t ld_y, int64_t first, int64_t count,
                     float *output);

}  // namespace winattn::detail
