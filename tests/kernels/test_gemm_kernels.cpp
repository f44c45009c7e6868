// Every registered f32 GEMM kernel the CPU supports (gemm/gemm.h), called directly:
//  - against a float64 oracle written here (sum of src x weight in double, plus bias, plus dst with
//    accumulate), within a bound from the float32 rounding of a sum of `in` products;
//  - bit for bit against the scalar reference, which rounds as the vector kernels do (fused multiply-adds in
//    the same order), so a kernel that drops or reorders a term fails even where the oracle bound is loose;
//  - a row's result independent of the rows around it (a matrix computed in one call equals the same rows
//    computed in calls of other sizes), which is what makes the projections bit-identical for any thread
//    count;
//  - over shapes that reach every edge: rows 1..13 (every row-block size and split), 49 and 128; in across
//    the k-block boundary (255, 256, 257, 513, 1536); out 1, 15, 16, 17, 40 and 96 (masked last panels);
//    leading dimensions wider than the rows; with and without bias; store and accumulate; calls of more
//    rows than one L2 block;
//  - GELU applied to the accumulators (against GELU of the float64 sum);
//  - pack and unpack as exact inverses.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/dispatch.h"
#include "gemm/gemm.h"

namespace {

using winattn::detail::GemmArgs;
using winattn::detail::GemmKernelInfo;
using winattn::detail::GemmLayout;

#ifdef WINATTN_KERNELS_EMULATED
// This executable is built with the AVX-512 kernel compiled through SIMDe's AVX-512 emulation (see
// avx512_emulation.h; namespace winattn renamed for the whole build): it tests that kernel's logic on any
// x86-64 CPU.
std::vector<const GemmKernelInfo *> runnable_kernels() {
  return {&winattn::detail::f32_gemm_12x32_broadcast_avx512};
}
#else
std::vector<const GemmKernelInfo *> runnable_kernels() {
  size_t count = 0;
  const GemmKernelInfo *const *all = winattn::detail::f32_gemm_kernels(&count);
  std::vector<const GemmKernelInfo *> kernels;
  for (size_t i = 0; i < count; ++i)
    if (winattn::detail::has_features(winattn::detail::active_features(), all[i]->required))
      kernels.push_back(all[i]);
  return kernels;
}
#endif

// 64-byte aligned floats, as Linear allocates the packed weights and the bias.
struct Aligned {
  explicit Aligned(int64_t n)
      : data(static_cast<float *>(std::aligned_alloc(64, static_cast<size_t>((n * 4 + 63) / 64 * 64)))) {}
  ~Aligned() { std::free(data); }
  Aligned(const Aligned &) = delete;
  Aligned &operator=(const Aligned &) = delete;
  float *data;
};

struct Problem {
  int64_t rows, in, out, lda, ldc;
  bool bias, accumulate;
  bool gelu = false;
};

struct Prepared {
  explicit Prepared(const Problem &p)
      : layout(p.in, p.out), packed(layout.packed_floats()), bias(layout.bias_floats()) {
    std::mt19937 rng(static_cast<uint32_t>(p.rows * 131 + p.in * 17 + p.out * 7 + p.lda + p.ldc));
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    weight.resize(static_cast<size_t>(p.in * p.out));
    for (float &w : weight) w = u(rng);
    src.assign(static_cast<size_t>(p.rows * p.lda), std::nanf(""));  // padding must never be read
    for (int64_t m = 0; m < p.rows; ++m)
      for (int64_t i = 0; i < p.in; ++i) src[static_cast<size_t>(m * p.lda + i)] = u(rng);
    dst0.assign(static_cast<size_t>(p.rows * p.ldc), 0.0f);
    for (float &d : dst0) d = u(rng);
    winattn::detail::pack_gemm_weights(layout, weight.data(), packed.data);
    for (int64_t o = 0; o < layout.bias_floats(); ++o) bias.data[o] = o < p.out ? u(rng) : 0.0f;
  }
  GemmLayout layout;
  Aligned packed, bias;
  std::vector<float> weight, src, dst0;
};

std::vector<float> run(const GemmKernelInfo &kernel, const Problem &p, const Prepared &w, int64_t row0,
                       int64_t rows, std::vector<float> dst) {
  const GemmArgs args{&w.layout,
                      rows,
                      w.src.data() + row0 * p.lda,
                      p.lda,
                      w.packed.data,
                      p.bias ? w.bias.data : nullptr,
                      dst.data() + row0 * p.ldc,
                      p.ldc,
                      p.accumulate,
                      p.gelu};
  kernel.run(args);
  return dst;
}

void check_problem(const Problem &p) {
  const Prepared w(p);
  const GemmKernelInfo &reference = winattn::detail::f32_gemm_scalar;
  const std::vector<float> want_bits = run(reference, p, w, 0, p.rows, w.dst0);
  for (const GemmKernelInfo *kernel : runnable_kernels()) {
    CAPTURE(kernel->name);
    CAPTURE(p.rows);
    CAPTURE(p.in);
    CAPTURE(p.out);
    CAPTURE(p.lda);
    CAPTURE(p.ldc);
    CAPTURE(p.bias);
    CAPTURE(p.accumulate);
    CAPTURE(p.gelu);
    const std::vector<float> got = run(*kernel, p, w, 0, p.rows, w.dst0);
    int bad_oracle = 0, bad_bits = 0, bad_padding = 0;
    for (int64_t m = 0; m < p.rows; ++m) {
      for (int64_t o = 0; o < p.ldc; ++o) {
        const size_t at = static_cast<size_t>(m * p.ldc + o);
        if (o >= p.out) {  // beyond the output width: untouched
          bad_padding += std::memcmp(&got[at], &w.dst0[at], sizeof(float)) != 0;
          continue;
        }
        double sum = 0.0, magnitude = 0.0;
        for (int64_t i = 0; i < p.in; ++i) {
          const double product = double{w.src[static_cast<size_t>(m * p.lda + i)]} *
                                 double{w.weight[static_cast<size_t>(o * p.in + i)]};
          sum += product;
          magnitude += std::fabs(product);
        }
        double start = 0.0;
        if (p.bias) start += w.bias.data[o];
        if (p.accumulate) start += w.dst0[at];
        sum += start;
        magnitude += std::fabs(start);
        // float32 rounding of a sum of in + 2 terms, one rounding per term.
        double bound = (static_cast<double>(p.in) + 2.0) * 0x1p-24 * magnitude + 1e-30;
        if (p.gelu) {  // |GELU'| <= 1.13; the GELU formula within 4e-7 of max(|x|, 1) (activation/gelu.h)
          bound = 1.13 * bound + 4e-7 * std::fmax(std::fabs(sum), 1.0);
          sum = 0.5 * sum * (1.0 + std::erf(sum / std::sqrt(2.0)));
        }
        if (!(std::fabs(got[at] - sum) <= bound) && bad_oracle++ < 3)
          FAIL_CHECK("dst[" << m << "][" << o << "] = " << got[at] << ", float64 oracle " << sum);
        bad_bits += std::memcmp(&got[at], &want_bits[at], sizeof(float)) != 0;
      }
    }
    CHECK(bad_oracle == 0);
    CHECK_MESSAGE(bad_bits == 0, bad_bits << " results differ from the scalar reference's bits");
    CHECK_MESSAGE(bad_padding == 0, bad_padding << " values beyond the output width were written");
    // The same rows in calls of other sizes: the same bits.
    if (p.rows > 1) {
      std::vector<float> split = w.dst0;
      for (int64_t r0 = 0, step = 1; r0 < p.rows; r0 += step, step = step % 7 + 1) {
        const int64_t n = std::min(step, p.rows - r0);
        split = run(*kernel, p, w, r0, n, split);
      }
      CHECK_MESSAGE(std::memcmp(split.data(), got.data(), got.size() * sizeof(float)) == 0,
                    "rows computed in calls of 1..7 rows differ from one call");
    }
  }
}

}  // namespace

#ifndef WINATTN_KERNELS_EMULATED
TEST_CASE("gemm: the kernel table ends with the scalar reference and selection honours features") {
  size_t count = 0;
  const GemmKernelInfo *const *all = winattn::detail::f32_gemm_kernels(&count);
  REQUIRE(count >= 2);
  CHECK(all[count - 1] == &winattn::detail::f32_gemm_scalar);
  CHECK(&winattn::detail::select_f32_gemm_kernel(0) == &winattn::detail::f32_gemm_scalar);
  CHECK(&winattn::detail::select_f32_gemm_kernel(winattn::detail::kFeatureAvx2) ==
        &winattn::detail::f32_gemm_6x16_broadcast_avx2);
  CHECK(&winattn::detail::select_f32_gemm_kernel(winattn::detail::kFeatureAvx2 |
                                                 winattn::detail::kFeatureAvx512) ==
        &winattn::detail::f32_gemm_12x32_broadcast_avx512);
  MESSAGE("runnable GEMM kernels here: " << runnable_kernels().size());
}
#endif

TEST_CASE("gemm: layout blocks cover the inner dimension evenly") {
  for (int64_t in : {1, 7, 255, 256, 257, 511, 513, 768, 3072}) {
    const GemmLayout layout(in, 40);
    int64_t next = 0;
    for (int64_t b = 0; b < layout.kblocks; ++b) {
      CHECK(layout.block_begin(b) == next);
      CHECK(layout.block_size(b) >= 1);
      CHECK(layout.block_size(b) <= GemmLayout::kMaxKc);
      CHECK(layout.block_size(b) >= layout.block_size(layout.kblocks - 1));
      next += layout.block_size(b);
    }
    CHECK(next == in);
    CHECK(layout.panels == 3);
  }
}

TEST_CASE("gemm: pack and unpack are inverses") {
  for (int64_t in : {1, 5, 256, 300}) {
    for (int64_t out : {1, 16, 17, 33}) {
      const GemmLayout layout(in, out);
      std::vector<float> weight(static_cast<size_t>(in * out)), back(weight.size(), -1.0f);
      for (size_t i = 0; i < weight.size(); ++i) weight[i] = static_cast<float>(i) + 0.5f;
      Aligned packed(layout.packed_floats());
      winattn::detail::pack_gemm_weights(layout, weight.data(), packed.data);
      winattn::detail::unpack_gemm_weights(layout, packed.data, back.data());
      CHECK(back == weight);
      int64_t zeros = 0;  // the padding of the last panel is zero
      for (int64_t i = 0; i < layout.packed_floats(); ++i) zeros += packed.data[i] == 0.0f;
      CHECK(zeros == layout.packed_floats() - in * out);
    }
  }
}

TEST_CASE("gemm: every row-block split and masked panel, small inner dimensions") {
  // Rows 1..25: every block size of the 6-row (AVX2) and 12-row (AVX-512) tiles and their splits; out: one
  // panel, masked or not, pairs of panels (the AVX-512 tile) with the mask in the second, odd panel counts.
  for (int64_t rows = 1; rows <= 25; ++rows)
    for (int64_t out : {1, 15, 16, 17, 20, 32, 33, 40, 48})
      for (int64_t in : {1, 3, 8})
        for (int flags = 0; flags < 4; ++flags)
          check_problem({rows, in, out, in, out, (flags & 1) != 0, (flags & 2) != 0});
}

TEST_CASE("gemm: k-block boundaries and Swin shapes") {
  for (int64_t in : {255, 256, 257, 513, 1536})
    for (int64_t rows : {1, 6, 11, 49})
      for (int flags = 0; flags < 4; ++flags)
        check_problem({rows, in, 40, in, 40, (flags & 1) != 0, (flags & 2) != 0});
  check_problem({128, 96, 288, 96, 288, true, false});
  check_problem({128, 384, 96, 384, 96, true, true});
  check_problem({49, 768, 96, 768, 96, false, true});
}

TEST_CASE("gemm: calls of more rows than one L2 block (the kernels split the rows)") {
  check_problem({400, 256, 40, 256, 40, true, false});  // kc 256: blocks of at most 192 rows
  check_problem({777, 96, 17, 96, 17, true, true});     // kc 96: blocks of at most 510 rows
  check_problem({1100, 40, 33, 41, 35, false, true});
}

TEST_CASE("gemm: GELU applied to the accumulators") {
  for (int64_t rows : {1, 5, 6, 13, 49})
    for (int64_t in : {1, 3, 96, 300, 600})
      for (int64_t out : {16, 17, 40}) {
        Problem p{rows, in, out, in, out, true, false};
        p.gelu = true;
        check_problem(p);
        p.bias = false;
        check_problem(p);
      }
}

TEST_CASE("gemm: leading dimensions wider than the rows") {
  for (int64_t rows : {1, 7, 12})
    for (int64_t out : {16, 17, 96})
      for (int flags = 0; flags < 4; ++flags)
        check_problem({rows, 300, out, 300 + 5, out + 9, (flags & 1) != 0, (flags & 2) != 0});
}
