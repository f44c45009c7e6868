// The f32 GEMM of the projections on CPUs where oneDNN 2.6 has no fast kernel for the shapes Swin runs:
// dst[m][o] (+)= sum_i src[m][i] * weight[o][i] + bias[o], weights packed once, one thread per call.
//
// Why our own: on an AVX2 CPU (Zen 3) oneDNN 2.6's matmuls reach 80-84% of the FMA peak on Swin-T stage 1
// and 37-72% on the short, weight-streaming shapes of the late stages (49-196 rows); they are 90% of a
// whole model's time. This family is a plain register-blocked GEMM in the manner of BLIS/XNNPACK's
// "broadcast" kernels: the weights are packed at create into panels of kNr output columns, split along
// the inner dimension into blocks of at most kMaxKc (a panel block of kMaxKc x kNr floats is 16 KiB and
// stays in L1 while every row block of the call runs over it); the rows are read in place, a few at a
// time, each of their values broadcast against the panel. (Packing src too, as BLIS does, measured slower
// here: the rows of a call are at most a few hundred and stay in L2, and the copy costs more than it saves.)
//
// Contract, every kernel: rows >= 1, any in/out >= 1; src rows lda floats apart, dst rows ldc floats
// apart; with accumulate dst holds what the product is added to. The sum over i runs in the same order
// for every row whatever `rows` is (k-blocks in order, i ascending inside one), so a row's result does not
// depend on how the rows of a matrix are split between calls: bit-identical for any thread count.
// The scalar kernel is the reference the vector ones are tested against (same packing, float sums).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cpu/dispatch.h"

namespace winattn::detail {

// The packed weights' geometry. Storage: for each k-block b (k in [k0, k0 + kc)), for each panel p of kNr
// output columns, kc rows of kNr floats (column o of the panel is output p * kNr + o, zero past `out`).
// Block b's panel p starts at k0 * panels * kNr + p * kc * kNr floats.
struct GemmLayout {
  static constexpr int64_t kNr = 16;      // output columns per panel (two AVX2 vectors)
  static constexpr int64_t kMaxKc = 256;  // inner-dimension rows per block at most

  int64_t in = 0, out = 0;
  int64_t panels = 0;   // ceil(out / kNr)
  int64_t kblocks = 0;  // ceil(in / kMaxKc); blocks are as even as possible (sizes differ by at most 1)

  GemmLayout() = default;
  GemmLayout(int64_t in_features, int64_t out_features);
  int64_t block_begin(int64_t b) const { return b * (in / kblocks) + (b < in % kblocks ? b : in % kblocks); }
  int64_t block_size(int64_t b) const { return in / kblocks + (b < in % kblocks ? 1 : 0); }
  // Floats of the packed weights (in * panels * kNr) and of the padded bias (panels * kNr).
  int64_t packed_floats() const { return in * panels * kNr; }
  int64_t bias_floats() const { return panels * kNr; }

  // Whether the packed weights exceed 1 MiB: the kernels then prefetch the next panel while one runs
  // (weights that live in L3 or memory; within L2 the prefetches measured a 1% loss).
  bool weights_streamed() const {
    return packed_floats() * static_cast<int64_t>(sizeof(float)) > (int64_t{1} << 20);
  }

  // The rows of a call in blocks whose k-block of src (rows x kc floats) stays in L2 while every panel runs
  // over it: at most 48 Ki floats (192 KiB), a multiple of the kernel's mr rows unless smaller, blocks as
  // even as possible; visit(first_row, rows) for each. Without it, 768-row calls (AIM's temporal layer at
  // C = 768) streamed src from L3 once per panel and ran at 0.75x oneDNN.
  template <class Visit>
  void for_each_row_block(int64_t rows, int64_t mr, Visit &&visit) const {
    constexpr int64_t kBlockFloats = 48 * 1024;
    const int64_t target = std::max(mr, kBlockFloats / block_size(0) / mr * mr);
    const int64_t blocks = (rows + target - 1) / target;
    for (int64_t i = 0, m0 = 0; i < blocks; ++i) {
      const int64_t count = rows / blocks + (i < rows % blocks ? 1 : 0);
      visit(m0, count);
      m0 += count;
    }
  }
};

// weight: [out][in] (nn.Linear); packed: layout.packed_floats() floats. Single-threaded, exact (a copy).
void pack_gemm_weights(const GemmLayout &layout, const float *weight, float *packed);
// The inverse: weight[o][i] from the packed floats.
void unpack_gemm_weights(const GemmLayout &layout, const float *packed, float *weight);

struct GemmArgs {
  const GemmLayout *layout;
  int64_t rows;
  const float *src;  // [rows][lda], the first layout->in floats of each row used
  int64_t lda;
  const float *packed;  // pack_gemm_weights' output
  const float *bias;    // layout->bias_floats() floats (zero past out), or null
  float *dst;           // [rows][ldc], the first layout->out floats of each row written
  int64_t ldc;
  bool accumulate;  // dst += product (+ bias) instead of dst = product (+ bias)
  // dst = GELU(product + bias) (not with accumulate): the vector kernels apply the GELU kernels' formula
  // (activation/gelu_xsimd.h) to their accumulators before the last store, the scalar one gelu_rational,
  // the same formula, so the bits agree.
  bool gelu;
};

using GemmFn = void (*)(const GemmArgs &args);

struct GemmKernelInfo {
  const char *name;      // "f32_gemm_6x16_broadcast_avx2"
  CpuFeatures required;  // features it needs (all of them)
  GemmFn run;
};

extern const GemmKernelInfo f32_gemm_12x32_broadcast_avx512;
extern const GemmKernelInfo f32_gemm_6x16_broadcast_avx2;
extern const GemmKernelInfo f32_gemm_scalar;  // the reference
// In dispatch order, the scalar one last; `count` receives the number of entries.
const GemmKernelInfo *const *f32_gemm_kernels(size_t *count);
// The first whose features are all in `features`.
const GemmKernelInfo &select_f32_gemm_kernel(CpuFeatures features);

}  // namespace winattn::detail
