// Window partition of a [batch][D][H][W][C] feature map, with the zero padding and the cyclic shift of
// shifted-window attention fused into one gather, and the inverse (reverse partition, unshift, crop) into
// one scatter. for_each_window_row lets a caller fuse its own token-wise work into either pass.
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

// For token t of window w (w = b * windows_per_image + window, row-major): the index of its row in the
// feature map ([batch][D][H][W], rows of `channels` floats), or -1 for a padding token.
inline int64_t window_token_source(const WindowGeometry &g, int64_t w, int64_t t) {
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

// Calls visit(row, source) for every token of windows [first, first + count) in window order: row is the
// token's row in the chunk ((w - first) * N + t), source its feature-map row or -1 for padding.
template <class Visit>
void for_each_window_row(const WindowGeometry &g, int64_t first, int64_t count, Visit &&visit) {
  for (int64_t w = 0; w < count; ++w)
    for (int64_t t = 0; t < g.tokens; ++t) visit(w * g.tokens + t, window_token_source(g, first + w, t));
}

// x[(w - first) * N + t][c] = token t of window w, zero for padding. x: [count * N][channels].
void gather_windows(const WindowGeometry &g, const float *input, int64_t first, int64_t count, float *x);
// The inverse: writes the non-padding tokens of y ([count * N][ld_y], channels used) back to output.
void scatter_windows(const WindowGeometry &g, const float *y, int64_t ld_y, int64_t first, int64_t count,
                     float *output);

}  // namespace winattn::detail
