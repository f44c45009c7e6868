// Whole models: winattn_model_classify on torchvision's Swin networks built from random weights that carry
// torchvision's state_dict names (generated here: the names and shapes of swin_t, swin_b, swin_v2_t and
// swin3d_t), and winattn_model_load of a swin_t .safetensors file this program writes once to a temp dir.
//
// FLOPs per classify (printed per model at start-up): 2 x the multiply-adds of every GEMM (patch embedding
// as a GEMM over patches, qkv, proj, fc1, fc2, patch merging, head) plus the attention core
// 4 * windows * heads * N^2 * head_dim. qkv, proj and the core count the tokens padded to whole windows (the
// layer's convention, shared/PERFORMANCE.md), the MLP the real tokens. Norms, GELU, softmax, residual adds,
// the pool and SwinV2's position-bias MLP (computed once at create) are not counted. swin_t at 224x224 is
// 8.98 GFLOP per image (4.5 G multiply-adds, the model card's "4.5 GFLOPs"); swin_v2_t 9.84, swin_b 30.86,
// swin3d_t 87.76 per 16x224x224 clip (43.9 G multiply-adds, torchvision's figure).
// Cases: swin_t B = 1 and 8, swin_v2_t, swin_b and swin3d_t (16 frames) B = 1, each 3 repetitions (median)
// unless --benchmark_repetitions is given; model_load/swin_t_safetensors times a load of a file already in
// the page cache (mapping, checks, packing).
//
//   bench_model [--threads=1,2] [--isa=avx512,avx2] [Google Benchmark flags]
#include "bench_common.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace wb = winattn_bench;

namespace {

enum class Family { kSwin, kSwinV2, kSwin3D };

// A torchvision architecture (the constructor arguments of swin_t & co.) and the input it is run on.
struct ModelConfig {
  std::string name;  // torchvision's builder name
  Family family;
  int64_t embed_dim;
  std::vector<int64_t> depths, heads;
  int64_t window[3];  // (frames, height, width); 2D: frames 1
  int64_t patch[3];   // 2D: (1, 4, 4)
  int64_t num_classes;
  int64_t frames;  // input frames (2D: 1)
  int64_t image;   // input height = width
};

struct ModelCase {
  ModelConfig config;
  int64_t batch;
  std::string name() const { return config.name + "_B" + std::to_string(batch); }
};

ModelConfig swin_t() {
  return {"swin_t", Family::kSwin, 96, {2, 2, 6, 2}, {3, 6, 12, 24}, {1, 7, 7}, {1, 4, 4}, 1000, 1, 224};
}
ModelConfig swin_b() {
  return {"swin_b", Family::kSwin, 128, {2, 2, 18, 2}, {4, 8, 16, 32}, {1, 7, 7}, {1, 4, 4}, 1000, 1, 224};
}
ModelConfig swin_v2_t() {
  return {"swin_v2_t", Family::kSwinV2, 96, {2, 2, 6, 2}, {3, 6, 12, 24}, {1, 8, 8}, {1, 4, 4}, 1000, 1, 224};
}
// swin_v2_t at 256 x 256, the resolution it is trained and evaluated at (torchvision's transforms crop 256):
// at 224 its 8 x 8 windows pad the 56 x 56 stage-1 grid to 64 x 64 (30% more rows in every matmul).
ModelConfig swin_v2_t_256() {
  ModelConfig c = swin_v2_t();
  c.name = "swin_v2_t_256";
  c.image = 256;
  return c;
}
// torchvision's swin3d_t (Kinetics-400) on its 16 x 224 x 224 clips.
ModelConfig swin3d_t() {
  return {"swin3d_t", Family::kSwin3D, 96, {2, 2, 6, 2}, {3, 6, 12, 24}, {8, 7, 7}, {2, 4, 4}, 400, 16, 224};
}

std::vector<ModelCase> cases() {
  return {{swin_t(), 1},        {swin_t(), 8}, {swin_v2_t(), 1},
          {swin_v2_t_256(), 1}, {swin_b(), 1}, {swin3d_t(), 1}};
}

// ---- the state_dict ---------------------------------------------------------------------------------------

struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

constexpr int64_t kCpbHidden = 512;

class StateDict {
 public:
  std::vector<NamedTensor> tensors;

  // Fills uniformly in [lo, hi); each tensor gets its own seed (its position), so the weights do not
  // depend on anything but the architecture.
  void add(const std::string &name, std::vector<int64_t> shape, float lo, float hi) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    NamedTensor t{name, std::move(shape), std::vector<float>(static_cast<size_t>(n))};
    wb::fill_uniform(t.data, 1000u + static_cast<uint32_t>(tensors.size()), lo, hi);
    tensors.push_back(std::move(t));
  }
  // A Linear (weight [out][in], bias [out]) or a convolution (weight [out][in...]): PyTorch's default
  // init range, +-1/sqrt(fan_in), so activations stay of order 1 through the depth.
  void linear(const std::string &prefix, std::vector<int64_t> weight_shape, bool bias = true) {
    int64_t fan_in = 1;
    for (size_t i = 1; i < weight_shape.size(); ++i) fan_in *= weight_shape[i];
    const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
    const int64_t out = weight_shape[0];
    add(prefix + ".weight", std::move(weight_shape), -bound, bound);
    if (bias) add(prefix + ".bias", {out}, -bound, bound);
  }
  void layer_norm(const std::string &prefix, int64_t c) {
    add(prefix + ".weight", {c}, 0.8f, 1.2f);
    add(prefix + ".bias", {c}, -0.05f, 0.05f);
  }

  std::vector<winattn_tensor> views() const {
    std::vector<winattn_tensor> out;
    for (const auto &t : tensors) {
      winattn_tensor v{};
      v.name = t.name.c_str();
      v.dtype = WINATTN_DTYPE_F32;
      v.ndim = static_cast<int32_t>(t.shape.size());
      for (size_t i = 0; i < t.shape.size(); ++i) v.shape[i] = t.shape[i];
      v.data = t.data.data();
      out.push_back(v);
    }
    return out;
  }
};

// The names and shapes of torchvision's state_dict for the config (the parameters; the integer buffers
// relative_position_index and SwinV2's relative_coords_table are optional for the library and left out).
StateDict make_state_dict(const ModelConfig &m) {
  StateDict sd;
  const bool video = m.family == Family::kSwin3D, v2 = m.family == Family::kSwinV2;
  const int64_t E = m.embed_dim;
  if (video) {
    sd.linear("patch_embed.proj", {E, 3, m.patch[0], m.patch[1], m.patch[2]});
    sd.layer_norm("patch_embed.norm", E);
  } else {
    sd.linear("features.0.0", {E, 3, m.patch[1], m.patch[2]});
    sd.layer_norm("features.0.2", E);
  }
  const size_t stages = m.depths.size();
  int64_t table_rows = 1;
  for (int64_t w : m.window) table_rows *= 2 * w - 1;
  for (size_t s = 0; s < stages; ++s) {
    const int64_t C = E << s, H = m.heads[s];
    // torchvision: video stages at features.{0,2,4,6}, merging at {1,3,5}; 2D stages at {1,3,5,7} after
    // the patch embedding at 0, merging at {2,4,6}.
    const std::string stage = "features." + std::to_string(video ? 2 * s : 2 * s + 1) + ".";
    for (int64_t i = 0; i < m.depths[s]; ++i) {
      const std::string b = stage + std::to_string(i) + ".";
      sd.layer_norm(b + "norm1", C);
      sd.linear(b + "attn.qkv", {3 * C, C});
      sd.linear(b + "attn.proj", {C, C});
      if (v2) {
        sd.add(b + "attn.logit_scale", {H, 1, 1}, std::log(8.0f), std::log(12.0f));
        sd.add(b + "attn.cpb_mlp.0.weight", {kCpbHidden, 2}, -0.7f, 0.7f);
        sd.add(b + "attn.cpb_mlp.0.bias", {kCpbHidden}, -0.7f, 0.7f);
        sd.add(b + "attn.cpb_mlp.2.weight", {H, kCpbHidden}, -0.04f, 0.04f);
      } else {
        sd.add(b + "attn.relative_position_bias_table", {table_rows, H}, -0.04f, 0.04f);
      }
      sd.layer_norm(b + "norm2", C);
      sd.linear(b + "mlp.0", {4 * C, C});
      sd.linear(b + "mlp.3", {C, 4 * C});
    }
    if (s + 1 < stages) {
      const std::string merge = "features." + std::to_string(video ? 2 * s + 1 : 2 * s + 2) + ".";
      sd.linear(merge + "reduction", {2 * C, 4 * C}, false);
      sd.layer_norm(merge + "norm", v2 ? 2 * C : 4 * C);  // v2 normalises after the reduction
    }
  }
  const int64_t last = E << (stages - 1);
  sd.layer_norm("norm", last);
  sd.linear("head", {m.num_classes, last});
  return sd;
}

// ---- FLOPs ----------------------------------------------------------------------------------------------

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

double model_flops(const ModelConfig &m, int64_t batch) {
  const bool video = m.family == Family::kSwin3D;
  // Token grid after the patch embedding (torchvision pads the input up to whole patches).
  int64_t grid[3] = {ceil_div(m.frames, m.patch[0]), ceil_div(m.image, m.patch[1]),
                     ceil_div(m.image, m.patch[2])};
  const double B = static_cast<double>(batch);
  const double E = static_cast<double>(m.embed_dim);
  double flops = 2.0 * B * grid[0] * grid[1] * grid[2] * E * (3.0 * m.patch[0] * m.patch[1] * m.patch[2]);
  for (size_t s = 0; s < m.depths.size(); ++s) {
    const double C = E * static_cast<double>(int64_t{1} << s);
    // The window of this stage: Video Swin shrinks it to an axis not larger than it; torchvision's 2D models
    // keep it and pad. Either way every axis is padded to whole windows.
    int64_t win[3], padded = 1, real = 1, n = 1;
    for (int a = 0; a < 3; ++a) {
      win[a] = video ? std::min(m.window[a], grid[a]) : m.window[a];
      padded *= ceil_div(grid[a], win[a]) * win[a];
      real *= grid[a];
      n *= win[a];
    }
    const double tp = B * static_cast<double>(padded), t = B * static_cast<double>(real);
    const double block = 2.0 * tp * C * 3.0 * C + 2.0 * tp * C * C  // qkv, proj
                         + 4.0 * tp * static_cast<double>(n) * C    // core: windows*heads*N^2*head_dim
                         + 2.0 * t * C * 4.0 * C * 2.0;             // fc1, fc2
    flops += block * static_cast<double>(m.depths[s]);
    if (s + 1 < m.depths.size()) {  // merging: 2x2 (height, width) -> 4C -> 2C, odd sizes padded
      grid[1] = ceil_div(grid[1], 2);
      grid[2] = ceil_div(grid[2], 2);
      flops += 2.0 * B * grid[0] * grid[1] * grid[2] * 4.0 * C * 2.0 * C;
    }
  }
  flops += 2.0 * B * (E * static_cast<double>(int64_t{1} << (m.depths.size() - 1))) * m.num_classes;
  return flops;
}

// ---- classify -------------------------------------------------------------------------------------------

struct ModelData {
  std::string key;
  winattn_model *model = nullptr;
  ~ModelData() { winattn_model_destroy(model); }
};

// One model at a time (swin_b's weights are 350 MB); cases of the same config share it.
winattn_model *model_for(const ModelConfig &m, benchmark::State &state) {
  static std::unique_ptr<ModelData> current;
  if (current && current->key == m.name) return current->model;
  current.reset();
  auto d = std::make_unique<ModelData>();
  d->key = m.name;
  {
    const StateDict sd = make_state_dict(m);
    const std::vector<winattn_tensor> views = sd.views();
    winattn_model_options options{};
    options.compute_dtype = WINATTN_DTYPE_F32;
    if (!wb::check(
            state,
            winattn_model_create(views.data(), static_cast<int64_t>(views.size()), &options, &d->model),
            "winattn_model_create"))
      return nullptr;
  }
  current = std::move(d);
  return current->model;
}

void run_classify(benchmark::State &state, const ModelCase &c, const std::string &isa, int threads) {
  if (!wb::configure(state, isa, threads)) return;
  winattn_model *model = model_for(c.config, state);
  if (!model) return;
  if (!wb::check(state, winattn_model_set_num_threads(model, threads), "winattn_model_set_num_threads"))
    return;
  const ModelConfig &m = c.config;
  const int64_t size[3] = {m.frames, m.image, m.image};
  std::vector<float> input(static_cast<size_t>(c.batch * 3 * m.frames * m.image * m.image));
  std::vector<float> logits(static_cast<size_t>(c.batch * m.num_classes));
  wb::fill_uniform(input, 7, -1.0f, 1.0f);
  // One untimed call first, in the first repetition (workspace, oneDNN primitives, the thread pool, page
  // faults).
  static std::set<std::string> warmed;
  const std::string key = c.name() + "/" + isa + "/" + std::to_string(threads);
  if (!warmed.count(key)) {
    if (!wb::check(state, winattn_model_classify(model, input.data(), c.batch, size, logits.data()),
                   "winattn_model_classify"))
      return;
    warmed.insert(key);
  }
  for (auto _ : state) {
    const winattn_status s = winattn_model_classify(model, input.data(), c.batch, size, logits.data());
    if (!wb::check(state, s, "winattn_model_classify")) break;
    benchmark::DoNotOptimize(logits.data());
    benchmark::ClobberMemory();
  }
  if (state.error_occurred()) return;
  for (float v : logits)
    if (!std::isfinite(v)) {
      state.SkipWithError("winattn_model_classify: non-finite logits");
      return;
    }
  wb::set_flop_counters(state, model_flops(m, c.batch), threads);
  state.counters["images"] =
      benchmark::Counter(static_cast<double>(c.batch), benchmark::Counter::kIsIterationInvariantRate);
}

// ---- load -----------------------------------------------------------------------------------------------

// Writes sd as a .safetensors file: an 8-byte little-endian header length, the JSON header
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...} padded with spaces to a
// multiple of 8 bytes, then the tensors' bytes in that order. False on an I/O error.
bool write_safetensors(const StateDict &sd, const std::string &path) {
  std::string header = "{";
  uint64_t offset = 0;
  for (size_t i = 0; i < sd.tensors.size(); ++i) {
    const NamedTensor &t = sd.tensors[i];
    const uint64_t bytes = t.data.size() * sizeof(float);
    header += (i ? ",\"" : "\"") + t.name + "\":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) header += (d ? "," : "") + std::to_string(t.shape[d]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  unsigned char length[8];
  for (int i = 0; i < 8; ++i)
    length[i] = static_cast<unsigned char>(static_cast<uint64_t>(header.size()) >> (8 * i));
  bool ok =
      std::fwrite(length, 1, 8, f) == 8 && std::fwrite(header.data(), 1, header.size(), f) == header.size();
  for (const auto &t : sd.tensors)
    ok = ok && std::fwrite(t.data.data(), sizeof(float), t.data.size(), f) == t.data.size();
  return std::fclose(f) == 0 && ok;
}

// The swin_t file, written on first use into a temp dir removed at exit.
struct TempFile {
  std::string dir, path;
  int64_t bytes = 0;
  ~TempFile() {
    if (!path.empty()) std::remove(path.c_str());
    if (!dir.empty()) rmdir(dir.c_str());
  }
};

const TempFile *swin_t_file(benchmark::State &state) {
  static std::unique_ptr<TempFile> file;
  if (file) return file.get();
  auto f = std::make_unique<TempFile>();
  const char *tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/winattn_bench_model.XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    state.SkipWithError("mkdtemp failed");
    return nullptr;
  }
  f->dir = buf.data();
  f->path = f->dir + "/swin_t.safetensors";
  const StateDict sd = make_state_dict(swin_t());
  if (!write_safetensors(sd, f->path)) {
    state.SkipWithError(("cannot write " + f->path).c_str());
    return nullptr;
  }
  for (const auto &t : sd.tensors) f->bytes += static_cast<int64_t>(t.data.size() * sizeof(float));
  file = std::move(f);
  return file.get();
}

void run_load(benchmark::State &state, int threads) {
  if (!wb::check(state, winattn_set_num_threads(threads), "winattn_set_num_threads")) return;
  const TempFile *file = swin_t_file(state);
  if (!file) return;
  // One untimed load first: the page cache then holds the file, so the figure is the library's work
  // (mapping, checks, packing), not the disk.
  winattn_model *model = nullptr;
  if (!wb::check(state, winattn_model_load(file->path.c_str(), nullptr, &model), "winattn_model_load"))
    return;
  winattn_model_destroy(model);
  for (auto _ : state) {
    model = nullptr;
    const winattn_status s = winattn_model_load(file->path.c_str(), nullptr, &model);
    if (!wb::check(state, s, "winattn_model_load")) break;
    state.PauseTiming();
    winattn_model_destroy(model);
    state.ResumeTiming();
  }
  if (state.error_occurred()) return;
  state.SetBytesProcessed(state.iterations() * file->bytes);
}

}  // namespace

int main(int argc, char **argv) {
  // A call takes 0.1 to 1.5 s, so a short --benchmark_min_time gives one iteration: unless the command line
  // says otherwise, every case runs 3 times and the console shows the aggregates (the median is the figure).
  bool repetitions_given = false;
  for (int i = 1; i < argc; ++i)
    repetitions_given = repetitions_given || std::strncmp(argv[i], "--benchmark_repetitions", 23) == 0;
  const int repetitions = repetitions_given ? 0 : 3;
  const wb::Options options = wb::initialize(&argc, argv, "bench_model");
  FILE *out = options.console ? stdout : stderr;
  std::vector<std::string> seen;
  for (const ModelCase &c : cases()) {
    if (std::find(seen.begin(), seen.end(), c.config.name) != seen.end()) continue;
    seen.push_back(c.config.name);
    const ModelConfig &m = c.config;
    const StateDict sd = make_state_dict(m);
    double params = 0;
    for (const auto &t : sd.tensors) params += static_cast<double>(t.data.size());
    std::fprintf(out,
                 "%-10s %5.1f M parameters, %6.2f GFLOP per %s%lldx%lldx%lld input (%.2f G multiply-adds)\n",
                 m.name.c_str(), params * 1e-6, model_flops(m, 1) * 1e-9, m.frames > 1 ? "clip, " : "",
                 static_cast<long long>(m.frames), static_cast<long long>(m.image),
                 static_cast<long long>(m.image), model_flops(m, 1) * 0.5e-9);
  }
  std::fflush(out);
  for (const ModelCase &c : cases()) {
    for (size_t i = 0; i < options.isas.size(); ++i) {
      for (int threads : options.threads) {
        const std::string isa = options.isas[i];
        const std::string name = wb::bench_name("model_classify/" + c.name(), options.isa_names[i], threads);
        auto *b = benchmark::RegisterBenchmark(
            name.c_str(), [c, isa, threads](benchmark::State &st) { run_classify(st, c, isa, threads); });
        b->UseRealTime()->Unit(benchmark::kMillisecond);
        if (repetitions) b->Repetitions(repetitions)->DisplayAggregatesOnly(true);
      }
    }
  }
  for (int threads : options.threads) {
    const std::string name = "model_load/swin_t_safetensors/threads:" + std::to_string(threads);
    auto *b = benchmark::RegisterBenchmark(name.c_str(),
                                           [threads](benchmark::State &st) { run_load(st, threads); });
    b->UseRealTime()->Unit(benchmark::kMillisecond);
    if (repetitions) b->Repetitions(repetitions)->DisplayAggregatesOnly(true);
  }
  return wb::run_all(options);
}
