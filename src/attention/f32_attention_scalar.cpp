// The plain reference kernel, one element at a time. Dot products and sums accumulate in double: this is
// the path the SIMD kernels are compared with, so it should be the more accurate of the two.
#include <cmath>
#include <limits>

#include "attention/attention.h"

namespace winattn::detail {

void f32_attention_scalar(const AttentionShape &shape, const float *q, const float *k, const float *v,
                          float scale, const AttentionTerms &terms, float *out, float *workspace) {
  const int64_t n = shape.n, d = shape.head_dim;
  const float *bias = terms.bias, *mask = terms.mask;
  float *inv_k_norm = workspace;  // [n]
  float *scores = workspace + n;  // [n], one row at a time
  for (int64_t j = 0; j < n; ++j) {
    float norm = 1.0f;
    if (shape.cosine) {
      float sum = 0.0f;
      for (int64_t c = 0; c < d; ++c) sum += k[j * shape.ld_k + c] * k[j * shape.ld_k + c];
      norm = std::fmax(std::sqrt(sum), 1e-12f);
    }
    inv_k_norm[j] = 1.0f / norm;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float *qi = q + i * shape.ld_q;
    float row_scale = scale;
    if (shape.cosine) {
      float sum = 0.0f;
      for (int64_t c = 0; c < d; ++c) sum += qi[c] * qi[c];
      row_scale = scale / std::fmax(std::sqrt(sum), 1e-12f);
    }
    float row_max = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) {
      const float *kj = k + j * shape.ld_k;
      double dot = 0.0;
      for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(qi[c]) * kj[c];
      float logit = static_cast<float>(dot * inv_k_norm[j] * row_scale);
      if (bias != nullptr) logit += bias[i * n + j];
      if (mask != nullptr) logit += mask[i * n + j];
      scores[j] = logit;
      row_max = std::fmax(row_max, logit);
    }
    // All logits -inf: every weight is exp(-inf) = 0 and the row comes out zero instead of NaN.
    if (row_max == -std::numeric_limits<float>::infinity()) row_max = 0.0f;
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      scores[j] = std::exp(scores[j] - row_max);
      sum += scores[j];
    }
    const double inv_sum = sum == 0.0 ? 0.0 : 1.0 / sum;
    float *oi = out + i * shape.ld_out;
    for (int64_t c = 0; c < d; ++c) {
      double acc = 0.0;
      for (int64_t j = 0; j < n; ++j) acc += static_cast<double>(scores[j]) * v[j * shape.ld_v + c];
      oi[c] = static_cast<float>(acc * inv_sum);
    }
  }
}

}  // namespace winattn::detail
