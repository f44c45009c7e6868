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
#include "position_bias/position_bias.h"

namespace {

using winattn::detail::AttentionKernelInfo;
using wt_kernels::AttentionKernelTester;

#ifdef WINATTN_KERNELS_EMULATED
// This executable is built with the AVX-512 kernel files compiled through SIMDe's AVX-512 emulation (see
// avx512_emulation.h; namespace winattn renamed for the whole build so the entries do not collide with the
// library's): it tests the AVX-512 kernels' logic on any x86-64 CPU.
std::vector<const AttentionKernelInfo *> runnable_kernels() {
  return {&winattn::detail::f32_attention_short_16x2_avx512, &winattn::detail::f32_attention_rowmajor_6x64_avx512,
          &winattn::detail::f32_attention_qmajor_64x6_avx512};
}
#else
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
#endif

// Window lengths at and around the kernel's tile edges and vector widths.
std::vector<int64_t> edge_lengths(const AttentionKernelInfo &kernel) {
  std::set<int64_t> n;
  for (int64_t t = 1; t <= std::min<int64_t>(34, kernel.limit_n); ++t) n.insert(t);  // through two AVX-512 vectors
  for (int64_t edge : {int64_t{kernel.tile_rows}, int64_t{kernel.tile_cols}, int64_t{48}, int64_t{64}}) {
    for (int64_t m : {1, 2, 3}) {
      for (int64_t delta : {-1, 0, 1}) {
        if (edge * m + delta >= 1 && edge * m + delta <= std::min<int64_t>(200, kernel.limit_n))
          n.insert(edge * m + delta);
      }
    }
  }
  return {n.begin(), n.end()};
}

}  // namespace

#ifndef WINATTN_KERNELS_EMULATED
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
    CHECK(k.max_n <= k.limit_n);
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

#endif

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

// Head dims past one slab of output vectors (the query-major kernels compute P V in slabs of up to 4 or 8
// channel vectors, split into nearly equal parts) with ragged last vectors, at window lengths on both sides
// of the AVX2 kernel's switch to out^T tiles (31).
TEST_CASE("every kernel: wide heads") {
  for (const AttentionKernelInfo *kernel : runnable_kernels()) {
    for (int64_t n : {1, 9, 16, 17, 31, 32, 49, 129}) {
      if (n > kernel->limit_n) continue;
      for (int64_t d : {72, 100, 136}) {
        AttentionKernelTester()
            .n(n)
            .head_dim(d)
            .bias(true)
            .mask(n % 2 == 1)
            .seed(static_cast<uint64_t>(n + d))
            .test(*kernel);
      }
    }
  }
}

TEST_CASE("every kernel: terms present or not, cosine, strided rows") {
  for (const AttentionKernelInfo *kernel : runnable_kernels()) {
    for (int64_t n : {1, 5, 8, 16, 17, 24, 49, 64, 65, 98, 144}) {
      if (n > kernel->limit_n) continue;
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
    for (int64_t n : {1, 2, 7, 16, 17, 32, 33, 49, 64, 144}) {
      if (n > kernel->limit_n) continue;
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
    if (kernel->limit_n < 392) continue;
    AttentionKernelTester().n(392).head_dim(32).bias(true).mask(true).test(*kernel);
    AttentionKernelTester().n(256).head_dim(64).bias(true).cosine(true).test(*kernel);
  }
}

TEST_CASE("batched kernels: every batch size up to the entry's, results independent of the batch") {
  for (const AttentionKernelInfo *kernel : runnable_kernels()) {
    if (kernel->run_batch == nullptr) continue;
    for (int64_t n : {1, 3, 8, 13, 16, 17, 25, 32}) {
      if (n > kernel->limit_n) continue;
      for (int64_t items = 1; items <= kernel->max_batch; items += items < 4 ? 1 : 3) {
        AttentionKernelTester().n(n).head_dim(64).items(items).bias(true).mask(n % 2 == 1).test(*kernel);
      }
    }
  }
}

TEST_CASE("every transposer of terms against a plain transpose, padding zeroed") {
#ifdef WINATTN_KERNELS_EMULATED
  const winattn::detail::TransposeTermsInfo *const all[] = {&winattn::detail::f32_transpose_terms_16x16_avx512};
  const size_t count = 1;
#else
  size_t count = 0;
  const winattn::detail::TransposeTermsInfo *const *all = winattn::detail::f32_transpose_terms_kernels(&count);
  REQUIRE(count >= 1);
  CHECK(all[count - 1]->required == 0);
#endif
  for (size_t k = 0; k < count; ++k) {
    const auto &kernel = *all[k];
#ifndef WINATTN_KERNELS_EMULATED
    if (!winattn::detail::has_features(winattn::detail::active_features(), kernel.required)) continue;
#endif
    CAPTURE(kernel.name);
    for (int64_t n : {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 49, 64, 98, 144}) {
      CAPTURE(n);
      const int64_t ld = winattn::detail::transposed_terms_ld(n) + (n % 3 == 0 ? 16 : 0);
      std::vector<float> src(static_cast<size_t>(n * n));
      for (int64_t i = 0; i < n * n; ++i) src[i] = static_cast<float>(i) * 0.5f - 3.0f;
      std::vector<float> dst(static_cast<size_t>(n * ld), -7.0f);
      kernel.run(src.data(), n, ld, dst.data());
      int bad = 0;
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < ld; ++i)
          if (dst[j * ld + i] != (i < n ? src[i * n + j] : 0.0f)) ++bad;
      CHECK(bad == 0);
    }
  }
}

#ifndef WINATTN_KERNELS_EMULATED
TEST_CASE("every gather kernel of the bias lookup against a plain gather, every tail length") {
  size_t count = 0;
  const winattn::detail::GatherKernelInfo *const *all = winattn::detail::f32_bias_gather_kernels(&count);
  REQUIRE(count >= 1);
  CHECK(all[count - 1]->required == 0);
  std::vector<float> column(4096);
  for (size_t i = 0; i < column.size(); ++i) column[i] = static_cast<float>(i) * 0.25f + 1.0f;
  for (size_t k = 0; k < count; ++k) {
    const auto &kernel = *all[k];
    if (!winattn::detail::has_features(winattn::detail::active_features(), kernel.required)) continue;
    CAPTURE(kernel.name);
    for (int64_t n : {0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 49, 100, 2401}) {
      CAPTURE(n);
      std::vector<int32_t> index(static_cast<size_t>(n));
      for (int64_t t = 0; t < n; ++t) index[t] = static_cast<int32_t>((t * 2654435761u) % 4096);
      std::vector<float> out(static_cast<size_t>(n) + 16, -9.0f);
      kernel.run(column.data(), index.data(), n, out.data());
      int bad = 0;
      for (int64_t t = 0; t < n; ++t) bad += out[t] != column[index[t]];
      for (int64_t t = n; t < n + 16; ++t) bad += out[t] != -9.0f;  // nothing past the end
      CHECK(bad == 0);
    }
  }
}
#endif
