// A 64-byte aligned float buffer that reports allocation failure as OUT_OF_MEMORY.
#pragma once

#include <cstdlib>
#include <cstring>

#include "common/error.h"

namespace winattn::detail {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t count) { resize(count); }
  AlignedBuffer(const AlignedBuffer &) = delete;
  AlignedBuffer &operator=(const AlignedBuffer &) = delete;
  AlignedBuffer(AlignedBuffer &&other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  ~AlignedBuffer() { std::free(data_); }

  // Discards the contents.
  void resize(size_t count) {
    std::free(data_);
    data_ = nullptr;
    size_ = 0;
    if (count == 0) return;
    if (count > (SIZE_MAX - 63) / sizeof(float))
      throw Error(WINATTN_STATUS_OUT_OF_MEMORY, "workspace too large");
    const size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
    data_ = static_cast<float *>(std::aligned_alloc(64, bytes));
    if (data_ == nullptr) {
      throw Error(WINATTN_STATUS_OUT_OF_MEMORY,
                  "cannot allocate " + std::to_string(bytes) + " bytes of workspace");
    }
    size_ = count;
  }
  float *data() { return data_; }
  const float *data() const { return data_; }
  size_t size() const { return size_; }

 private:
  float *data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace winattn::detail

namespace winattn::detail {

// Scratch memory of the calling thread, kept between calls (grown when a call needs more, freed when the
// thread exits), so a steady stream of forwards allocates nothing. Valid until the next call on the same
// thread; one user at a time per thread.
inline float *thread_scratch(size_t count) {
  thread_local AlignedBuffer buffer;
  if (buffer.size() < count) buffer.resize(count + count / 4);
  return buffer.data();
}

}  // namespace winattn::detail
