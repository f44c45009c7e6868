// winattn_relative_position_index, winattn_relative_position_bias (+ backward) and
// winattn_continuous_position_bias_table against plainly written references.
#include "test_util.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace {

// Reference index straight from the formulas of the header, via explicit token coordinates.
std::vector<int64_t> reference_index(const std::vector<int64_t> &window) {
  const size_t ndim = window.size();
  int64_t wd = 1, wh = 1, ww = 1;
  if (ndim == 1) ww = window[0];
  if (ndim == 2) wh = window[0], ww = window[1];
  if (ndim == 3) wd = window[0], wh = window[1], ww = window[2];
  struct Coord {
    int64_t d, h, w;
  };
  std::vector<Coord> coords;
  for (int64_t d = 0; d < wd; ++d)
    for (int64_t h = 0; h < wh; ++h)
      for (int64_t w = 0; w < ww; ++w) coords.push_back({d, h, w});
  const int64_t n = static_cast<int64_t>(coords.size());
  std::vector<int64_t> index(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const Coord a = coords[static_cast<size_t>(i)], b = coords[static_cast<size_t>(j)];
      int64_t value = 0;
      if (ndim == 1) {
        value = (a.w - b.w) + ww - 1;
      } else if (ndim == 2) {
        value = (a.h - b.h + wh - 1) * (2 * ww - 1) + (a.w - b.w + ww - 1);
      } else {
        value = (a.d - b.d + wd - 1) * (2 * wh - 1) * (2 * ww - 1) + (a.h - b.h + wh - 1) * (2 * ww - 1) +
                (a.w - b.w + ww - 1);
      }
      index[static_cast<size_t>(i * n + j)] = value;
    }
  }
  return index;
}

int64_t table_rows_of(const std::vector<int64_t> &window) {
  int64_t rows = 1;
  for (int64_t w : window) rows *= 2 * w - 1;
  return rows;
}

int64_t tokens_of(const std::vector<int64_t> &window) {
  int64_t n = 1;
  for (int64_t w : window) n *= w;
  return n;
}

std::vector<int64_t> library_index(const std::vector<int64_t> &window) {
  const int64_t n = tokens_of(window);
  std::vector<int64_t> index(static_cast<size_t>(n * n), -7);
  REQUIRE(winattn_relative_position_index(static_cast<int>(window.size()), window.data(), index.data()) ==
          WINATTN_STATUS_OK);
  return index;
}

const std::vector<std::vector<int64_t>> kWindows = {{1},       {8},       {16},     {1, 1},  {7, 7},
                                                    {8, 8},    {12, 12},  {16, 16}, {6, 10}, {2, 7, 7},
                                                    {8, 7, 7}, {1, 7, 7}, {2, 3, 4}};

}  // namespace

TEST_CASE("relative_position_index matches the coordinate formulas") {
  for (const auto &window : kWindows) {
    CAPTURE(window.size());
    CAPTURE(window[0]);
    CAPTURE(window.back());
    const auto expected = reference_index(window);
    const auto got = library_index(window);
    CHECK(got == expected);
    const int64_t rows = table_rows_of(window);
    for (int64_t value : got) {
      REQUIRE(value >= 0);
      REQUIRE(value < rows);
    }
  }
}

TEST_CASE("relative_position_index: 1x7x7 equals 2D 7x7, and T=1 / 1x1 give a single zero") {
  CHECK(library_index({1, 7, 7}) == library_index({7, 7}));
  CHECK(library_index({1}) == std::vector<int64_t>{0});
  CHECK(library_index({1, 1}) == std::vector<int64_t>{0});
  CHECK(library_index({1, 1, 1}) == std::vector<int64_t>{0});
}

TEST_CASE("relative_position_index rejects invalid arguments") {
  auto out = wt::sentinel_buffer<int64_t>(64);
  const int64_t w2[2] = {4, 4};
  WT_CHECK_INVALID(winattn_relative_position_index(0, w2, out.data()), out);
  WT_CHECK_INVALID(winattn_relative_position_index(4, w2, out.data()), out);
  WT_CHECK_INVALID(winattn_relative_position_index(-1, w2, out.data()), out);
  WT_CHECK_INVALID(winattn_relative_position_index(2, nullptr, out.data()), out);
  CHECK(winattn_relative_position_index(2, w2, nullptr) == WINATTN_STATUS_INVALID_ARGUMENT);
  CHECK(std::strlen(winattn_last_error_message()) > 0);
  const int64_t zero[2] = {4, 0}, negative[3] = {-1, 2, 2};
  WT_CHECK_INVALID(winattn_relative_position_index(2, zero, out.data()), out);
  WT_CHECK_INVALID(winattn_relative_position_index(3, negative, out.data()), out);
  // N*N overflowing int64 (N = 2^32), and N itself overflowing (2^63).
  const int64_t huge1[1] = {int64_t{1} << 32};
  const int64_t huge3[3] = {int64_t{1} << 21, int64_t{1} << 21, int64_t{1} << 21};
  const int64_t max1[1] = {INT64_MAX / 2};
  WT_CHECK_INVALID(winattn_relative_position_index(1, huge1, out.data()), out);
  WT_CHECK_INVALID(winattn_relative_position_index(3, huge3, out.data()), out);
  WT_CHECK_INVALID(winattn_relative_position_index(1, max1, out.data()), out);
}

TEST_CASE("relative_position_bias equals table[index][h] exactly, on every ISA") {
  wt::DispatchGuard guard;
  wt::Rng rng(11);
  const std::vector<std::vector<int64_t>> windows = {{1},      {8},      {1, 1},  {7, 7},    {8, 8},
                                                     {12, 12}, {16, 16}, {6, 10}, {2, 7, 7}, {8, 7, 7}};
  const int64_t heads_list[] = {1, 2, 3, 4, 5, 8, 16, 24, 32};
  for (const std::string &isa : wt::available_isas()) {
    wt::force_isa(isa);
    for (const auto &window : windows) {
      const auto index = reference_index(window);
      const int64_t n = tokens_of(window), rows = table_rows_of(window);
      for (int64_t heads : heads_list) {
        if (n * n * heads > 2000000) continue;  // keep the suite fast
        CAPTURE(isa);
        CAPTURE(n);
        CAPTURE(heads);
        const auto table = rng.vec(static_cast<size_t>(rows * heads), -3.0f, 3.0f);
        std::vector<float> bias(static_cast<size_t>(heads * n * n), -1234.5f);
        REQUIRE(winattn_relative_position_bias(table.data(), rows, heads, index.data(), n, bias.data()) ==
                WINATTN_STATUS_OK);
        bool equal = true;
        for (int64_t h = 0; h < heads && equal; ++h)
          for (int64_t ij = 0; ij < n * n; ++ij) {
            const float expected = table[static_cast<size_t>(index[static_cast<size_t>(ij)] * heads + h)];
            if (std::memcmp(&bias[static_cast<size_t>(h * n * n + ij)], &expected, sizeof(float)) != 0) {
              equal = false;
              break;
            }
          }
        CHECK(equal);
      }
    }
  }
}

TEST_CASE("relative_position_bias with an arbitrary (non-Swin) index and a larger table") {
  wt::Rng rng(12);
  const int64_t n = 13, heads = 6, rows = 1000;
  std::vector<int64_t> index(n * n);
  for (auto &x : index) x = rng.integer(0, rows - 1);
  index[0] = 0;
  index[1] = rows - 1;
  const auto table = rng.vec(rows * heads);
  std::vector<float> bias(heads * n * n);
  REQUIRE(winattn_relative_position_bias(table.data(), rows, heads, index.data(), n, bias.data()) ==
          WINATTN_STATUS_OK);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t ij = 0; ij < n * n; ++ij) REQUIRE(bias[h * n * n + ij] == table[index[ij] * heads + h]);
}

namespace {

// Shared invalid-argument checks of the lookup and its gradient (same argument list shape).
template <typename Fn>
void check_lookup_like_invalid(Fn fn, const std::vector<float> &input, int64_t rows, int64_t heads,
                               std::vector<int64_t> index, int64_t n, std::vector<float> &out) {
  const float *in = input.data();
  const int64_t *idx = index.data();
  WT_CHECK_INVALID(fn(nullptr, rows, heads, idx, n, out.data()), out);
  WT_CHECK_INVALID(fn(in, rows, heads, nullptr, n, out.data()), out);
  CHECK(fn(in, rows, heads, idx, n, nullptr) == WINATTN_STATUS_INVALID_ARGUMENT);
  WT_CHECK_INVALID(fn(in, 0, heads, idx, n, out.data()), out);
  WT_CHECK_INVALID(fn(in, -5, heads, idx, n, out.data()), out);
  WT_CHECK_INVALID(fn(in, rows, 0, idx, n, out.data()), out);
  WT_CHECK_INVALID(fn(in, rows, -1, idx, n, out.data()), out);
  WT_CHECK_INVALID(fn(in, rows, heads, idx, 0, out.data()), out);
  WT_CHECK_INVALID(fn(in, rows, heads, idx, -3, out.data()), out);
  // Overflowing products: num_heads * n * n, and table_rows * num_heads.
  WT_CHECK_INVALID(fn(in, rows, INT64_MAX / 2, idx, n, out.data()), out);
  WT_CHECK_INVALID(fn(in, rows, heads, idx, int64_t{1} << 32, out.data()), out);
  WT_CHECK_INVALID(fn(in, INT64_MAX / 2, heads, idx, n, out.data()), out);
  // Index entries out of range, at the first, a middle and the last position.
  const size_t positions[] = {0, index.size() / 2, index.size() - 1};
  for (size_t pos : positions) {
    for (int64_t bad : {int64_t{-1}, rows, rows + 100, INT64_MIN}) {
      std::vector<int64_t> broken = index;
      broken[pos] = bad;
      CAPTURE(pos);
      CAPTURE(bad);
      WT_CHECK_INVALID(fn(in, rows, heads, broken.data(), n, out.data()), out);
    }
  }
}

}  // namespace

TEST_CASE("relative_position_bias rejects invalid arguments and leaves bias untouched") {
  wt::DispatchGuard guard;
  wt::Rng rng(13);
  const std::vector<int64_t> window = {4, 4};
  const int64_t n = 16, rows = table_rows_of(window), heads = 3;
  const auto table = rng.vec(rows * heads);
  for (const std::string &isa : wt::available_isas()) {
    wt::force_isa(isa);
    CAPTURE(isa);
    auto out = wt::sentinel_buffer<float>(heads * n * n);
    check_lookup_like_invalid(winattn_relative_position_bias, table, rows, heads, reference_index(window), n,
                              out);
  }
}

TEST_CASE("relative_position_bias_backward rejects invalid arguments and leaves grad_table untouched") {
  wt::Rng rng(14);
  const std::vector<int64_t> window = {4, 4};
  const int64_t n = 16, rows = table_rows_of(window), heads = 3;
  const auto grad_bias = rng.vec(heads * n * n);
  auto out = wt::sentinel_buffer<float>(rows * heads);
  check_lookup_like_invalid(winattn_relative_position_bias_backward, grad_bias, rows, heads,
                            reference_index(window), n, out);
}

TEST_CASE(
    "relative_position_bias_backward accumulates the float64 reference, bit-identically across threads") {
  wt::DispatchGuard guard;
  wt::Rng rng(15);
  const std::vector<std::vector<int64_t>> windows = {{1}, {8}, {7, 7}, {8, 8}, {12, 12}, {6, 10}, {2, 7, 7}};
  const int64_t heads_list[] = {1, 3, 4, 16, 32};
  for (const auto &window : windows) {
    const auto index = reference_index(window);
    const int64_t n = tokens_of(window), rows = table_rows_of(window);
    for (int64_t heads : heads_list) {
      CAPTURE(n);
      CAPTURE(heads);
      const auto grad_bias = rng.vec(heads * n * n, -2.0f, 2.0f);
      const auto prefill = rng.vec(rows * heads, 0.5f, 4.0f);  // non-zero: the call must accumulate
      // float64 reference and a bound on the rounding of a float32 sum of the same terms.
      std::vector<double> expected(rows * heads), magnitude(rows * heads);
      for (size_t r = 0; r < expected.size(); ++r)
        expected[r] = prefill[r], magnitude[r] = std::fabs(prefill[r]);
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t ij = 0; ij < n * n; ++ij) {
          const double g = grad_bias[h * n * n + ij];
          expected[index[ij] * heads + h] += g;
          magnitude[index[ij] * heads + h] += std::fabs(g);
        }
      std::vector<std::vector<float>> results;
      for (int threads : {1, 2, 3}) {
        REQUIRE(winattn_set_num_threads(threads) == WINATTN_STATUS_OK);
        std::vector<float> grad_table = prefill;
        REQUIRE(winattn_relative_position_bias_backward(grad_bias.data(), rows, heads, index.data(), n,
                                                        grad_table.data()) == WINATTN_STATUS_OK);
        results.push_back(grad_table);
      }
      winattn_set_num_threads(0);
      double worst = 0.0;
      for (size_t r = 0; r < expected.size(); ++r) {
        const double err = std::fabs(results[0][r] - expected[r]);
        worst = std::fmax(worst, err / (1e-6 * magnitude[r] + 1e-30));
      }
      CHECK_MESSAGE(worst <= 1.0, "max error / (1e-6 * sum|terms|) = " << worst);
      CHECK(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0);
      CHECK(std::memcmp(results[0].data(), results[2].data(), results[0].size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("relative_position_bias_backward: calling twice adds twice") {
  wt::Rng rng(16);
  const std::vector<int64_t> window = {5, 5};
  const auto index = reference_index(window);
  const int64_t n = 25, rows = 81, heads = 2;
  // Small integers: every float sum is exact, so the comparison can be exact.
  std::vector<float> grad_bias(heads * n * n);
  for (auto &g : grad_bias) g = static_cast<float>(rng.integer(-4, 4));
  std::vector<float> once(rows * heads, 1.0f), twice(rows * heads, 1.0f);
  REQUIRE(winattn_relative_position_bias_backward(grad_bias.data(), rows, heads, index.data(), n,
                                                  once.data()) == WINATTN_STATUS_OK);
  REQUIRE(winattn_relative_position_bias_backward(grad_bias.data(), rows, heads, index.data(), n,
                                                  twice.data()) == WINATTN_STATUS_OK);
  REQUIRE(winattn_relative_position_bias_backward(grad_bias.data(), rows, heads, index.data(), n,
                                                  twice.data()) == WINATTN_STATUS_OK);
  for (size_t r = 0; r < once.size(); ++r) REQUIRE(twice[r] - 1.0f == 2.0f * (once[r] - 1.0f));
}

namespace {

// float64 SwinV2 continuous position bias table, written from the header's description.
std::vector<double> reference_cpb(int64_t wh, int64_t ww, const std::vector<float> &w1, const float *b1,
                                  const std::vector<float> &w2, int64_t hidden, int64_t heads) {
  auto transform = [](double coord, int64_t window) {
    double x = coord;
    if (window > 1) x /= static_cast<double>(window - 1);
    x *= 8.0;
    const double sign = x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0);
    return sign * std::log2(std::fabs(x) + 1.0) / 3.0;
  };
  const int64_t rows = (2 * wh - 1) * (2 * ww - 1);
  std::vector<double> table(rows * heads);
  std::vector<double> act(hidden);
  for (int64_t dh = -(wh - 1); dh <= wh - 1; ++dh) {
    for (int64_t dw = -(ww - 1); dw <= ww - 1; ++dw) {
      const double ch = transform(static_cast<double>(dh), wh), cw = transform(static_cast<double>(dw), ww);
      for (int64_t k = 0; k < hidden; ++k) {
        double z = static_cast<double>(w1[k * 2 + 0]) * ch + static_cast<double>(w1[k * 2 + 1]) * cw;
        if (b1) z += b1[k];
        act[k] = z > 0 ? z : 0.0;
      }
      const int64_t row = (dh + wh - 1) * (2 * ww - 1) + (dw + ww - 1);
      for (int64_t h = 0; h < heads; ++h) {
        double y = 0;
        for (int64_t k = 0; k < hidden; ++k) y += static_cast<double>(w2[h * hidden + k]) * act[k];
        table[row * heads + h] = 16.0 / (1.0 + std::exp(-y));
      }
    }
  }
  return table;
}

}  // namespace

TEST_CASE("continuous_position_bias_table matches the float64 SwinV2 formula") {
  wt::Rng rng(17);
  struct Case {
    int64_t wh, ww, hidden, heads;
    bool with_b1;
  };
  const Case cases[] = {{7, 7, 512, 3, true},  {8, 8, 512, 4, true},   {1, 5, 512, 2, true},
                        {6, 10, 512, 6, true}, {7, 7, 16, 1, true},    {8, 8, 16, 32, false},
                        {1, 5, 16, 3, false},  {6, 10, 16, 24, true},  {5, 1, 16, 2, true},
                        {1, 1, 16, 2, true},   {12, 12, 512, 8, true}, {16, 16, 16, 5, false}};
  for (const Case &c : cases) {
    CAPTURE(c.wh);
    CAPTURE(c.ww);
    CAPTURE(c.hidden);
    CAPTURE(c.heads);
    CAPTURE(c.with_b1);
    // Like nn.Linear's init, scaled up a little so that logits reach the saturating parts of the sigmoid.
    const float a1 = 2.0f / std::sqrt(2.0f), a2 = 4.0f / std::sqrt(static_cast<float>(c.hidden));
    const auto w1 = rng.vec(c.hidden * 2, -a1, a1);
    const auto b1 = rng.vec(c.hidden, -a1, a1);
    const auto w2 = rng.vec(c.heads * c.hidden, -a2, a2);
    const float *b1p = c.with_b1 ? b1.data() : nullptr;
    const auto expected = reference_cpb(c.wh, c.ww, w1, b1p, w2, c.hidden, c.heads);
    std::vector<float> table(expected.size(), -1.0f);
    REQUIRE(winattn_continuous_position_bias_table(c.wh, c.ww, w1.data(), b1p, w2.data(), c.hidden, c.heads,
                                                   table.data()) == WINATTN_STATUS_OK);
    double worst = 0.0;
    for (size_t i = 0; i < expected.size(); ++i) {
      REQUIRE(std::isfinite(table[i]));
      worst = std::fmax(worst, std::fabs(table[i] - expected[i]) / std::fmax(1.0, std::fabs(expected[i])));
    }
    CHECK_MESSAGE(worst <= 1e-5, "max relative error " << worst);
  }
}

TEST_CASE("continuous_position_bias_table rejects invalid arguments") {
  wt::Rng rng(18);
  const int64_t hidden = 16, heads = 2;
  const auto w1 = rng.vec(hidden * 2), b1 = rng.vec(hidden), w2 = rng.vec(heads * hidden);
  auto out = wt::sentinel_buffer<float>(13 * 13 * heads);
  const float *p1 = w1.data(), *pb = b1.data(), *p2 = w2.data();
  WT_CHECK_INVALID(winattn_continuous_position_bias_table(7, 7, nullptr, pb, p2, hidden, heads, out.data()),
                   out);
  WT_CHECK_INVALID(winattn_continuous_position_bias_table(7, 7, p1, pb, nullptr, hidden, heads, out.data()),
                   out);
  CHECK(winattn_continuous_position_bias_table(7, 7, p1, pb, p2, hidden, heads, nullptr) ==
        WINATTN_STATUS_INVALID_ARGUMENT);
  WT_CHECK_INVALID(winattn_continuous_position_bias_table(0, 7, p1, pb, p2, hidden, heads, out.data()), out);
  WT_CHECK_INVALID(winattn_continuous_position_bias_table(7, -1, p1, pb, p2, hidden, heads, out.data()), out);
  WT_CHECK_INVALID(winattn_continuous_position_bias_table(7, 7, p1, pb, p2, 0, heads, out.data()), out);
  WT_CHECK_INVALID(winattn_continuous_position_bias_table(7, 7, p1, pb, p2, hidden, 0, out.data()), out);
  WT_CHECK_INVALID(winattn_continuous_position_bias_table(7, 7, p1, pb, p2, -16, -2, out.data()), out);
  WT_CHECK_INVALID(
      winattn_continuous_position_bias_table(INT64_MAX / 2, 7, p1, pb, p2, hidden, heads, out.data()), out);
  WT_CHECK_INVALID(winattn_continuous_position_bias_table(int64_t{1} << 31, int64_t{1} << 31, p1, pb, p2,
                                                          hidden, heads, out.data()),
                   out);
  WT_CHECK_INVALID(
      winattn_continuous_position_bias_table(7, 7, p1, pb, p2, INT64_MAX / 2, INT64_MAX / 2, out.data()),
      out);
}
