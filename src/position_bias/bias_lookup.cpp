#include <algorithm>
#include <limits>
#include <vector>

#include "common/error.h"
#include "cpu/dispatch.h"
#include "cpu/threading.h"
#include "position_bias/position_bias.h"

namespace winattn::detail {

// The gather kernel table, in dispatch order.
const GatherKernelInfo *const *f32_bias_gather_kernels(size_t *count) {
  static const GatherKernelInfo *const kKernels[] = {
      &f32_bias_gather_xsimd_avx512,
      &f32_bias_gather_xsimd_avx2,
      &f32_bias_gather_scalar,
  };
  *count = sizeof kKernels / sizeof kKernels[0];
  return kKernels;
}

const GatherKernelInfo &select_f32_gather_kernel(CpuFeatures features) {
  size_t count = 0;
  const GatherKernelInfo *const *kernels = f32_bias_gather_kernels(&count);
  for (size_t i = 0; i < count; ++i)
    if (has_features(features, kernels[i]->required)) return *kernels[i];
  return f32_bias_gather_scalar;
}


namespace {

GatherF32Fn select_gather() {
  const GatherKernelInfo &kernel = select_f32_gather_kernel(active_features());
  return kernel.run;
}

}  // namespace

void relative_position_bias(const float *table, int64_t table_rows, int64_t num_heads, const int64_t *index,
                            int64_t n, float *bias) {
  const int64_t count = n * n;
  const bool fits_int32 = table_rows <= std::numeric_limits<int32_t>::max() / num_heads;
  if (!fits_int32) {
    // Tables this large (2^31 entries) never occur in practice; keep them correct, not fast.
    for (int64_t h = 0; h < num_heads; ++h)
      for (int64_t t = 0; t < count; ++t) bias[h * count + t] = table[index[t] * num_heads + h];
    return;
  }
  // Row offsets into the [rows][heads] table, shared by all heads: the gather then reads table + h.
  std::vector<int32_t> scaled(static_cast<size_t>(count));
  for (int64_t t = 0; t < count; ++t) scaled[t] = static_cast<int32_t>(index[t] * num_heads);
  const GatherF32Fn gather = select_gather();
  // Work items: (head, block of pairs); blocks keep both threads busy when there are few heads.
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  const int64_t items = num_heads * blocks;
  const int threads = team_size_for_work(items, count * num_heads);
  auto run_item = [&](int64_t item) {
    const int64_t h = item / blocks, t0 = item % blocks * kBlock;
    const int64_t len = count - t0 < kBlock ? count - t0 : kBlock;
    gather(table + h, scaled.data() + t0, len, bias + h * count + t0);
  };
  if (threads <= 1) {
    for (int64_t item = 0; item < items; ++item) run_item(item);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t item = 0; item < items; ++item) run_item(item);
}

void relative_position_bias_backward(const float *grad_bias, int64_t table_rows, int64_t num_heads,
                                     const int64_t *index, int64_t n, float *grad_table) {
  const int64_t count = n * n;
  // Pairs grouped by table row (a counting sort, stable: ascending pair order within a row), so every table
  // entry sums its contributions in one fixed order whatever the thread count; no atomics.
  std::vector<int64_t> row_start(static_cast<size_t>(table_rows) + 1, 0);
  for (int64_t t = 0; t < count; ++t) ++row_start[index[t] + 1];
  for (int64_t r = 0; r < table_rows; ++r) row_start[r + 1] += row_start[r];
  std::vector<int64_t> pairs(static_cast<size_t>(count));
  {
    std::vector<int64_t> fill(row_start.begin(), row_start.end() - 1);
    for (int64_t t = 0; t < count; ++t) pairs[fill[index[t]]++] = t;
  }
  // grad_bias transposed to [pairs][heads] so a table row accumulates contiguous head vectors.
  std::vector<float> transposed(static_cast<size_t>(count * num_heads));
  constexpr int64_t kTile = 64;
  const int threads = team_size_for_work(std::max((count + kTile - 1) / kTile, table_rows), count * num_heads);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
#pragma omp for schedule(static)
    for (int64_t t0 = 0; t0 < count; t0 += kTile) {
      const int64_t t1 = t0 + kTile < count ? t0 + kTile : count;
      for (int64_t h = 0; h < num_heads; ++h)
        for (int64_t t = t0; t < t1; ++t) transposed[t * num_heads + h] = grad_bias[h * count + t];
    }
#pragma omp for schedule(static)
    for (int64_t r = 0; r < table_rows; ++r) {
      float *out = grad_table + r * num_heads;
      for (int64_t p = row_start[r]; p < row_start[r + 1]; ++p) {
        const float *g = transposed.data() + pairs[p] * num_heads;
        for (int64_t h = 0; h < num_heads; ++h) out[h] += g[h];
      }
    }
  }
}

}  // namespace winattn::detail
