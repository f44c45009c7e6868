#include "checks.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "fuzz_common.h"
#include "oracle.h"

namespace fz {

void check_index_values(int ndim, const int64_t *window, const int64_t *index, int64_t n) {
  // Reference: mixed radix over the axes, radices 2*W-1, first axis most significant. Every entry when
  // there are few, else whole sampled rows and columns (a row is where a stride bug shows first).
  auto check_entry = [&](int64_t i, int64_t j) {
    const int64_t ref = relative_index(ndim, window, i, j);
    CHECK(index[i * n + j] == ref, "index[%lld][%lld] = %lld, expected %lld", (long long)i, (long long)j,
          (long long)index[i * n + j], (long long)ref);
  };
  if (n * n <= 4096) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) check_entry(i, j);
    return;
  }
  Rng rng = call_rng();
  for (int k = 0; k < 4; ++k) {
    const int64_t line = k == 0 ? n - 1 : static_cast<int64_t>(rng.below(static_cast<size_t>(n)));
    for (int64_t j = 0; j < n; ++j) check_entry(line, j), check_entry(j, line);
  }
}

void check_bias_values(const float *table, int64_t heads, const int64_t *index, int64_t n,
                       const float *bias) {
  const size_t nn_s = static_cast<size_t>(n * n);
  // Exact copies: every entry when there are few, else the first and last row of each head and samples.
  auto check_entry = [&](int64_t h, size_t ij) {
    const float want = table[index[ij] * heads + h];
    const float got = bias[h * nn_s + ij];
    CHECK(std::memcmp(&want, &got, sizeof got) == 0 || (std::isnan(want) && std::isnan(got)),
          "bias[%lld][%zu] = %g, table gives %g", (long long)h, ij, got, want);
  };
  const size_t row = static_cast<size_t>(n);
  Rng rng = call_rng();
  for (int64_t h = 0; h < heads; ++h) {
    if (nn_s <= 1024) {
      for (size_t ij = 0; ij < nn_s; ++ij) check_entry(h, ij);
      continue;
    }
    for (size_t j = 0; j < row; ++j) check_entry(h, j), check_entry(h, nn_s - row + j);
    for (int k = 0; k < 64; ++k) check_entry(h, rng.below(nn_s));
  }
}

void check_bias_gradient(const float *grad_bias, int64_t heads, const int64_t *index, int64_t n,
                         const float *before, const float *after, size_t table_n) {
  const size_t nn_s = static_cast<size_t>(n * n);
  // Backward: float64 reference with an error bound for sequential float32 sums.
  const bool finite =
      all_finite(grad_bias, nn_s * static_cast<size_t>(heads), 1e6f) && all_finite(before, table_n, 1e6f);
  if (!finite) return;
  std::vector<double> ref(table_n), mag(table_n);
  std::vector<int64_t> count(table_n, 0);
  for (size_t t = 0; t < table_n; ++t) ref[t] = before[t], mag[t] = std::fabs(before[t]);
  for (int64_t h = 0; h < heads; ++h)
    for (size_t ij = 0; ij < nn_s; ++ij) {
      const size_t t = static_cast<size_t>(index[ij] * heads + h);
      const double g = grad_bias[h * nn_s + ij];
      ref[t] += g;
      mag[t] += std::fabs(g);
      ++count[t];
    }
  for (size_t t = 0; t < table_n; ++t) {
    const double tol = (static_cast<double>(count[t]) + 2.0) * 1.2e-7 * mag[t] + 1e-30;
    CHECK(std::fabs(after[t] - ref[t]) <= tol, "grad_table[%zu] = %.9g, reference %.9g (tol %g)", t, after[t],
          ref[t], tol);
  }
}

void check_mask_values(const int64_t *grid, const int64_t *window, const int64_t *shift, const float *mask,
                       int64_t num_windows, int64_t n) {
  // Reference: per axis region 0 = [0, G-w), 1 = [G-w, G-s), 2 = [G-s, G); 0 within a region, -100 across.
  const int64_t wins[3] = {grid[0] / window[0], grid[1] / window[1], grid[2] / window[2]};
  auto label = [&](int64_t win, int64_t tok) {
    const int64_t wc[3] = {win / (wins[1] * wins[2]), (win / wins[2]) % wins[1], win % wins[2]};
    const int64_t tc[3] = {tok / (window[1] * window[2]), (tok / window[2]) % window[1], tok % window[2]};
    int64_t l = 0;
    for (int d = 0; d < 3; ++d) {
      const int64_t p = wc[d] * window[d] + tc[d];
      const int64_t region = p < grid[d] - window[d] ? 0 : (p < grid[d] - shift[d] ? 1 : 2);
      l = l * 3 + region;
    }
    return l;
  };
  // Every entry when there are few; else the last window (split on every shifted axis) and sampled ones,
  // each on its first and last rows and a sampled one.
  const int64_t total_w = num_windows;
  const bool all = num_windows * n * n <= 4096;
  Rng rng = call_rng();
  std::vector<int64_t> lab(n);
  for (int64_t k = 0; k < (all ? total_w : 4); ++k) {
    const int64_t w = all      ? k
                      : k == 0 ? total_w - 1
                               : static_cast<int64_t>(rng.below(static_cast<size_t>(total_w)));
    for (int64_t t = 0; t < n; ++t) lab[t] = label(w, t);
    for (int64_t ri = 0; ri < (all ? n : 3); ++ri) {
      const int64_t i = all       ? ri
                        : ri == 0 ? 0
                        : ri == 1 ? n - 1
                                  : static_cast<int64_t>(rng.below(static_cast<size_t>(n)));
      for (int64_t j = 0; j < n; ++j) {
        const float want = lab[i] == lab[j] ? 0.0f : -100.0f;
        const float got = mask[(w * n + i) * n + j];
        CHECK(got == want, "mask[%lld][%lld][%lld] = %g, expected %g", (long long)w, (long long)i,
              (long long)j, got, want);
      }
    }
  }
}

}  // namespace fz
