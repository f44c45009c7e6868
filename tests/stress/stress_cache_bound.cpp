// The process-wide caches stay bounded (issue 13: "+143 MiB after 2,000 token counts at C = 4").
//
// One shifted layer at C = 4 (1 head, windows of 1 x 1 x 2 shifted by 1, a bias table) runs forwards on
// 2,000 different grids [1][1][2m], m = 1..2000. Every grid is one chunk (a chunk holds up to
// 24576 / C / N = 3072 windows), so every forward needs a projection plan for its own row count 2m:
// 2,000 plans per projection and 4,000 matmul primitives in all, which the caches of projection/linear.h
// must not keep (at most Linear::kMaxCachedPlans unpinned plans per Linear, kMaxCachedPrimitives
// primitives process-wide, oneDNN's own cache capped).
//
// Measured: the resident set (/proc/self/statm, after malloc_trim so that freed heap is returned) after the
// first 200 grids, when every bounded cache is full, and after all 2,000. The growth in between must stay
// under kMaxGrowthBytes = 8 MiB: the caches hold a few dozen plans of a few KiB each, so a bounded process
// grows by heap fragmentation only (measured: under 1 MiB), where keeping every plan and primitive costs
// tens of MiB here (and +143 MiB in the measurement). Every 50th result is also checked against a
// fresh layer's, so that evicting and remaking plans cannot change results.
//
// Environment: WINATTN_CACHE_GRIDS (default 2000) sets the number of grids.
#include <malloc.h>
#include <unistd.h>
#include <winattn/winattn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kChannels = 4;
constexpr int64_t kMaxGrowthBytes = int64_t{8} << 20;
constexpr int64_t kWarmupGrids = 200;

int64_t resident_bytes() {
  malloc_trim(0);
  FILE *f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return static_cast<int64_t>(resident) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

std::vector<float> ramp(size_t n, float scale, float offset) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>((i * 37 + 11) % 29) / 29.0f + offset;
  return v;
}

struct Weights {
  std::vector<float> qkv_w = ramp(3 * kChannels * kChannels, 0.5f, -0.25f);
  std::vector<float> qkv_b = ramp(3 * kChannels, 0.1f, 0.0f);
  std::vector<float> proj_w = ramp(kChannels * kChannels, 0.5f, -0.2f);
  std::vector<float> proj_b = ramp(kChannels, 0.1f, 0.0f);
  std::vector<float> table = ramp(1 * 1 * 3, 1.0f, -0.5f);  // (2*1-1) * (2*1-1) * (2*2-1) rows, 1 head

  winattn_layer *create() const {
    winattn_layer_desc d;
    std::memset(&d, 0, sizeof d);
    d.channels = kChannels;
    d.num_heads = 1;
    d.window[0] = 1;
    d.window[1] = 1;
    d.window[2] = 2;
    d.shift[2] = 1;
    d.qkv_weight = qkv_w.data();
    d.qkv_bias = qkv_b.data();
    d.proj_weight = proj_w.data();
    d.proj_bias = proj_b.data();
    d.relative_position_bias_table = table.data();
    winattn_layer *layer = nullptr;
    if (winattn_layer_create(&d, &layer) != WINATTN_STATUS_OK) {
      std::fprintf(stderr, "winattn_layer_create failed: %s\n", winattn_last_error_message());
      std::exit(1);
    }
    return layer;
  }
};

}  // namespace

int main() {
  int64_t grids = 2000;
  if (const char *env = std::getenv("WINATTN_CACHE_GRIDS")) grids = std::atoll(env);
  if (grids <= kWarmupGrids) grids = kWarmupGrids + 1;
  const Weights weights;
  winattn_layer *layer = weights.create();
  const std::vector<float> input = ramp(static_cast<size_t>(2 * grids * kChannels), 2.0f, -1.0f);
  std::vector<float> output(input.size()), expected(input.size());
  int failures = 0;
  int64_t baseline = -1;
  const int64_t start = resident_bytes();
  for (int64_t m = 1; m <= grids; ++m) {
    const int64_t grid[3] = {1, 1, 2 * m};
    if (winattn_layer_forward(layer, input.data(), 1, grid, output.data()) != WINATTN_STATUS_OK) {
      std::fprintf(stderr, "forward on grid %lld failed: %s\n", static_cast<long long>(2 * m),
                   winattn_last_error_message());
      return 1;
    }
    if (m % 50 == 0) {  // the same result from a fresh layer (whose plans were never evicted)
      winattn_layer *fresh = weights.create();
      const winattn_status s = winattn_layer_forward(fresh, input.data(), 1, grid, expected.data());
      winattn_layer_destroy(fresh);
      const size_t n = static_cast<size_t>(2 * m * kChannels);
      if (s != WINATTN_STATUS_OK || std::memcmp(output.data(), expected.data(), n * sizeof(float)) != 0) {
        std::fflush(stdout);
        std::fprintf(stderr, "FAIL: grid %lld: result differs from a fresh layer's\n",
                     static_cast<long long>(2 * m));
        ++failures;
      }
    }
    if (m == kWarmupGrids) baseline = resident_bytes();
    if (m % 500 == 0) {
      std::printf("after %5lld grids: resident %8.2f MiB\n", static_cast<long long>(m),
                  static_cast<double>(resident_bytes()) / (1 << 20));
    }
  }
  const int64_t end = resident_bytes();
  winattn_layer_destroy(layer);
  const int64_t growth = end - baseline;
  std::printf(
      "resident: %.2f MiB at start, %.2f MiB after %lld grids, %.2f MiB after %lld: growth %.2f MiB "
      "(bound %.2f MiB)\n",
      static_cast<double>(start) / (1 << 20), static_cast<double>(baseline) / (1 << 20),
      static_cast<long long>(kWarmupGrids), static_cast<double>(end) / (1 << 20),
      static_cast<long long>(grids), static_cast<double>(growth) / (1 << 20),
      static_cast<double>(kMaxGrowthBytes) / (1 << 20));
  std::fflush(stdout);
  if (start < 0 || baseline < 0 || end < 0) {
    std::fprintf(stderr, "cannot read /proc/self/statm\n");
    return 1;
  }
  if (growth > kMaxGrowthBytes) {
    std::fprintf(stderr, "FAIL: the resident set grew by %.2f MiB over %lld new row counts\n",
                 static_cast<double>(growth) / (1 << 20), static_cast<long long>(grids - kWarmupGrids));
    ++failures;
  }
  std::fflush(stderr);
  std::printf("%s\n", failures == 0 ? "PASS" : "FAIL");
  return failures == 0 ? 0 : 1;
}
