#include "block/block.h"

namespace winattn::detail {

LayerSpec SwinBlock::attention_options(const BlockParts &parts) {
  LayerSpec options;
  options.proj_epilogue = parts.post_norm ? LinearEpilogue::kStore : LinearEpilogue::kAccumulate;
  options.mlp_hidden = parts.mlp_hidden;
  return options;
}

std::unique_ptr<SwinBlock> SwinBlock::assemble(std::unique_ptr<WindowAttentionLayer> attention,
                                               const BlockParts &parts) {
  const int64_t c = attention->channels(), hidden = parts.mlp_hidden;
  const bool post_norm = parts.post_norm;
  std::unique_ptr<SwinBlock> block(new SwinBlock());
  block->attention_ = std::move(attention);
  // fc1 applies GELU in its epilogue (winattn's GEMM, on the accumulators) or right after the matmul, on the
  // chunk's hidden rows in L2 (oneDNN: its gelu_erf post-op costs as much as the matmul on AVX2).
  block->fc1_ =
      std::make_unique<Linear>(parts.fc1_weight, parts.fc1_bias, c, hidden, LinearEpilogue::kGeluErf);
  block->fc2_ = std::make_unique<Linear>(parts.fc2_weight, parts.fc2_bias, hidden, c,
                                         post_norm ? LinearEpilogue::kStore : LinearEpilogue::kAccumulate);
  // As the layer's projections: packed now for a full chunk, so forwards of any batch find them packed.
  const int64_t rows = block->attention_->full_chunk_rows();
  block->fc1_->prepare(rows, /*pin=*/true);
  block->fc2_->prepare(rows, /*pin=*/true);

  std::vector<float> &norms = block->norms_;
  norms.reserve(static_cast<size_t>(4 * c));
  for (const float *values : {parts.norm1_weight, parts.norm1_bias, parts.norm2_weight, parts.norm2_bias})
    norms.insert(norms.end(), values, values + c);
  TokenStages &s = block->stages_;
  s.post_norm = post_norm;
  s.norm1_weight = norms.data();
  s.norm1_bias = norms.data() + c;
  s.norm2_weight = norms.data() + 2 * c;
  s.norm2_bias = norms.data() + 3 * c;
  s.norm_eps = parts.norm_eps;
  s.fc1 = block->fc1_.get();
  s.fc2 = block->fc2_.get();
  return block;
}

std::unique_ptr<SwinBlock> SwinBlock::from_desc(const winattn_block_desc &desc) {
  BlockParts parts;
  parts.post_norm = desc.post_norm != 0;
  parts.norm1_weight = desc.norm1_weight;
  parts.norm1_bias = desc.norm1_bias;
  parts.norm2_weight = desc.norm2_weight;
  parts.norm2_bias = desc.norm2_bias;
  parts.norm_eps = desc.norm_eps == 0.0f ? 1e-5f : desc.norm_eps;  // 0 selects torchvision's (nn.LayerNorm's)
  parts.mlp_hidden = desc.mlp_hidden;
  parts.fc1_weight = desc.fc1_weight;
  parts.fc1_bias = desc.fc1_bias;
  parts.fc2_weight = desc.fc2_weight;
  parts.fc2_bias = desc.fc2_bias;
  auto block = assemble(WindowAttentionLayer::from_desc(desc.attention, attention_options(parts)), parts);
  block->set_num_threads(desc.num_threads);
  return block;
}

void SwinBlock::forward(const float *input, int64_t batch, const int64_t *grid, float *output) const {
  attention_->run(input, batch, grid, output, num_threads(), &stages_);
}

void SwinBlock::forward(const float *input, int64_t batch, const int64_t *grid, float *output,
                        int budget) const {
  attention_->run(input, batch, grid, output, budget, &stages_);
}

}  // namespace winattn::detail
