// nn.Linear through oneDNN: dst[m][o] = sum_i src[m][i] * weight[o][i] + bias[o]. The matmul primitive is
// built once with a run-time row count and the weights reordered once into the layout it prefers, so
// forward only runs it. forward is thread-safe (each call uses its own stream and scratchpad) and, called
// inside an OpenMP region, runs on the calling thread only.
#pragma once

#include <cstdint>
#include <memory>

namespace winattn {

class Linear {
 public:
  // weight: [out_features][in_features] (nn.Linear), bias: [out_features] or nullptr. Copies both.
  Linear(const float *weight, const float *bias, int64_t in_features, int64_t out_features);
  ~Linear();
  Linear(const Linear &) = delete;
  Linear &operator=(const Linear &) = delete;

  int64_t in_features() const;
  int64_t out_features() const;
  // Bytes of scratch forward needs (per concurrent call).
  size_t scratchpad_bytes() const;
  // src: [rows][in_features] dense, dst: [rows][out_features] dense. scratchpad: scratchpad_bytes() bytes.
  // Returns false on a oneDNN failure (never throws: callable inside OpenMP regions).
  bool forward(const float *src, int64_t rows, float *dst, void *scratchpad) const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace winattn
