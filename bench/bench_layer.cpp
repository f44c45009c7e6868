// The whole shifted-window attention layer: winattn_layer_forward (prepacked weights, bias looked up at
// create) and winattn_shifted_window_attention (stateless, torchvision-style arguments). FLOPs per forward:
// 2*T*C*3C (qkv) + 2*T*C*C (proj) + 4*nW*nH*N^2*head_dim (attention core), T = tokens incl. padding.
// The Swin block (winattn_block_forward, v1 pre-norm, MLP width 4C) on some of the same shapes: the layer's
// FLOPs plus 2*T*C*4C*2 for the MLP (norms, GELU and residual adds not counted).
// The temporal cases are AIM's temporal attention (video adapters on ViT-B/16): [B][frames][14][14][768],
// window (frames, 1, 1), no shift, a (2*frames-1) x heads bias table indexed by t_i - t_j + frames - 1.
//
//   bench_layer [--threads=1,2] [--isa=avx512,avx2,scalar] [Google Benchmark flags]
#include "bench_common.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace wb = winattn_bench;

namespace {

struct LayerCase {
  std::string name;
  int64_t batch, height, width, channels, heads, window, shift;
  bool v2;  // SwinV2: cosine attention with logit_scale and the continuous position bias MLP
  // > 0: temporal attention over this many frames (grid (frames, height, width), window (frames, 1, 1),
  // shift 0, 1D bias table); `window` and `shift` are then unused. 0: a 2D Swin layer.
  int64_t frames = 0;

  bool temporal() const { return frames > 0; }
  int64_t n() const { return temporal() ? frames : window * window; }
  int64_t padded(int64_t x) const { return temporal() ? x : (x + window - 1) / window * window; }
  int64_t depth() const { return temporal() ? frames : 1; }
  int64_t tokens() const { return batch * depth() * padded(height) * padded(width); }
  // Rows of the relative position bias table: (2*frames-1) or (2W-1)^2.
  int64_t table_rows() const { return temporal() ? 2 * frames - 1 : (2 * window - 1) * (2 * window - 1); }
  void window3(int64_t out[3]) const {
    out[0] = temporal() ? frames : 1;
    out[1] = out[2] = temporal() ? 1 : window;
  }
  void shift3(int64_t out[3]) const {
    out[0] = 0;
    out[1] = out[2] = temporal() ? 0 : shift;
  }
  double flops() const {
    const double t = static_cast<double>(tokens()), c = static_cast<double>(channels);
    const double windows = t / static_cast<double>(n());
    const double head_dim = c / static_cast<double>(heads);
    return 2.0 * t * c * 3.0 * c + 2.0 * t * c * c +
           4.0 * windows * static_cast<double>(heads) * static_cast<double>(n() * n()) * head_dim;
  }
};

std::vector<LayerCase> cases() {
  return {
      {"swin_t_s1_B1", 1, 56, 56, 96, 3, 7, 3, false},   {"swin_t_s1_B8", 8, 56, 56, 96, 3, 7, 3, false},
      {"swin_t_s2_B1", 1, 28, 28, 192, 6, 7, 3, false},  {"swin_t_s3_B1", 1, 14, 14, 384, 12, 7, 3, false},
      {"swin_t_s3_B8", 8, 14, 14, 384, 12, 7, 3, false}, {"swinv2_t_s1_B1", 1, 64, 64, 96, 3, 8, 4, true},
      // AIM temporal attention on ViT-B/16 (196 patches, C 768, 12 heads): 8 frames x 4 clips, 16 x 2.
      {"aim_temporal_T8_B4", 4, 14, 14, 768, 12, 0, 0, false, 8},
      {"aim_temporal_T16_B2", 2, 14, 14, 768, 12, 0, 0, false, 16},
  };
}

constexpr int64_t kCpbHidden = 512;

struct LayerData {
  std::string key;
  std::vector<float> input, output, qkv_w, qkv_b, proj_w, proj_b;
  std::vector<float> table;        // v1: [(2W-1)^2][heads]
  std::vector<float> logit_scale;  // v2: [heads]
  std::vector<float> cpb_w1, cpb_b1, cpb_w2;
  std::vector<float> bias;  // looked up: [heads][N][N] (for the stateless call)
  winattn_layer *layer = nullptr;
  ~LayerData() { winattn_layer_destroy(layer); }
};

LayerData *data_for(const LayerCase &c, benchmark::State &state) {
  static std::unique_ptr<LayerData> current;
  if (current && current->key == c.name) return current.get();
  current.reset();
  auto d = std::make_unique<LayerData>();
  d->key = c.name;
  const int64_t C = c.channels, H = c.heads, N = c.n();
  d->input.resize(static_cast<size_t>(c.batch * c.depth() * c.height * c.width * C));
  d->output.assign(d->input.size(), 0.0f);
  wb::fill_uniform(d->input, 11, -1.0f, 1.0f);
  const float w = 1.0f / std::sqrt(static_cast<float>(C));
  d->qkv_w.resize(static_cast<size_t>(3 * C * C));
  d->qkv_b.resize(static_cast<size_t>(3 * C));
  d->proj_w.resize(static_cast<size_t>(C * C));
  d->proj_b.resize(static_cast<size_t>(C));
  wb::fill_uniform(d->qkv_w, 12, -w, w);
  wb::fill_uniform(d->qkv_b, 13, -0.1f, 0.1f);
  wb::fill_uniform(d->proj_w, 14, -w, w);
  wb::fill_uniform(d->proj_b, 15, -0.1f, 0.1f);
  const int64_t rows = c.table_rows();

  winattn_layer_desc desc{};
  desc.channels = C;
  desc.num_heads = H;
  c.window3(desc.window);
  c.shift3(desc.shift);
  desc.qkv_weight = d->qkv_w.data();
  desc.qkv_bias = d->qkv_b.data();
  desc.proj_weight = d->proj_w.data();
  desc.proj_bias = d->proj_b.data();
  desc.compute_dtype = WINATTN_DTYPE_F32;
  d->table.resize(static_cast<size_t>(rows * H));
  if (c.v2) {
    d->logit_scale.assign(static_cast<size_t>(H), std::log(10.0f));
    d->cpb_w1.resize(static_cast<size_t>(kCpbHidden * 2));
    d->cpb_b1.resize(static_cast<size_t>(kCpbHidden));
    d->cpb_w2.resize(static_cast<size_t>(H * kCpbHidden));
    wb::fill_uniform(d->cpb_w1, 16, -0.7f, 0.7f);
    wb::fill_uniform(d->cpb_b1, 17, -0.7f, 0.7f);
    wb::fill_uniform(d->cpb_w2, 18, -0.04f, 0.04f);
    desc.logit_scale = d->logit_scale.data();
    desc.cpb_weight1 = d->cpb_w1.data();
    desc.cpb_bias1 = d->cpb_b1.data();
    desc.cpb_weight2 = d->cpb_w2.data();
    desc.cpb_hidden = kCpbHidden;
    if (!wb::check(
            state,
            winattn_continuous_position_bias_table(c.window, c.window, d->cpb_w1.data(), d->cpb_b1.data(),
                                                   d->cpb_w2.data(), kCpbHidden, H, d->table.data()),
            "winattn_continuous_position_bias_table"))
      return nullptr;
  } else {
    wb::fill_uniform(d->table, 19, -0.04f, 0.04f);
    desc.relative_position_bias_table = d->table.data();
  }
  // The looked-up bias for the stateless call (done once: torchvision's module does this per forward).
  std::vector<int64_t> index(static_cast<size_t>(N * N));
  const int64_t win2[2] = {c.window, c.window}, win1[1] = {c.frames};
  d->bias.resize(static_cast<size_t>(H * N * N));
  if (!wb::check(state,
                 c.temporal() ? winattn_relative_position_index(1, win1, index.data())
                              : winattn_relative_position_index(2, win2, index.data()),
                 "winattn_relative_position_index") ||
      !wb::check(state,
                 winattn_relative_position_bias(d->table.data(), rows, H, index.data(), N, d->bias.data()),
                 "winattn_relative_position_bias"))
    return nullptr;
  if (!wb::check(state, winattn_layer_create(&desc, &d->layer), "winattn_layer_create")) return nullptr;
  current = std::move(d);
  return current.get();
}

void run_layer(benchmark::State &state, const LayerCase &c, const std::string &isa, int threads) {
  if (!wb::configure(state, isa, threads)) return;
  LayerData *d = data_for(c, state);
  if (!d) return;
  const int64_t grid[3] = {c.depth(), c.height, c.width};
  // One untimed call first (first-use costs: workspace, oneDNN primitives, the thread pool, page faults).
  if (!wb::check(state, winattn_layer_forward(d->layer, d->input.data(), c.batch, grid, d->output.data()),
                 "winattn_layer_forward"))
    return;
  for (auto _ : state) {
    const winattn_status s =
        winattn_layer_forward(d->layer, d->input.data(), c.batch, grid, d->output.data());
    if (!wb::check(state, s, "winattn_layer_forward")) break;
    benchmark::DoNotOptimize(d->output.data());
    benchmark::ClobberMemory();
  }
  if (state.error_occurred()) return;
  wb::set_flop_counters(state, c.flops(), threads);
}

void run_stateless(benchmark::State &state, const LayerCase &c, const std::string &isa, int threads) {
  if (!wb::configure(state, isa, threads)) return;
  LayerData *d = data_for(c, state);
  if (!d) return;
  winattn_window_attention_args args{};
  args.batch = c.batch;
  args.grid[0] = c.depth();
  args.grid[1] = c.height;
  args.grid[2] = c.width;
  args.channels = c.channels;
  args.num_heads = c.heads;
  c.window3(args.window);
  c.shift3(args.shift);
  args.qkv_weight = d->qkv_w.data();
  args.qkv_bias = d->qkv_b.data();
  args.proj_weight = d->proj_w.data();
  args.proj_bias = d->proj_b.data();
  args.relative_position_bias = d->bias.data();
  args.logit_scale = c.v2 ? d->logit_scale.data() : nullptr;
  if (!wb::check(state, winattn_shifted_window_attention(&args, d->input.data(), d->output.data()),
                 "winattn_shifted_window_attention"))
    return;
  for (auto _ : state) {
    const winattn_status s = winattn_shifted_window_attention(&args, d->input.data(), d->output.data());
    if (!wb::check(state, s, "winattn_shifted_window_attention")) break;
    benchmark::DoNotOptimize(d->output.data());
    benchmark::ClobberMemory();
  }
  if (state.error_occurred()) return;
  wb::set_flop_counters(state, c.flops(), threads);
}

// The Swin block cases: Swin-T stage 1 (B = 1, 8) and stage 3 (B = 8), v1 (pre-norm) blocks on the layer
// cases of the same name.
const char *const kBlockCases[] = {"swin_t_s1_B1", "swin_t_s1_B8", "swin_t_s3_B8"};

double block_flops(const LayerCase &c) {
  const double t = static_cast<double>(c.tokens()), ch = static_cast<double>(c.channels);
  return c.flops() + 2.0 * t * ch * 4.0 * ch * 2.0;
}

struct BlockData {
  std::string key;
  std::vector<float> norms, fc1_w, fc1_b, fc2_w, fc2_b;  // norms: norm1 weight, bias, norm2 weight, bias
  winattn_block *block = nullptr;
  ~BlockData() { winattn_block_destroy(block); }
};

// The block of a case, over the layer's weights (data_for) plus norms and an MLP of its own.
BlockData *block_for(const LayerCase &c, benchmark::State &state, LayerData **layer_data) {
  static std::unique_ptr<BlockData> current;
  LayerData *d = data_for(c, state);
  *layer_data = d;
  if (!d) return nullptr;
  if (current && current->key == c.name) return current.get();
  current.reset();
  auto b = std::make_unique<BlockData>();
  b->key = c.name;
  const int64_t C = c.channels, hidden = 4 * C;
  b->norms.resize(static_cast<size_t>(4 * C));
  b->fc1_w.resize(static_cast<size_t>(hidden * C));
  b->fc1_b.resize(static_cast<size_t>(hidden));
  b->fc2_w.resize(static_cast<size_t>(C * hidden));
  b->fc2_b.resize(static_cast<size_t>(C));
  wb::fill_uniform(b->norms, 21, 0.5f, 1.5f);
  wb::fill_uniform(b->fc1_w, 22, -1.0f / std::sqrt(static_cast<float>(C)),
                   1.0f / std::sqrt(static_cast<float>(C)));
  wb::fill_uniform(b->fc1_b, 23, -0.1f, 0.1f);
  wb::fill_uniform(b->fc2_w, 24, -0.5f / std::sqrt(static_cast<float>(C)),
                   0.5f / std::sqrt(static_cast<float>(C)));
  wb::fill_uniform(b->fc2_b, 25, -0.1f, 0.1f);
  winattn_block_desc desc{};
  desc.attention.channels = C;
  desc.attention.num_heads = c.heads;
  c.window3(desc.attention.window);
  c.shift3(desc.attention.shift);
  desc.attention.qkv_weight = d->qkv_w.data();
  desc.attention.qkv_bias = d->qkv_b.data();
  desc.attention.proj_weight = d->proj_w.data();
  desc.attention.proj_bias = d->proj_b.data();
  desc.attention.relative_position_bias_table = d->table.data();
  desc.attention.compute_dtype = WINATTN_DTYPE_F32;
  desc.norm1_weight = b->norms.data();
  desc.norm1_bias = b->norms.data() + C;
  desc.norm2_weight = b->norms.data() + 2 * C;
  desc.norm2_bias = b->norms.data() + 3 * C;
  desc.mlp_hidden = hidden;
  desc.fc1_weight = b->fc1_w.data();
  desc.fc1_bias = b->fc1_b.data();
  desc.fc2_weight = b->fc2_w.data();
  desc.fc2_bias = b->fc2_b.data();
  if (!wb::check(state, winattn_block_create(&desc, &b->block), "winattn_block_create")) return nullptr;
  current = std::move(b);
  return current.get();
}

void run_block(benchmark::State &state, const LayerCase &c, const std::string &isa, int threads) {
  if (!wb::configure(state, isa, threads)) return;
  LayerData *d = nullptr;
  BlockData *b = block_for(c, state, &d);
  if (!b) return;
  const int64_t grid[3] = {c.depth(), c.height, c.width};
  if (!wb::check(state, winattn_block_forward(b->block, d->input.data(), c.batch, grid, d->output.data()),
                 "winattn_block_forward"))
    return;
  for (auto _ : state) {
    const winattn_status s =
        winattn_block_forward(b->block, d->input.data(), c.batch, grid, d->output.data());
    if (!wb::check(state, s, "winattn_block_forward")) break;
    benchmark::DoNotOptimize(d->output.data());
    benchmark::ClobberMemory();
  }
  if (state.error_occurred()) return;
  wb::set_flop_counters(state, block_flops(c), threads);
}

}  // namespace

int main(int argc, char **argv) {
  const wb::Options options = wb::initialize(&argc, argv, "bench_layer");
  for (const LayerCase &c : cases()) {
    for (int mode = 0; mode < 2; ++mode) {
      for (size_t i = 0; i < options.isas.size(); ++i) {
        for (int threads : options.threads) {
          const std::string isa = options.isas[i];
          const std::string base = (mode == 0 ? "layer_forward/" : "shifted_window_attention/") + c.name;
          const std::string name = wb::bench_name(base, options.isa_names[i], threads);
          auto *b = mode == 0
                        ? benchmark::RegisterBenchmark(
                              name.c_str(),
                              [c, isa, threads](benchmark::State &st) { run_layer(st, c, isa, threads); })
                        : benchmark::RegisterBenchmark(name.c_str(), [c, isa, threads](benchmark::State &st) {
                            run_stateless(st, c, isa, threads);
                          });
          b->UseRealTime()->Unit(benchmark::kMillisecond);
        }
      }
    }
  }
  for (const LayerCase &c : cases()) {
    bool is_block_case = false;
    for (const char *name : kBlockCases) is_block_case = is_block_case || c.name == name;
    if (!is_block_case) continue;
    for (size_t i = 0; i < options.isas.size(); ++i) {
      for (int threads : options.threads) {
        const std::string isa = options.isas[i];
        const std::string name = wb::bench_name("block_forward/" + c.name, options.isa_names[i], threads);
        benchmark::RegisterBenchmark(
            name.c_str(), [c, isa, threads](benchmark::State &st) { run_block(st, c, isa, threads); })
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  return wb::run_all(options);
}
