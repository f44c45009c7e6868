#include "layer/layer.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "activation/gelu.h"
#include "attention/attention.h"
#include "common/aligned_buffer.h"
#include "common/error.h"
#include "cpu/threading.h"
#include "norm/layer_norm.h"
#include "position_bias/position_bias.h"
#include "partition/window_partition.h"

namespace winattn::detail {
namespace {

// Windows per chunk: enough rows for the projections to run near peak, few enough that the chunk's
// activations (row_floats per row: 4C for the layer's input, qkv and output) stay in a 1 MiB L2; then
// evened out over the chunks. Depends on the shapes only, never on the thread count, so results are
// bit-identical for every thread count.
constexpr int64_t kMinChunks = 2;

int64_t windows_per_chunk(int64_t tokens, int64_t channels, int64_t row_floats, int64_t total_windows) {
  // ~384 KiB of activations; from C = 512 on, at least C rows: the projection weights (4 C^2 floats, 4 MiB
  // and more) no longer fit any cache and are streamed once per chunk, so a chunk must amortise them. (Not
  // extended to a block's larger weights, 12 C^2 floats: a stage-3 block, C = 384, would get 7 windows a
  // chunk, 1.0-1.08x on one thread, but one task at B = 1 and 5 at B = 8 for all the threads.)
  int64_t target_rows = 98304 / row_floats;
  if (channels >= 512) target_rows = std::max(target_rows, channels);
  if (const char *env = std::getenv("WINATTN_LAYER_CHUNK_ROWS")) {
    const long value = std::strtol(env, nullptr, 10);
    if (value > 0) target_rows = value;
  }
  const int64_t target = std::min(std::max<int64_t>(target_rows / tokens, 1), total_windows);
  int64_t chunks = (total_windows + target - 1) / target;
  // At least two chunks where there are two windows: the C >= 512 rule would otherwise make one task of a
  // whole stage-4 batch (Swin-T B = 8: 8 windows), leaving a second thread idle; the price is reading the
  // weights twice. (A shape-only rule: results stay bit-identical for every thread count.)
  chunks = std::max(chunks, std::min<int64_t>(total_windows, kMinChunks));
  return (total_windows + chunks - 1) / chunks;
}

}  // namespace

WindowAttentionLayer::WindowAttentionLayer(const LayerSpec &spec)
    : channels_(spec.channels),
      num_heads_(spec.num_heads),
      head_dim_(spec.channels / spec.num_heads),
      tokens_(spec.window[0] * spec.window[1] * spec.window[2]),
      // A block keeps the input (the residual), a normed or attention-output copy, and qkv or the MLP's
      // hidden activations per row; the layer its input (then attention output) and qkv.
      row_floats_(spec.mlp_hidden > 0 ? 2 * spec.channels + std::max(3 * spec.channels, spec.mlp_hidden)
                                      : 4 * spec.channels),
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
  proj_ = std::make_unique<Linear>(spec.proj_weight, spec.proj_bias, c, c, spec.proj_epilogue);
  // Pack the weights now, for the row count of a full chunk: forwards on batches of any size then find
  // their layout packed (a call with fewer windows than a chunk only adds a primitive for its row count).
  qkv_->prepare(full_chunk_rows(), /*pin=*/true);
  proj_->prepare(full_chunk_rows(), /*pin=*/true);
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

int64_t WindowAttentionLayer::full_chunk_rows() const {
  return windows_per_chunk(tokens_, channels_, row_floats_, INT64_MAX / 2) * tokens_;
}

std::shared_ptr<const WindowAttentionLayer::Mask> WindowAttentionLayer::mask_for_pattern(int pattern) const {
  {
    std::lock_guard<std::mutex> lock(mask_mutex_);
    if (masks_[pattern]) return masks_[pattern];
  }
  // Region of token t along axis d in a window split on d: 0 before window - shift, 1 from there.
  const int64_t n = tokens_;
  std::vector<int32_t> label(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    const int64_t coords[3] = {t / (window_[1] * window_[2]), t / window_[2] % window_[1], t % window_[2]};
    int32_t l = 0;
    for (int d = 0; d < 3; ++d) {
      const bool split = ((pattern >> d) & 1) != 0;
      l = l * 2 + (split && coords[d] >= window_[d] - shift_[d] ? 1 : 0);
    }
    label[t] = l;
  }
  auto mask = std::make_shared<Mask>(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) (*mask)[i * n + j] = label[i] == label[j] ? 0.0f : -100.0f;
  std::lock_guard<std::mutex> lock(mask_mutex_);
  if (!masks_[pattern]) masks_[pattern] = std::move(mask);  // two builders: the first one stored wins
  return masks_[pattern];
}

void WindowAttentionLayer::trim() const {
  {
    std::lock_guard<std::mutex> lock(mask_mutex_);
    for (auto &mask : masks_) mask.reset();  // forwards that hold one keep it alive until they end
  }
  qkv_->trim();
  proj_->trim();
}

int64_t WindowAttentionLayer::memory_bytes() const {
  size_t bytes =
      sizeof *this + sizeof(float) * (bias_.capacity() + bias_t_.capacity() + head_scale_.capacity());
  {
    std::lock_guard<std::mutex> lock(mask_mutex_);
    for (const auto &mask : masks_)
      if (mask) bytes += sizeof(float) * mask->capacity();
  }
  bytes += qkv_->memory_bytes() + proj_->memory_bytes();
  return static_cast<int64_t>(bytes);
}

void WindowAttentionLayer::forward(const float *input, int64_t batch, const int64_t *grid,
                                   float *output) const {
  run(input, batch, grid, output, num_threads(), nullptr);
}

void WindowAttentionLayer::run(const float *input, int64_t batch, const int64_t *grid, float *output,
                               int budget, const TokenStages *stages) const {
  const WindowGeometry g = make_window_geometry(batch, grid, channels_, window_, shift_);
  const int64_t c = channels_, n = tokens_;
  const int64_t total_windows = batch * g.windows_per_image;
  // The masks this grid needs, by pattern (bit d: split on axis d), and the pattern of each window's
  // position. Patterns only have bits of axes with a non-zero effective shift.
  int shifted_axes = 0;
  for (int d = 0; d < 3; ++d)
    if (g.shift[d] > 0) shifted_axes |= 1 << d;
  std::array<std::shared_ptr<const Mask>, kMaskPatterns> masks;
  for (int pattern = 1; pattern < kMaskPatterns; ++pattern)
    if ((pattern & ~shifted_axes) == 0) masks[pattern] = mask_for_pattern(pattern);
  const int64_t *per_axis = g.windows_per_axis;
  auto mask_of_window = [&](int64_t w) -> const float * {
    const int64_t in_image = w % g.windows_per_image;
    const int64_t index[3] = {in_image / (per_axis[1] * per_axis[2]), in_image / per_axis[2] % per_axis[1],
                              in_image % per_axis[2]};
    int pattern = 0;
    for (int d = 0; d < 3; ++d)
      if (index[d] == per_axis[d] - 1) pattern |= 1 << d;
    pattern &= shifted_axes;
    return pattern != 0 ? masks[pattern]->data() : nullptr;
  };

  const int64_t chunk = windows_per_chunk(n, c, row_floats_, total_windows);
  const int64_t tasks = (total_windows + chunk - 1) / chunk;
  int threads = team_size(budget, tasks);
  const int64_t rows = chunk * n;
  // One plan per projection serves the whole call: `rows` rows. The last chunk may hold fewer windows: a
  // plan of winattn's GEMM computes its rows alone (forward_rows), a oneDNN one all `rows`, the ones after
  // its windows zero.
  const auto qkv_plan = qkv_->prepare(rows);
  const auto proj_plan = proj_->prepare(rows);
  std::shared_ptr<const Linear::Plan> fc1_plan, fc2_plan;
  size_t dnnl_bytes = std::max(Linear::scratchpad_bytes(*qkv_plan), Linear::scratchpad_bytes(*proj_plan));
  if (stages != nullptr) {
    fc1_plan = stages->fc1->prepare(rows);
    fc2_plan = stages->fc2->prepare(rows);
    dnnl_bytes =
        std::max({dnnl_bytes, Linear::scratchpad_bytes(*fc1_plan), Linear::scratchpad_bytes(*fc2_plan)});
  }
  // Fewer chunks than threads (stage 3 and 4 at B = 1): a team of threads per chunk, every chunk its own
  // team (team_width threads each), rows split evenly for every row-wise step (gather, norms, projections,
  // MLP, scatter) and (window, head) items for the attention, with a barrier on each side of it. Only for a
  // block whose projections are winattn's GEMM: it computes any subset of rows alone, with the bits of the
  // whole (oneDNN's plans compute all their rows). At least kTeamRows rows a thread. The results are those
  // of one thread.
  constexpr int64_t kTeamRows = 16;
  int team_width = 1;
  if (stages != nullptr && Linear::computes_rows_alone(*qkv_plan) &&
      Linear::computes_rows_alone(*proj_plan) && Linear::computes_rows_alone(*fc1_plan) &&
      Linear::computes_rows_alone(*fc2_plan)) {
    const int available = team_size(budget, INT64_MAX);  // the budget, or the process's thread count
    const int64_t width =
        std::min<int64_t>(available / tasks, std::min(total_windows, chunk) * n / kTeamRows);
    if (width >= 2) {
      team_width = static_cast<int>(width);
      threads = static_cast<int>(tasks) * team_width;
    }
  }
  const bool team_chunks = team_width > 1;
  // Per thread: x [rows][C] (the input; the layer's attention output; a block's residual stream), for a
  // block t [rows][C] (norm1(x), attention output, norm2(y) or the MLP output), wide [rows][3C] (qkv, then
  // the layer's projection output; a block's projection output and MLP hidden activations
  // [rows][mlp_hidden]), attention scratch, oneDNN scratchpads.
  const AttentionKernelInfo &kernel = select_f32_attention_kernel(active_features(), n);
  const size_t attention_floats = (kernel.workspace_floats(n, head_dim_) + 15) / 16 * 16;
  const size_t scratch_floats = (dnnl_bytes + 63) / 64 * 16;
  // Every piece starts on a 64-byte boundary: the kernels use aligned vector stores into their scratch.
  auto aligned = [](size_t floats) { return (floats + 15) / 16 * 16; };
  const int64_t wide_cols = stages != nullptr ? std::max(3 * c, stages->fc1->out_features()) : 3 * c;
  const size_t x_floats = aligned(static_cast<size_t>(rows * c));
  const size_t t_floats = stages != nullptr ? x_floats : 0;
  const size_t wide_floats = aligned(static_cast<size_t>(rows * wide_cols));
  const size_t per_thread = x_floats + t_floats + wide_floats + attention_floats + scratch_floats;
  ScratchLease lease(per_thread * static_cast<size_t>(threads));  // may throw: before any output
  float *const workspace = lease.data();
  // oneDNN's executors for every thread, made now (may throw), so the chunks make nothing.
  const Linear::Lease qkv_lease(*qkv_, qkv_plan, threads), proj_lease(*proj_, proj_plan, threads);
  std::optional<Linear::Lease> fc1_lease, fc2_lease;
  LayerNormFn layer_norm = nullptr;
  GeluFn gelu = nullptr;  // a block's GELU when fc1 does not fuse it
  if (stages != nullptr) {
    fc1_lease.emplace(*stages->fc1, fc1_plan, threads);
    fc2_lease.emplace(*stages->fc2, fc2_plan, threads);
    layer_norm = select_f32_layernorm_kernel(active_features()).run;
    if (stages->fc1->epilogue() != LinearEpilogue::kGeluErf)
      gelu = select_f32_gelu_kernel(active_features()).run;
  }
  const int64_t hidden = stages != nullptr ? stages->fc1->out_features() : 0;
  const float *bias = bias_.empty() ? nullptr : bias_.data();
  const float *bias_t = bias_t_.empty() ? nullptr : bias_t_.data();
  const int64_t ld_bias_t = transposed_terms_ld(n);
  const int64_t head_dim = head_dim_, heads = num_heads_;
  const bool cosine = cosine_;
  const int64_t group = kernel.run_batch != nullptr ? std::min(kernel.max_batch, kMaxBatchItems) : 1;
  std::atomic<int> failure{WINATTN_STATUS_OK};
  auto record = [&](winattn_status status) {
    int expected = WINATTN_STATUS_OK;
    failure.compare_exchange_strong(expected, status);
  };

  AttentionShape shape;
  shape.n = n;
  shape.head_dim = head_dim;
  shape.ld_q = shape.ld_k = shape.ld_v = 3 * c;
  shape.ld_out = c;
  shape.cosine = cosine;
  // The attention of windows [first, first + count) of a chunk: q, k, v read where the qkv projection wrote
  // them ([rows][3][heads][head_dim]), the output written as [rows][C].
  // Items [item_begin, item_end) of the chunk (item = window * heads + head).
  auto attend_items = [&](int64_t first, const float *qkv, float *out, float *scratch, int64_t item_begin,
                          int64_t item_end) {
    for (int64_t first_item = item_begin; first_item < item_end; first_item += group) {
      const int64_t group_size = std::min(group, item_end - first_item);
      AttentionItem group_items[kMaxBatchItems];
      for (int64_t i = 0; i < group_size; ++i) {
        const int64_t w = (first_item + i) / heads, h = (first_item + i) % heads;
        const float *window_qkv = qkv + w * n * 3 * c;
        AttentionItem &item = group_items[i];
        item.q = window_qkv + h * head_dim;
        item.k = window_qkv + c + h * head_dim;
        item.v = window_qkv + 2 * c + h * head_dim;
        item.out = out + w * n * c + h * head_dim;
        item.scale = head_scale_[h];
        const float *mask = mask_of_window(first + w);
        item.terms.mask = mask;
        item.terms.mask_t = mask;
        item.terms.ld_mask_t = n;
        item.terms.ld_bias_t = ld_bias_t;
        if (bias != nullptr) {
          item.terms.bias = bias + h * n * n;
          item.terms.bias_t = bias_t + h * n * ld_bias_t;
        }
      }
      if (kernel.run_batch != nullptr) {
        kernel.run_batch(shape, group_items, group_size, scratch);
      } else {
        const AttentionItem &item = group_items[0];
        kernel.run(shape, item.q, item.k, item.v, item.scale, item.terms, item.out, scratch);
      }
    }
  };
  auto attend = [&](int64_t first, int64_t count, const float *qkv, float *out, float *scratch) {
    attend_items(first, qkv, out, scratch, 0, count * heads);
  };
  // A pre-norm (v1) block normalises where the layer only gathers, and adds attention and MLP into the
  // gathered input (the residual) through the projections' sum post-op.
  const bool pre_norm = stages != nullptr && !stages->post_norm;
  auto run_task = [&](int64_t task, int slot) {
    float *x = workspace + per_thread * static_cast<size_t>(slot);
    float *t = x + x_floats;
    float *wide = t + t_floats;
    float *scratch = wide + wide_floats;
    void *dnnl_scratch = scratch + attention_floats;
    const int64_t first = task * chunk;
    const int64_t count = std::min(chunk, total_windows - first);
    const int64_t used_rows = count * n;
    if (pre_norm) {
      // torchvision pads after norm1: padding tokens enter the attention as zeros, not as norm1(0) = beta.
      for_each_window_row(g, first, count, [&](int64_t row, int64_t source) {
        float *x_row = x + row * c, *t_row = t + row * c;
        if (source < 0) {
          std::memset(x_row, 0, sizeof(float) * static_cast<size_t>(c));
          std::memset(t_row, 0, sizeof(float) * static_cast<size_t>(c));
        } else {
          std::memcpy(x_row, input + source * c, sizeof(float) * static_cast<size_t>(c));
          layer_norm(x_row, nullptr, t_row, 1, c, c, stages->norm1_weight, stages->norm1_bias,
                     stages->norm_eps);
        }
      });
    } else {
      gather_windows(g, input, first, count, x);
    }
    if (count < chunk) {
      const size_t tail = sizeof(float) * static_cast<size_t>((chunk - count) * n * c);
      std::memset(x + used_rows * c, 0, tail);
      if (stages != nullptr) std::memset(t + used_rows * c, 0, tail);
    }
    winattn_status why = WINATTN_STATUS_INTERNAL_ERROR;
    if (!qkv_lease.forward_rows(slot, used_rows, pre_norm ? t : x, wide, dnnl_scratch, &why)) {
      record(why);
      return;
    }
    // The layer writes the attention output over its input; a block keeps x (the residual).
    float *const attention_out = stages != nullptr ? t : x;
    attend(first, count, wide, attention_out, scratch);
    // A chunk's windows are written whole, after all its projections succeeded: on a failure every output
    // element holds its result or its previous value (documented at winattn_layer_forward).
    // Pre-norm: x += proj(attention) (y, the residual stream); otherwise the projection goes to wide.
    if (!proj_lease.forward_rows(slot, used_rows, attention_out, pre_norm ? x : wide, dnnl_scratch, &why)) {
      record(why);
      return;
    }
    if (stages == nullptr) {
      scatter_windows(g, wide, c, first, count, output);
      return;
    }
    const TokenStages &s = *stages;
    if (pre_norm) {
      // out = y + fc2(GELU(fc1(norm2(y)))): fc1's GELU and fc2's residual add are its post-ops.
      layer_norm(x, nullptr, t, used_rows, c, c, s.norm2_weight, s.norm2_bias, s.norm_eps);
      if (!fc1_lease->forward_rows(slot, used_rows, t, wide, dnnl_scratch, &why)) {
        record(why);
        return;
      }
      if (gelu != nullptr) gelu(wide, used_rows * hidden);
      if (!fc2_lease->forward_rows(slot, used_rows, wide, x, dnnl_scratch, &why)) {
        record(why);
        return;
      }
      scatter_windows(g, x, c, first, count, output);
    } else {
      // y = x + norm1(proj) in one pass; out = y + norm2(fc2(GELU(fc1(y)))), its norm and residual add
      // fused into the scatter.
      layer_norm(wide, x, x, used_rows, c, c, s.norm1_weight, s.norm1_bias, s.norm_eps);
      if (!fc1_lease->forward_rows(slot, used_rows, x, wide, dnnl_scratch, &why)) {
        record(why);
        return;
      }
      if (gelu != nullptr) gelu(wide, used_rows * hidden);
      if (!fc2_lease->forward_rows(slot, used_rows, wide, t, dnnl_scratch, &why)) {
        record(why);
        return;
      }
      for_each_window_row(g, first, count, [&](int64_t row, int64_t source) {
        if (source >= 0)
          layer_norm(t + row * c, x + row * c, output + source * c, 1, c, c, s.norm2_weight, s.norm2_bias,
                     s.norm_eps);
      });
    }
  };

  // The team sharing chunk `task` (team_chunks, above): `slot` is the thread's place in the whole team
  // (its scratch and projection executors), `member` its place among the chunk's `team` threads.
  auto run_task_team = [&](int64_t task, int slot, int member, int team) {
    // The chunk's activations in the block of its first thread; attention scratch per thread.
    float *x = workspace + per_thread * static_cast<size_t>(slot - member);
    float *t = x + x_floats;
    float *wide = t + t_floats;
    float *scratch = workspace + per_thread * static_cast<size_t>(slot) + x_floats + t_floats + wide_floats;
    const int64_t first = task * chunk;
    const int64_t count = std::min(chunk, total_windows - first);
    const int64_t used_rows = count * n;
    const int64_t r0 = used_rows * member / team, r1 = used_rows * (member + 1) / team, rows_here = r1 - r0;
    const TokenStages &s = *stages;
    winattn_status why = WINATTN_STATUS_INTERNAL_ERROR;
    bool ok = true;  // a failure skips work, never a barrier
    auto check = [&](bool done) {
      if (!done && ok) record(why);
      ok = ok && done;
    };
    auto my_rows = [&](auto &&visit) {
      for_each_window_row(g, first, count, [&](int64_t row, int64_t source) {
        if (row >= r0 && row < r1) visit(row, source);
      });
    };
    const size_t row_bytes = sizeof(float) * static_cast<size_t>(c);
    if (pre_norm) {
      my_rows([&](int64_t row, int64_t source) {
        float *x_row = x + row * c, *t_row = t + row * c;
        if (source < 0) {
          std::memset(x_row, 0, row_bytes);
          std::memset(t_row, 0, row_bytes);
        } else {
          std::memcpy(x_row, input + source * c, row_bytes);
          layer_norm(x_row, nullptr, t_row, 1, c, c, s.norm1_weight, s.norm1_bias, s.norm_eps);
        }
      });
    } else {
      my_rows([&](int64_t row, int64_t source) {
        if (source < 0) {
          std::memset(x + row * c, 0, row_bytes);
        } else {
          std::memcpy(x + row * c, input + source * c, row_bytes);
        }
      });
    }
    if (rows_here > 0)
      check(qkv_lease.forward_rows(slot, rows_here, (pre_norm ? t : x) + r0 * c, wide + r0 * 3 * c, nullptr,
                                   &why));
#pragma omp barrier
    const int64_t items = count * heads;
    if (ok) attend_items(first, wide, t, scratch, items * member / team, items * (member + 1) / team);
#pragma omp barrier
    // This thread's rows of the MLP: fc1 (with GELU) from `in` into wide, fc2 from wide into `out`.
    auto mlp_rows = [&](const float *in, float *out) {
      if (ok) check(fc1_lease->forward_rows(slot, rows_here, in + r0 * c, wide + r0 * hidden, nullptr, &why));
      if (ok && gelu != nullptr) gelu(wide + r0 * hidden, rows_here * hidden);
      if (ok)
        check(fc2_lease->forward_rows(slot, rows_here, wide + r0 * hidden, out + r0 * c, nullptr, &why));
    };
    if (pre_norm) {
      if (rows_here > 0 && ok) {
        check(proj_lease.forward_rows(slot, rows_here, t + r0 * c, x + r0 * c, nullptr, &why));
        layer_norm(x + r0 * c, nullptr, t + r0 * c, rows_here, c, c, s.norm2_weight, s.norm2_bias,
                   s.norm_eps);
        mlp_rows(t, x);
        if (ok)
          my_rows([&](int64_t row, int64_t source) {
            if (source >= 0) std::memcpy(output + source * c, x + row * c, row_bytes);
          });
      }
    } else {
      if (rows_here > 0 && ok) {
        check(proj_lease.forward_rows(slot, rows_here, t + r0 * c, wide + r0 * c, nullptr, &why));
        layer_norm(wide + r0 * c, x + r0 * c, x + r0 * c, rows_here, c, c, s.norm1_weight, s.norm1_bias,
                   s.norm_eps);
      }
      // fc1 writes rows of wide (hidden floats apart) that hold other threads' projections (c floats apart)
      // until their norm has read them.
#pragma omp barrier
      if (rows_here > 0 && ok) {
        mlp_rows(x, t);
        if (ok)
          my_rows([&](int64_t row, int64_t source) {
            if (source >= 0)
              layer_norm(t + row * c, x + row * c, output + source * c, 1, c, c, s.norm2_weight, s.norm2_bias,
                         s.norm_eps);
          });
      }
    }
    // Everyone done with the chunk before the call returns.
#pragma omp barrier
  };

  if (threads <= 1) {  // the calling thread alone: no team (starting one allocates; libgomp exits on failure)
    for (int64_t task = 0; task < tasks; ++task) run_task(task, 0);
  } else if (team_chunks) {
#pragma omp parallel num_threads(threads)
    {
      // One chunk per team: every thread passes the same barriers the same number of times. (Should the
      // runtime start fewer threads than asked, the whole team runs every chunk in turn instead.)
      const int slot = thread_index();
      const int started = omp_get_num_threads();
      if (started == threads) {
        run_task_team(slot / team_width, slot, slot % team_width, team_width);
      } else {
        for (int64_t task = 0; task < tasks; ++task) run_task_team(task, slot, slot, started);
      }
    }
  } else {
#pragma omp parallel num_threads(threads)
    {
      const int slot = thread_index();
#pragma omp for schedule(static)
      for (int64_t task = 0; task < tasks; ++task) run_task(task, slot);
    }
  }
  const int status = failure.load();
  if (status == WINATTN_STATUS_OUT_OF_MEMORY)
    throw Error(WINATTN_STATUS_OUT_OF_MEMORY, "out of memory in a projection");
  if (status != WINATTN_STATUS_OK)
    throw Error(static_cast<winattn_status>(status), "oneDNN matmul execution failed");
}

}  // namespace winattn::detail

namespace winattn::detail {

LayerSpec WindowAttentionLayer::spec_from_args(const winattn_window_attention_args &args) {
  LayerSpec spec;
  spec.channels = args.channels;
  spec.num_heads = args.num_heads;
  for (int d = 0; d < 3; ++d) {
    spec.window[d] = args.window[d];
    spec.shift[d] = args.shift[d];
  }
  spec.qkv_weight = args.qkv_weight;
  spec.qkv_bias = args.qkv_bias;
  spec.proj_weight = args.proj_weight;
  spec.proj_bias = args.proj_bias;
  spec.bias = args.relative_position_bias;
  spec.logit_scale = args.logit_scale;
  return spec;
}

std::unique_ptr<WindowAttentionLayer> WindowAttentionLayer::from_desc(const winattn_layer_desc &desc,
                                                                      const LayerSpec &block) {
  int64_t n = 1;
  for (int d = 0; d < 3; ++d) n *= desc.window[d];
  const bool v2 = desc.logit_scale != nullptr;
  const bool has_cpb =
      desc.cpb_weight1 != nullptr || desc.cpb_weight2 != nullptr || desc.cpb_bias1 != nullptr;
  std::vector<float> bias;
  if (!v2) {
    if (has_cpb || desc.cpb_hidden != 0) {
      invalid_argument(
          "desc->cpb_* is set but desc->logit_scale is NULL: the continuous position bias is SwinV2's");
    }
    if (desc.relative_position_bias_table != nullptr) {
      int64_t rows = 1;
      for (int d = 0; d < 3; ++d) rows *= 2 * desc.window[d] - 1;
      std::vector<int64_t> index(static_cast<size_t>(n * n));
      relative_position_index(3, desc.window, index.data());
      bias.resize(static_cast<size_t>(desc.num_heads * n * n));
      relative_position_bias(desc.relative_position_bias_table, rows, desc.num_heads, index.data(), n,
                             bias.data());
    }
  } else {
    if (desc.relative_position_bias_table != nullptr) {
      invalid_argument("desc->relative_position_bias_table must be NULL for SwinV2 (logit_scale set)");
    }
    if (has_cpb) {
      require_not_null(desc.cpb_weight1, "desc->cpb_weight1");
      require_not_null(desc.cpb_weight2, "desc->cpb_weight2");
      require_positive(desc.cpb_hidden, "desc->cpb_hidden");
      checked_elements(checked_mul(desc.cpb_hidden, desc.num_heads, "cpb_weight2 size"), "cpb_weight2 size");
      if (desc.window[0] != 1) {
        invalid_argument(
            "the continuous position bias needs 2D windows (window[0] == 1), got window[0] = %lld",
            static_cast<long long>(desc.window[0]));
      }
      const int64_t wh = desc.window[1], ww = desc.window[2];
      const int64_t rows = (2 * wh - 1) * (2 * ww - 1);
      std::vector<float> table(static_cast<size_t>(rows * desc.num_heads));
      continuous_position_bias_table(wh, ww, desc.cpb_weight1, desc.cpb_bias1, desc.cpb_weight2,
                                     desc.cpb_hidden, desc.num_heads, table.data());
      std::vector<int64_t> index(static_cast<size_t>(n * n));
      relative_position_index(2, desc.window + 1, index.data());
      bias.resize(static_cast<size_t>(desc.num_heads * n * n));
      relative_position_bias(table.data(), rows, desc.num_heads, index.data(), n, bias.data());
    } else if (desc.cpb_hidden != 0) {
      invalid_argument("desc->cpb_hidden is %lld but the cpb weights are NULL",
                       static_cast<long long>(desc.cpb_hidden));
    }
  }
  LayerSpec spec;
  spec.proj_epilogue = block.proj_epilogue;
  spec.mlp_hidden = block.mlp_hidden;
  spec.channels = desc.channels;
  spec.num_heads = desc.num_heads;
  for (int d = 0; d < 3; ++d) {
    spec.window[d] = desc.window[d];
    spec.shift[d] = desc.shift[d];
  }
  spec.qkv_weight = desc.qkv_weight;
  spec.qkv_bias = desc.qkv_bias;
  spec.proj_weight = desc.proj_weight;
  spec.proj_bias = desc.proj_bias;
  spec.bias = bias.empty() ? nullptr : bias.data();
  spec.logit_scale = desc.logit_scale;
  return std::make_unique<WindowAttentionLayer>(spec);
}

}  // namespace winattn::detail
