// nn.Linear through oneDNN: dst[m][o] = sum_i src[m][i] * weight[o][i] + bias[o].
//
// A matmul primitive is made per row count (the layer uses one or two row counts per input shape) with the
// weights in the layout that primitive prefers, reordered once per layout and cached: a fixed row count
// lets oneDNN use its brgemm kernels with the bias fused, where a run-time row count falls back to a GEMM
// whose bias pass is generated on every call. prepare() may throw and runs outside parallel regions;
// forward() never throws, runs on the calling thread (inside an OpenMP region it is single-threaded) and
// may be called concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace winattn::detail {

class Linear {
 public:
  struct Plan;  // a primitive for one row count, with its packed weights

  // weight: [out_features][in_features] (nn.Linear), bias: [out_features] or nullptr. Copies both.
  Linear(const float *weight, const float *bias, int64_t in_features, int64_t out_features);
  ~Linear();
  Linear(const Linear &) = delete;
  Linear &operator=(const Linear &) = delete;

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

  // The plan for `rows` rows (created once, then cached; thread-safe). Throws Error.
  std::shared_ptr<const Plan> prepare(int64_t rows) const;
  // Bytes of scratch forward(plan, ...) needs.
  static size_t scratchpad_bytes(const Plan &plan);
  // src: [rows][in_features], dst: [rows][out_features], dense; rows as prepared. False on a oneDNN error.
  bool forward(const Plan &plan, const float *src, float *dst, void *scratchpad) const noexcept;

 private:
  struct Impl;
  int64_t in_, out_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace winattn::detail
