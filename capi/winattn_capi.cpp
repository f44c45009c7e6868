// The extern "C" boundary: argument checks, handles, one try/catch per entry point, status mapping. Knows
// nothing of kernels or of how a layer is built; everything it validates is checked before anything is
// written.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_set>
#include <vector>

#include "common/error.h"
#include "cpu/dispatch.h"
#include "attention/attention.h"
#include "block/block.h"
#include "common/aligned_buffer.h"
#include "cpu/threading.h"
#include "layer/layer.h"
#include "mask/shifted_window_mask.h"
#include "model/safetensors.h"
#include "model/swin_model.h"
#include "position_bias/position_bias.h"
#include "winattn/winattn.h"

using namespace winattn::detail;

struct winattn_layer {
  std::unique_ptr<WindowAttentionLayer> impl;
};

struct winattn_block {
  std::unique_ptr<SwinBlock> impl;
};

struct winattn_model {
  std::unique_ptr<SwinModel> impl;
};

static_assert(kMaxThreads == WINATTN_MAX_THREADS, "the header's thread bound");
static_assert(kThreadScratchKeepBytes == WINATTN_THREAD_SCRATCH_KEEP_BYTES, "the header's scratch bound");

namespace {

template <class Body>
winattn_status guarded(Body &&body) noexcept {
  try {
    body();
    return WINATTN_STATUS_OK;
  } catch (const Error &e) {
    set_last_error(e.message().c_str());
    return e.status();
  } catch (const std::bad_alloc &) {
    set_last_error("out of memory");
    return WINATTN_STATUS_OUT_OF_MEMORY;
  } catch (const std::exception &e) {
    set_last_error(e.what());
    return WINATTN_STATUS_INTERNAL_ERROR;
  } catch (...) {
    set_last_error("unknown internal error");
    return WINATTN_STATUS_INTERNAL_ERROR;
  }
}

// Live layer handles, so a destroyed or foreign handle is reported instead of dereferenced (as far as an
// address that was not reused can tell).
std::mutex g_layers_mutex;
std::unordered_set<const winattn_layer *> &live_layers() {
  static auto *layers = new std::unordered_set<const winattn_layer *>();  // never destroyed: usable at exit
  return *layers;
}

void require_live_layer(const winattn_layer *layer) {
  require_not_null(layer, "layer");
  std::lock_guard<std::mutex> lock(g_layers_mutex);
  if (live_layers().count(layer) == 0) {
    invalid_argument("layer %p is not a live layer (destroyed, or not made by winattn_layer_create)",
                     static_cast<const void *>(layer));
  }
}

size_t float_bytes(int64_t count) {
  return static_cast<size_t>(count) * sizeof(float);
}

void require_no_overlap(const void *out, int64_t out_floats, const void *in, int64_t in_floats,
                        const char *out_name, const char *in_name) {
  if (in != nullptr && overlaps(out, float_bytes(out_floats), in, float_bytes(in_floats))) {
    invalid_argument("%s must not overlap %s", out_name, in_name);
  }
}

// The layer's geometry, shared by the stateless function and layer_create. Returns N.
int64_t validate_layer_geometry(int64_t channels, int64_t num_heads, const int64_t *window,
                                const int64_t *shift) {
  require_positive(channels, "channels");
  require_positive(num_heads, "num_heads");
  if (channels % num_heads != 0) {
    invalid_argument("channels (%lld) must be divisible by num_heads (%lld)",
                     static_cast<long long>(channels), static_cast<long long>(num_heads));
  }
  checked_elements(checked_mul(3, checked_mul(channels, channels, "qkv_weight size"), "qkv_weight size"),
                   "qkv_weight size");
  int64_t n = 1;
  for (int d = 0; d < 3; ++d) {
    if (window[d] < 1)
      invalid_argument("window[%d] must be >= 1, got %lld", d, static_cast<long long>(window[d]));
    if (shift[d] < 0 || shift[d] >= window[d]) {
      invalid_argument("shift[%d] = %lld is outside [0, window[%d] = %lld)", d,
                       static_cast<long long>(shift[d]), d, static_cast<long long>(window[d]));
    }
    n = checked_mul(n, window[d], "window token count");
  }
  checked_elements(checked_mul(num_heads, checked_mul(n, n, "N*N"), "num_heads*N*N"),
                   "relative position bias");
  return n;
}

// Validates batch and grid against the window; returns the element count of the feature map.
int64_t validate_feature_map(int64_t batch, const int64_t *grid, int64_t channels, const int64_t *window) {
  require_positive(batch, "batch");
  int64_t elements = batch;
  int64_t padded_tokens = batch;
  for (int d = 0; d < 3; ++d) {
    if (grid[d] <= 0)
      invalid_argument("grid[%d] must be positive, got %lld", d, static_cast<long long>(grid[d]));
    if (grid[d] > INT64_MAX - window[d]) invalid_argument("grid[%d] is too large", d);
    elements = checked_mul(elements, grid[d], "feature map size");
    padded_tokens =
        checked_mul(padded_tokens, (grid[d] + window[d] - 1) / window[d] * window[d], "padded size");
  }
  checked_elements(checked_mul(padded_tokens, checked_mul(4, channels, "channels"), "workspace"),
                   "workspace");
  return checked_elements(checked_mul(elements, channels, "feature map size"), "feature map size");
}

void validate_num_threads(int num_threads) {
  if (num_threads < 0 || num_threads > kMaxThreads) {
    invalid_argument("num_threads must be in [0, %d] (0 = the default), got %d", kMaxThreads, num_threads);
  }
}

void validate_finite_logit_scale(const float *logit_scale, int64_t num_heads) {
  for (int64_t h = 0; h < num_heads; ++h) {
    if (std::isnan(logit_scale[h])) {
      invalid_argument("logit_scale[%lld] is NaN", static_cast<long long>(h));
    }
  }
}

}  // namespace

// ---- Swin blocks: their handle registry and the checks of a block description -----------------------------

namespace {

std::mutex g_blocks_mutex;
std::unordered_set<const winattn_block *> &live_blocks() {
  static auto *blocks = new std::unordered_set<const winattn_block *>();  // never destroyed: usable at exit
  return *blocks;
}

void require_live_block(const winattn_block *block) {
  require_not_null(block, "block");
  std::lock_guard<std::mutex> lock(g_blocks_mutex);
  if (live_blocks().count(block) == 0) {
    invalid_argument("block %p is not a live block (destroyed, or not made by winattn_block_create)",
                     static_cast<const void *>(block));
  }
}

// Everything winattn_block_create checks before building anything: the attention description as
// winattn_layer_create checks it (named desc->attention.*), then the block's own fields.
void validate_block_desc(const winattn_block_desc &desc) {
  const winattn_layer_desc &a = desc.attention;
  require_not_null(a.qkv_weight, "desc->attention.qkv_weight");
  require_not_null(a.proj_weight, "desc->attention.proj_weight");
  if (a.flags != 0) invalid_argument("desc->attention.flags must be 0, got 0x%x", a.flags);
  int dtype = 0;  // read as an int: a C caller may store any value in the enum field
  std::memcpy(&dtype, &a.compute_dtype, sizeof dtype);
  if (dtype == WINATTN_DTYPE_BF16) {
    unsupported(
        "desc->attention.compute_dtype WINATTN_DTYPE_BF16 is not implemented in this version; use F32");
  } else if (dtype != WINATTN_DTYPE_F32) {
    invalid_argument("desc->attention.compute_dtype %d is not a winattn_dtype", dtype);
  }
  const int64_t n = validate_layer_geometry(a.channels, a.num_heads, a.window, a.shift);
  if (a.logit_scale != nullptr) validate_finite_logit_scale(a.logit_scale, a.num_heads);

  const struct {
    const float *pointer;
    const char *name;
  } required[] = {{desc.norm1_weight, "desc->norm1_weight"}, {desc.norm1_bias, "desc->norm1_bias"},
                  {desc.norm2_weight, "desc->norm2_weight"}, {desc.norm2_bias, "desc->norm2_bias"},
                  {desc.fc1_weight, "desc->fc1_weight"},     {desc.fc2_weight, "desc->fc2_weight"}};
  for (const auto &field : required) require_not_null(field.pointer, field.name);
  require_positive(desc.mlp_hidden, "desc->mlp_hidden");
  checked_elements(checked_mul(desc.mlp_hidden, a.channels, "fc1_weight size"), "fc1_weight size");
  // A chunk holds at least one window: N rows of the residual, a normed copy and the MLP's hidden width.
  const int64_t row_floats = checked_mul(2, a.channels, "block row") +
                             std::max(checked_mul(3, a.channels, "block row"), desc.mlp_hidden);
  checked_elements(checked_mul(n, row_floats, "block workspace"), "block workspace");
  if (desc.post_norm != 0 && desc.post_norm != 1) {
    invalid_argument("desc->post_norm must be 0 (Swin v1 pre-norm) or 1 (SwinV2 res-post-norm), got %d",
                     static_cast<int>(desc.post_norm));
  }
  if (std::isnan(desc.norm_eps) || desc.norm_eps < 0.0f) {
    invalid_argument("desc->norm_eps must be >= 0 (0 selects 1e-5), got %g",
                     static_cast<double>(desc.norm_eps));
  }
  validate_num_threads(desc.num_threads);
  if (desc.flags != 0) invalid_argument("desc->flags must be 0, got 0x%x", desc.flags);
}

}  // namespace

extern "C" {

const char *winattn_status_string(winattn_status status) {
  // A C caller may pass any int: read it as one (an out-of-range enum value is undefined in C++).
  int value = 0;
  static_assert(sizeof value == sizeof status, "winattn_status is int-sized");
  std::memcpy(&value, &status, sizeof value);
  switch (value) {
    case WINATTN_STATUS_OK:
      return "ok";
    case WINATTN_STATUS_INVALID_ARGUMENT:
      return "invalid argument";
    case WINATTN_STATUS_UNSUPPORTED:
      return "unsupported";
    case WINATTN_STATUS_OUT_OF_MEMORY:
      return "out of memory";
    case WINATTN_STATUS_INTERNAL_ERROR:
      return "internal error";
  }
  return "unknown status";
}

const char *winattn_last_error_message(void) {
  return last_error();
}

const char *winattn_version(void) {
  return WINATTN_VERSION_STRING;
}

const char *winattn_active_isa(void) {
  return isa_level_name(active_features());
}

winattn_status winattn_set_max_isa(const char *isa) {
  return guarded([&] {
    require_not_null(isa, "isa");
    CpuFeatures cap = 0;
    if (!parse_isa_level(isa, &cap)) {
      invalid_argument("isa \"%.64s\" is not one of amx_bf16, avx512_bf16, avx512, avx2, scalar, native",
                       isa);
    }
    set_feature_cap(cap);
  });
}

winattn_status winattn_set_num_threads(int num_threads) {
  return guarded([&] {
    validate_num_threads(num_threads);
    set_num_threads(num_threads);
  });
}

int winattn_get_num_threads(void) {
  return requested_num_threads();
}

winattn_status winattn_relative_position_index(int ndim, const int64_t *window, int64_t *index) {
  return guarded([&] {
    window_tokens(ndim, window);
    require_not_null(index, "index");
    relative_position_index(ndim, window, index);
  });
}

winattn_status winattn_relative_position_bias(const float *table, int64_t table_rows, int64_t num_heads,
                                              const int64_t *index, int64_t n, float *bias) {
  return guarded([&] {
    require_not_null(table, "table");
    require_not_null(index, "index");
    require_not_null(bias, "bias");
    require_positive(table_rows, "table_rows");
    require_positive(num_heads, "num_heads");
    require_positive(n, "n");
    const int64_t pairs = checked_elements(checked_mul(n, n, "n*n"), "index size");
    const int64_t bias_size = checked_elements(checked_mul(num_heads, pairs, "num_heads*n*n"), "bias size");
    const int64_t table_size =
        checked_elements(checked_mul(table_rows, num_heads, "table size"), "table size");
    validate_index(index, pairs, table_rows);
    require_no_overlap(bias, bias_size, table, table_size, "bias", "table");
    relative_position_bias(table, table_rows, num_heads, index, n, bias);
  });
}

winattn_status winattn_relative_position_bias_backward(const float *grad_bias, int64_t table_rows,
                                                       int64_t num_heads, const int64_t *index, int64_t n,
                                                       float *grad_table) {
  return guarded([&] {
    require_not_null(grad_bias, "grad_bias");
    require_not_null(index, "index");
    require_not_null(grad_table, "grad_table");
    require_positive(table_rows, "table_rows");
    require_positive(num_heads, "num_heads");
    require_positive(n, "n");
    const int64_t pairs = checked_elements(checked_mul(n, n, "n*n"), "index size");
    const int64_t bias_size =
        checked_elements(checked_mul(num_heads, pairs, "num_heads*n*n"), "grad_bias size");
    const int64_t table_size =
        checked_elements(checked_mul(table_rows, num_heads, "table size"), "table size");
    validate_index(index, pairs, table_rows);
    require_no_overlap(grad_table, table_size, grad_bias, bias_size, "grad_table", "grad_bias");
    relative_position_bias_backward(grad_bias, table_rows, num_heads, index, n, grad_table);
  });
}

winattn_status winattn_continuous_position_bias_table(int64_t window_h, int64_t window_w, const float *w1,
                                                      const float *b1, const float *w2, int64_t hidden,
                                                      int64_t num_heads, float *table) {
  return guarded([&] {
    require_positive(window_h, "window_h");
    require_positive(window_w, "window_w");
    require_positive(hidden, "hidden");
    require_positive(num_heads, "num_heads");
    require_not_null(w1, "w1");
    require_not_null(w2, "w2");
    require_not_null(table, "table");
    if (window_h > (INT64_MAX / 4) || window_w > (INT64_MAX / 4)) invalid_argument("window is too large");
    const int64_t rows = checked_mul(2 * window_h - 1, 2 * window_w - 1, "table rows");
    checked_elements(checked_mul(rows, num_heads, "table size"), "table size");
    checked_elements(checked_mul(hidden, 2, "w1 size"), "w1 size");
    checked_elements(checked_mul(hidden, num_heads, "w2 size"), "w2 size");
    continuous_position_bias_table(window_h, window_w, w1, b1, w2, hidden, num_heads, table);
  });
}

winattn_status winattn_shifted_window_mask(const int64_t *grid, const int64_t *window, const int64_t *shift,
                                           float *mask) {
  return guarded([&] {
    int64_t n = 0;
    validate_mask_geometry(grid, window, shift, &n);
    require_not_null(mask, "mask");
    shifted_window_mask(grid, window, shift, mask);
  });
}

winattn_status winattn_window_attention(int64_t num_windows, int64_t num_heads, int64_t n, int64_t head_dim,
                                        const float *q, const float *k, const float *v, float scale,
                                        const float *bias, const float *mask, int64_t mask_windows,
                                        float *out) {
  return guarded([&] {
    require_positive(num_windows, "num_windows");
    require_positive(num_heads, "num_heads");
    require_positive(n, "n");
    require_positive(head_dim, "head_dim");
    require_not_null(q, "q");
    require_not_null(k, "k");
    require_not_null(v, "v");
    require_not_null(out, "out");
    if (mask != nullptr) require_positive(mask_windows, "mask_windows (with a mask)");
    const int64_t pairs = checked_elements(checked_mul(n, n, "n*n"), "n*n");
    const int64_t size = checked_elements(
        checked_mul(checked_mul(num_windows, num_heads, "num_windows*num_heads"),
                    checked_mul(n, head_dim, "n*head_dim"), "num_windows*num_heads*n*head_dim"),
        "q/k/v size");
    checked_elements(checked_mul(num_heads, pairs, "num_heads*n*n"), "bias size");
    if (mask != nullptr) checked_elements(checked_mul(mask_windows, pairs, "mask_windows*n*n"), "mask size");
    require_no_overlap(out, size, q, size, "out", "q");
    require_no_overlap(out, size, k, size, "out", "k");
    require_no_overlap(out, size, v, size, "out", "v");
    require_no_overlap(out, size, bias, num_heads * pairs, "out", "bias");
    if (mask != nullptr) require_no_overlap(out, size, mask, mask_windows * pairs, "out", "mask");
    window_attention(num_windows, num_heads, n, head_dim, q, k, v, scale, bias, mask, mask_windows, out);
  });
}

winattn_status winattn_shifted_window_attention(const winattn_window_attention_args *args, const float *input,
                                                float *output) {
  return guarded([&] {
    require_not_null(args, "args");
    require_not_null(input, "input");
    require_not_null(output, "output");
    require_not_null(args->qkv_weight, "args->qkv_weight");
    require_not_null(args->proj_weight, "args->proj_weight");
    if (args->flags != 0) invalid_argument("args->flags must be 0, got 0x%x", args->flags);
    validate_layer_geometry(args->channels, args->num_heads, args->window, args->shift);
    const int64_t elements = validate_feature_map(args->batch, args->grid, args->channels, args->window);
    require_no_overlap(output, elements, input, elements, "output", "input");
    if (args->logit_scale != nullptr) validate_finite_logit_scale(args->logit_scale, args->num_heads);
    const WindowAttentionLayer layer(WindowAttentionLayer::spec_from_args(*args));
    layer.forward(input, args->batch, args->grid, output);
  });
}

winattn_status winattn_layer_create(const winattn_layer_desc *desc, winattn_layer **layer) {
  return guarded([&] {
    require_not_null(desc, "desc");
    require_not_null(layer, "layer");
    require_not_null(desc->qkv_weight, "desc->qkv_weight");
    require_not_null(desc->proj_weight, "desc->proj_weight");
    if (desc->flags != 0) invalid_argument("desc->flags must be 0, got 0x%x", desc->flags);
    int dtype = 0;  // read as an int: a C caller may store any value in the enum field
    static_assert(sizeof dtype == sizeof desc->compute_dtype, "winattn_dtype is int-sized");
    std::memcpy(&dtype, &desc->compute_dtype, sizeof dtype);
    if (dtype != WINATTN_DTYPE_F32 && dtype != WINATTN_DTYPE_BF16) {
      invalid_argument("desc->compute_dtype %d is not a winattn_dtype", dtype);
    }
    if (dtype == WINATTN_DTYPE_BF16) {
      unsupported("desc->compute_dtype WINATTN_DTYPE_BF16 is not implemented in this version; use F32");
    }
    validate_layer_geometry(desc->channels, desc->num_heads, desc->window, desc->shift);
    if (desc->logit_scale != nullptr) validate_finite_logit_scale(desc->logit_scale, desc->num_heads);
    auto handle = std::make_unique<winattn_layer>();
    handle->impl = WindowAttentionLayer::from_desc(*desc);
    {
      std::lock_guard<std::mutex> lock(g_layers_mutex);
      live_layers().insert(handle.get());
    }
    *layer = handle.release();
  });
}

winattn_status winattn_layer_forward(const winattn_layer *layer, const float *input, int64_t batch,
                                     const int64_t *grid, float *output) {
  return guarded([&] {
    require_live_layer(layer);
    require_not_null(input, "input");
    require_not_null(grid, "grid");
    require_not_null(output, "output");
    const WindowAttentionLayer &impl = *layer->impl;
    const int64_t elements = validate_feature_map(batch, grid, impl.channels(), impl.window());
    require_no_overlap(output, elements, input, elements, "output", "input");
    impl.forward(input, batch, grid, output);
  });
}

winattn_status winattn_layer_set_num_threads(winattn_layer *layer, int num_threads) {
  return guarded([&] {
    require_live_layer(layer);
    validate_num_threads(num_threads);
    layer->impl->set_num_threads(num_threads);
  });
}

winattn_status winattn_layer_get_num_threads(const winattn_layer *layer, int *num_threads) {
  return guarded([&] {
    require_live_layer(layer);
    require_not_null(num_threads, "num_threads");
    *num_threads = layer->impl->num_threads();
  });
}

winattn_status winattn_layer_trim(winattn_layer *layer) {
  return guarded([&] {
    require_live_layer(layer);
    layer->impl->trim();
  });
}

winattn_status winattn_layer_memory_bytes(const winattn_layer *layer, int64_t *bytes) {
  return guarded([&] {
    require_live_layer(layer);
    require_not_null(bytes, "bytes");
    *bytes = layer->impl->memory_bytes();
  });
}

void winattn_release_thread_memory(void) {
  release_thread_scratch();
}

void winattn_layer_destroy(winattn_layer *layer) {
  if (layer == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(g_layers_mutex);
    if (live_layers().erase(layer) == 0) return;  // not ours or already destroyed: ignore
  }
  delete layer;
}

winattn_status winattn_block_create(const winattn_block_desc *desc, winattn_block **block) {
  return guarded([&] {
    require_not_null(desc, "desc");
    require_not_null(block, "block");
    validate_block_desc(*desc);
    auto handle = std::make_unique<winattn_block>();
    handle->impl = SwinBlock::from_desc(*desc);
    {
      std::lock_guard<std::mutex> lock(g_blocks_mutex);
      live_blocks().insert(handle.get());
    }
    *block = handle.release();
  });
}

winattn_status winattn_block_forward(const winattn_block *block, const float *input, int64_t batch,
                                     const int64_t *grid, float *output) {
  return guarded([&] {
    require_live_block(block);
    require_not_null(input, "input");
    require_not_null(grid, "grid");
    require_not_null(output, "output");
    const SwinBlock &impl = *block->impl;
    const int64_t elements = validate_feature_map(batch, grid, impl.channels(), impl.window());
    require_no_overlap(output, elements, input, elements, "output", "input");
    impl.forward(input, batch, grid, output);
  });
}

winattn_status winattn_block_set_num_threads(winattn_block *block, int num_threads) {
  return guarded([&] {
    require_live_block(block);
    validate_num_threads(num_threads);
    block->impl->set_num_threads(num_threads);
  });
}

void winattn_block_destroy(winattn_block *block) {
  if (block == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(g_blocks_mutex);
    if (live_blocks().erase(block) == 0) return;  // not ours or already destroyed: ignore
  }
  delete block;
}

}  // extern "C"

// ---- whole models
// ------------------------------------------------------------------------------------------

namespace {

std::mutex g_models_mutex;
std::unordered_set<const winattn_model *> &live_models() {
  static auto *models = new std::unordered_set<const winattn_model *>();  // never destroyed: usable at exit
  return *models;
}

void require_live_model(const winattn_model *model) {
  require_not_null(model, "model");
  std::lock_guard<std::mutex> lock(g_models_mutex);
  if (live_models().count(model) == 0) {
    invalid_argument("model %p is not a live model (destroyed, or not made by winattn_model_load/_create)",
                     static_cast<const void *>(model));
  }
}

// The options' fields, checked; NULL means the defaults. Returns the thread budget.
int validate_model_options(const winattn_model_options *options) {
  if (options == nullptr) return 0;
  int dtype = 0;  // read as an int: a C caller may store any value in the enum field
  static_assert(sizeof dtype == sizeof options->compute_dtype, "winattn_dtype is int-sized");
  std::memcpy(&dtype, &options->compute_dtype, sizeof dtype);
  if (dtype == WINATTN_DTYPE_BF16) {
    unsupported(
        "options->compute_dtype = WINATTN_DTYPE_BF16: bf16 compute is not in this version of winattn");
  }
  if (dtype != WINATTN_DTYPE_F32) {
    invalid_argument("options->compute_dtype = %d is not a compute dtype (WINATTN_DTYPE_F32 or _BF16)",
                     dtype);
  }
  if (options->num_threads < 0 || options->num_threads > kMaxThreads) {
    invalid_argument("options->num_threads = %d is outside [0, %d]", options->num_threads, kMaxThreads);
  }
  if (options->flags != 0) invalid_argument("options->flags = %u must be 0", options->flags);
  return options->num_threads;
}

void publish_model(std::unique_ptr<SwinModel> impl, int num_threads, winattn_model **model) {
  impl->set_num_threads(num_threads);
  auto handle = std::make_unique<winattn_model>();
  handle->impl = std::move(impl);
  {
    std::lock_guard<std::mutex> lock(g_models_mutex);
    live_models().insert(handle.get());
  }
  *model = handle.release();
}

// Checks the input arguments of a model call; returns the input's element count.
int64_t validate_model_input(const SwinModel &model, const float *input, int64_t batch, const int64_t *size) {
  require_not_null(input, "input");
  require_not_null(size, "size");
  require_positive(batch, "batch");
  model.check_size(size);
  const int64_t per_item = size[0] * size[1] * size[2] * model.info().in_channels;  // checked by check_size
  return checked_elements(checked_mul(batch, per_item, "input size"), "input size");
}

}  // namespace

extern "C" {

winattn_status winattn_model_load(const char *path, const winattn_model_options *options,
                                  winattn_model **model) {
  return guarded([&] {
    require_not_null(path, "path");
    require_not_null(model, "model");
    const int threads = validate_model_options(options);
    const SafetensorsFile file{std::string(path)};
    publish_model(SwinModel::from_weights(file), threads, model);
  });
}

winattn_status winattn_model_create(const winattn_tensor *tensors, int64_t count,
                                    const winattn_model_options *options, winattn_model **model) {
  return guarded([&] {
    require_not_null(model, "model");
    if (count < 0) invalid_argument("count = %lld must not be negative", static_cast<long long>(count));
    if (count > 0) require_not_null(tensors, "tensors");
    const int threads = validate_model_options(options);
    std::vector<ExternalTensor> external(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      const winattn_tensor &t = tensors[i];
      if (t.name == nullptr) invalid_argument("tensors[%lld].name is NULL", static_cast<long long>(i));
      ExternalTensor &e = external[static_cast<size_t>(i)];
      e.name = t.name;
      int dtype = 0;  // read as an int: a C caller may store any value in the enum field
      static_assert(sizeof dtype == sizeof t.dtype, "winattn_dtype is int-sized");
      std::memcpy(&dtype, &t.dtype, sizeof dtype);
      switch (dtype) {
        case WINATTN_DTYPE_F32:
          e.dtype = DType::kF32;
          break;
        case WINATTN_DTYPE_BF16:
          e.dtype = DType::kBF16;
          break;
        case WINATTN_DTYPE_F16:
          e.dtype = DType::kF16;
          break;
        default:
          invalid_argument("tensors[%lld] ('%s'): dtype %d is not WINATTN_DTYPE_F32, _BF16 or _F16",
                           static_cast<long long>(i), t.name, dtype);
      }
      if (t.ndim < 0 || t.ndim > 8) {
        invalid_argument("tensors[%lld] ('%s'): ndim = %d is outside [0, 8]", static_cast<long long>(i),
                         t.name, static_cast<int>(t.ndim));
      }
      e.shape.assign(t.shape, t.shape + t.ndim);
      e.data = t.data;
    }
    const SafetensorsFile file(external, "the tensors given to winattn_model_create");
    publish_model(SwinModel::from_weights(file), threads, model);
  });
}

winattn_status winattn_model_get_info(const winattn_model *model, winattn_model_info *info) {
  return guarded([&] {
    require_live_model(model);
    require_not_null(info, "info");
    *info = model->impl->info();
  });
}

winattn_status winattn_model_classify(const winattn_model *model, const float *input, int64_t batch,
                                      const int64_t *size, float *logits) {
  return guarded([&] {
    require_live_model(model);
    const SwinModel &impl = *model->impl;
    const int64_t elements = validate_model_input(impl, input, batch, size);
    require_not_null(logits, "logits");
    if (impl.info().num_classes == 0) {
      invalid_argument("the model has no classifier head (a backbone): use winattn_model_features");
    }
    const int64_t outputs = checked_mul(batch, impl.info().num_classes, "logits size");
    require_no_overlap(logits, outputs, input, elements, "logits", "input");
    impl.run(input, batch, size, nullptr, logits);
  });
}

winattn_status winattn_model_feature_shapes(const winattn_model *model, const int64_t *size,
                                            int64_t *shapes) {
  return guarded([&] {
    require_live_model(model);
    require_not_null(size, "size");
    require_not_null(shapes, "shapes");
    model->impl->feature_shapes(size, shapes);
  });
}

winattn_status winattn_model_features(const winattn_model *model, const float *input, int64_t batch,
                                      const int64_t *size, float *const *features) {
  return guarded([&] {
    require_live_model(model);
    const SwinModel &impl = *model->impl;
    const int64_t elements = validate_model_input(impl, input, batch, size);
    require_not_null(features, "features");
    const int64_t stages = impl.info().num_stages;
    int64_t shapes[4 * SwinModel::kMaxStages];
    impl.feature_shapes(size, shapes);
    int64_t counts[SwinModel::kMaxStages];
    for (int64_t s = 0; s < stages; ++s) {
      int64_t count = batch;
      for (int k = 0; k < 4; ++k) count = checked_mul(count, shapes[4 * s + k], "features size");
      counts[s] = checked_elements(count, "features size");
      if (features[s] == nullptr) continue;
      require_no_overlap(features[s], counts[s], input, elements, "features[s]", "input");
      for (int64_t o = 0; o < s; ++o) {
        if (features[o] != nullptr)
          require_no_overlap(features[s], counts[s], features[o], counts[o], "features[s]",
                             "another features array");
      }
    }
    impl.run(input, batch, size, features, nullptr);
  });
}

winattn_status winattn_model_set_num_threads(winattn_model *model, int num_threads) {
  return guarded([&] {
    require_live_model(model);
    validate_num_threads(num_threads);
    model->impl->set_num_threads(num_threads);
  });
}

winattn_status winattn_model_get_num_threads(const winattn_model *model, int *num_threads) {
  return guarded([&] {
    require_live_model(model);
    require_not_null(num_threads, "num_threads");
    *num_threads = model->impl->num_threads();
  });
}

void winattn_model_destroy(winattn_model *model) {
  if (model == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(g_models_mutex);
    if (live_models().erase(model) == 0) return;  // not ours or already destroyed: ignore
  }
  delete model;
}

}  // extern "C"
