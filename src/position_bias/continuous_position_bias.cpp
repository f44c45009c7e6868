#include <cmath>
#include <vector>

#include "cpu/threading.h"
#include "position_bias/position_bias.h"

namespace winattn::detail {
namespace {

// torchvision's log-spaced relative coordinate: normalised to [-8, 8], then sign(x) * log2(|x| + 1) / 3.
float log_spaced(int64_t delta, int64_t window) {
  float x = static_cast<float>(delta);
  if (window > 1) x /= static_cast<float>(window - 1);
  x *= 8.0f;
  const float sign = x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
  return sign * std::log2(std::fabs(x) + 1.0f) / 3.0f;
}

}  // namespace

void continuous_position_bias_table(int64_t window_h, int64_t window_w, const float *w1, const float *b1,
                                    const float *w2, int64_t hidden, int64_t num_heads, float *table) {
  const int64_t rows_h = 2 * window_h - 1, rows_w = 2 * window_w - 1;
  const int64_t rows = rows_h * rows_w;
#pragma omp parallel for schedule(static) \
    num_threads(effective_num_threads()) if (rows * hidden * num_heads >= 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float ch = log_spaced(r / rows_w - (window_h - 1), window_h);
    const float cw = log_spaced(r % rows_w - (window_w - 1), window_w);
    std::vector<double> activation(static_cast<size_t>(hidden));
    for (int64_t u = 0; u < hidden; ++u) {
      const double pre = static_cast<double>(w1[2 * u]) * ch + static_cast<double>(w1[2 * u + 1]) * cw +
                         (b1 != nullptr ? static_cast<double>(b1[u]) : 0.0);
      activation[u] = pre > 0.0 ? pre : 0.0;
    }
    for (int64_t h = 0; h < num_heads; ++h) {
      double logit = 0.0;
      const float *row = w2 + h * hidden;
      for (int64_t u = 0; u < hidden; ++u) logit += static_cast<double>(row[u]) * activation[u];
      table[r * num_heads + h] = static_cast<float>(16.0 / (1.0 + std::exp(-logit)));
    }
  }
}

}  // namespace winattn::detail
