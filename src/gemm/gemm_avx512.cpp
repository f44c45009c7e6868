// f32_gemm_12x32_broadcast_avx512: up to 12 rows x 32 output columns (two adjacent 16-column panels, one zmm
// each) in 24 zmm accumulators; per inner index two loads of the packed panels and one broadcast per row
// (14 loads for 24 FMAs). The packing is the AVX2 kernel's (16-column panels, gemm/gemm.h): panels p and
// p + 1 of a k-block lie one after the other, so a 32-column tile reads two streams of 64 bytes per inner
// index. An odd last panel runs as a 16-column tile. Rows are split into blocks of at most 12 as evenly as
// possible (49 rows: 4 x 10 + 9; 128 rows: 8 x 11 + 4 x 10), and the last panel of a width that is not a
// multiple of 16 is loaded and stored under a mask. The sum over the inner index runs in the order of every
// other kernel (gemm/gemm.h), so the bits equal the scalar reference's.
#include <immintrin.h>

#include <algorithm>

#include "activation/gelu_xsimd.h"
#include "gemm/gemm.h"

namespace winattn::detail {

namespace {

constexpr int kMr = 12;
// GELU on the accumulators through the AVX2 instantiation of the GELU kernels' formula, a half at a time:
// the same element-wise operations (FMAs, one division) as every other width, so the same bits, and it
// keeps this file free of xsimd's AVX-512 types (the kernel tests compile it through SIMDe's emulation).
using GeluArch = xsimd::fma3<xsimd::avx2>;

inline __m512 gelu16(__m512 x) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, x);
  using Batch = xsimd::batch<float, GeluArch>;
  gelu_batch<GeluArch>(Batch::load_aligned(lanes)).store_aligned(lanes);
  gelu_batch<GeluArch>(Batch::load_aligned(lanes + 8)).store_aligned(lanes + 8);
  return _mm512_load_ps(lanes);
}

// One tile: dst[0..MR)[0..16 NV) = init + src[0..MR)[0..kc) x panels[0..kc)[0..16 NV), where init is dst
// (load_dst), plus bias when bias is not null, or zero. Panel v of the tile starts at panel + v * kc * 16;
// `last` masks the tile's last vector (all lanes where the output is a multiple of 16 wide).
template <int MR, int NV>
inline void tile(int64_t kc, const float *src, int64_t lda, const float *panel, float *dst, int64_t ldc,
                 const float *bias, bool load_dst, bool gelu, __mmask16 last, const char *prefetch,
                 int64_t prefetch_lines) {
  for (int64_t l = 0; l < prefetch_lines; ++l) _mm_prefetch(prefetch + 64 * l, _MM_HINT_T0);
  __mmask16 masks[NV];
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) masks[v] = v == NV - 1 ? last : static_cast<__mmask16>(0xffff);
  __m512 acc[MR][NV];
  const float *row[MR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) row[i] = src + i * lda;
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      if (load_dst) {
        acc[i][v] = _mm512_maskz_loadu_ps(masks[v], dst + i * ldc + 16 * v);
        if (bias != nullptr) acc[i][v] = _mm512_add_ps(acc[i][v], _mm512_load_ps(bias + 16 * v));
      } else if (bias != nullptr) {
        acc[i][v] = _mm512_load_ps(bias + 16 * v);
      } else {
        acc[i][v] = _mm512_setzero_ps();
      }
    }
  }
  const int64_t panel_stride = kc * GemmLayout::kNr;
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) b[v] = _mm512_load_ps(panel + v * panel_stride + 16 * k);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(row[i][k]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
    }
  }
  if (gelu) {
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = gelu16(acc[i][v]);
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(dst + i * ldc + 16 * v, masks[v], acc[i][v]);
  }
}

using TileFn = void (*)(int64_t, const float *, int64_t, const float *, float *, int64_t, const float *, bool,
                        bool, __mmask16, const char *, int64_t);

template <int NV>
constexpr TileFn kTiles[kMr + 1] = {nullptr,      tile<1, NV>,  tile<2, NV>, tile<3, NV>, tile<4, NV>,
                                    tile<5, NV>,  tile<6, NV>,  tile<7, NV>, tile<8, NV>, tile<9, NV>,
                                    tile<10, NV>, tile<11, NV>, tile<12, NV>};

// Rows [m0, m0 + rows) of the product: every k-block, every pair of panels, the rows in blocks of at most
// kMr.
void gemm_rows(const GemmArgs &g, int64_t m0, int64_t rows, __mmask16 last_mask, bool streamed) {
  const GemmLayout &layout = *g.layout;
  constexpr int64_t nr = GemmLayout::kNr;
  const int64_t row_blocks = (rows + kMr - 1) / kMr;
  const int64_t base_rows = rows / row_blocks, extra_rows = rows % row_blocks;
  const float *src = g.src + m0 * g.lda;
  float *dst = g.dst + m0 * g.ldc;
  for (int64_t b = 0; b < layout.kblocks; ++b) {
    const int64_t k0 = layout.block_begin(b), kc = layout.block_size(b);
    const bool load_dst = b > 0 || g.accumulate;
    const bool gelu = g.gelu && b == layout.kblocks - 1;
    const float *bias = b == 0 ? g.bias : nullptr;
    for (int64_t p = 0; p < layout.panels; p += 2) {
      const int nv = layout.panels - p >= 2 ? 2 : 1;
      const float *panel = g.packed + k0 * layout.panels * nr + p * kc * nr;
      const bool last_pair = p + nv == layout.panels;
      const __mmask16 last = last_pair ? last_mask : static_cast<__mmask16>(0xffff);
      const TileFn *tiles = nv == 2 ? kTiles<2> : kTiles<1>;
      const float *pair_bias = bias != nullptr ? bias + p * nr : nullptr;
      // The next panels (next in memory, also across k-blocks) are prefetched while these run, a share of
      // their lines before each row block, when the weights are larger than L2 (as the AVX2 kernel does).
      const char *next = reinterpret_cast<const char *>(panel + nv * kc * nr);
      int64_t next_floats = 0;
      if (!last_pair) {
        next_floats = std::min<int64_t>(2, layout.panels - p - nv) * kc * nr;
      } else if (b + 1 < layout.kblocks) {
        next_floats = std::min<int64_t>(2, layout.panels) * layout.block_size(b + 1) * nr;
      }
      const int64_t next_lines = streamed ? next_floats * static_cast<int64_t>(sizeof(float)) / 64 : 0;
      const int64_t lines_per_block = (next_lines + row_blocks - 1) / row_blocks;
      int64_t r0 = 0, prefetched = 0;
      for (int64_t rb = 0; rb < row_blocks; ++rb) {
        const int64_t mr = base_rows + (rb < extra_rows ? 1 : 0);
        const int64_t lines = std::min(lines_per_block, next_lines - prefetched);
        tiles[mr](kc, src + r0 * g.lda + k0, g.lda, panel, dst + r0 * g.ldc + p * nr, g.ldc, pair_bias,
                  load_dst, gelu, last, next + 64 * prefetched, lines);
        prefetched += lines;
        r0 += mr;
      }
    }
  }
}

void gemm(const GemmArgs &g) {
  const GemmLayout &layout = *g.layout;
  const int64_t last_width = layout.out - (layout.panels - 1) * GemmLayout::kNr;
  const __mmask16 last_mask = static_cast<__mmask16>((1u << last_width) - 1u);
  const bool streamed = layout.weights_streamed();
  layout.for_each_row_block(g.rows, kMr,
                            [&](int64_t m0, int64_t rows) { gemm_rows(g, m0, rows, last_mask, streamed); });
}

}  // namespace

const GemmKernelInfo f32_gemm_12x32_broadcast_avx512 = {"f32_gemm_12x32_broadcast_avx512", kFeatureAvx512,
                                                        gemm};

}  // namespace winattn::detail
