#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "attention/attention.h"
#include "attention/f32_attention_impl.h"
#include "attention/f32_attention_tr_impl.h"
#include "common/aligned_buffer.h"
#include "cpu/threading.h"

namespace winattn {

size_t attention_workspace_floats(int64_t n, int64_t head_dim) {
  const size_t avx512 = std::max(attention_impl::workspace_floats_for(n, head_dim, 16, 6),
                                 attention_tr_impl::workspace_floats_for(n, head_dim, 16, 4));
  const size_t avx2 = std::max(attention_impl::workspace_floats_for(n, head_dim, 8, 4),
                               attention_tr_impl::workspace_floats_for(n, head_dim, 8, 3));
  const size_t scalar = static_cast<size_t>(2 * n + 16);
  return std::max({avx512, avx2, scalar});
}

AttentionKernel select_attention_kernel(Isa isa, int64_t n) {
  // The query-major kernels put queries in the vector lanes: past one vector of them they beat the
  // row-major ones, which do better on the shortest windows (T = 8 or 16 of temporal attention).
  switch (isa) {
    case Isa::avx512_bf16:
    case Isa::avx512:
      return n > 16 ? AttentionKernel{f32_attention_tr_avx512, true}
                    : AttentionKernel{f32_attention_avx512, false};
    case Isa::avx2:
      return n > 16 ? AttentionKernel{f32_attention_tr_avx2, true}
                    : AttentionKernel{f32_attention_avx2, false};
    case Isa::scalar:
      break;
  }
  return AttentionKernel{f32_attention_scalar, false};
}

void transpose_terms(const float *src, int64_t n, float *dst) {
  const int64_t ld = transposed_terms_ld(n);
  switch (active_isa()) {
    case Isa::avx512_bf16:
    case Isa::avx512:
      transpose_terms_avx512(src, n, ld, dst);
      return;
    case Isa::avx2:
      transpose_terms_avx2(src, n, ld, dst);
      return;
    case Isa::scalar:
      break;
  }
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < ld; ++i) dst[j * ld + i] = i < n ? src[i * n + j] : 0.0f;
  }
}

namespace {

// Whether every element is +0 or -0 (an OR of the bits without the sign, which the compiler vectorises).
bool all_zero(const float *x, int64_t count) {
  uint32_t bits = 0;
  for (int64_t i = 0; i < count; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, sizeof u);
    bits |= u & 0x7fffffffu;
  }
  return bits == 0;
}

}  // namespace

void window_attention(int64_t num_windows, int64_t num_heads, int64_t n, int64_t head_dim, const float *q,
                      const float *k, const float *v, float scale, const float *bias, const float *mask,
                      int64_t mask_windows, float *out) {
  const AttentionKernel kernel = select_attention_kernel(active_isa(), n);
  const int64_t items = num_windows * num_heads;
  const int threads = static_cast<int>(std::min<int64_t>(effective_num_threads(), items));
  const size_t per_thread = (attention_workspace_floats(n, head_dim) + 15) / 16 * 16;
  // Per mask window in use: whether it is all zeros (then it is skipped: adding 0 changes no logit), and
  // for a query-major kernel its transpose; the bias of each head transposed as well. Made once per call,
  // shared by all threads: [heads][n][ld] bias, then [masks][n][ld] masks.
  const int64_t ld_t = transposed_terms_ld(n);
  const int64_t bias_count = kernel.transposed && bias != nullptr ? num_heads : 0;
  const int64_t mask_count = mask != nullptr ? std::min(mask_windows, num_windows) : 0;
  const int64_t mask_t_count = kernel.transposed ? mask_count : 0;
  const size_t terms_floats = static_cast<size_t>((bias_count + mask_t_count) * n * ld_t);
  const size_t flag_floats = static_cast<size_t>(mask_count);
  float *const base = thread_scratch(per_thread * static_cast<size_t>(threads) + terms_floats +
                                     flag_floats);  // may throw: before any output
  float *const bias_t = base + per_thread * static_cast<size_t>(threads);
  float *const mask_t = bias_t + bias_count * n * ld_t;
  float *const mask_zero = mask_t + mask_t_count * n * ld_t;  // 1 for an all-zero mask window
  AttentionShape shape;
  shape.n = n;
  shape.head_dim = head_dim;
  shape.ld_q = shape.ld_k = shape.ld_v = shape.ld_out = head_dim;
  const int64_t head_stride = n * head_dim;
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t m = 0; m < bias_count + mask_count; ++m) {
      if (m < bias_count) {
        transpose_terms(bias + m * n * n, n, bias_t + m * n * ld_t);
        continue;
      }
      const int64_t w = m - bias_count;
      const bool zero = all_zero(mask + w * n * n, n * n);
      mask_zero[w] = zero ? 1.0f : 0.0f;
      if (!zero && mask_t_count > 0) transpose_terms(mask + w * n * n, n, mask_t + w * n * ld_t);
    }
    float *scratch = base + per_thread * static_cast<size_t>(thread_index());
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t w = item / num_heads, h = item % num_heads;
      const size_t offset = static_cast<size_t>(item * head_stride);
      AttentionTerms terms;
      if (bias != nullptr) {
        terms.bias = bias + h * n * n;
        if (bias_count > 0) terms.bias_t = bias_t + h * n * ld_t;
        terms.ld_bias_t = ld_t;
      }
      if (mask != nullptr && mask_zero[w % mask_windows] == 0.0f) {
        terms.mask = mask + (w % mask_windows) * n * n;
        if (mask_t_count > 0) terms.mask_t = mask_t + (w % mask_windows) * n * ld_t;
        terms.ld_mask_t = ld_t;
      }
      if (item + 1 < items) {
        // The next (window, head) into L2 while this one computes: for batches larger than the caches the
        // kernel otherwise waits on memory for its first touch of q, k and v.
        const size_t next = offset + static_cast<size_t>(head_stride);
        for (int64_t b = 0; b < head_stride; b += 16) {
          _mm_prefetch(reinterpret_cast<const char *>(q + next + b), _MM_HINT_T1);
          _mm_prefetch(reinterpret_cast<const char *>(k + next + b), _MM_HINT_T1);
          _mm_prefetch(reinterpret_cast<const char *>(v + next + b), _MM_HINT_T1);
        }
      }
      kernel.run(shape, q + offset, k + offset, v + offset, scale, terms, out + offset, scratch);
    }
  }
}

}  // namespace winattn
