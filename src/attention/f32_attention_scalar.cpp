// The plain reference kernel, one element at a time. The q.k dot products, the softmax sum and the P V sums
// accumulate in double; the L2 norms of cosine attention accumulate in float.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "attention/attention.h"

namespace winattn::detail {

namespace {

void run_scalar(const AttentionShape &shape, const float *q, const float *k, const float *v, float scale,
                const AttentionTerms &terms, float *out, float *workspace) {
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

size_t workspace_floats(int64_t n, int64_t /*head_dim*/) {
  return static_cast<size_t>(2 * n + 16);  // inverse key norms and one row of scores
}

}  // namespace

const AttentionKernelInfo f32_attention_rowmajor_1x1_scalar = {
    "f32_attention_rowmajor_1x1_scalar",
    0,
    run_scalar,
    nullptr,
    1,
    false,
    1,
    1,
    1,
    INT64_MAX,
    INT64_MAX,
    workspace_floats,
};

}  // namespace winattn::detail
