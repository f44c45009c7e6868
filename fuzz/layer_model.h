// A valid layer description decoded from the input, with its weights, the bias looked up through the
// library's own functions (as a stateless caller would do it), and helpers to run it both ways.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "oracle.h"

namespace fz {

struct ModelLimits {
  int64_t max_heads = 4;
  int64_t max_head_dim = 8;
  int64_t max_window = 7;  // per axis (height, width); depth at most 3
  bool force_shift = false;
  bool special_values = true;  // weights may hold NaN/Inf/huge values
};

struct LayerModel {
  int64_t channels = 0, heads = 0, window[3] = {1, 1, 1}, shift[3] = {0, 0, 0}, tokens = 1;
  int variant = 0;  // 0 v1 with a table, 1 v1 without bias, 2 v2 with the continuous bias, 3 v2 without
  int64_t hidden = 0;
  std::vector<float> qkv_w, qkv_b, proj_w, proj_b, table, logit, cpb_w1, cpb_b1, cpb_w2;
  std::vector<float> bias;  // [heads][N][N] from the library's lookup, empty without bias

  bool v2() const { return variant >= 2; }
  bool shifted() const { return shift[0] + shift[1] + shift[2] > 0; }
  winattn_layer_desc desc() const;
  winattn_window_attention_args args(int64_t batch, const int64_t grid[3]) const;
  LayerRef ref() const;
  std::string describe() const;
};

// Decodes a valid description within limits and fills its weights; looks the bias up (the library's index,
// lookup and continuous table functions must succeed) and checks it against the harness's own index.
void read_model(Reader &r, const ModelLimits &limits, LayerModel &m);

// winattn_layer_create, which must succeed; the layer is registered as live.
winattn_layer *create_layer(const LayerModel &m);
void destroy_layer(winattn_layer *layer);

// A grid of up to max_axis per axis (depth 1 for 2D windows unless the input asks), often not a window
// multiple, sometimes smaller than the window.
void read_grid(Reader &r, const LayerModel &m, int64_t max_axis, int64_t grid[3]);
// Elements of [batch][grid][C].
size_t activation_size(const LayerModel &m, int64_t batch, const int64_t grid[3]);
// Rough multiply-adds of one forward (padded tokens times the projections and attention).
i128 forward_work(const LayerModel &m, int64_t batch, const int64_t grid[3]);

// Halves the largest grid axis (then the batch) until a forward's work is within budget, or one window of
// one image is left.
void fit_work(const LayerModel &m, i128 budget, int64_t *batch, int64_t grid[3]);

// Runs winattn_shifted_window_attention with the model's weights and looked-up bias.
winattn_status run_stateless(const LayerModel &m, const float *input, int64_t batch, const int64_t grid[3],
                             float *output);

}  // namespace fz
