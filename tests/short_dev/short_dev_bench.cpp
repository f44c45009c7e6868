// The benchmark half of short_dev: each short-window batched kernel against the per-item kernels of the same
// ISA (the ones the dispatch picks today, called item by item with the next item prefetched as
// window_attention does), on the same items, calls interleaved, rdtsc per call. FLOPs: 4 n^2 head_dim per
// item. The FMA peak is probed in this process (12 independent chains, the fastest of 40 short runs) before
// and after.
//
//   short_dev bench [--secs S] [--shape NAME] [--isa avx2|avx512]
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <immintrin.h>

#include "attention/attention.h"
#include "attention/f32_attention_short_impl.h"

using namespace winattn::detail;

// Variants of a kernel linked in for a paired comparison (their AttentionKernelInfo renamed with objcopy
// --redefine-sym): `--prof variants` times them interleaved with the kernel itself.
namespace winattn::detail {
extern const AttentionKernelInfo short_variant_0 __attribute__((weak));
extern const AttentionKernelInfo short_variant_1 __attribute__((weak));
extern const AttentionKernelInfo short_variant_2 __attribute__((weak));
}  // namespace winattn::detail

namespace {

// ---- FMA peak ---------------------------------------------------------------------------------------------

template <class V, V (*Fma)(V, V, V)>
inline void chains(V (&a)[12], V m, V c, int64_t iterations) {
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int t = 0; t < 12; ++t) a[t] = Fma(a[t], m, c);
  }
}

__attribute__((target("avx2,fma"))) double probe_avx2(int64_t iterations) {
  __m256 a[12];
  for (int t = 0; t < 12; ++t) a[t] = _mm256_set1_ps(1.0f + 0.1f * t);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int t = 0; t < 12; ++t) a[t] = _mm256_fmadd_ps(a[t], m, c);
  }
  __m256 s = a[0];
  for (int t = 1; t < 12; ++t) s = _mm256_add_ps(s, a[t]);
  volatile float sink = _mm_cvtss_f32(_mm256_castps256_ps128(s));
  (void)sink;
  return double(iterations) * 12 * 8 * 2;
}

__attribute__((target("avx512f"))) double probe_avx512(int64_t iterations) {
  __m512 a[12];
  for (int t = 0; t < 12; ++t) a[t] = _mm512_set1_ps(1.0f + 0.1f * t);
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int t = 0; t < 12; ++t) a[t] = _mm512_fmadd_ps(a[t], m, c);
  }
  __m512 s = a[0];
  for (int t = 1; t < 12; ++t) s = _mm512_add_ps(s, a[t]);
  volatile float sink = _mm512_cvtss_f32(s);
  (void)sink;
  return double(iterations) * 12 * 16 * 2;
}

double g_tsc_hz = 0.0;

void calibrate_tsc() {
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t c0 = __rdtsc();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(200)) {
  }
  const uint64_t c1 = __rdtsc();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  g_tsc_hz = double(c1 - c0) / secs;
}

// GFLOP/s, the fastest of 40 runs of ~2 ms over ~0.1 s (interference only slows a run).
double peak_gflops(bool avx512) {
  const int64_t iterations = 1 << 18;
  double best = 0.0;
  for (int run = 0; run < 41; ++run) {
    const uint64_t c0 = __rdtsc();
    const double flops = avx512 ? probe_avx512(iterations) : probe_avx2(iterations);
    const uint64_t c1 = __rdtsc();
    if (run == 0) continue;  // warm-up
    best = std::max(best, flops / (double(c1 - c0) / g_tsc_hz) * 1e-9);
  }
  return best;
}

// ---- Shapes -----------------------------------------------------------------------------------------------

struct Shape {
  const char *name;
  int64_t windows, heads, n, d;
  bool bias, mask;
};

// The temporal shapes of the issue (AIM: T frames at each of 196 tokens of 4 clips / 2 clips, 12 heads), and
// short spatial windows with the relative position bias and shifted-window masks.
const Shape kShapes[] = {
    {"temporal_n8_4clips", 784, 12, 8, 64, false, false},
    {"temporal_n16_2clips", 392, 12, 16, 64, false, false},
    {"temporal_n8_bias", 784, 12, 8, 64, true, false},
    {"win4x4_d32_bias_mask", 196, 6, 16, 32, true, true},
    {"win5x5_d32_bias_mask", 144, 6, 25, 32, true, true},
    {"n32_d32_bias", 96, 8, 32, 32, true, false},
    {"win3x3_d32_bias_mask", 324, 6, 9, 32, true, true},
};

// Arrays [windows][heads][n][d] as winattn_window_attention takes them; bias [heads][n][n] and its
// transposes; masks [mask_windows][n][n] (0 / -100, symmetric, 1 in 4 windows all zero and then not passed,
// as window_attention skips them) passed as their own transposes.
struct Data {
  Shape s;
  std::vector<float> q, k, v, out, bias, bias_t, mask;
  int64_t mask_windows = 7, ld_t = 0;
  std::vector<AttentionItem> items;
  explicit Data(const Shape &shape, int64_t windows) : s(shape) {
    s.windows = windows;
    const size_t size = static_cast<size_t>(s.windows * s.heads * s.n * s.d);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    q.resize(size), k.resize(size), v.resize(size), out.assign(size, 0.0f);
    for (size_t i = 0; i < size; ++i) q[i] = u(rng), k[i] = u(rng), v[i] = u(rng);
    const int64_t n = s.n;
    ld_t = transposed_terms_ld(n);
    if (s.bias) {
      bias.resize(static_cast<size_t>(s.heads * n * n));
      for (float &x : bias) x = u(rng);
      bias_t.assign(static_cast<size_t>(s.heads * n * ld_t), 0.0f);
      for (int64_t h = 0; h < s.heads; ++h)
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j) bias_t[(h * n + j) * ld_t + i] = bias[(h * n + i) * n + j];
    }
    if (s.mask) {
      mask.assign(static_cast<size_t>(mask_windows * n * n), 0.0f);
      for (int64_t m = 1; m < mask_windows; ++m)  // window pattern 0: no mask
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j)
            mask[(m * n + i) * n + j] = ((i * 7 + m) % 3 == (j * 7 + m) % 3) ? 0.0f : -100.0f;
    }
    const float scale = 1.0f / std::sqrt(float(s.d));
    for (int64_t w = 0; w < s.windows; ++w)
      for (int64_t h = 0; h < s.heads; ++h) {
        const size_t off = static_cast<size_t>((w * s.heads + h) * n * s.d);
        AttentionItem it;
        it.q = q.data() + off, it.k = k.data() + off, it.v = v.data() + off, it.out = out.data() + off;
        it.scale = scale;
        if (s.bias) {
          it.terms.bias = bias.data() + h * n * n;
          it.terms.bias_t = bias_t.data() + h * n * ld_t;
          it.terms.ld_bias_t = ld_t;
        }
        const int64_t m = w % mask_windows;
        if (s.mask && m != 0) {
          it.terms.mask = it.terms.mask_t = mask.data() + m * n * n;
          it.terms.ld_mask_t = n;
        }
        items.push_back(it);
      }
  }
  AttentionShape shape() const {
    AttentionShape sh;
    sh.n = s.n, sh.head_dim = s.d, sh.ld_q = sh.ld_k = sh.ld_v = sh.ld_out = s.d;
    return sh;
  }
};

// A way to run `count` items starting at `first`.
struct Runner {
  std::string name;
  std::function<void(const Data &, int64_t first, int64_t count, float *ws)> run;
  size_t workspace;
};

// Per-item kernel, called item by item with the next item's rows prefetched (into L1 on AMD), as
// window_attention does.
Runner per_item(const AttentionKernelInfo &k, const Data &data) {
  Runner r;
  r.name = k.name;
  r.workspace = k.workspace_floats(data.s.n, data.s.d);
  const AttentionKernelInfo *kp = &k;
  r.run = [kp](const Data &dt, int64_t first, int64_t count, float *ws) {
    AttentionShape shape = dt.shape();
    shape.prefetch_to_l1 = true;
    const int64_t floats = dt.s.n * dt.s.d, total = static_cast<int64_t>(dt.items.size());
    for (int64_t b = first; b < first + count; ++b) {
      const AttentionItem &it = dt.items[static_cast<size_t>(b)];
      AttentionShape item_shape = shape;
      if (b + 1 < total) {
        const AttentionItem &nx = dt.items[static_cast<size_t>(b + 1)];
        item_shape.prefetch[0] = {nx.q, floats};
        item_shape.prefetch[1] = {nx.k, floats};
        item_shape.prefetch[2] = {nx.v, floats};
        item_shape.prefetch[3] = {nx.out, floats};
      }
      kp->run(item_shape, it.q, it.k, it.v, it.scale, it.terms, it.out, ws);
    }
  };
  return r;
}

Runner batched(const AttentionKernelInfo &k, const Data &data) {
  Runner r;
  r.name = k.name;
  r.workspace = k.workspace_floats(data.s.n, data.s.d);
  const AttentionKernelInfo *kp = &k;
  r.run = [kp](const Data &dt, int64_t first, int64_t count, float *ws) {
    AttentionShape shape = dt.shape();
    shape.prefetch_to_l1 = true;  // as window_attention sets it on AMD (this machine)
    kp->run_batch(shape, dt.items.data() + first, count, ws);
  };
  return r;
}

double percentile(std::vector<double> x, double p) {
  std::sort(x.begin(), x.end());
  return x[static_cast<size_t>(p * double(x.size() - 1))];
}

// Every runner on groups of `count` items, interleaved; groups cycle over the data's items. shared: all
// runners on the same group (data in cache: the second finds it warm); otherwise each runner on its own
// part of the data, far from the others' (streaming: each pays its own misses).
void measure(const char *label, const Data &data, std::vector<Runner> &runners, int64_t count, double secs,
             double peak, bool shared) {
  const int64_t total = static_cast<int64_t>(data.items.size());
  std::vector<float *> ws;
  for (const Runner &r : runners)
    ws.push_back(static_cast<float *>(std::aligned_alloc(64, (r.workspace * 4 + 16 * 64) / 64 * 64)));
  std::vector<std::vector<double>> cycles(runners.size());
  std::vector<double> ratio;  // runner 1 (the first per-item kernel) / runner 0 (the batched one), per group
  const double flops = 4.0 * double(data.s.n * data.s.n * data.s.d) * double(count);
  int64_t g = 0;
  // Warm-up: one pass over everything.
  for (int64_t first = 0; first + count <= total; first += count)
    for (size_t r = 0; r < runners.size(); ++r) runners[r].run(data, first, count, ws[r]);
  const auto start = std::chrono::steady_clock::now();
  // (the clock only every 16 groups: reading it is slow in some VMs)
  while ((g + 1) % 16 != 0 ||
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < secs) {
    const int64_t groups = total / count;
    std::vector<double> c(runners.size());
    for (size_t r = 0; r < runners.size(); ++r) {
      const int64_t group =
          shared ? g % groups
                 : (g + static_cast<int64_t>(r) * groups / static_cast<int64_t>(runners.size())) % groups;
      const int64_t first = group * count;
      _mm_lfence();
      const uint64_t t0 = __rdtsc();
      _mm_lfence();
      runners[r].run(data, first, count, ws[r]);
      _mm_lfence();
      const uint64_t t1 = __rdtsc();
      c[r] = double(t1 - t0);
      cycles[r].push_back(c[r]);
    }
    ++g;
    if (runners.size() > 1) ratio.push_back(c[1] / c[0]);
  }
  std::printf("  %s: %lld calls of %lld items each\n", label, (long long)cycles[0].size(), (long long)count);
  for (size_t r = 0; r < runners.size(); ++r) {
    const double p10 = percentile(cycles[r], 0.10), med = percentile(cycles[r], 0.5);
    const double gf10 = flops / (p10 / g_tsc_hz) * 1e-9, gfm = flops / (med / g_tsc_hz) * 1e-9;
    std::printf(
        "    %-36s p10 %7.1f GFLOP/s (%4.1f%% of peak)   median %7.1f GFLOP/s (%4.1f%%)  %8.0f cycles/item\n",
        runners[r].name.c_str(), gf10, 100.0 * gf10 / peak, gfm, 100.0 * gfm / peak, med / double(count));
  }
  if (!ratio.empty())
    std::printf("    paired: %s / %s per group: median %.2fx, p10 %.2fx, p90 %.2fx\n",
                runners[1].name.c_str(), runners[0].name.c_str(), percentile(ratio, 0.5),
                percentile(ratio, 0.1), percentile(ratio, 0.9));
  for (float *p : ws) std::free(p);
}

}  // namespace

int run_bench(int argc, char **argv) {
  double secs = 2.0;
  std::string only, isa_only;
  int64_t count = attention_short_impl::kMaxBatch;
  std::string prof;         // --prof batch|today: run only that kernel on hot data (for perf)
  bool prof_whole = false;  // --whole: --prof on the whole shape
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--secs" && i + 1 < argc) secs = std::atof(argv[++i]);
    if (a == "--shape" && i + 1 < argc) only = argv[++i];
    if (a == "--isa" && i + 1 < argc) isa_only = argv[++i];
    if (a == "--count" && i + 1 < argc) count = std::atoll(argv[++i]);
    if (a == "--prof" && i + 1 < argc) prof = argv[++i];
    if (a == "--whole") prof_whole = true;
  }
  __builtin_cpu_init();
  [[maybe_unused]] const bool has512 =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#ifdef SHORT_DEV_EMULATED_AVX512
  const bool run512 = false;  // emulated: not worth timing
#else
  const bool run512 = has512;
#endif
  calibrate_tsc();
  struct Isa {
    const char *name;
    bool run;
    const AttentionKernelInfo *batch, *row_major, *query_major;
  };
  const Isa isas[] = {
      {"avx512", run512, &f32_attention_short_16x2_avx512, &f32_attention_rowmajor_6x64_avx512,
       &f32_attention_qmajor_64x6_avx512},
      {"avx2", __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), &f32_attention_short_8x2_avx2,
       &f32_attention_rowmajor_4x24_avx2, &f32_attention_qmajor_24x4_avx2},
  };
  std::printf("TSC %.3f GHz\n", g_tsc_hz * 1e-9);
  for (const Isa &isa : isas) {
    if (!isa.run || (!isa_only.empty() && isa_only != isa.name)) {
      if (!isa.run) std::printf("%s: not run on this CPU\n", isa.name);
      continue;
    }
    const bool wide = std::string(isa.name) == "avx512";
    const double peak = peak_gflops(wide);
    std::printf("== %s: FMA peak %.1f GFLOP/s (1 thread, fastest of 40 runs)\n", isa.name, peak);
    for (const Shape &s : kShapes) {
      if (!only.empty() && only != s.name) continue;
      std::printf("%s: %lld windows x %lld heads, n %lld, head_dim %lld, bias %d, mask %d\n", s.name,
                  (long long)s.windows, (long long)s.heads, (long long)s.n, (long long)s.d, s.bias, s.mask);
      // The per-item kernel the dispatch picks today, then the other one.
      const AttentionKernelInfo *today = s.n <= kRowMajorMaxN ? isa.row_major : isa.query_major;
      const AttentionKernelInfo *other = s.n <= kRowMajorMaxN ? isa.query_major : isa.row_major;
      if (!prof.empty()) {
        const int64_t hot_items = std::max<int64_t>(count, (256 << 10) / (16 * s.n * s.d));
        Data hot(s, prof_whole ? s.windows : (hot_items + s.heads - 1) / s.heads);
        std::vector<Runner> runners = {prof == "today" ? per_item(*today, hot) : batched(*isa.batch, hot)};
        if (prof == "variants") {
          for (const AttentionKernelInfo *v : {&short_variant_0, &short_variant_1, &short_variant_2}) {
            if (v == nullptr) continue;
            runners.push_back(batched(*v, hot));
            runners.back().name = "variant " + std::to_string(runners.size() - 2);
          }
        }
        measure("hot (L2), one kernel", hot, runners,
                std::min<int64_t>(count, static_cast<int64_t>(hot.items.size())), secs, peak, true);
        continue;
      }
      {
        // Hot: the items of a few windows, about 256 KiB of q, k, v and out, in L2 (the layer's case: q, k, v
        // just written by the matmul).
        const int64_t hot_items = std::max<int64_t>(count, (256 << 10) / (16 * s.n * s.d));
        Data hot(s, (hot_items + s.heads - 1) / s.heads);
        std::vector<Runner> runners = {batched(*isa.batch, hot), per_item(*today, hot),
                                       per_item(*other, hot)};
        measure("hot (L2)", hot, runners, std::min<int64_t>(count, static_cast<int64_t>(hot.items.size())),
                secs, peak, true);
      }
      {
        Data full(s, s.windows);  // the whole shape: streams from memory
        std::vector<Runner> runners = {batched(*isa.batch, full), per_item(*today, full)};
        measure("whole shape (memory)", full, runners, count, secs, peak, false);
      }
    }
    const double after = peak_gflops(wide);
    std::printf("== %s: FMA peak after %.1f GFLOP/s%s\n", isa.name, after,
                after > 1.1 * peak ? "  (WARNING: the first probe ran slow; shares overstated)" : "");
  }
  return 0;
}
