// winattn_window_attention: the fused attention core, on the window shapes of Swin, SwinV2, Video Swin and
// temporal (video adapter) attention. FLOPs per (window, head): 4 * n * n * head_dim.
//
// Memory bound: at start-up the program also measures the memory bandwidth one thread gets (a streaming
// read + write of two 256 MiB arrays, fastest of 5), and each case reports `bw_bound_pct`: the share of the
// FMA peak a call could reach if moving its bytes once (q, k, v read, out written, bias and masks read) at
// that bandwidth were all it cost. Short windows do 2 FLOPs per byte (T = 8): calls that stream from
// memory are bounded far below the peak whatever the kernel; the `_l2` cases run the same items on data
// that stays in L2 (16 or 8 windows), which is what a layer's chunks hand the kernel.
//
//   bench_window_attention [--threads=1,2] [--isa=avx512,avx2,scalar] [Google Benchmark flags]
#include "bench_common.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace wb = winattn_bench;

namespace {

// Bytes per second one thread streams (read + write), measured once in main(); 0 if not measured.
double g_bandwidth = 0.0;

double measure_bandwidth() {
  const size_t n = size_t{64} << 20;  // 64 Mi floats: 256 MiB per array, far beyond any cache
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  double best = 0.0;
  for (int run = 0; run < 5; ++run) {
    const auto start = std::chrono::steady_clock::now();
    const float *src = a.data();
    float *dst = b.data();
    for (size_t i = 0; i < n; ++i) dst[i] = src[i] * 1.0001f;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    benchmark::DoNotOptimize(b.data());
    best = std::max(best, 2.0 * sizeof(float) * static_cast<double>(n) / seconds);
  }
  return best;
}

struct AttnCase {
  std::string name;
  int64_t images;     // windows = images * prod(grid / window)
  int64_t grid[3];    // depth, height, width of one image's (padded) feature map
  int64_t window[3];  // n = prod(window)
  int64_t shift[3];   // mask built when any shift > 0
  int64_t heads;
  int64_t head_dim;
  bool bias;
  int64_t windows_override;  // > 0: this many windows, no mask (temporal attention)

  int64_t n() const { return window[0] * window[1] * window[2]; }
  int64_t mask_windows() const {
    return (grid[0] / window[0]) * (grid[1] / window[1]) * (grid[2] / window[2]);
  }
  bool masked() const { return windows_override <= 0 && (shift[0] > 0 || shift[1] > 0 || shift[2] > 0); }
  int64_t windows() const { return windows_override > 0 ? windows_override : images * mask_windows(); }
  double bytes() const {  // q, k, v in, out written, bias and masks read once
    const double items = static_cast<double>(windows()) * static_cast<double>(heads);
    double b = 4.0 * items * static_cast<double>(n() * head_dim) * sizeof(float);
    if (bias) b += static_cast<double>(heads * n() * n()) * sizeof(float);
    if (masked()) b += static_cast<double>(mask_windows() * n() * n()) * sizeof(float);
    return b;
  }
  double flops() const {
    return 4.0 * static_cast<double>(windows()) * static_cast<double>(heads) * static_cast<double>(n()) *
           static_cast<double>(n()) * static_cast<double>(head_dim);
  }
};

std::vector<AttnCase> cases() {
  std::vector<AttnCase> c;
  // Swin-T stage 1: 56x56 tokens, window 7, shift 3, 3 heads of 32, 64 windows per image.
  c.push_back({"swin_t_s1_B1", 1, {1, 56, 56}, {1, 7, 7}, {0, 3, 3}, 3, 32, true, 0});
  c.push_back({"swin_t_s1_B8", 8, {1, 56, 56}, {1, 7, 7}, {0, 3, 3}, 3, 32, true, 0});
  // Larger windows, head_dim 32: SwinV2-T/256 (window 8), Swin-B/384 (window 12), SwinV2-B/256 (window 16).
  c.push_back({"swinv2_t_s1_n64", 1, {1, 64, 64}, {1, 8, 8}, {0, 4, 4}, 3, 32, true, 0});
  c.push_back({"swin_b384_s1_n144", 1, {1, 96, 96}, {1, 12, 12}, {0, 6, 6}, 4, 32, true, 0});
  c.push_back({"swinv2_b_s1_n256", 1, {1, 64, 64}, {1, 16, 16}, {0, 8, 8}, 4, 32, true, 0});
  // Video Swin: window 2x7x7 (n 98) on 8x56x56, window 8x7x7 (n 392) on stage 3's 8x14x14.
  c.push_back({"video_swin_n98", 1, {8, 56, 56}, {2, 7, 7}, {1, 3, 3}, 3, 32, true, 0});
  c.push_back({"video_swin_t_s3_n392", 1, {8, 14, 14}, {8, 7, 7}, {0, 3, 3}, 12, 32, true, 0});
  // Temporal attention across frames (AIM-style adapters on ViT-B/16): one window per patch, 12 heads of 64.
  c.push_back({"temporal_n8_4clips", 1, {8, 1, 1}, {8, 1, 1}, {0, 0, 0}, 12, 64, false, 4 * 196});
  c.push_back({"temporal_n16_2clips", 1, {16, 1, 1}, {16, 1, 1}, {0, 0, 0}, 12, 64, false, 2 * 196});
  // The same items on data that stays in L2 (48 and 24 (window, head) items: q, k, v, out 384 KiB).
  c.push_back({"temporal_n8_l2", 1, {8, 1, 1}, {8, 1, 1}, {0, 0, 0}, 12, 64, false, 4});
  c.push_back({"temporal_n16_l2", 1, {16, 1, 1}, {16, 1, 1}, {0, 0, 0}, 12, 64, false, 2});
  // Short windows of head_dim 32 (n 16, 25, 32: 4x4, 5x5, 2x4x4 windows) in L2 (16 items), with a bias.
  c.push_back({"n16_d32_l2", 1, {1, 8, 8}, {1, 4, 4}, {0, 0, 0}, 4, 32, true, 0});
  c.push_back({"n25_d32_l2", 1, {1, 10, 10}, {1, 5, 5}, {0, 0, 0}, 4, 32, true, 0});
  c.push_back({"n32_d32_l2", 1, {2, 8, 8}, {2, 4, 4}, {0, 0, 0}, 4, 32, true, 0});
  // head_dim sweep at n 49 (stage 1 grid, 64 windows).
  c.push_back({"n49_d16_h6", 1, {1, 56, 56}, {1, 7, 7}, {0, 3, 3}, 6, 16, true, 0});
  c.push_back({"n49_d64_h3", 1, {1, 56, 56}, {1, 7, 7}, {0, 3, 3}, 3, 64, true, 0});
  c.push_back({"n49_d128_h3", 1, {1, 56, 56}, {1, 7, 7}, {0, 3, 3}, 3, 128, true, 0});
  return c;
}

struct AttnData {
  std::string key;
  std::vector<float> q, k, v, out, bias, mask;
};

// One case's buffers at a time: Google Benchmark calls the function several times per case.
AttnData *data_for(const AttnCase &c, benchmark::State &state) {
  static std::unique_ptr<AttnData> current;
  if (current && current->key == c.name) return current.get();
  current.reset();
  auto d = std::make_unique<AttnData>();
  d->key = c.name;
  const size_t elems = static_cast<size_t>(c.windows() * c.heads * c.n() * c.head_dim);
  d->q.resize(elems);
  d->k.resize(elems);
  d->v.resize(elems);
  d->out.assign(elems, 0.0f);
  wb::fill_uniform(d->q, 1, -1.0f, 1.0f);
  wb::fill_uniform(d->k, 2, -1.0f, 1.0f);
  wb::fill_uniform(d->v, 3, -1.0f, 1.0f);
  if (c.bias) {
    d->bias.resize(static_cast<size_t>(c.heads * c.n() * c.n()));
    wb::fill_uniform(d->bias, 4, -0.5f, 0.5f);
  }
  if (c.masked()) {
    d->mask.resize(static_cast<size_t>(c.mask_windows() * c.n() * c.n()));
    if (!wb::check(state, winattn_shifted_window_mask(c.grid, c.window, c.shift, d->mask.data()),
                   "winattn_shifted_window_mask"))
      return nullptr;
  }
  current = std::move(d);
  return current.get();
}

void run_case(benchmark::State &state, const AttnCase &c, const std::string &isa, int threads) {
  if (!wb::configure(state, isa, threads)) return;
  AttnData *d = data_for(c, state);
  if (!d) return;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const float *bias = c.bias ? d->bias.data() : nullptr;
  const float *mask = c.masked() ? d->mask.data() : nullptr;
  const int64_t mask_windows = c.masked() ? c.mask_windows() : 0;
  // One untimed call first: page faults on the output, the thread pool's start, cold caches.
  if (!wb::check(state,
                 winattn_window_attention(c.windows(), c.heads, c.n(), c.head_dim, d->q.data(), d->k.data(),
                                          d->v.data(), scale, bias, mask, mask_windows, d->out.data()),
                 "winattn_window_attention"))
    return;
  for (auto _ : state) {
    const winattn_status s =
        winattn_window_attention(c.windows(), c.heads, c.n(), c.head_dim, d->q.data(), d->k.data(),
                                 d->v.data(), scale, bias, mask, mask_windows, d->out.data());
    if (!wb::check(state, s, "winattn_window_attention")) break;
    benchmark::DoNotOptimize(d->out.data());
    benchmark::ClobberMemory();
  }
  if (state.error_occurred()) return;
  wb::set_flop_counters(state, c.flops(), threads);
  constexpr double kCacheBytes = 64e6;  // beyond any L3 here: the call streams from memory
  if (g_bandwidth > 0.0 && wb::peak_gflops(threads) > 0.0 && c.bytes() > kCacheBytes) {
    const double bound_gflops = c.flops() / (c.bytes() / (g_bandwidth * threads)) / 1e9;
    state.counters["bw_bound_pct"] = std::min(100.0, 100.0 * bound_gflops / wb::peak_gflops(threads));
  }
  state.SetLabel(std::to_string(c.windows()) + "x" + std::to_string(c.heads) + " n" + std::to_string(c.n()) +
                 " d" + std::to_string(c.head_dim) + (c.bias ? " +bias" : "") + (c.masked() ? " +mask" : ""));
}

}  // namespace

int main(int argc, char **argv) {
  const wb::Options options = wb::initialize(&argc, argv, "bench_window_attention");
  g_bandwidth = measure_bandwidth();
  std::printf("Memory bandwidth, 1 thread (streaming read + write, fastest of 5): %.1f GB/s\n",
              g_bandwidth / 1e9);
  for (const AttnCase &c : cases()) {
    for (size_t i = 0; i < options.isas.size(); ++i) {
      for (int threads : options.threads) {
        const std::string isa = options.isas[i];
        const std::string name = wb::bench_name("window_attention/" + c.name, options.isa_names[i], threads);
        benchmark::RegisterBenchmark(
            name.c_str(), [c, isa, threads](benchmark::State &st) { run_case(st, c, isa, threads); })
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  return wb::run_all(options);
}
