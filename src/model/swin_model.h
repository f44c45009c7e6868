// A whole Swin network in eval mode (winattn_model_*): Swin v1, SwinV2 and Video Swin, built from the tensors
// of a torchvision, timm or Video Swin state_dict. A Swin-specific pipeline, not a graph runtime; its parts:
//
//   PatchEmbedding   the k x k (x kt) stride-k convolution as one GEMM over patches: each chunk of output
//                    tokens gathers its patches into rows (zeros where the input is padded), runs the
//                    matmul (bias fused) and normalises the rows in place while they are in cache.
//   stages           SwinBlocks (src/block), ping-ponging between two activation buffers, the last block
//                    of a stage writing straight into the caller's feature array when one is asked for.
//   PatchMerging     per chunk of output tokens: the 2x2 gather (zeros past an odd edge) -> v1: LayerNorm
//                    over 4C in the gathered rows -> reduction matmul into the output; v2: reduction ->
//                    LayerNorm in place on the output rows.
//   Classifier       final LayerNorm and average pool in one pass per token, then the head.
//
// Activations between parts are channels-last [batch][frames][height][width][channels].
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "block/block.h"
#include "common/aligned_buffer.h"
#include "model/safetensors.h"
#include "projection/linear.h"
#include "winattn/winattn.h"

namespace winattn::detail {

// Which implementation's rules a model follows where they differ.
enum class WindowRule {
  kPadKeep,     // torchvision 2D: pad each stage to whole windows; drop the shift where the window covers
                // the padded axis (the layer's rule)
  kShrinkAxis,  // Video Swin: an axis not larger than the window gets window = its size and shift 0, the
                // bias the first N rows and columns of the full window's
};

class SwinModel {
 public:
  static constexpr int kMaxStages = 8;

  // Infers the architecture from the tensors' names and shapes and builds the model; every tensor must be
  // used or be a known buffer (checked). Throws Error (INVALID_ARGUMENT naming the source and the first
  // tensor that does not fit; OUT_OF_MEMORY).
  static std::unique_ptr<SwinModel> from_weights(const SafetensorsFile &weights);
  ~SwinModel();

  const winattn_model_info &info() const { return info_; }

  // Throws INVALID_ARGUMENT when the model does not accept an input of `size` (frames, height, width).
  void check_size(const int64_t *size) const;
  // shapes[stage][0..3] = (frames, height, width, channels) of each stage's output; size checked.
  void feature_shapes(const int64_t *size, int64_t *shapes) const;

  // input: [batch][in_channels][size...]; arguments validated by the caller. Writes the features of the
  // stages whose pointer is not null (features may be null) and, when logits is not null, the logits.
  // Thread-safe. Throws Error.
  void run(const float *input, int64_t batch, const int64_t *size, float *const *features,
           float *logits) const;

  void set_num_threads(int threads) { num_threads_.store(threads, std::memory_order_relaxed); }
  int num_threads() const { return num_threads_.load(std::memory_order_relaxed); }

  // A block's weights, kept where windows may shrink (Video Swin) to build the shrunk-window variants.
  struct BlockWeights {
    BlockParts parts;  // points into the vectors below
    std::vector<float> norm1, norm2, fc1_weight, fc1_bias, fc2_weight, fc2_bias;  // norms: gamma, beta
    std::vector<float> qkv_weight, qkv_bias, proj_weight, proj_bias;
    std::vector<float> bias;  // [heads][N][N] of the full window
    int64_t shift[3] = {0, 0, 0};
  };
  struct Stage {
    int64_t channels = 0, heads = 0;
    int64_t window[3] = {1, 1, 1};  // timm shrinks late stages' windows at its trained resolution
    std::vector<std::shared_ptr<const SwinBlock>> blocks;
    std::vector<std::unique_ptr<BlockWeights>> weights;  // WindowRule::kShrinkAxis only
  };
  struct Merging {
    int64_t channels = 0;               // C in; the reduction maps 4C -> 2C
    std::unique_ptr<Linear> reduction;  // no bias
    std::vector<float> norm;            // gamma, beta: over 4C (v1, before) or 2C (v2, after)
    bool norm_after = false;
  };

  // A block for a window shrunk to `eff` (Video Swin): shift 0 on the shrunk axes, the bias the first N
  // rows and columns of the full window's.
  static std::shared_ptr<const SwinBlock> make_shrunk_block(const BlockWeights &w, int64_t channels,
                                                            int64_t heads, const int64_t *window,
                                                            const int64_t *eff);

 private:
  SwinModel();

  void grid_after_embedding(const int64_t *size, int64_t *grid) const;
  void embed(const float *input, int64_t batch, const int64_t *size, const int64_t *grid, float *out,
             int budget) const;
  void merge(const Merging &m, const float *in, int64_t batch, const int64_t *grid, float *out,
             int budget) const;
  void classify(const float *x, int64_t batch, int64_t tokens, float *logits, int budget) const;
  // The block to run for block `index` of stage `stage` on `grid` (a shrunk-window variant when the rule
  // asks for one; made once and cached).
  std::shared_ptr<const SwinBlock> block_for(int stage, int index, const int64_t *grid) const;

  winattn_model_info info_{};
  WindowRule rule_ = WindowRule::kPadKeep;
  bool pad_input_ = false;  // Video Swin pads the input to patch multiples; 2D convolutions drop the rest
  int64_t patch_floats_ = 0;

  std::unique_ptr<Linear> embed_;
  std::vector<float> embed_norm_;  // gamma, beta ([2][embed_dim]) or empty
  std::vector<Stage> stages_;
  std::vector<Merging> merges_;    // merges_[s]: between stage s and s + 1
  std::vector<float> final_norm_;  // gamma, beta ([2][C])
  std::unique_ptr<Linear> head_;   // null for a backbone
  std::atomic<int> num_threads_{0};

  mutable std::mutex variants_mutex_;
  mutable std::map<std::vector<int64_t>, std::shared_ptr<const SwinBlock>> variants_;

  // Activation buffers of finished calls, reused by the next ones (a fresh buffer is page-faulted in on every
  // call: ~1% of a call); at most kKeptActivationBytes are kept.
  static constexpr size_t kKeptActivationBytes = size_t{64} << 20;
  AlignedBuffer take_buffer(size_t floats) const;
  void keep_buffer(AlignedBuffer buffer) const;
  mutable std::mutex buffers_mutex_;
  mutable std::vector<AlignedBuffer> buffers_;
};

}  // namespace winattn::detail
