// winattn_shifted_window_mask against a reference built the way torchvision / Video Swin build it.
#include "test_util.h"

#include <array>
#include <vector>

namespace {

using Triple = std::array<int64_t, 3>;

// Region label of coordinate x on an axis of size g with window w and shift s: slices [0, g-w), [g-w, g-s),
// [g-s, g), assigned in that order (a later slice overwrites an earlier one, as torchvision's loop does).
int region(int64_t x, int64_t g, int64_t w, int64_t s) {
  int label = -1;
  if (x >= 0 && x < g - w) label = 0;
  if (x >= g - w && x < g - s) label = 1;
  if (x >= g - s && x < g) label = 2;
  return label;
}

std::vector<float> reference_mask(const Triple &grid, const Triple &window, const Triple &shift) {
  // Label image of the whole grid, labels combined over axes like torchvision's running counter.
  std::vector<int> label(grid[0] * grid[1] * grid[2]);
  for (int64_t d = 0; d < grid[0]; ++d)
    for (int64_t h = 0; h < grid[1]; ++h)
      for (int64_t w = 0; w < grid[2]; ++w) {
        const int ld = region(d, grid[0], window[0], shift[0]);
        const int lh = region(h, grid[1], window[1], shift[1]);
        const int lw = region(w, grid[2], window[2], shift[2]);
        label[(d * grid[1] + h) * grid[2] + w] = (ld * 3 + lh) * 3 + lw;
      }
  const int64_t nd = grid[0] / window[0], nh = grid[1] / window[1], nw = grid[2] / window[2];
  const int64_t n = window[0] * window[1] * window[2];
  std::vector<float> mask(nd * nh * nw * n * n);
  for (int64_t wd = 0; wd < nd; ++wd)
    for (int64_t wh = 0; wh < nh; ++wh)
      for (int64_t ww = 0; ww < nw; ++ww) {
        const int64_t win = (wd * nh + wh) * nw + ww;
        // Labels of the tokens of this window, tokens row-major within the window.
        std::vector<int> tokens;
        for (int64_t a = 0; a < window[0]; ++a)
          for (int64_t b = 0; b < window[1]; ++b)
            for (int64_t c = 0; c < window[2]; ++c) {
              const int64_t d = wd * window[0] + a, h = wh * window[1] + b, w = ww * window[2] + c;
              tokens.push_back(label[(d * grid[1] + h) * grid[2] + w]);
            }
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j)
            mask[(win * n + i) * n + j] = tokens[i] == tokens[j] ? 0.0f : -100.0f;
      }
  return mask;
}

std::vector<float> library_mask(const Triple &grid, const Triple &window, const Triple &shift) {
  const int64_t windows = (grid[0] / window[0]) * (grid[1] / window[1]) * (grid[2] / window[2]);
  const int64_t n = window[0] * window[1] * window[2];
  std::vector<float> mask(windows * n * n, 42.0f);
  REQUIRE(winattn_shifted_window_mask(grid.data(), window.data(), shift.data(), mask.data()) ==
          WINATTN_STATUS_OK);
  return mask;
}

}  // namespace

TEST_CASE("shifted_window_mask matches the torchvision-style region reference") {
  struct Case {
    Triple grid, window, shift;
  };
  const Case cases[] = {
      {{1, 56, 56}, {1, 7, 7}, {0, 3, 3}},                                     // Swin-T stage 1
      {{1, 14, 14}, {1, 7, 7}, {0, 3, 3}},                                     // stage 3
      {{1, 8, 8}, {1, 4, 4}, {0, 2, 2}},   {{1, 8, 8}, {1, 4, 4}, {0, 0, 2}},  // only the width axis shifted
      {{1, 8, 8}, {1, 4, 4}, {0, 2, 0}},                                       // only the height axis shifted
      {{1, 12, 8}, {1, 4, 4}, {0, 1, 3}},  {{1, 7, 7}, {1, 7, 7}, {0, 3, 3}},  // a single window
      {{1, 6, 10}, {1, 6, 10}, {0, 3, 5}}, {{8, 56, 56}, {2, 7, 7}, {1, 3, 3}},  // Video Swin
      {{4, 8, 8}, {2, 4, 4}, {1, 2, 2}},   {{4, 8, 8}, {2, 4, 4}, {1, 0, 0}},    // only depth shifted
      {{6, 4, 4}, {3, 2, 2}, {2, 1, 0}},
  };
  for (const Case &c : cases) {
    CAPTURE(c.grid[0]);
    CAPTURE(c.grid[1]);
    CAPTURE(c.grid[2]);
    CAPTURE(c.window[0]);
    CAPTURE(c.window[1]);
    CAPTURE(c.window[2]);
    CAPTURE(c.shift[0]);
    CAPTURE(c.shift[1]);
    CAPTURE(c.shift[2]);
    const auto expected = reference_mask(c.grid, c.window, c.shift);
    const auto got = library_mask(c.grid, c.window, c.shift);
    REQUIRE(got.size() == expected.size());
    size_t mismatches = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != expected[i] && mismatches++ == 0) first = i;
    CHECK_MESSAGE(mismatches == 0, mismatches << " mismatches, first at flat index " << first);
    // The reference must not be trivially all-zero when something is shifted.
    bool any_masked = false;
    for (float x : expected) any_masked = any_masked || x != 0.0f;
    CHECK(any_masked == (c.shift[0] + c.shift[1] + c.shift[2] > 0));
  }
}

TEST_CASE("shifted_window_mask with shift 0 is all zeros") {
  const Triple cases[][2] = {{{1, 56, 56}, {1, 7, 7}}, {{1, 8, 8}, {1, 4, 4}}, {{4, 8, 8}, {2, 4, 4}}};
  for (const auto &c : cases) {
    const auto got = library_mask(c[0], c[1], {0, 0, 0});
    bool all_zero = true;
    for (float x : got) all_zero = all_zero && x == 0.0f;
    CHECK(all_zero);
    CHECK(got == reference_mask(c[0], c[1], {0, 0, 0}));
  }
}

TEST_CASE("shifted_window_mask is symmetric with a zero diagonal") {
  const Triple grid = {1, 14, 14}, window = {1, 7, 7}, shift = {0, 3, 3};
  const auto mask = library_mask(grid, window, shift);
  const int64_t n = 49;
  for (int64_t w = 0; w < 4; ++w)
    for (int64_t i = 0; i < n; ++i) {
      REQUIRE(mask[(w * n + i) * n + i] == 0.0f);
      for (int64_t j = 0; j < n; ++j) REQUIRE(mask[(w * n + i) * n + j] == mask[(w * n + j) * n + i]);
    }
}

TEST_CASE("shifted_window_mask rejects invalid arguments and leaves mask untouched") {
  auto out = wt::sentinel_buffer<float>(4 * 16 * 16);
  const int64_t grid[3] = {1, 8, 8}, window[3] = {1, 4, 4}, shift[3] = {0, 2, 2};
  WT_CHECK_INVALID(winattn_shifted_window_mask(nullptr, window, shift, out.data()), out);
  WT_CHECK_INVALID(winattn_shifted_window_mask(grid, nullptr, shift, out.data()), out);
  WT_CHECK_INVALID(winattn_shifted_window_mask(grid, window, nullptr, out.data()), out);
  CHECK(winattn_shifted_window_mask(grid, window, shift, nullptr) == WINATTN_STATUS_INVALID_ARGUMENT);
  struct Bad {
    Triple grid, window, shift;
  };
  const Bad bad[] = {
      {{0, 8, 8}, {1, 4, 4}, {0, 2, 2}},   // grid entry 0
      {{1, -8, 8}, {1, 4, 4}, {0, 2, 2}},  // grid entry < 0
      {{1, 8, 8}, {1, 0, 4}, {0, 0, 2}},   // window entry 0
      {{1, 8, 8}, {-1, 4, 4}, {0, 2, 2}},  // window entry < 0
      {{1, 10, 8}, {1, 4, 4}, {0, 2, 2}},  // grid not a multiple of window
      {{1, 8, 9}, {1, 4, 4}, {0, 2, 2}},   // grid not a multiple of window
      {{3, 8, 8}, {2, 4, 4}, {0, 2, 2}},   // depth not a multiple
      {{1, 8, 8}, {1, 4, 4}, {0, 4, 2}},   // shift == window
      {{1, 8, 8}, {1, 4, 4}, {0, 2, 5}},   // shift > window
      {{1, 8, 8}, {1, 4, 4}, {1, 2, 2}},   // depth shift >= depth window 1
      {{1, 8, 8}, {1, 4, 4}, {0, -1, 2}},  // shift < 0
      {{1, 8, 8}, {1, 4, 4}, {0, 2, INT64_MIN}},
      // num_windows * N * N overflowing: N = 2^40.
      {{1, int64_t{1} << 20, int64_t{1} << 20}, {1, int64_t{1} << 20, int64_t{1} << 20}, {0, 0, 0}},
      // num_windows overflowing: 2^62 windows of one token times more windows.
      {{INT64_MAX / 2, INT64_MAX / 2, 4}, {1, 1, 1}, {0, 0, 0}},
      {{1 << 30, 1 << 30, 1 << 30}, {2, 2, 2}, {1, 1, 1}},
  };
  for (const Bad &b : bad) {
    CAPTURE(b.grid[0]);
    CAPTURE(b.grid[1]);
    CAPTURE(b.grid[2]);
    CAPTURE(b.window[1]);
    CAPTURE(b.shift[1]);
    CAPTURE(b.shift[2]);
    WT_CHECK_INVALID(winattn_shifted_window_mask(b.grid.data(), b.window.data(), b.shift.data(), out.data()),
                     out);
  }
}
