#include "layer/layer.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "attention/attention.h"
#include "common/aligned_buffer.h"
#include "common/error.h"
#include "cpu/threading.h"
#include "mask/shifted_window_mask.h"
#include "partition/window_partition.h"

namespace winattn::detail {
namespace {

// Windows per chunk: enough rows for the projections to run near peak, few enough that the chunk's input,
// qkv and output (4 * rows * C floats) stay in a 1 MiB L2; then evened out over the chunks. Depends on the
// shapes only, never on the thread count, so results are bit-identical for every thread count.
int64_t windows_per_chunk(int64_t tokens, int64_t channels, int64_t total_windows) {
  int64_t target_rows = 24576 / channels;  // ~384 KiB of activations
  if (const char *env = std::getenv("WINATTN_LAYER_CHUNK_ROWS")) {
    const long value = std::strtol(env, nullptr, 10);
    if (value > 0) target_rows = value;
  }
  const int64_t target = std::min(std::max<int64_t>(target_rows / tokens, 1), total_windows);
  const int64_t chunks = (total_windows + target - 1) / target;
  return (total_windows + chunks - 1) / chunks;
}

}  // namespace

WindowAttentionLayer::WindowAttentionLayer(const LayerSpec &spec)
    : channels_(spec.channels),
      num_heads_(spec.num_heads),
      head_dim_(spec.channels / spec.num_heads),
      tokens_(spec.window[0] * spec.window[1] * spec.window[2]),
      cosine_(spec.logit_scale != nullptr) {
  for (int d = 0; d < 3; ++d) {
    window_[d] = spec.window[d];
    shift_[d] = spec.shift[d];
  }
  const int64_t c = channels_;
  std::vector<float> qkv_bias;
  if (spec.qkv_bias != nullptr) {
    qkv_bias.assign(spec.qkv_bias, spec.qkv_bias + 3 * c);
    // SwinV2 (torchvision): the key bias is ignored.
    if (cosine_) std::fill(qkv_bias.begin() + c, qkv_bias.begin() + 2 * c, 0.0f);
  }
  qkv_ = std::make_unique<Linear>(spec.qkv_weight, spec.qkv_bias != nullptr ? qkv_bias.data() : nullptr, c,
                                  3 * c);
  proj_ = std::make_unique<Linear>(spec.proj_weight, spec.proj_bias, c, c);
  // Pack the weights now, for the row count of a full chunk: forwards on batches of any size then find
  // their layout packed (a call with fewer windows than a chunk only adds a primitive for its row count).
  const int64_t full_chunk_rows = windows_per_chunk(tokens_, c, INT64_MAX / 2) * tokens_;
  qkv_->prepare(full_chunk_rows);
  proj_->prepare(full_chunk_rows);
  if (spec.bias != nullptr) {
    bias_.assign(spec.bias, spec.bias + num_heads_ * tokens_ * tokens_);
    const int64_t ld = transposed_terms_ld(tokens_);
    bias_t_.resize(static_cast<size_t>(num_heads_ * tokens_ * ld));
    for (int64_t h = 0; h < num_heads_; ++h)
      transpose_terms(bias_.data() + h * tokens_ * tokens_, tokens_, bias_t_.data() + h * tokens_ * ld);
  }
  head_scale_.resize(static_cast<size_t>(num_heads_));
  for (int64_t h = 0; h < num_heads_; ++h) {
    head_scale_[h] = cosine_ ? std::exp(std::min(spec.logit_scale[h], static_cast<float>(std::log(100.0))))
                             : static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim_)));
  }
}

std::shared_ptr<const WindowAttentionLayer::MaskSet> WindowAttentionLayer::masks_for(
    const int64_t *padded, const int64_t *shift) const {
  const std::array<int64_t, 6> key = {padded[0], padded[1], padded[2], shift[0], shift[1], shift[2]};
  {
    std::lock_guard<std::mutex> lock(mask_mutex_);
    auto it = mask_cache_.find(key);
    if (it != mask_cache_.end()) return it->second;
  }
  // Built outside the lock; two threads may build the same set, the first one stored wins.
  auto set = std::make_shared<MaskSet>();
  const int64_t n = tokens_;
  const int64_t windows = (padded[0] / window_[0]) * (padded[1] / window_[1]) * (padded[2] / window_[2]);
  std::vector<int32_t> labels(static_cast<size_t>(windows * n));
  shifted_window_labels(padded, window_, shift, labels.data());
  set->window_offset.assign(static_cast<size_t>(windows), -1);
  for (int64_t w = 0; w < windows; ++w) {
    const int32_t *label = labels.data() + w * n;
    if (std::all_of(label, label + n, [&](int32_t l) { return l == label[0]; })) continue;  // no mask needed
    set->window_offset[w] = static_cast<int64_t>(set->values.size());
    set->values.resize(set->values.size() + static_cast<size_t>(n * n));
    float *mask = set->values.data() + set->window_offset[w];
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) mask[i * n + j] = label[i] == label[j] ? 0.0f : -100.0f;
  }
  std::lock_guard<std::mutex> lock(mask_mutex_);
  auto inserted = mask_cache_.emplace(key, std::move(set));
  return inserted.first->second;
}

void WindowAttentionLayer::forward(const float *input, int64_t batch, const int64_t *grid,
                                   float *output) const {
  const WindowGeometry g = make_window_geometry(batch, grid, channels_, window_, shift_);
  const int64_t c = channels_, n = tokens_;
  const int64_t total_windows = batch * g.windows_per_image;
  std::shared_ptr<const MaskSet> masks;
  if (g.shifted()) masks = masks_for(g.padded, g.shift);

  const int64_t chunk = windows_per_chunk(n, c, total_windows);
  const int64_t tasks = (total_windows + chunk - 1) / chunk;
  const int threads = static_cast<int>(std::min<int64_t>(effective_num_threads(), tasks));
  const int64_t rows = chunk * n;
  // Every chunk runs the projections on `rows` rows (the last one with zero rows after its windows), so
  // one primitive per projection serves the whole call.
  const auto qkv_plan = qkv_->prepare(rows);
  const auto proj_plan = proj_->prepare(rows);
  // Per thread: x [rows][C] (input, then attention output), qkv [rows][3C] (then projection output),
  // attention scratch, oneDNN scratchpads.
  const size_t attention_floats = (attention_workspace_floats(n, head_dim_) + 15) / 16 * 16;
  const size_t scratch_floats =
      (std::max(Linear::scratchpad_bytes(*qkv_plan), Linear::scratchpad_bytes(*proj_plan)) + 63) / 64 * 16;
  // Every piece starts on a 64-byte boundary: the kernels use aligned vector stores into their scratch.
  auto aligned = [](size_t floats) { return (floats + 15) / 16 * 16; };
  const size_t x_floats = aligned(static_cast<size_t>(rows * c));
  const size_t qkv_floats = aligned(static_cast<size_t>(rows * 3 * c));
  const size_t per_thread = x_floats + qkv_floats + attention_floats + scratch_floats;
  float *const workspace = thread_scratch(per_thread * static_cast<size_t>(threads));
  const AttentionKernel kernel = select_attention_kernel(active_isa(), n);
  const float *bias = bias_.empty() ? nullptr : bias_.data();
  const float *bias_t = bias_t_.empty() ? nullptr : bias_t_.data();
  const int64_t ld_bias_t = transposed_terms_ld(n);
  const int64_t head_dim = head_dim_, heads = num_heads_;
  const bool cosine = cosine_;
  std::atomic<bool> failed{false};

#pragma omp parallel num_threads(threads)
  {
    // oneDNN runs each matmul on the calling thread: without this, a 1-thread region is inactive and
    // oneDNN would open its own team of omp_get_max_threads() threads inside it. The setting is this
    // implicit task's own and ends with the region.
    omp_set_num_threads(1);
    float *x = workspace + per_thread * static_cast<size_t>(thread_index());
    float *qkv = x + x_floats;
    float *scratch = qkv + qkv_floats;
    void *dnnl_scratch = scratch + attention_floats;
    AttentionShape shape;
    shape.n = n;
    shape.head_dim = head_dim;
    shape.ld_q = shape.ld_k = shape.ld_v = 3 * c;
    shape.ld_out = c;
    shape.cosine = cosine;
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t first = task * chunk;
      const int64_t count = std::min(chunk, total_windows - first);
      gather_windows(g, input, first, count, x);
      if (count < chunk)
        std::memset(x + count * n * c, 0, sizeof(float) * static_cast<size_t>((chunk - count) * n * c));
      if (!qkv_->forward(*qkv_plan, x, qkv, dnnl_scratch)) {
        failed.store(true);
        continue;
      }
      for (int64_t w = 0; w < count; ++w) {
        const float *mask = nullptr;
        if (masks) {
          const int64_t offset = masks->window_offset[(first + w) % g.windows_per_image];
          if (offset >= 0) mask = masks->values.data() + offset;
        }
        const float *window_qkv = qkv + w * n * 3 * c;
        AttentionTerms terms;
        terms.mask = mask;
        terms.mask_t = mask;  // symmetric: token i and j are masked when their regions differ
        terms.ld_mask_t = n;
        terms.ld_bias_t = ld_bias_t;
        for (int64_t h = 0; h < heads; ++h) {
          if (bias != nullptr) {
            terms.bias = bias + h * n * n;
            terms.bias_t = bias_t + h * n * ld_bias_t;
          }
          kernel.run(shape, window_qkv + h * head_dim, window_qkv + c + h * head_dim,
                     window_qkv + 2 * c + h * head_dim, head_scale_[h], terms, x + w * n * c + h * head_dim,
                     scratch);
        }
      }
      if (!proj_->forward(*proj_plan, x, qkv, dnnl_scratch)) {
        failed.store(true);
        continue;
      }
      scatter_windows(g, qkv, c, first, count, output);
    }
  }
  if (failed.load()) throw Error(WINATTN_STATUS_INTERNAL_ERROR, "oneDNN matmul execution failed");
}

}  // namespace winattn::detail
