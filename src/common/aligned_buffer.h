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
  AlignedBuffer &operator=(AlignedBuffer &&other) noexcept {
    if (this != &other) {
      std::free(data_);
      data_ = other.data_;
      size_ = other.size_;
      other.data_ = nullptr;
      other.size_ = 0;
    }
    return *this;
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

// Bytes of scratch a thread keeps between calls (WINATTN_THREAD_SCRATCH_KEEP_BYTES).
constexpr size_t kThreadScratchKeepBytes = size_t{16} << 20;

// The calling thread's scratch buffer, kept between calls so that calls of a steady size do not allocate
// it each time; freed when the thread exits or by release_thread_scratch().
inline AlignedBuffer &thread_scratch_buffer() {
  thread_local AlignedBuffer buffer;
  return buffer;
}

// Frees the calling thread's scratch (winattn_release_thread_memory).
inline void release_thread_scratch() {
  thread_scratch_buffer().resize(0);
}

// The calling thread's scratch for the duration of one call: at least `count` floats, 64-byte aligned,
// grown when needed (may throw OUT_OF_MEMORY: take the lease before writing any output). When the lease
// ends, a buffer larger than kThreadScratchKeepBytes is freed, so a thread that once ran a large call does
// not keep its memory. One lease at a time per thread.
class ScratchLease {
 public:
  explicit ScratchLease(size_t count) : buffer_(thread_scratch_buffer()) {
    if (buffer_.size() < count) {
      buffer_.resize(0);  // free the old buffer before allocating the new one
      const size_t grown = count + count / 4;
      buffer_.resize(grown * sizeof(float) > kThreadScratchKeepBytes ? count : grown);
    }
  }
  ~ScratchLease() {
    if (buffer_.size() * sizeof(float) > kThreadScratchKeepBytes) buffer_.resize(0);
  }
  ScratchLease(const ScratchLease &) = delete;
  ScratchLease &operator=(const ScratchLease &) = delete;
  float *data() { return buffer_.data(); }

 private:
  AlignedBuffer &buffer_;
};

}  // namespace winattn::detail
