#include <xmmintrin.h>

#include <algorithm>

#include "attention/attention.h"
#include "attention/f32_attention_impl.h"
#include "common/aligned_buffer.h"
#include "cpu/threading.h"

namespace winattn {

size_t attention_workspace_floats(int64_t n, int64_t head_dim) {
  const size_t avx512 = attention_impl::workspace_floats_for(n, head_dim, 16, 6);
  const size_t avx2 = attention_impl::workspace_floats_for(n, head_dim, 8, 4);
  const size_t scalar = static_cast<size_t>(2 * n + 16);
  return std::max({avx512, avx2, scalar});
}

AttentionFn select_attention_kernel(Isa isa) {
  switch (isa) {
    case Isa::avx512_bf16:
    case Isa::avx512:
      return f32_attention_avx512;
    case Isa::avx2:
      return f32_attention_avx2;
    case Isa::scalar:
      break;
  }
  return f32_attention_scalar;
}

void window_attention(int64_t num_windows, int64_t num_heads, int64_t n, int64_t head_dim, const float *q,
                      const float *k, const float *v, float scale, const float *bias, const float *mask,
                      int64_t mask_windows, float *out) {
  const AttentionFn kernel = select_attention_kernel(active_isa());
  const int64_t items = num_windows * num_heads;
  const int threads = static_cast<int>(std::min<int64_t>(effective_num_threads(), items));
  const size_t per_thread = (attention_workspace_floats(n, head_dim) + 15) / 16 * 16;
  float *const base =
      thread_scratch(per_thread * static_cast<size_t>(threads));  // may throw: before any output
  AttentionShape shape;
  shape.n = n;
  shape.head_dim = head_dim;
  shape.ld_q = shape.ld_k = shape.ld_v = shape.ld_out = head_dim;
  const int64_t head_stride = n * head_dim;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t w = item / num_heads, h = item % num_heads;
    const size_t offset = static_cast<size_t>(item * head_stride);
    const float *head_bias = bias != nullptr ? bias + h * n * n : nullptr;
    const float *window_mask = mask != nullptr ? mask + (w % mask_windows) * n * n : nullptr;
    float *scratch = base + per_thread * static_cast<size_t>(thread_index());
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
    kernel(shape, q + offset, k + offset, v + offset, scale, head_bias, window_mask, out + offset, scratch);
  }
}

}  // namespace winattn
