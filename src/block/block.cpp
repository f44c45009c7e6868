#include "block/block.h"

namespace winattn::detail {

std::unique_ptr<SwinBlock> SwinBlock::from_desc(const winattn_block_desc &desc) {
  const int64_t c = desc.attention.channels, hidden = desc.mlp_hidden;
  const bool post_norm = desc.post_norm != 0;
  std::unique_ptr<SwinBlock> block(new SwinBlock());
  LayerSpec options;
  options.proj_epilogue = post_norm ? LinearEpilogue::kStore : LinearEpilogue::kAccumulate;
  options.mlp_hidden = hidden;
  block->attention_ = WindowAttentionLayer::from_desc(desc.attention, options);
  block->fc1_ = std::make_unique<Linear>(desc.fc1_weight, desc.fc1_bias, c, hidden, LinearEpilogue::kGeluErf);
  block->fc2_ = std::make_unique<Linear>(desc.fc2_weight, desc.fc2_bias, hidden, c,
                                         post_norm ? LinearEpilogue::kStore : LinearEpilogue::kAccumulate);
  // As the layer's projections: packed now for a full chunk, so forwards of any batch find them packed.
  const int64_t rows = block->attention_->full_chunk_rows();
  block->fc1_->prepare(rows, /*pin=*/true);
  block->fc2_->prepare(rows, /*pin=*/true);

  std::vector<float> &norms = block->norms_;
  norms.reserve(static_cast<size_t>(4 * c));
  for (const float *values : {desc.norm1_weight, desc.norm1_bias, desc.norm2_weight, desc.norm2_bias})
    norms.insert(norms.end(), values, values + c);
  TokenStages &s = block->stages_;
  s.post_norm = post_norm;
  s.norm1_weight = norms.data();
  s.norm1_bias = norms.data() + c;
  s.norm2_weight = norms.data() + 2 * c;
  s.norm2_bias = norms.data() + 3 * c;
  s.norm_eps = desc.norm_eps == 0.0f ? 1e-5f : desc.norm_eps;  // 0 selects torchvision's (nn.LayerNorm's)
  s.fc1 = block->fc1_.get();
  s.fc2 = block->fc2_.get();
  block->set_num_threads(desc.num_threads);
  return block;
}

void SwinBlock::forward(const float *input, int64_t batch, const int64_t *grid, float *output) const {
  attention_->run(input, batch, grid, output, num_threads(), &stages_);
}

}  // namespace winattn::detail
