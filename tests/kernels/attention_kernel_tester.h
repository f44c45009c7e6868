// A builder-style tester for the f32 attention kernels, in the manner of XNNPACK's microkernel testers: it
// calls one registered kernel directly (whatever the dispatch rule would pick) on a problem described by the
// builder and compares every output with a float64 oracle written here, independently of the library.
#pragma once

#include <cstdint>
#include <string>

#include "attention/attention.h"

namespace wt_kernels {

class AttentionKernelTester {
 public:
  AttentionKernelTester &n(int64_t value) {
    n_ = value;
    return *this;
  }
  AttentionKernelTester &head_dim(int64_t value) {
    head_dim_ = value;
    return *this;
  }
  // Extra floats between rows of q, k, v and out (row stride = head_dim + extra), as in the layer's
  // [tokens][3][heads][head_dim] rows.
  AttentionKernelTester &row_padding(int64_t value) {
    row_padding_ = value;
    return *this;
  }
  AttentionKernelTester &cosine(bool value) {
    cosine_ = value;
    return *this;
  }
  AttentionKernelTester &bias(bool value) {
    bias_ = value;
    return *this;
  }
  AttentionKernelTester &mask(bool value) {
    mask_ = value;
    return *this;
  }
  // Logits are drawn so that their magnitude reaches about this value (scale chosen accordingly).
  AttentionKernelTester &logit_range(float value) {
    logit_range_ = value;
    return *this;
  }
  // Items per call for a batched kernel (single-item kernels run `items` calls).
  AttentionKernelTester &items(int64_t value) {
    items_ = value;
    return *this;
  }
  // Special rows: query 0 of the first item has all logits -inf (via its mask row), and a NaN in item 0's
  // k row (n - 1) when n > 1.
  AttentionKernelTester &special_values(bool value) {
    special_ = value;
    return *this;
  }
  AttentionKernelTester &seed(uint64_t value) {
    seed_ = value;
    return *this;
  }

  // Runs the kernel and checks it (doctest CHECKs). Returns the largest error relative to the tolerance
  // (<= 1 passes), for reporting.
  double test(const winattn::detail::AttentionKernelInfo &kernel) const;

  std::string describe() const;

 private:
  int64_t n_ = 7, head_dim_ = 32, row_padding_ = 0, items_ = 1;
  bool cosine_ = false, bias_ = false, mask_ = false, special_ = false;
  float logit_range_ = 8.0f;
  uint64_t seed_ = 1;
};

}  // namespace wt_kernels
