// Every registered f32 attention kernel the CPU supports, called directly (whatever the dispatch would pick),
// at and around its tile edges and on every shape class, against the float64 oracle of the tester.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "attention_kernel_tester.h"
#include "cpu/dispatch.h"

namespace {

using winattn::detail::AttentionKernelInfo;
using wt_kernels::AttentionKernelTester;

// The kernels this machine can run (its features, within WINATTN_MAX_ISA when that is set).
std::vector<const AttentionKernelInfo *> runnable_kernels() {
  size_t count = 0;
  const AttentionKernelInfo *const *all = winattn::detail::f32_attention_kernels(&count);
  std::vector<const AttentionKernelInfo *> kernels;
  for (size_t i = 0; i < count; ++i)
    if (winattn::detail::has_features(winattn::detail::active_features(), all[i]->required))
      kernels.push_back(all[i]);
  return kernels;
}

// Window lengths at and around the kernel's tile edges and vector widths.
std::vector<int64_t> edge_lengths(const AttentionKernelInfo &kernel) {
  std::set<int64_t> n;
  for (int64_t t = 1; t <= 34; ++t) n.insert(t);  // every length through two AVX-512 vectors and a bit
  for (int64_t edge : {int64_t{kernel.tile_rows}, int64_t{kernel.tile_cols}, int64_t{48}, int64_t{64}}) {
    for (int64_t m : {1, 2, 3}) {
      for (int64_t delta : {-1, 0, 1}) {
        if (edge * m + delta >= 1 && edge * m + delta <= 200) n.insert(edge * m + delta);
      }
    }
  }
  return {n.begin(), n.end()};
}

}  // namespace

TEST_CASE("kernel table: names, features, tiles, workspaces, dispatch ranges") {
  size_t count = 0;
  const AttentionKernelInfo *const *all = winattn::detail::f32_attention_kernels(&count);
  REQUIRE(count >= 1);
  std::set<std::string> names;
  for (size_t i = 0; i < count; ++i) {
    const AttentionKernelInfo &k = *all[i];
    CAPTURE(k.name);
    CHECK(std::string(k.name).rfind("f32_attention_", 0) == 0);
    CHECK(names.insert(k.name).second);
    CHECK((k.run != nullptr) != (k.run_batch != nullptr));
    CHECK(k.max_batch >= 1);
    CHECK(k.max_batch <= winattn::detail::kMaxBatchItems);
    CHECK((k.run != nullptr ? k.max_batch == 1 : true));
    CHECK(k.tile_rows >= 1);
    CHECK(k.tile_cols >= 1);
    CHECK(k.min_n >= 1);
    CHECK(k.min_n <= k.max_n);
    CHECK(k.workspace_floats(1, 1) > 0);
    CHECK(k.workspace_floats(49, 32) >= k.workspace_floats(7, 32));
  }
  // The reference comes last, needs nothing and covers every n: the dispatch always finds a kernel.
  const AttentionKernelInfo &last = *all[count - 1];
  CHECK(last.required == 0);
  CHECK(last.min_n == 1);
  CHECK(last.max_n == INT64_MAX);
  // With no features at all, every n gets the reference; with this CPU's, a kernel it can run.
  for (int64_t n : {1, 16, 17, 49, 392}) {
    CHECK(&winattn::detail::select_f32_attention_kernel(0, n) == &last);
    const AttentionKernelInfo &chosen = winattn::detail::select_f32_attention_kernel(winattn::detail::cpu_features(), n);
    CHECK(winattn::detail::has_features(winattn::detail::cpu_features(), chosen.required));
    CHECK(chosen.min_n <= n);
    CHECK(n <= chosen.max_n);
  }
}

TEST_CASE("every kernel: every window length at and around its tiles, several head dims, bias and mask") {
  for (const AttentionKernelInfo *kernel : runnable_kernels()) {
    for (int64_t n : edge_lengths(*kernel)) {
      for (int64_t d : {1, 8, 17, 32, 64}) {
        if (n > 100 && d != 32) continue;  // the long windows once per head dim class is enough
        AttentionKernelTester().n(n).head_dim(d).bias(true).mask(true).seed(static_cast<uint64_t>(n)).test(*kernel);
      }
    }
  }
}

TEST_CASE("every kernel: terms present or not, cosine, strided rows") {
  for (const AttentionKernelInfo *kernel : runnable_kernels()) {
    for (int64_t n : {1, 5, 8, 16, 17, 24, 49, 64, 65, 98, 144}) {
      for (int64_t d : {3, 16, 32}) {
        for (int flags = 0; flags < 8; ++flags) {
          AttentionKernelTester()
              .n(n)
              .head_dim(d)
              .bias((flags & 1) != 0)
              .mask((flags & 2) != 0)
              .cosine((flags & 4) != 0)
              .row_padding(flags % 3 == 0 ? 0 : 2 * d + 5)
              .seed(static_cast<uint64_t>(100 + flags))
              .test(*kernel);
        }
      }
    }
  }
}

TEST_CASE("every kernel: large logits, fully masked rows, NaN rows") {
  for (const AttentionKernelInfo *kernel : runnable_kernels()) {
    for (int64_t n : {1, 2, 7, 16, 17, 33, 49, 64, 144}) {
      for (float range : {40.0f, 3000.0f, 1e5f}) {
        for (bool cosine : {false, true}) {
          AttentionKernelTester().n(n).head_dim(32).bias(true).cosine(cosine).logit_range(range).test(*kernel);
        }
      }
      AttentionKernelTester().n(n).head_dim(16).bias(true).mask(true).special_values(true).test(*kernel);
      AttentionKernelTester().n(n).head_dim(16).special_values(true).cosine(true).test(*kernel);
    }
  }
}

TEST_CASE("every kernel: Video Swin's n = 392 and a long temporal window") {
  for (const AttentionKernelInfo *kernel : runnable_kernels()) {
    AttentionKernelTester().n(392).head_dim(32).bias(true).mask(true).test(*kernel);
    AttentionKernelTester().n(256).head_dim(64).bias(true).cosine(true).test(*kernel);
  }
}

TEST_CASE("batched kernels: every batch size up to the entry's, results independent of the batch") {
  for (const AttentionKernelInfo *kernel : runnable_kernels()) {
    if (kernel->run_batch == nullptr) continue;
    for (int64_t n : {1, 3, 8, 13, 16, 17, 25, 32}) {
      for (int64_t items = 1; items <= kernel->max_batch; items += items < 4 ? 1 : 3) {
        AttentionKernelTester().n(n).head_dim(64).items(items).bias(true).mask(n % 2 == 1).test(*kernel);
      }
    }
  }
}
