// The (shifted) window attention layer: gather (pad, shift, partition) -> qkv projection -> fused attention
// -> output projection -> scatter (reverse, unshift, crop), pipelined per chunk of windows so a chunk's
// activations stay in L2, with OpenMP over chunks.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "projection/linear.h"

namespace winattn::detail {

struct LayerSpec {
  int64_t channels = 0;
  int64_t num_heads = 0;
  int64_t window[3] = {1, 1, 1};
  int64_t shift[3] = {0, 0, 0};
  const float *qkv_weight = nullptr;   // [3C][C]
  const float *qkv_bias = nullptr;     // [3C] or null
  const float *proj_weight = nullptr;  // [C][C]
  const float *proj_bias = nullptr;    // [C] or null
  const float *bias = nullptr;         // [heads][N][N] looked-up position bias, or null
  const float *logit_scale = nullptr;  // [heads] (SwinV2 cosine attention) or null
};

class WindowAttentionLayer {
 public:
  // Copies and packs everything; the spec's arrays may be freed afterwards. Throws Error.
  explicit WindowAttentionLayer(const LayerSpec &spec);

  // input/output: [batch][grid[0]][grid[1]][grid[2]][channels]. Arguments validated by the caller.
  // Thread-safe. Throws Error (OUT_OF_MEMORY / INTERNAL_ERROR) before writing output when it can.
  void forward(const float *input, int64_t batch, const int64_t *grid, float *output) const;

  int64_t channels() const { return channels_; }
  const int64_t *window() const { return window_; }

 private:
  struct MaskSet {
    // For window w of an image: offset into `values` of its [N][N] mask, or -1 when the window needs none.
    std::vector<int64_t> window_offset;
    std::vector<float> values;
  };
  std::shared_ptr<const MaskSet> masks_for(const int64_t *padded, const int64_t *shift) const;

  int64_t channels_, num_heads_, head_dim_, tokens_;
  int64_t window_[3], shift_[3];
  bool cosine_;
  std::vector<float> bias_;  // [heads][N][N] or empty
  std::vector<float>
      bias_t_;  // the same transposed, [heads][N][transposed_terms_ld(N)], for query-major kernels
  std::vector<float> head_scale_;  // per head: head_dim^-0.5 (v1) or exp(min(logit_scale, ln 100)) (v2)
  std::unique_ptr<Linear> qkv_, proj_;

  mutable std::mutex mask_mutex_;
  mutable std::map<std::array<int64_t, 6>, std::shared_ptr<const MaskSet>> mask_cache_;
};

}  // namespace winattn::detail
