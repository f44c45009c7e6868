// The Swin transformer block in eval mode (winattn_block_*): torchvision's SwinTransformerBlock (v1,
// pre-norm) and SwinTransformerBlockV2 (res-post-norm), 2D and 3D windows.
//
// The block owns its attention layer, made for a block (v1: the output projection adds into the residual;
// chunks sized for the block's buffers), its norms and its MLP, and runs the layer's chunk pipeline with
// them as TokenStages (layer/layer.h): per chunk of windows, in window order,
//   v1: gather x + norm1(x) in one pass -> qkv -> attention -> proj (+= x, sum post-op) -> norm2 ->
//       fc1 (bias and GELU fused) -> fc2 (+= y, sum post-op) -> scatter
//   v2: gather x -> qkv -> attention -> proj -> y = x + norm1(proj) in one pass -> fc1 (GELU fused) -> fc2
//       -> out = y + norm2(fc2) fused into the scatter
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "layer/layer.h"
#include "projection/linear.h"
#include "winattn/winattn.h"

namespace winattn::detail {

// The token-wise parts of a block besides its attention, as arrays the caller holds (copied by assemble).
struct BlockParts {
  bool post_norm = false;  // false: v1 pre-norm; true: SwinV2 res-post-norm
  const float *norm1_weight = nullptr, *norm1_bias = nullptr;  // [C]
  const float *norm2_weight = nullptr, *norm2_bias = nullptr;  // [C]
  float norm_eps = 1e-5f;
  int64_t mlp_hidden = 0;
  const float *fc1_weight = nullptr, *fc1_bias = nullptr;  // [hidden][C], [hidden] or null
  const float *fc2_weight = nullptr, *fc2_bias = nullptr;  // [C][hidden], [C] or null
};

class SwinBlock {
 public:
  // The layer options (LayerSpec::proj_epilogue, mlp_hidden) a block's attention must be made with.
  static LayerSpec attention_options(const BlockParts &parts);
  // Builds a block around `attention` (made with attention_options(parts)); copies and packs the parts.
  // Throws Error.
  static std::unique_ptr<SwinBlock> assemble(std::unique_ptr<WindowAttentionLayer> attention,
                                             const BlockParts &parts);

  // Copies and packs everything (desc's arrays may be freed afterwards). The caller has checked the
  // pointers and sizes of desc (as for winattn_layer_create, plus the block's own fields); the attention
  // description's consistency (v1 or v2 bias) is checked here. Throws Error.
  static std::unique_ptr<SwinBlock> from_desc(const winattn_block_desc &desc);

  // input/output: [batch][grid[0]][grid[1]][grid[2]][channels], validated by the caller. Thread-safe.
  // Throws Error (OUT_OF_MEMORY / INTERNAL_ERROR); what the output then holds: as the layer's forward.
  void forward(const float *input, int64_t batch, const int64_t *grid, float *output) const;
  // The same on at most `budget` threads (0 = the process setting) instead of the block's own budget.
  void forward(const float *input, int64_t batch, const int64_t *grid, float *output, int budget) const;

  int64_t channels() const { return attention_->channels(); }
  const int64_t *window() const { return attention_->window(); }

  // The thread budget of forward (0 = the process setting).
  void set_num_threads(int threads) { num_threads_.store(threads, std::memory_order_relaxed); }
  int num_threads() const { return num_threads_.load(std::memory_order_relaxed); }

 private:
  SwinBlock() = default;

  std::unique_ptr<WindowAttentionLayer> attention_;
  std::unique_ptr<Linear> fc1_, fc2_;
  std::vector<float> norms_;  // norm1 weight, norm1 bias, norm2 weight, norm2 bias: [4][channels]
  TokenStages stages_;        // points into norms_, fc1_, fc2_
  std::atomic<int> num_threads_{0};
};

}  // namespace winattn::detail
