// f32_gemm_6x16_broadcast_avx2: 6 rows x 16 output columns in 12 ymm accumulators; per inner index two
// loads of the packed panel and one broadcast per row (8 loads for 12 FMAs: FMA-bound on Zen 3 and
// Haswell-class cores). Rows are split into blocks of at most 6 as evenly as possible (128 rows: 18 x 6 +
// 4 x 5; 49 rows: 4 x 6 + 5 x 5), so no call ends in a block of one or two rows. The last panel of an
// output width that is not a multiple of 16 is loaded and stored under a mask.
#include <immintrin.h>

#include <algorithm>

#include "activation/gelu_xsimd.h"
#include "gemm/gemm.h"

namespace winattn::detail {

namespace {

constexpr int kMr = 6;
using GeluArch = xsimd::fma3<xsimd::avx2>;

// One tile: dst[0..MR)[0..16) = init + src[0..MR)[0..kc) x panel[0..kc)[0..16), where init is dst (load_dst),
// plus bias when bias is not null, or zero.
template <int MR, bool kMasked>
inline void tile(int64_t kc, const float *src, int64_t lda, const float *panel, float *dst, int64_t ldc,
                 const float *bias, bool load_dst, bool gelu, __m256i mask0, __m256i mask1,
                 const char *prefetch, int64_t prefetch_lines) {
  for (int64_t l = 0; l < prefetch_lines; ++l) _mm_prefetch(prefetch + 64 * l, _MM_HINT_T0);
  __m256 acc[MR][2];
  const float *row[MR];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) row[i] = src + i * lda;
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    if (load_dst) {
      if (kMasked) {
        acc[i][0] = _mm256_maskload_ps(dst + i * ldc, mask0);
        acc[i][1] = _mm256_maskload_ps(dst + i * ldc + 8, mask1);
      } else {
        acc[i][0] = _mm256_loadu_ps(dst + i * ldc);
        acc[i][1] = _mm256_loadu_ps(dst + i * ldc + 8);
      }
      if (bias != nullptr) {
        acc[i][0] = _mm256_add_ps(acc[i][0], _mm256_load_ps(bias));
        acc[i][1] = _mm256_add_ps(acc[i][1], _mm256_load_ps(bias + 8));
      }
    } else if (bias != nullptr) {
      acc[i][0] = _mm256_load_ps(bias);
      acc[i][1] = _mm256_load_ps(bias + 8);
    } else {
      acc[i][0] = _mm256_setzero_ps();
      acc[i][1] = _mm256_setzero_ps();
    }
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(panel + 16 * k);
    const __m256 b1 = _mm256_load_ps(panel + 16 * k + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(row[i] + k);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
  }
  if (gelu) {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      acc[i][0] = gelu_batch<GeluArch>(xsimd::batch<float, GeluArch>(acc[i][0]));
      acc[i][1] = gelu_batch<GeluArch>(xsimd::batch<float, GeluArch>(acc[i][1]));
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    if (kMasked) {
      _mm256_maskstore_ps(dst + i * ldc, mask0, acc[i][0]);
      _mm256_maskstore_ps(dst + i * ldc + 8, mask1, acc[i][1]);
    } else {
      _mm256_storeu_ps(dst + i * ldc, acc[i][0]);
      _mm256_storeu_ps(dst + i * ldc + 8, acc[i][1]);
    }
  }
}

using TileFn = void (*)(int64_t, const float *, int64_t, const float *, float *, int64_t, const float *, bool,
                        bool, __m256i, __m256i, const char *, int64_t);

template <bool kMasked>
constexpr TileFn kTiles[kMr + 1] = {nullptr,          tile<1, kMasked>, tile<2, kMasked>, tile<3, kMasked>,
                                    tile<4, kMasked>, tile<5, kMasked>, tile<6, kMasked>};

// Rows [m0, m0 + rows) of the product: every k-block, every panel, the rows in blocks of at most kMr.
void gemm_rows(const GemmArgs &g, int64_t m0, int64_t rows, __m256i mask0, __m256i mask1, bool streamed) {
  const GemmLayout &layout = *g.layout;
  constexpr int64_t nr = GemmLayout::kNr;
  const int64_t row_blocks = (rows + kMr - 1) / kMr;
  const int64_t base_rows = rows / row_blocks, extra_rows = rows % row_blocks;
  const int64_t last_width = layout.out - (layout.panels - 1) * nr;
  const float *src = g.src + m0 * g.lda;
  float *dst = g.dst + m0 * g.ldc;
  for (int64_t b = 0; b < layout.kblocks; ++b) {
    const int64_t k0 = layout.block_begin(b), kc = layout.block_size(b);
    const bool load_dst = b > 0 || g.accumulate;
    const bool gelu = g.gelu && b == layout.kblocks - 1;
    const float *bias = b == 0 ? g.bias : nullptr;
    for (int64_t p = 0; p < layout.panels; ++p) {
      const float *panel = g.packed + k0 * layout.panels * nr + p * kc * nr;
      const bool masked = p == layout.panels - 1 && last_width < nr;
      const TileFn *tiles = masked ? kTiles<true> : kTiles<false>;
      const float *panel_bias = bias != nullptr ? bias + p * nr : nullptr;
      // The next panel (the next one in memory, also across k-blocks) is prefetched while this one runs,
      // a share of its lines before each row block, when the weights are larger than L2: weights that live
      // in L3 or DRAM (late stages, large hidden widths) then arrive before they are needed. Measured
      // (paired, weights cycled through 19-75 MB): 1.04-1.08x on Swin-T stage 3/4 shapes; within noise
      // (-1%) on weights that stay in L2, hence the threshold.
      const char *next = reinterpret_cast<const char *>(panel + kc * nr);
      const bool last_panel = b == layout.kblocks - 1 && p == layout.panels - 1;
      const int64_t next_kc = p + 1 < layout.panels ? kc : (last_panel ? 0 : layout.block_size(b + 1));
      const int64_t next_lines = streamed ? next_kc * nr * static_cast<int64_t>(sizeof(float)) / 64 : 0;
      const int64_t lines_per_block = (next_lines + row_blocks - 1) / row_blocks;
      int64_t r0 = 0, prefetched = 0;
      for (int64_t rb = 0; rb < row_blocks; ++rb) {
        const int64_t mr = base_rows + (rb < extra_rows ? 1 : 0);
        const int64_t lines = std::min(lines_per_block, next_lines - prefetched);
        tiles[mr](kc, src + r0 * g.lda + k0, g.lda, panel, dst + r0 * g.ldc + p * nr, g.ldc, panel_bias,
                  load_dst, gelu, mask0, mask1, next + 64 * prefetched, lines);
        prefetched += lines;
        r0 += mr;
      }
    }
  }
}

void gemm(const GemmArgs &g) {
  const GemmLayout &layout = *g.layout;
  const int64_t last_width = layout.out - (layout.panels - 1) * GemmLayout::kNr;
  alignas(32) int32_t lanes[16];
  for (int j = 0; j < 16; ++j) lanes[j] = j < last_width ? -1 : 0;
  const __m256i mask0 = _mm256_load_si256(reinterpret_cast<const __m256i *>(lanes));
  const __m256i mask1 = _mm256_load_si256(reinterpret_cast<const __m256i *>(lanes + 8));
  const bool streamed = layout.weights_streamed();
  layout.for_each_row_block(
      g.rows, kMr, [&](int64_t m0, int64_t rows) { gemm_rows(g, m0, rows, mask0, mask1, streamed); });
}

}  // namespace

const GemmKernelInfo f32_gemm_6x16_broadcast_avx2 = {"f32_gemm_6x16_broadcast_avx2", kFeatureAvx2, gemm};

}  // namespace winattn::detail
