// Reading a Swin network from a state_dict: which implementation named the tensors, the architecture their
// shapes imply, every tensor checked (shape, finite values, known buffers against what they must hold),
// then the parts built (see swin_model.h).
#include <algorithm>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <set>
#include <string>

#include "common/error.h"
#include "model/swin_model.h"
#include "position_bias/position_bias.h"

namespace winattn::detail {
namespace {

constexpr int64_t kMaxWindowTokens = 4096;
constexpr int64_t kMaxBiasFloats = int64_t{1} << 25;  // 128 MiB a block (SwinV2 24x24 windows, 48 heads: 16M)

std::string shape_string(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Where each part's tensors are, by naming scheme.
struct Naming {
  const char *scheme;                          // for messages
  std::string embed_conv, embed_norm;          // prefixes without the trailing '.'
  std::function<std::string(int, int)> block;  // block i of stage s, with a trailing '.'
  std::function<std::string(int)> merge;       // the merging after stage s (s < last), with a trailing '.'
  std::string mlp1, mlp2;                      // within a block
  std::string head;
};

Naming torchvision_2d() {
  return {
      "torchvision (features.N)",
      "features.0.0",
      "features.0.2",
      [](int s, int i) { return "features." + std::to_string(2 * s + 1) + "." + std::to_string(i) + "."; },
      [](int s) { return "features." + std::to_string(2 * s + 2) + "."; },
      "mlp.0",
      "mlp.3",
      "head"};
}
Naming torchvision_3d() {
  return {"torchvision Video Swin (patch_embed, features.N)",
          "patch_embed.proj",
          "patch_embed.norm",
          [](int s, int i) { return "features." + std::to_string(2 * s) + "." + std::to_string(i) + "."; },
          [](int s) { return "features." + std::to_string(2 * s + 1) + "."; },
          "mlp.0",
          "mlp.3",
          "head"};
}
Naming layers_naming(const char *scheme, bool downsample_at_start, const std::string &head) {
  Naming n{scheme,
           "patch_embed.proj",
           "patch_embed.norm",
           [](int s, int i) { return "layers." + std::to_string(s) + ".blocks." + std::to_string(i) + "."; },
           nullptr,
           "mlp.fc1",
           "mlp.fc2",
           head};
  if (downsample_at_start) {
    n.merge = [](int s) { return "layers." + std::to_string(s + 1) + ".downsample."; };
  } else {
    n.merge = [](int s) { return "layers." + std::to_string(s) + ".downsample."; };
  }
  return n;
}

// The tensors of one source, read with checks, remembering which were used.
class Reader {
 public:
  explicit Reader(const SafetensorsFile &file) : file_(file) {}

  // mmaction2's Video Swin checkpoints put the backbone under "backbone." (the head under "cls_head."):
  // names are then looked up with the prefix.
  void set_backbone_prefix(std::string prefix) { prefix_ = std::move(prefix); }
  std::string resolve(const std::string &name) const {
    const bool as_is = prefix_.empty() || name.compare(0, 9, "cls_head.") == 0 ||
                       name.compare(0, prefix_.size(), prefix_) == 0;  // already a file's name
    return as_is ? name : prefix_ + name;
  }

  bool has(const std::string &name) const { return file_.find(resolve(name)) != nullptr; }
  const TensorView *find(const std::string &name) const { return file_.find(resolve(name)); }

  [[noreturn]] void fail(const std::string &message) const {
    invalid_argument("%s: %s", file_.source().c_str(), message.c_str());
  }

  const TensorView &tensor(const std::string &name, const std::string &why) const {
    const TensorView *t = file_.find(resolve(name));
    if (t == nullptr) fail("tensor '" + resolve(name) + "' is missing (" + why + ")");
    return *t;
  }

  // The tensor as float32, its shape checked against `shape` and every value finite.
  std::vector<float> floats(const std::string &name, const std::vector<int64_t> &shape,
                            const std::string &why) {
    const TensorView &t = tensor(name, why);
    if (t.shape != shape) {
      fail("tensor '" + t.name + "' has shape " + shape_string(t.shape) + ", expected " +
           shape_string(shape) + " (" + why + ")");
    }
    return convert(t);
  }
  std::vector<float> convert(const TensorView &t) {
    if (!converts_to_f32(t.dtype)) {
      fail("tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) +
           "; weights must be F32, F16, BF16 or F64");
    }
    std::vector<float> values(static_cast<size_t>(t.numel));
    to_f32(t, values.data());
    for (size_t i = 0; i < values.size(); ++i) {
      if (!std::isfinite(values[i])) {
        fail("tensor '" + t.name + "' holds a non-finite value (" + std::to_string(values[i]) +
             ") at element " + std::to_string(i));
      }
    }
    used_.insert(t.name);
    return values;
  }
  void mark_used(const std::string &name) { used_.insert(resolve(name)); }

  // Every tensor used, or a buffer a state_dict carries beside the weights.
  void check_all_used(const char *scheme) const {
    for (const TensorView &t : file_.tensors()) {
      if (used_.count(t.name) != 0) continue;
      auto ends_with = [&](const char *suffix) {
        const size_t n = std::strlen(suffix);
        return t.name.size() >= n && t.name.compare(t.name.size() - n, n, suffix) == 0;
      };
      if (ends_with("relative_position_index") || ends_with("relative_coords_table") ||
          ends_with("attn_mask"))
        continue;
      fail("tensor '" + t.name + "' is not part of the " + scheme +
           " Swin model its other tensors describe (unexpected name, or a stage or block out of sequence)");
    }
  }

  // A relative_position_index buffer, when present, must be the index of `window`.
  void check_index(const std::string &name, const int64_t *window) const {
    const TensorView *t = file_.find(resolve(name));
    if (t == nullptr) return;
    const int64_t n = window[0] * window[1] * window[2];
    if (!index_fits(*t, n)) {
      fail("tensor '" + t->name + "' (" + dtype_name(t->dtype) + " " + shape_string(t->shape) +
           ") is not the int64 index of a " + std::to_string(n) + "-token window");
    }
    int64_t value = 0, expected = 0;
    const int64_t i = first_index_difference(*t, window, &value, &expected);
    if (i >= 0) {
      fail("tensor '" + t->name + "' differs from the relative position index of the window at entry " +
           std::to_string(i) + " (" + std::to_string(value) + ", expected " + std::to_string(expected) + ")");
    }
  }

  // Whether t can be the index of an n-token window: I64 or I32 with n*n entries.
  static bool index_fits(const TensorView &t, int64_t n) {
    return t.numel == n * n && (t.dtype == DType::kI64 || t.dtype == DType::kI32);
  }
  // The first entry where t (index_fits for the window's tokens) differs from the window's index, or -1.
  static int64_t first_index_difference(const TensorView &t, const int64_t *window, int64_t *value,
                                        int64_t *expected) {
    const int64_t n = window[0] * window[1] * window[2];
    std::vector<int64_t> want(static_cast<size_t>(n * n));
    relative_position_index(3, window, want.data());
    for (int64_t i = 0; i < n * n; ++i) {
      if (t.dtype == DType::kI64) {
        std::memcpy(value, t.data + 8 * i, 8);
      } else {
        int32_t v32;
        std::memcpy(&v32, t.data + 4 * i, 4);
        *value = v32;
      }
      if (*value != want[static_cast<size_t>(i)]) {
        *expected = want[static_cast<size_t>(i)];
        return i;
      }
    }
    return -1;
  }

 private:
  const SafetensorsFile &file_;
  std::set<std::string> used_;
  std::string prefix_;
};

// v1 windows from the table's rows R (and the index's N*N entries when present).
void infer_window(Reader &r, const std::string &table_name, int64_t rows, bool three_d,
                  const std::string &index_name, int64_t *window) {
  int64_t n = 0;
  const TensorView *index = r.find(index_name);
  if (index != nullptr) {
    const int64_t count = index->numel;
    n = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(count))));
    if (n * n != count)
      r.fail("tensor '" + index_name + "' has " + std::to_string(count) + " entries, not N*N");
  }
  // Windows with square spatial extent first (wh == ww), the largest that fits; then, when the index gives
  // the token count, any (wh, ww). (8, 7, 7) and (7, 8, 7) have the same table rows and tokens: square wins,
  // unless the index buffer is exactly the index of a later candidate, which is then taken ((2, 3) and
  // (3, 2) have the same rows and tokens but different indices; (1, k) and (k, 1) have equal indices as
  // well, so the tensors cannot tell them apart: the first, (k, 1), is taken). When no candidate's index
  // matches, the first is taken and check_index reports the buffer.
  const bool compare = index != nullptr && n >= 1 && n <= kMaxWindowTokens && Reader::index_fits(*index, n);
  bool found = false;
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1 && n == 0) break;
    for (int64_t wh = 64; wh >= 1; --wh) {
      for (int64_t ww = 64; ww >= 1; --ww) {
        if ((ww != wh) == (pass == 0)) continue;
        const int64_t spatial = (2 * wh - 1) * (2 * ww - 1);
        if (rows % spatial != 0) continue;
        const int64_t depth_rows = rows / spatial;
        if (depth_rows % 2 == 0) continue;
        const int64_t wd = (depth_rows + 1) / 2;
        if (!three_d && wd != 1) continue;
        if (n != 0 && wd * wh * ww != n) continue;
        const int64_t candidate[3] = {wd, wh, ww};
        int64_t value = 0, expected = 0;
        const bool matches =
            compare && Reader::first_index_difference(*index, candidate, &value, &expected) < 0;
        if (!found || matches) std::copy(candidate, candidate + 3, window);
        if (!compare || matches) return;
        found = true;
      }
    }
  }
  if (found) return;
  r.fail("tensor '" + table_name + "' has " + std::to_string(rows) +
         " rows, which no window's (2Wd-1)(2Wh-1)(2Ww-1) matches" +
         (n != 0 ? " with the " + std::to_string(n) + " tokens its relative_position_index implies" : ""));
}

}  // namespace

std::shared_ptr<const SwinBlock> SwinModel::make_shrunk_block(const BlockWeights &w, int64_t channels,
                                                              int64_t heads, const int64_t *window,
                                                              const int64_t *eff) {
  const int64_t n = window[0] * window[1] * window[2];
  const int64_t m = eff[0] * eff[1] * eff[2];
  std::vector<float> bias(static_cast<size_t>(heads * m * m));
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < m; ++i)
      std::memcpy(bias.data() + (h * m + i) * m, w.bias.data() + (h * n + i) * n, sizeof(float) * m);
  LayerSpec spec = SwinBlock::attention_options(w.parts);
  spec.channels = channels;
  spec.num_heads = heads;
  for (int d = 0; d < 3; ++d) {
    spec.window[d] = eff[d];
    spec.shift[d] = eff[d] < window[d] ? 0 : w.shift[d];
  }
  spec.qkv_weight = w.qkv_weight.data();
  spec.qkv_bias = w.qkv_bias.empty() ? nullptr : w.qkv_bias.data();
  spec.proj_weight = w.proj_weight.data();
  spec.proj_bias = w.proj_bias.empty() ? nullptr : w.proj_bias.data();
  spec.bias = bias.data();
  return SwinBlock::assemble(std::make_unique<WindowAttentionLayer>(spec), w.parts);
}

std::unique_ptr<SwinModel> SwinModel::from_weights(const SafetensorsFile &file) {
  Reader r(file);
  std::unique_ptr<SwinModel> model(new SwinModel());
  winattn_model_info &info = model->info_;

  // ---- which implementation named the tensors ----
  Naming naming;
  const TensorView *conv = nullptr;
  bool three_d = false;
  if (r.has("backbone.patch_embed.proj.weight")) r.set_backbone_prefix("backbone.");
  if (const TensorView *t = r.find("features.0.0.weight"); t != nullptr && t->shape.size() == 4) {
    naming = torchvision_2d();
    conv = t;
  } else if (const TensorView *p = r.find("patch_embed.proj.weight")) {
    conv = p;
    three_d = p->shape.size() == 5;
    if (r.has("features.0.0.norm1.weight")) {
      naming = torchvision_3d();
    } else if (three_d) {
      naming = layers_naming("Video Swin (layers.N.blocks.M, cls_head)", false, "cls_head.fc_cls");
    } else if (r.has("layers.0.downsample.reduction.weight")) {
      naming = layers_naming("timm (layers.N.blocks.M, downsample at the end of a stage)", false, "head");
    } else {
      naming = layers_naming("timm (layers.N.blocks.M, downsample at the start of a stage)", true,
                             r.has("head.fc.weight") ? "head.fc" : "head");
    }
  } else {
    r.fail(
        "no patch embedding found: expected 'features.0.0.weight' (torchvision Swin) or "
        "'patch_embed.proj.weight' "
        "(timm Swin, torchvision or original Video Swin)");
  }
  if (conv->shape.size() != (three_d ? 5u : 4u)) {
    r.fail(
        "tensor '" + conv->name + "' has shape " + shape_string(conv->shape) +
        ", expected a convolution weight [embed_dim][in_channels][kh][kw] (or [kt][kh][kw] for Video Swin)");
  }
  info.embed_dim = conv->shape[0];
  info.in_channels = conv->shape[1];
  info.patch[0] = three_d ? conv->shape[2] : 1;
  info.patch[1] = conv->shape[three_d ? 3 : 2];
  info.patch[2] = conv->shape[three_d ? 4 : 3];
  for (int64_t v : conv->shape) {
    if (v <= 0) r.fail("tensor '" + conv->name + "' has an empty dimension " + shape_string(conv->shape));
  }
  model->rule_ = three_d ? WindowRule::kShrinkAxis : WindowRule::kPadKeep;
  model->pad_input_ = three_d;

  // ---- stages and depths ----
  int stages = 0;
  while (stages < kMaxStages + 1 && r.has(naming.block(stages, 0) + "norm1.weight")) ++stages;
  if (stages == 0) r.fail("no block found: expected '" + naming.block(0, 0) + "norm1.weight'");
  if (stages > kMaxStages) r.fail("more than 8 stages of blocks");
  info.num_stages = stages;
  for (int s = 0; s < stages; ++s) {
    int depth = 0;
    while (r.has(naming.block(s, depth) + "norm1.weight")) ++depth;
    info.depths[s] = depth;
  }

  // ---- family and window ----
  const std::string first = naming.block(0, 0);
  const bool v2 = r.has(first + "attn.logit_scale");
  if (v2 && three_d)
    r.fail("tensor '" + first + "attn.logit_scale': SwinV2 attention in a Video Swin model is not supported");
  info.family = three_d ? WINATTN_MODEL_SWIN_3D : (v2 ? WINATTN_MODEL_SWIN_V2 : WINATTN_MODEL_SWIN);
  // A stage's window, from its first block: v1 from the table's rows (and the index buffer when present);
  // SwinV2 from relative_coords_table or relative_position_index, else torchvision's default of 8. timm
  // shrinks a stage's window to its feature size at the trained resolution, so stages may differ.
  auto stage_window = [&](int s, int64_t *window) {
    const std::string block0 = naming.block(s, 0);
    if (!v2) {
      const TensorView &table =
          r.tensor(block0 + "attn.relative_position_bias_table", "the relative position bias");
      if (table.shape.size() != 2) {
        r.fail("tensor '" + table.name + "' has shape " + shape_string(table.shape) +
               ", expected [rows][heads]");
      }
      infer_window(r, table.name, table.shape[0], three_d, block0 + "attn.relative_position_index", window);
      return;
    }
    window[0] = 1;
    if (const TensorView *coords = r.find(block0 + "attn.relative_coords_table")) {
      if (coords->shape.size() != 4 || coords->shape[3] != 2 || coords->shape[1] % 2 == 0 ||
          coords->shape[2] % 2 == 0)
        r.fail("tensor '" + coords->name + "' has shape " + shape_string(coords->shape) +
               ", expected [1][2Wh-1][2Ww-1][2]");
      window[1] = (coords->shape[1] + 1) / 2;
      window[2] = (coords->shape[2] + 1) / 2;
    } else if (const TensorView *index = r.find(block0 + "attn.relative_position_index")) {
      const int64_t n =
          static_cast<int64_t>(std::llround(std::sqrt(std::sqrt(static_cast<double>(index->numel)))));
      // An empty buffer would make a window of 0 tokens (and divide by zero in the bias bound below).
      if (n < 1)
        r.fail("tensor '" + index->name + "' has " + std::to_string(index->numel) +
               " entries, not the N*N of a window of N = W*W tokens");
      window[1] = window[2] = n;
    } else if (naming.embed_conv == "features.0.0") {
      window[1] = window[2] = 8;  // torchvision's swin_v2_* window
    } else {
      r.fail("the window of stage " + std::to_string(s) + " is unknown: '" + block0 +
             "attn.relative_coords_table' (or relative_position_index) is absent; timm leaves these buffers "
             "out of its state_dict: add them from module.named_buffers() (winattn.Model.from_module does)");
    }
  };

  // ---- patch embedding ----
  const std::string embed_why = "the patch embedding";
  model->patch_floats_ = info.in_channels * info.patch[0] * info.patch[1] * info.patch[2];
  {
    const std::vector<float> weight = r.convert(*conv);
    const std::vector<float> bias = r.floats(naming.embed_conv + ".bias", {info.embed_dim}, embed_why);
    model->embed_ = std::make_unique<Linear>(weight.data(), bias.empty() ? nullptr : bias.data(),
                                             model->patch_floats_, info.embed_dim);
    // The patch embedding's norm is optional (Video Swin's patch_norm); its weight and bias come together.
    if (r.has(naming.embed_norm + ".weight") || r.has(naming.embed_norm + ".bias")) {
      model->embed_norm_ = r.floats(naming.embed_norm + ".weight", {info.embed_dim}, embed_why);
      const auto beta = r.floats(naming.embed_norm + ".bias", {info.embed_dim}, embed_why);
      model->embed_norm_.insert(model->embed_norm_.end(), beta.begin(), beta.end());
    }
  }

  // ---- stages ----
  int64_t channels = info.embed_dim;
  model->stages_.resize(static_cast<size_t>(stages));
  for (int s = 0; s < stages; ++s) {
    Stage &stage = model->stages_[static_cast<size_t>(s)];
    stage.channels = channels;
    int64_t *const window = stage.window;
    stage_window(s, window);
    if (s == 0) std::copy(window, window + 3, info.window);
    const int64_t n = window[0] * window[1] * window[2];
    // Bounds a hostile file cannot exceed (the bias of a window is heads * N^2 floats, far more than the
    // table the file holds): Swin's windows have at most a few hundred tokens (Video Swin 8x7x7 = 392).
    if (n > kMaxWindowTokens) {
      r.fail("stage " + std::to_string(s) + "'s window " + std::to_string(window[0]) + "x" +
             std::to_string(window[1]) + "x" + std::to_string(window[2]) + " has " + std::to_string(n) +
             " tokens; at most " + std::to_string(kMaxWindowTokens) + " are supported");
    }
    const int64_t c = channels;
    for (int i = 0; i < info.depths[s]; ++i) {
      const std::string p = naming.block(s, i);
      const std::string why = "block " + std::to_string(i) + " of stage " + std::to_string(s) + ", " +
                              std::to_string(c) + " channels";
      auto w = std::make_unique<BlockWeights>();
      auto check_heads = [&](int64_t heads_found, const std::string &tensor) {
        if (heads_found <= 0 || c % heads_found != 0) {
          r.fail("tensor '" + tensor + "' gives " + std::to_string(heads_found) + " heads for " +
                 std::to_string(c) + " channels");
        }
        if (heads_found > kMaxBiasFloats / (n * n)) {
          r.fail("tensor '" + tensor + "': " + std::to_string(heads_found) + " heads of " +
                 std::to_string(n) + "-token windows need more than 2^25 floats of bias");
        }
      };
      int64_t heads;
      std::vector<float> logit_scale;  // SwinV2: [heads]
      if (!v2) {
        const TensorView &table = r.tensor(p + "attn.relative_position_bias_table", why);
        heads = table.shape.size() == 2 ? table.shape[1] : 0;
        int64_t rows = 1;
        for (int d = 0; d < 3; ++d) rows *= 2 * window[d] - 1;
        const auto values = r.floats(table.name, {rows, heads}, why);
        check_heads(heads, table.name);
        w->bias.resize(static_cast<size_t>(heads * n * n));
        std::vector<int64_t> index(static_cast<size_t>(n * n));
        relative_position_index(3, window, index.data());
        relative_position_bias(values.data(), rows, heads, index.data(), n, w->bias.data());
        r.check_index(p + "attn.relative_position_index", window);
      } else {
        const TensorView &scale = r.tensor(p + "attn.logit_scale", why);
        heads = scale.numel;
        check_heads(heads, scale.name);
        logit_scale = r.floats(scale.name, scale.shape, why);
        const TensorView &w1 = r.tensor(p + "attn.cpb_mlp.0.weight", why);
        const int64_t hidden = w1.shape.empty() ? 0 : w1.shape[0];
        const auto cpb_w1 = r.floats(w1.name, {hidden, 2}, why);
        const auto cpb_b1 = r.floats(p + "attn.cpb_mlp.0.bias", {hidden}, why);
        const auto cpb_w2 = r.floats(p + "attn.cpb_mlp.2.weight", {heads, hidden}, why);
        const int64_t wh = window[1], ww = window[2];
        const int64_t rows = (2 * wh - 1) * (2 * ww - 1);
        int64_t pretrained[2] = {0, 0};
        // timm's pretrained_window_size: the coordinates' normalisation, read from the buffer.
        if (const TensorView *coords = r.find(p + "attn.relative_coords_table")) {
          if (coords->shape != std::vector<int64_t>{1, 2 * wh - 1, 2 * ww - 1, 2})
            r.fail("tensor '" + coords->name + "' has shape " + shape_string(coords->shape) + ", expected " +
                   shape_string({1, 2 * wh - 1, 2 * ww - 1, 2}));
          std::vector<float> table(static_cast<size_t>(coords->numel));
          to_f32(*coords, table.data());
          int64_t norm[2];
          const int64_t win[2] = {wh, ww};
          for (int a = 0; a < 2; ++a) {
            norm[a] = win[a];
            if (win[a] <= 1) continue;
            const float v =
                std::fabs(table[static_cast<size_t>(a)]);           // entry (0, 0): delta -(w-1) on both axes
            const double ratio = (std::exp2(3.0 * v) - 1.0) / 8.0;  // (w-1) / (norm-1)
            norm[a] = ratio > 0 ? std::llround((win[a] - 1) / ratio + 1) : 0;
          }
          // Check the whole buffer against the formula with that normalisation.
          for (int64_t dh = 0; dh < 2 * wh - 1; ++dh) {
            for (int64_t dw = 0; dw < 2 * ww - 1; ++dw) {
              for (int a = 0; a < 2; ++a) {
                const int64_t delta = (a == 0 ? dh - (wh - 1) : dw - (ww - 1));
                double x = static_cast<double>(delta);
                if (norm[a] > 1) x /= static_cast<double>(norm[a] - 1);
                x *= 8.0;
                const double want =
                    (x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0)) * std::log2(std::fabs(x) + 1.0) / 3.0;
                const float got = table[static_cast<size_t>((dh * (2 * ww - 1) + dw) * 2 + a)];
                if (norm[a] < 1 || !(std::fabs(got - want) <= 1e-4)) {
                  r.fail("tensor '" + coords->name + "' is not the log-spaced coordinate table of a " +
                         std::to_string(wh) + "x" + std::to_string(ww) + " window for any pretrained window");
                }
              }
            }
          }
          pretrained[0] = norm[0] == wh ? 0 : norm[0];
          pretrained[1] = norm[1] == ww ? 0 : norm[1];
        }
        std::vector<float> table(static_cast<size_t>(rows * heads));
        continuous_position_bias_table(wh, ww, cpb_w1.data(), cpb_b1.data(), cpb_w2.data(), hidden, heads,
                                       table.data(), pretrained[0], pretrained[1]);
        w->bias.resize(static_cast<size_t>(heads * n * n));
        std::vector<int64_t> index(static_cast<size_t>(n * n));
        relative_position_index(3, window, index.data());
        relative_position_bias(table.data(), rows, heads, index.data(), n, w->bias.data());
        r.check_index(p + "attn.relative_position_index", window);
      }
      if (i == 0) {
        info.num_heads[s] = heads;
      } else if (heads != info.num_heads[s]) {
        r.fail("block " + std::to_string(i) + " of stage " + std::to_string(s) + " has " +
               std::to_string(heads) + " heads, block 0 has " + std::to_string(info.num_heads[s]));
      }
      stage.heads = heads;
      w->qkv_weight = r.floats(p + "attn.qkv.weight", {3 * c, c}, why);
      if (r.has(p + "attn.q_bias")) {  // timm SwinV2: q and v biases, no k bias
        const auto q = r.floats(p + "attn.q_bias", {c}, why);
        const auto v = r.floats(p + "attn.v_bias", {c}, why);
        w->qkv_bias.assign(static_cast<size_t>(3 * c), 0.0f);
        std::copy(q.begin(), q.end(), w->qkv_bias.begin());
        std::copy(v.begin(), v.end(), w->qkv_bias.begin() + 2 * c);
      } else {
        w->qkv_bias = r.floats(p + "attn.qkv.bias", {3 * c}, why);
      }
      w->proj_weight = r.floats(p + "attn.proj.weight", {c, c}, why);
      w->proj_bias = r.floats(p + "attn.proj.bias", {c}, why);
      w->norm1 = r.floats(p + "norm1.weight", {c}, why);
      auto b1 = r.floats(p + "norm1.bias", {c}, why);
      w->norm1.insert(w->norm1.end(), b1.begin(), b1.end());
      w->norm2 = r.floats(p + "norm2.weight", {c}, why);
      auto b2 = r.floats(p + "norm2.bias", {c}, why);
      w->norm2.insert(w->norm2.end(), b2.begin(), b2.end());
      const TensorView &fc1 = r.tensor(p + naming.mlp1 + ".weight", why);
      const int64_t hidden = fc1.shape.size() == 2 ? fc1.shape[0] : 0;
      if (hidden <= 0)
        r.fail("tensor '" + fc1.name + "' has shape " + shape_string(fc1.shape) + ", expected [hidden][" +
               std::to_string(c) + "]");
      w->fc1_weight = r.floats(fc1.name, {hidden, c}, why);
      w->fc1_bias = r.floats(p + naming.mlp1 + ".bias", {hidden}, why);
      w->fc2_weight = r.floats(p + naming.mlp2 + ".weight", {c, hidden}, why);
      w->fc2_bias = r.floats(p + naming.mlp2 + ".bias", {c}, why);
      r.mark_used(p + "attn.relative_position_index");
      r.mark_used(p + "attn.relative_coords_table");

      BlockParts &parts = w->parts;
      parts.post_norm = v2;
      parts.norm1_weight = w->norm1.data();
      parts.norm1_bias = w->norm1.data() + c;
      parts.norm2_weight = w->norm2.data();
      parts.norm2_bias = w->norm2.data() + c;
      parts.norm_eps = 1e-5f;
      parts.mlp_hidden = hidden;
      parts.fc1_weight = w->fc1_weight.data();
      parts.fc1_bias = w->fc1_bias.empty() ? nullptr : w->fc1_bias.data();
      parts.fc2_weight = w->fc2_weight.data();
      parts.fc2_bias = w->fc2_bias.empty() ? nullptr : w->fc2_bias.data();
      for (int d = 0; d < 3; ++d) w->shift[d] = i % 2 == 1 ? window[d] / 2 : 0;

      LayerSpec spec = SwinBlock::attention_options(parts);
      spec.channels = c;
      spec.num_heads = heads;
      for (int d = 0; d < 3; ++d) {
        spec.window[d] = window[d];
        spec.shift[d] = w->shift[d];
      }
      spec.qkv_weight = w->qkv_weight.data();
      spec.qkv_bias = w->qkv_bias.empty() ? nullptr : w->qkv_bias.data();
      spec.proj_weight = w->proj_weight.data();
      spec.proj_bias = w->proj_bias.empty() ? nullptr : w->proj_bias.data();
      spec.bias = w->bias.data();
      spec.logit_scale = v2 ? logit_scale.data() : nullptr;
      stage.blocks.push_back(SwinBlock::assemble(std::make_unique<WindowAttentionLayer>(spec), parts));
      if (model->rule_ == WindowRule::kShrinkAxis) stage.weights.push_back(std::move(w));
    }

    // ---- the merging after this stage ----
    if (s + 1 < stages) {
      const std::string p = naming.merge(s);
      const std::string why =
          "the patch merging after stage " + std::to_string(s) + ", " + std::to_string(c) + " channels";
      const TensorView &reduction = r.tensor(p + "reduction.weight", why);
      const int64_t out = reduction.shape.size() == 2 ? reduction.shape[0] : 0;
      if (out <= 0)
        r.fail("tensor '" + reduction.name + "' has shape " + shape_string(reduction.shape) +
               ", expected [2C][4C]");
      const auto weight = r.floats(reduction.name, {out, 4 * c}, why);
      Merging m;
      m.channels = c;
      m.reduction = std::make_unique<Linear>(weight.data(), nullptr, 4 * c, out);
      m.norm_after = v2;
      const int64_t norm_c = v2 ? out : 4 * c;
      m.norm = r.floats(p + "norm.weight", {norm_c}, why);
      const auto beta = r.floats(p + "norm.bias", {norm_c}, why);
      m.norm.insert(m.norm.end(), beta.begin(), beta.end());
      model->merges_.push_back(std::move(m));
      channels = out;
    }
  }

  // ---- classifier ----
  const int64_t c = channels;
  model->final_norm_ = r.floats("norm.weight", {c}, "the final norm");
  const auto beta = r.floats("norm.bias", {c}, "the final norm");
  model->final_norm_.insert(model->final_norm_.end(), beta.begin(), beta.end());
  // No head: a backbone. A head bias without its weight is a missing weight.
  if (r.has(naming.head + ".weight") || r.has(naming.head + ".bias")) {
    const TensorView *head = &r.tensor(naming.head + ".weight", "the classifier head");
    const int64_t classes = head->shape.size() == 2 ? head->shape[0] : 0;
    if (classes <= 0)
      r.fail("tensor '" + head->name + "' has shape " + shape_string(head->shape) + ", expected [classes][" +
             std::to_string(c) + "]");
    const auto weight = r.floats(head->name, {classes, c}, "the classifier head");
    const auto bias = r.floats(naming.head + ".bias", {classes}, "the classifier head");
    model->head_ = std::make_unique<Linear>(weight.data(), bias.empty() ? nullptr : bias.data(), c, classes);
    info.num_classes = classes;
  }
  r.check_all_used(naming.scheme);
#if defined(__GLIBC__)
  // Loading freed as much memory as the weights (float32 copies converted from the source, the weights as
  // given once packed); glibc keeps freed heap memory below its mmap threshold, so hand it back now.
  malloc_trim(0);
#endif
  return model;
}

}  // namespace winattn::detail
