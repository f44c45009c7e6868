#include <cmath>
#include <cstdint>
#include <memory>
#include <new>
#include <string>

#include "common/error.h"
#include "cpu/threading.h"
#include "position_bias/position_bias.h"

namespace winattn::detail {
namespace {

// torchvision's log-spaced relative coordinate: normalised to [-8, 8] by the window (timm: by the pretrained
// window when one is given), then sign(x) * log2(|x| + 1) / 3.
float log_spaced(int64_t delta, int64_t window) {
  float x = static_cast<float>(delta);
  if (window > 1) x /= static_cast<float>(window - 1);
  x *= 8.0f;
  const float sign = x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
  return sign * std::log2(std::fabs(x) + 1.0f) / 3.0f;
}

}  // namespace

void continuous_position_bias_table(int64_t window_h, int64_t window_w, const float *w1, const float *b1,
                                    const float *w2, int64_t hidden, int64_t num_heads, float *table,
                                    int64_t pretrained_h, int64_t pretrained_w) {
  const int64_t norm_h = pretrained_h > 0 ? pretrained_h : window_h;
  const int64_t norm_w = pretrained_w > 0 ? pretrained_w : window_w;
  const int64_t rows_h = 2 * window_h - 1, rows_w = 2 * window_w - 1;
  const int64_t rows = rows_h * rows_w;
  // Multiply-adds of the whole table (saturated: only compared with kSerialWork).
  const int64_t per_row = hidden > INT64_MAX / (num_heads + 3) ? INT64_MAX : hidden * (num_heads + 3);
  const int64_t work = per_row > INT64_MAX / rows ? INT64_MAX : per_row * rows;
  const int threads = team_size_for_work(rows, work);
  // Each thread's hidden activations, allocated here, before any output is written and outside the
  // parallel region (an exception inside it would terminate the process).
  if (static_cast<uint64_t>(hidden) > SIZE_MAX / sizeof(double) / static_cast<uint64_t>(threads)) {
    throw Error(
        WINATTN_STATUS_OUT_OF_MEMORY,
        "cannot allocate the continuous position bias activations: hidden = " + std::to_string(hidden));
  }
  const size_t per_thread = static_cast<size_t>(hidden);
  std::unique_ptr<double[]> activations(new (std::nothrow) double[per_thread * static_cast<size_t>(threads)]);
  if (!activations) {
    throw Error(WINATTN_STATUS_OUT_OF_MEMORY,
                "cannot allocate " +
                    std::to_string(per_thread * static_cast<size_t>(threads) * sizeof(double)) +
                    " bytes of continuous position bias activations");
  }
  auto fill_row = [&](int64_t r, double *activation) {
    const float ch = log_spaced(r / rows_w - (window_h - 1), norm_h);
    const float cw = log_spaced(r % rows_w - (window_w - 1), norm_w);
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
  };
  // A small table is computed by the calling thread alone: no team is started.
  if (threads <= 1) {
    for (int64_t r = 0; r < rows; ++r) fill_row(r, activations.get());
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    double *activation = activations.get() + per_thread * static_cast<size_t>(thread_index());
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) fill_row(r, activation);
  }
}

}  // namespace winattn::detail
