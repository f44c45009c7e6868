// The (shifted) window attention layer: gather (pad, shift, partition) -> qkv projection -> fused attention
// -> output projection -> scatter (reverse, unshift, crop), pipelined per chunk of windows so a chunk's
// activations stay in L2, with OpenMP over chunks.
//
// The same pipeline runs a whole Swin block (src/block) when given its TokenStages: LayerNorm, the MLP and
// the residual adds are token-wise, so they run on the chunk in window order between the gather and the
// scatter, fused into the passes that touch each row anyway. The layer is the block without them.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "projection/linear.h"
#include "winattn/winattn.h"

namespace winattn::detail {

// What a layer computes, with its bias already looked up.
struct LayerSpec {
  // The layer of a Swin block: what the output projection does with its result (kAccumulate: add it into
  // the residual, the pre-norm block) and the block's MLP width (> 0: chunks are sized for its buffers).
  LinearEpilogue proj_epilogue = LinearEpilogue::kStore;
  int64_t mlp_hidden = 0;

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

// The token-wise stages of a Swin block (eval mode) that the pipeline adds around the attention of each
// chunk; see src/block/block.h. Pointers owned by the block.
struct TokenStages {
  bool post_norm = false;  // false: v1, y = x + attn(norm1(x)); true: v2, y = x + norm1(attn(x))
  const float *norm1_weight = nullptr, *norm1_bias = nullptr;  // [C]
  const float *norm2_weight = nullptr, *norm2_bias = nullptr;  // [C]
  float norm_eps = 1e-5f;
  const Linear *fc1 = nullptr;  // C -> hidden; GELU fused (kGeluErf) or, with kStore, applied by the pipeline
  const Linear *fc2 = nullptr;  // hidden -> C: kAccumulate (into the residual) for v1, kStore for v2
};

class WindowAttentionLayer {
 public:
  // Copies and packs everything; the spec's arrays may be freed afterwards. Throws Error.
  explicit WindowAttentionLayer(const LayerSpec &spec);

  // Builds a layer from the C API's description: v1 looks the relative position bias table up, v2 builds
  // the continuous position bias table from its MLP and looks it up. Checks the description's consistency
  // (v1 or v2, cpb weights all set or all null) and throws INVALID_ARGUMENT / UNSUPPORTED naming the
  // field; the caller has checked pointers and sizes.
  // `block`: the block options of LayerSpec (proj_epilogue, mlp_hidden); the rest of it is ignored.
  static std::unique_ptr<WindowAttentionLayer> from_desc(const winattn_layer_desc &desc,
                                                         const LayerSpec &block = LayerSpec());
  // The stateless layer of winattn_shifted_window_attention.
  static LayerSpec spec_from_args(const winattn_window_attention_args &args);

  // input/output: [batch][grid[0]][grid[1]][grid[2]][channels]. Arguments validated by the caller.
  // Thread-safe. Throws Error (OUT_OF_MEMORY / INTERNAL_ERROR) before writing output when it can.
  void forward(const float *input, int64_t batch, const int64_t *grid, float *output) const;
  // The pipeline behind forward: on at most `budget` threads (0 = the process setting), with a block's
  // stages when `stages` is not null (the layer must then have been made with the block's LayerSpec
  // options). Same contract as forward.
  void run(const float *input, int64_t batch, const int64_t *grid, float *output, int budget,
           const TokenStages *stages) const;
  // Rows of a full chunk (what create prepares the projections for); depends on the shapes only.
  int64_t full_chunk_rows() const;

  int64_t channels() const { return channels_; }
  const int64_t *window() const { return window_; }

  // The thread budget of forward (0 = the process setting).
  void set_num_threads(int threads) { num_threads_.store(threads, std::memory_order_relaxed); }
  int num_threads() const { return num_threads_.load(std::memory_order_relaxed); }

  // Drops the masks and the projection plans made for unusual row counts; safe beside running forwards.
  void trim() const;
  // Heap bytes held now.
  int64_t memory_bytes() const;

 private:
  // The mask of a window depends only on which axes split it: a window is split on axis d when it is the
  // last window along d and the effective shift on d is non-zero (regions [G-w, G-s) and [G-s, G) meet
  // inside it). So a layer needs at most 7 masks (pattern 0, no split, needs none), whatever the grid.
  static constexpr int kMaskPatterns = 8;
  using Mask = std::vector<float>;  // [N][N]
  std::shared_ptr<const Mask> mask_for_pattern(int pattern) const;

  int64_t channels_, num_heads_, head_dim_, tokens_;
  int64_t row_floats_;  // activation floats the pipeline keeps per token row (chunk sizing)
  int64_t window_[3], shift_[3];
  bool cosine_;
  std::vector<float> bias_;  // [heads][N][N] or empty
  std::vector<float>
      bias_t_;  // the same transposed, [heads][N][transposed_terms_ld(N)], for query-major kernels
  std::vector<float> head_scale_;  // per head: head_dim^-0.5 (v1) or exp(min(logit_scale, ln 100)) (v2)
  std::unique_ptr<Linear> qkv_, proj_;
  std::atomic<int> num_threads_{0};

  mutable std::mutex mask_mutex_;
  mutable std::array<std::shared_ptr<const Mask>, kMaskPatterns> masks_;
};

}  // namespace winattn::detail
