// The fused attention kernel through the C++ wrapper: 64 windows of 7x7 tokens, 3 heads, with the
// relative position bias looked up from a table and the shifted-window mask, checked against a plain
// double-precision computation of one (window, head).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "winattn/winattn.hpp"

int main() {
  const int64_t windows = 64, heads = 3, n = 49, head_dim = 32;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto random = [&](size_t count) {
    std::vector<float> a(count);
    for (float &x : a) x = normal(rng);
    return a;
  };
  const size_t size = static_cast<size_t>(windows * heads * n * head_dim);
  const std::vector<float> q = random(size), k = random(size), v = random(size);
  try {
    const std::vector<int64_t> index = winattn::relative_position_index({7, 7});
    const std::vector<float> table = random(13 * 13 * heads);
    const std::vector<float> bias = winattn::relative_position_bias(table, heads, index, n);
    const std::vector<float> mask = winattn::shifted_window_mask({1, 56, 56}, {1, 7, 7}, {0, 3, 3});
    std::vector<float> out(size);
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    winattn::check(winattn_window_attention(windows, heads, n, head_dim, q.data(), k.data(), v.data(), scale,
                                            bias.data(), mask.data(), windows, out.data()));

    // Reference for the last window (it is masked) and head 2.
    const int64_t w = windows - 1, h = 2, base = (w * heads + h) * n * head_dim;
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      std::vector<double> p(n);
      double max = -INFINITY, sum = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0.0;
        for (int64_t c = 0; c < head_dim; ++c)
          dot += double(q[base + i * head_dim + c]) * k[base + j * head_dim + c];
        p[j] = dot * scale + bias[(h * n + i) * n + j] + mask[(w * n + i) * n + j];
        max = std::fmax(max, p[j]);
      }
      for (double &x : p) sum += (x = std::exp(x - max));
      for (int64_t c = 0; c < head_dim; ++c) {
        double y = 0.0;
        for (int64_t j = 0; j < n; ++j) y += p[j] / sum * v[base + j * head_dim + c];
        worst = std::fmax(worst, std::fabs(y - out[base + i * head_dim + c]));
      }
    }
    std::printf("winattn %s, %s kernels: 64 windows x 3 heads x 49 tokens, max |error| vs double = %.2e\n",
                winattn::version().c_str(), winattn::active_isa().c_str(), worst);
    return worst < 1e-4 ? 0 : 1;
  } catch (const winattn::Error &e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
