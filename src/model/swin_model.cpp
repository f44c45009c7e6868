// The model's forward: patch embedding, stages, patch merging, classifier (see swin_model.h). How the
// architecture is read from a state_dict is in model_loader.cpp.
#include "model/swin_model.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cstring>
#include <optional>

#include "common/aligned_buffer.h"
#include "common/error.h"
#include "cpu/threading.h"
#include "layer/layer.h"
#include "norm/layer_norm.h"

namespace winattn::detail {
namespace {

// Token rows per chunk of the patch embedding and the merging: enough rows for their matmuls (K = 48 .. 4C)
// to run near peak, few enough that a chunk's gathered rows stay in L2 (128 x 4C floats = 1.5 MiB at the
// last merging of Swin-B).
constexpr int64_t kChunkRows = 128;

// A Linear run over a long run of rows in chunks of kChunkRows (the last one shorter), on `threads`
// threads: the plans of both row counts and an executor per thread reserved up front.
class ChunkedLinear {
 public:
  ChunkedLinear(const Linear &linear, int64_t total_rows, int threads)
      : full_rows_(std::min(kChunkRows, total_rows)) {
    full_.emplace(linear, linear.prepare(full_rows_), threads);
    scratch_bytes_ = Linear::scratchpad_bytes(full_->plan());
    const int64_t tail = total_rows % kChunkRows;
    if (total_rows > kChunkRows && tail != 0) {
      tail_.emplace(linear, linear.prepare(tail), threads);
      scratch_bytes_ = std::max(scratch_bytes_, Linear::scratchpad_bytes(tail_->plan()));
    }
  }
  size_t scratch_bytes() const { return scratch_bytes_; }
  // rows: those of a full chunk or of the tail.
  bool forward(int slot, int64_t rows, const float *src, float *dst, void *scratch,
               winattn_status *why) const {
    return (rows == full_rows_ ? *full_ : *tail_).forward(slot, src, dst, scratch, why);
  }

 private:
  int64_t full_rows_;
  std::optional<Linear::Lease> full_, tail_;
  size_t scratch_bytes_ = 0;
};

// Runs task(index, slot) for index in [0, tasks) on `threads` threads (the calling thread alone, with no
// OpenMP team, for one).
template <class Task>
void run_tasks(int64_t tasks, int threads, Task &&task) {
  if (threads <= 1) {
    for (int64_t i = 0; i < tasks; ++i) task(i, 0);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int slot = thread_index();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < tasks; ++i) task(i, slot);
  }
}

// The first failure of a parallel loop, thrown once the loop has ended.
class Failure {
 public:
  void record(winattn_status status) {
    int expected = WINATTN_STATUS_OK;
    status_.compare_exchange_strong(expected, status);
  }
  void throw_if_failed(const char *what) const {
    const int status = status_.load();
    if (status == WINATTN_STATUS_OUT_OF_MEMORY)
      throw Error(WINATTN_STATUS_OUT_OF_MEMORY, std::string("out of memory in ") + what);
    if (status != WINATTN_STATUS_OK)
      throw Error(static_cast<winattn_status>(status), std::string("oneDNN matmul failed in ") + what);
  }

 private:
  std::atomic<int> status_{WINATTN_STATUS_OK};
};

size_t floats_for_bytes(size_t bytes) {
  return (bytes + 63) / 64 * 16;
}

}  // namespace

SwinModel::SwinModel() = default;
SwinModel::~SwinModel() = default;

void SwinModel::check_size(const int64_t *size) const {
  for (int d = 0; d < 3; ++d) {
    if (size[d] <= 0)
      invalid_argument("size[%d] = %lld must be positive", d, static_cast<long long>(size[d]));
  }
  if (info_.family != WINATTN_MODEL_SWIN_3D && size[0] != 1) {
    invalid_argument("size[0] (frames) = %lld, but a 2D model takes frames = 1",
                     static_cast<long long>(size[0]));
  }
  if (!pad_input_) {
    for (int d = 1; d < 3; ++d) {
      if (size[d] < info_.patch[d]) {
        invalid_argument("size[%d] = %lld is smaller than the patch (%lld)", d,
                         static_cast<long long>(size[d]), static_cast<long long>(info_.patch[d]));
      }
    }
  }
  checked_elements(
      checked_mul(checked_mul(checked_mul(size[0], size[1], "input size"), size[2], "input size"),
                  info_.in_channels, "input size"),
      "input size");
}

void SwinModel::grid_after_embedding(const int64_t *size, int64_t *grid) const {
  for (int d = 0; d < 3; ++d)
    grid[d] = pad_input_ ? (size[d] + info_.patch[d] - 1) / info_.patch[d] : size[d] / info_.patch[d];
}

void SwinModel::feature_shapes(const int64_t *size, int64_t *shapes) const {
  check_size(size);
  int64_t grid[3];
  grid_after_embedding(size, grid);
  for (int64_t s = 0; s < info_.num_stages; ++s) {
    if (s > 0) {
      grid[1] = (grid[1] + 1) / 2;
      grid[2] = (grid[2] + 1) / 2;
    }
    shapes[4 * s + 0] = grid[0];
    shapes[4 * s + 1] = grid[1];
    shapes[4 * s + 2] = grid[2];
    shapes[4 * s + 3] = stages_[static_cast<size_t>(s)].channels;
  }
}

namespace {

// Runs `linear` over `total` token rows in chunks of kChunkRows, on up to `budget` threads: per chunk,
// gather(first, count, rows) fills the chunk's input rows ([count][in_features], in the thread's scratch),
// the matmul writes them to out + first * out_features, and finish(dst, count) post-processes those rows
// while they are in cache. A matmul failure is thrown (naming `what`) once the loop has ended.
template <class Gather, class Finish>
void run_row_chunks(const Linear &linear, int64_t total, int budget, float *out, const char *what,
                    Gather &&gather, Finish &&finish) {
  const int64_t in = linear.in_features(), out_features = linear.out_features();
  const int64_t chunks = (total + kChunkRows - 1) / kChunkRows;
  const int threads = team_size(budget, chunks);
  const ChunkedLinear chunked(linear, total, threads);
  const size_t row_floats = floats_for_bytes(sizeof(float) * static_cast<size_t>(kChunkRows * in));
  const size_t per_thread = row_floats + floats_for_bytes(chunked.scratch_bytes());
  ScratchLease scratch(per_thread * static_cast<size_t>(threads));
  Failure failure;
  run_tasks(chunks, threads, [&](int64_t chunk, int slot) {
    float *rows = scratch.data() + per_thread * static_cast<size_t>(slot);
    const int64_t first = chunk * kChunkRows, count = std::min(kChunkRows, total - first);
    gather(first, count, rows);
    float *dst = out + first * out_features;
    winattn_status why = WINATTN_STATUS_INTERNAL_ERROR;
    if (!chunked.forward(slot, count, rows, dst, rows + row_floats, &why)) {
      failure.record(why);
      return;
    }
    finish(dst, count);
  });
  failure.throw_if_failed(what);
}

}  // namespace

void SwinModel::embed(const float *input, int64_t batch, const int64_t *size, const int64_t *grid, float *out,
                      int budget) const {
  const int64_t e = info_.embed_dim, k = patch_floats_, cin = info_.in_channels;
  const int64_t pt = info_.patch[0], ph = info_.patch[1], pw = info_.patch[2];
  const int64_t per_item = grid[0] * grid[1] * grid[2];
  const LayerNormFn layer_norm = select_f32_layernorm_kernel(active_features()).run;
  const bool norm = !embed_norm_.empty();
  auto gather = [&](int64_t first, int64_t count, float *rows) {
    for (int64_t r = 0; r < count; ++r) {
      int64_t token = first + r;
      const int64_t b = token / per_item;
      token %= per_item;
      const int64_t t0 = token / (grid[1] * grid[2]) * pt;
      const int64_t h0 = token / grid[2] % grid[1] * ph;
      const int64_t w0 = token % grid[2] * pw;
      const int64_t w_in = std::min(pw, size[2] - w0);  // > 0; short only where Video Swin pads
      float *row = rows + r * k;
      for (int64_t ci = 0; ci < cin; ++ci) {
        for (int64_t dt = 0; dt < pt; ++dt) {
          for (int64_t dh = 0; dh < ph; ++dh) {
            float *dst = row + ((ci * pt + dt) * ph + dh) * pw;
            const int64_t t = t0 + dt, h = h0 + dh;
            if (t >= size[0] || h >= size[1]) {
              std::memset(dst, 0, sizeof(float) * static_cast<size_t>(pw));
              continue;
            }
            const float *src = input + (((b * cin + ci) * size[0] + t) * size[1] + h) * size[2] + w0;
            std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(w_in));
            if (w_in < pw) std::memset(dst + w_in, 0, sizeof(float) * static_cast<size_t>(pw - w_in));
          }
        }
      }
    }
  };
  auto finish = [&](float *dst, int64_t count) {
    if (norm) layer_norm(dst, nullptr, dst, count, e, e, embed_norm_.data(), embed_norm_.data() + e, 1e-5f);
  };
  run_row_chunks(*embed_, batch * per_item, budget, out, "the patch embedding", gather, finish);
}

void SwinModel::merge(const Merging &m, const float *in, int64_t batch, const int64_t *grid, float *out,
                      int budget) const {
  const int64_t c = m.channels, c4 = 4 * c, c2 = m.reduction->out_features();
  const int64_t out_h = (grid[1] + 1) / 2, out_w = (grid[2] + 1) / 2;
  const LayerNormFn layer_norm = select_f32_layernorm_kernel(active_features()).run;
  const float *gamma = m.norm.data(), *beta = m.norm.data() + m.norm.size() / 2;
  auto gather = [&](int64_t first, int64_t count, float *rows) {
    for (int64_t r = 0; r < count; ++r) {
      const int64_t token = first + r;
      const int64_t plane = token / (out_h * out_w);  // (b, t)
      const int64_t i = token / out_w % out_h, j = token % out_w;
      float *row = rows + r * c4;
      // torchvision's order: (2i, 2j), (2i + 1, 2j), (2i, 2j + 1), (2i + 1, 2j + 1); zeros past an odd edge.
      for (int q = 0; q < 4; ++q) {
        const int64_t h = 2 * i + (q & 1), w = 2 * j + (q >> 1);
        float *dst = row + q * c;
        if (h < grid[1] && w < grid[2]) {
          std::memcpy(dst, in + ((plane * grid[1] + h) * grid[2] + w) * c,
                      sizeof(float) * static_cast<size_t>(c));
        } else {
          std::memset(dst, 0, sizeof(float) * static_cast<size_t>(c));
        }
      }
      if (!m.norm_after) layer_norm(row, nullptr, row, 1, c4, c4, gamma, beta, 1e-5f);
    }
  };
  auto finish = [&](float *dst, int64_t count) {
    if (m.norm_after) layer_norm(dst, nullptr, dst, count, c2, c2, gamma, beta, 1e-5f);
  };
  run_row_chunks(*m.reduction, batch * grid[0] * out_h * out_w, budget, out, "a patch merging", gather,
                 finish);
}

void SwinModel::classify(const float *x, int64_t batch, int64_t tokens, float *logits, int budget) const {
  const int64_t c = stages_.back().channels;
  const int threads = team_size(budget, batch);
  const auto plan = head_->prepare(batch);
  const size_t dnnl_floats = floats_for_bytes(Linear::scratchpad_bytes(*plan));
  // pooled [batch][C], then per thread a normed row, then the logits as the head writes them; then the
  // head's scratch. The head writes into scratch, not into the caller's logits: oneDNN allocates inside the
  // matmul's execution as well, and when that fails it has already written part of its output (values that
  // are neither the logits nor what the caller's array held); the logits are copied out once it succeeded.
  const size_t pooled_floats = floats_for_bytes(sizeof(float) * static_cast<size_t>(batch * c));
  const size_t normed_floats = floats_for_bytes(sizeof(float) * static_cast<size_t>(threads * c));
  const size_t classes = static_cast<size_t>(info_.num_classes);
  const size_t staged_floats = floats_for_bytes(sizeof(float) * static_cast<size_t>(batch) * classes);
  ScratchLease scratch(pooled_floats + normed_floats + staged_floats + dnnl_floats);
  float *pooled = scratch.data();
  const LayerNormFn layer_norm = select_f32_layernorm_kernel(active_features()).run;
  const float *gamma = final_norm_.data(), *beta = final_norm_.data() + c;
  const float inv = 1.0f / static_cast<float>(tokens);
  run_tasks(batch, threads, [&](int64_t b, int slot) {
    float *normed = pooled + pooled_floats + static_cast<size_t>(slot * c);
    float *sum = pooled + b * c;
    std::memset(sum, 0, sizeof(float) * static_cast<size_t>(c));
    for (int64_t t = 0; t < tokens; ++t) {
      layer_norm(x + (b * tokens + t) * c, nullptr, normed, 1, c, c, gamma, beta, 1e-5f);
      for (int64_t i = 0; i < c; ++i) sum[i] += normed[i];
    }
    for (int64_t i = 0; i < c; ++i) sum[i] *= inv;
  });
  float *staged = pooled + pooled_floats + normed_floats;
  float *dnnl_scratch = staged + staged_floats;
  winattn_status why = WINATTN_STATUS_INTERNAL_ERROR;
  if (!head_->forward(*plan, pooled, staged, dnnl_scratch, &why)) {
    Failure failure;
    failure.record(why);
    failure.throw_if_failed("the classifier head");
  }
  std::memcpy(logits, staged, sizeof(float) * static_cast<size_t>(batch) * classes);
}

AlignedBuffer SwinModel::take_buffer(size_t floats) const {
  {
    std::lock_guard<std::mutex> lock(buffers_mutex_);
    for (auto it = buffers_.begin(); it != buffers_.end(); ++it) {
      if (it->size() >= floats) {
        AlignedBuffer buffer = std::move(*it);
        buffers_.erase(it);
        return buffer;
      }
    }
  }
  return AlignedBuffer(floats);  // may throw OUT_OF_MEMORY, before anything is written
}

void SwinModel::keep_buffer(AlignedBuffer buffer) const {
  if (buffer.size() == 0) return;
  std::lock_guard<std::mutex> lock(buffers_mutex_);
  size_t kept = buffer.size() * sizeof(float);
  for (const AlignedBuffer &b : buffers_) kept += b.size() * sizeof(float);
  if (kept > kKeptActivationBytes) return;  // freed here
  try {
    buffers_.push_back(std::move(buffer));
  } catch (...) {  // no room to remember it: free it
  }
}

std::shared_ptr<const SwinBlock> SwinModel::block_for(int stage, int index, const int64_t *grid) const {
  const Stage &st = stages_[static_cast<size_t>(stage)];
  const int64_t *window = st.window;
  if (rule_ == WindowRule::kPadKeep) return st.blocks[static_cast<size_t>(index)];
  int64_t eff[3];
  bool shrunk = false;
  for (int d = 0; d < 3; ++d) {
    eff[d] = grid[d] < window[d] ? grid[d] : window[d];
    shrunk |= eff[d] != window[d];
  }
  // An axis equal to the window: the full window, and the layer drops its shift (it covers the axis).
  if (!shrunk) return st.blocks[static_cast<size_t>(index)];
  std::vector<int64_t> key = {stage, index, eff[0], eff[1], eff[2]};
  std::lock_guard<std::mutex> lock(variants_mutex_);
  auto it = variants_.find(key);
  if (it != variants_.end()) return it->second;
  // Bounded: a handful of shapes per stage in practice; a stream of odd sizes starts the cache over.
  if (variants_.size() >= 64) variants_.clear();
  auto block = make_shrunk_block(*st.weights[static_cast<size_t>(index)], st.channels, st.heads, window, eff);
  variants_.emplace(std::move(key), block);
  return block;
}

void SwinModel::run(const float *input, int64_t batch, const int64_t *size, float *const *features,
                    float *logits) const {
  const int budget = num_threads();
  int last = static_cast<int>(info_.num_stages) - 1;
  if (logits == nullptr) {
    while (last >= 0 && (features == nullptr || features[last] == nullptr)) --last;
    if (last < 0) return;
  }
  // Grids and the activation buffers' size: the largest stage input or output.
  int64_t grids[kMaxStages][3];
  size_t largest = 0;
  grid_after_embedding(size, grids[0]);
  for (int s = 0; s <= last; ++s) {
    if (s > 0) {
      grids[s][0] = grids[s - 1][0];
      grids[s][1] = (grids[s - 1][1] + 1) / 2;
      grids[s][2] = (grids[s - 1][2] + 1) / 2;
    }
    const int64_t tokens = checked_mul(batch, grids[s][0] * grids[s][1] * grids[s][2], "activations");
    largest = std::max(
        largest,
        static_cast<size_t>(checked_elements(
            checked_mul(tokens, stages_[static_cast<size_t>(s)].channels, "activations"), "activations")));
  }
  // Two activation buffers in turn, given back to the model when the call ends (or fails).
  struct Buffers {
    const SwinModel &model;
    AlignedBuffer a, b;
    ~Buffers() {
      model.keep_buffer(std::move(a));
      model.keep_buffer(std::move(b));
    }
  } buffers{*this, take_buffer(largest), take_buffer(largest)};
  AlignedBuffer &a = buffers.a, &b = buffers.b;
  // WINATTN_MODEL_PROFILE=1: each part's wall time on stderr (a development aid).
  static const bool profile = [] {
    const char *env = std::getenv("WINATTN_MODEL_PROFILE");
    return env != nullptr && env[0] == '1';
  }();
  // Wall time, and the calling thread's CPU time (what a one-thread run costs on a busy machine).
  auto cpu_ms = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
  };
  auto clock = std::chrono::steady_clock::now();
  double cpu_clock = profile ? cpu_ms() : 0.0;
  auto lap = [&](const char *part, int stage) {
    if (!profile) return;
    const auto now = std::chrono::steady_clock::now();
    const double cpu_now = cpu_ms();
    std::fprintf(stderr, "winattn model: %-10s %d %8.3f ms wall %8.3f ms cpu\n", part, stage,
                 std::chrono::duration<double, std::milli>(now - clock).count(), cpu_now - cpu_clock);
    clock = now;
    cpu_clock = cpu_now;
  };
  embed(input, batch, size, grids[0], a.data(), budget);
  lap("embed", 0);
  const float *current = a.data();
  for (int s = 0; s <= last; ++s) {
    const Stage &stage = stages_[static_cast<size_t>(s)];
    float *const wanted = features != nullptr ? features[s] : nullptr;
    const int64_t *grid = grids[s];
    if (s > 0) {
      float *dst = current == a.data() ? b.data() : a.data();
      merge(merges_[static_cast<size_t>(s - 1)], current, batch, grids[s - 1], dst, budget);
      current = dst;
      lap("merge", s);
    }
    const int depth = static_cast<int>(stage.blocks.size());
    for (int i = 0; i < depth; ++i) {
      float *dst =
          (i == depth - 1 && wanted != nullptr) ? wanted : (current == a.data() ? b.data() : a.data());
      block_for(s, i, grid)->forward(current, batch, grid, dst, budget);
      current = dst;
    }
    lap("blocks", s);
    if (depth == 0 && wanted != nullptr) {
      std::memcpy(wanted, current,
                  sizeof(float) * static_cast<size_t>(batch * grid[0] * grid[1] * grid[2] * stage.channels));
      current = wanted;
    }
  }
  if (logits != nullptr)
    classify(current, batch, grids[last][0] * grids[last][1] * grids[last][2], logits, budget);
  lap("head", last);
}

}  // namespace winattn::detail
