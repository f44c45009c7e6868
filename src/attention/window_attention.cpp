#include <emmintrin.h>

#include <algorithm>
#include <cstdint>
#include <atomic>
#include <cstring>
#include <new>
#include <thread>

#include "attention/attention.h"
#include "common/aligned_buffer.h"
#include "cpu/threading.h"

namespace winattn::detail {

namespace {

// Whether every element is +0 or -0: the bits without the sign ORed 64 floats at a time (SSE2, which every
// x86-64 has), stopping at the first block with a non-zero: a shifted window's mask shows one in its first
// row, so only all-zero masks are read to the end.
bool all_zero(const float *x, int64_t count) {
  int64_t i = 0;
  for (; i + 64 <= count; i += 64) {
    // Four independent OR chains of four 16-byte loads each.
    const __m128i *p = reinterpret_cast<const __m128i *>(x + i);
    // Eight blocks ahead, non-temporal: a call reads each mask once, and should not displace L2 for it.
    // Prefetches past the end are harmless (they never fault).
    for (int l = 0; l < 4; ++l)
      _mm_prefetch(reinterpret_cast<const char *>(x + i + 512 + 16 * l), _MM_HINT_NTA);
    __m128i a = _mm_or_si128(_mm_loadu_si128(p + 0), _mm_loadu_si128(p + 1));
    __m128i b = _mm_or_si128(_mm_loadu_si128(p + 2), _mm_loadu_si128(p + 3));
    __m128i c = _mm_or_si128(_mm_loadu_si128(p + 4), _mm_loadu_si128(p + 5));
    __m128i d = _mm_or_si128(_mm_loadu_si128(p + 6), _mm_loadu_si128(p + 7));
    a = _mm_or_si128(a, _mm_or_si128(_mm_loadu_si128(p + 8), _mm_loadu_si128(p + 9)));
    b = _mm_or_si128(b, _mm_or_si128(_mm_loadu_si128(p + 10), _mm_loadu_si128(p + 11)));
    c = _mm_or_si128(c, _mm_or_si128(_mm_loadu_si128(p + 12), _mm_loadu_si128(p + 13)));
    d = _mm_or_si128(d, _mm_or_si128(_mm_loadu_si128(p + 14), _mm_loadu_si128(p + 15)));
    const __m128i magnitude = _mm_slli_epi32(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)), 1);
    if (_mm_movemask_epi8(_mm_cmpeq_epi32(magnitude, _mm_setzero_si128())) != 0xffff) return false;
  }
  uint32_t rest = 0;
  for (; i < count; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, sizeof u);
    rest |= u & 0x7fffffffu;
  }
  return rest == 0;
}

// The mask windows of one call, each checked for all zeros (then skipped: adding 0 changes no logit, and 49
// of Swin-T stage 1's 64 windows have no shift boundary) and, for a query-major kernel, transposed: by the
// first thread to need it, while it works through its items, rather than in a separate pass. A thread
// that needs a window another is preparing waits for it; the result does not depend on which thread
// prepared it.
class MaskWindows {
 public:
  enum : uint32_t { kUnknown = 0, kBusy = 1, kZero = 2, kReady = 3 };

  // state: count floats of scratch, reused as atomics.
  MaskWindows(const float *mask, int64_t count, int64_t n, bool transposed, float *mask_t, float *state)
      : mask_(mask), n_(n), ld_(transposed_terms_ld(n)), transposed_(transposed), mask_t_(mask_t) {
    static_assert(sizeof(std::atomic<uint32_t>) == sizeof(float), "one float of scratch per state");
    state_ = reinterpret_cast<std::atomic<uint32_t> *>(state);
    for (int64_t w = 0; w < count; ++w) new (state + w) std::atomic<uint32_t>(kUnknown);
  }

  const float *mask(int64_t w) const { return mask_ + w * n_ * n_; }
  const float *mask_t(int64_t w) const { return mask_t_ + w * n_ * ld_; }

  // kZero or kReady, once window w is prepared (by this thread or another).
  uint32_t prepare(int64_t w) {
    std::atomic<uint32_t> &state = state_[w];
    uint32_t s = state.load(std::memory_order_acquire);
    if (s >= kZero) return s;
    uint32_t expected = kUnknown;
    if (s == kUnknown && state.compare_exchange_strong(expected, kBusy, std::memory_order_acq_rel)) {
      const bool zero = all_zero(mask(w), n_ * n_);
      if (!zero && transposed_) transpose_terms(mask(w), n_, mask_t_ + w * n_ * ld_);
      s = zero ? kZero : kReady;
      state.store(s, std::memory_order_release);
      return s;
    }
    for (int spins = 0; (s = state.load(std::memory_order_acquire)) < kZero; ++spins) {
      if (spins < 4096) {
        _mm_pause();
      } else {
        std::this_thread::yield();
      }
    }
    return s;
  }

 private:
  const float *mask_;
  int64_t n_, ld_;
  bool transposed_;
  float *mask_t_;
  std::atomic<uint32_t> *state_;
};

}  // namespace

void window_attention(int64_t num_windows, int64_t num_heads, int64_t n, int64_t head_dim, const float *q,
                      const float *k, const float *v, float scale, const float *bias, const float *mask,
                      int64_t mask_windows, float *out, int budget) {
  const AttentionKernelInfo &kernel = select_f32_attention_kernel(active_features(), n);
  const int64_t items = num_windows * num_heads;
  // Work units: single items, or groups of up to max_batch consecutive items for a batched kernel.
  const int64_t group = kernel.run_batch != nullptr ? std::min(kernel.max_batch, kMaxBatchItems) : 1;
  const int64_t groups = (items + group - 1) / group;
  const int threads = team_size(budget, groups);
  const size_t per_thread = (kernel.workspace_floats(n, head_dim) + 15) / 16 * 16;
  // Scratch: each thread's workspace; each head's bias transposed (query-major kernels, made once per
  // call); each mask window in use transposed (the same) and its state.
  const int64_t ld_t = transposed_terms_ld(n);
  const bool transposed = kernel.transposed_terms;
  const int64_t bias_count = transposed && bias != nullptr ? num_heads : 0;
  const int64_t mask_count = mask != nullptr ? std::min(mask_windows, num_windows) : 0;
  const int64_t mask_t_count = transposed ? mask_count : 0;
  const size_t terms_floats = static_cast<size_t>((bias_count + mask_t_count) * n * ld_t);
  ScratchLease lease(per_thread * static_cast<size_t>(threads) + terms_floats +
                     static_cast<size_t>(mask_count));  // may throw: before any output
  float *const base = lease.data();
  float *const bias_t = base + per_thread * static_cast<size_t>(threads);
  float *const mask_t = bias_t + bias_count * n * ld_t;
  MaskWindows masks(mask, mask_count, n, transposed, mask_t, mask_t + mask_t_count * n * ld_t);
  AttentionShape shape;
  shape.n = n;
  shape.head_dim = head_dim;
  shape.ld_q = shape.ld_k = shape.ld_v = shape.ld_out = head_dim;
  shape.prefetch_to_l1 = cpu_is_amd();
  const int64_t head_stride = n * head_dim;
  // A call whose q, k, v and out fit in one core's L2 (the data a layer's chunk hands the kernel, or a small
  // call on data just written) does not prefetch the next item: its lines are in cache already, and issuing
  // the prefetches costs as many instructions as a small item's softmax (paired, Zen 3: 1.10-1.16x at
  // n = 16..32, 1.09x at T = 16, 128-384 KiB per call; the layer never prefetched). The same holds for the
  // batch kernels' prefetches of the items ahead (prefetch_items).
  const bool prefetch_next = 4 * items * head_stride * static_cast<int64_t>(sizeof(float)) > cpu_l2_bytes();
  shape.prefetch_items = prefetch_next;
  // The terms of item (w, h): the head's bias, the window's mask unless it is all zeros.
  auto terms_of = [&](int64_t item) {
    const int64_t w = item / num_heads, h = item % num_heads;
    AttentionTerms terms;
    if (bias != nullptr) {
      terms.bias = bias + h * n * n;
      if (bias_count > 0) terms.bias_t = bias_t + h * n * ld_t;
      terms.ld_bias_t = ld_t;
    }
    if (mask != nullptr && masks.prepare(w % mask_windows) == MaskWindows::kReady) {
      terms.mask = masks.mask(w % mask_windows);
      if (mask_t_count > 0) terms.mask_t = masks.mask_t(w % mask_windows);
      terms.ld_mask_t = ld_t;
    }
    return terms;
  };
  auto run_unit = [&](int64_t unit, float *scratch) {
    if (kernel.run_batch != nullptr) {
      const int64_t first = unit * group, count = std::min(group, items - first);
      AttentionItem batch[kMaxBatchItems];
      for (int64_t i = 0; i < count; ++i) {
        const size_t offset = static_cast<size_t>((first + i) * head_stride);
        batch[i].q = q + offset;
        batch[i].k = k + offset;
        batch[i].v = v + offset;
        batch[i].out = out + offset;
        batch[i].scale = scale;
        batch[i].terms = terms_of(first + i);
      }
      kernel.run_batch(shape, batch, count, scratch);
      return;
    }
    const int64_t item = unit;
    const size_t offset = static_cast<size_t>(item * head_stride);
    const AttentionTerms terms = terms_of(item);
    // What the next item reads and writes, into L2 (L1 on AMD) while this one computes: without it the
    // kernel waits on memory at its first touch of each, for batches larger than the caches. (Its bias and
    // mask are shared between items and mostly in cache already.)
    AttentionShape item_shape = shape;
    if (prefetch_next && item + 1 < items) {
      const size_t next = offset + static_cast<size_t>(head_stride);
      item_shape.prefetch[0] = {q + next, head_stride};
      item_shape.prefetch[1] = {k + next, head_stride};
      item_shape.prefetch[2] = {v + next, head_stride};
      item_shape.prefetch[3] = {out + next, head_stride};
    }
    kernel.run(item_shape, q + offset, k + offset, v + offset, scale, terms, out + offset, scratch);
  };
  if (threads <= 1) {  // no team: starting one allocates, and libgomp exits when that fails
    for (int64_t h = 0; h < bias_count; ++h) transpose_terms(bias + h * n * n, n, bias_t + h * n * ld_t);
    for (int64_t unit = 0; unit < groups; ++unit) run_unit(unit, base);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t h = 0; h < bias_count; ++h) transpose_terms(bias + h * n * n, n, bias_t + h * n * ld_t);
    float *const scratch = base + per_thread * static_cast<size_t>(thread_index());
#pragma omp for schedule(guided)
    for (int64_t unit = 0; unit < groups; ++unit) run_unit(unit, scratch);
  }
}

}  // namespace winattn::detail
