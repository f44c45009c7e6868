// The process-wide allocator interposer of fault_malloc.h. Everything forwards to glibc's own entry points
// (__libc_malloc and friends), which need no dlsym and so no allocation of their own.
#include "fault_malloc.h"

#include <errno.h>
#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

extern "C" {
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t count, size_t size);
void *__libc_realloc(void *pointer, size_t size);
void __libc_free(void *pointer);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
}

namespace fault {
namespace {

std::atomic<bool> g_armed{false};
std::atomic<int64_t> g_countdown{0};
std::atomic<int64_t> g_counted{0};
std::atomic<bool> g_injected{false};

constexpr int kMaxFrames = 64;
void *g_stack[kMaxFrames];
std::atomic<int> g_stack_depth{0};
thread_local bool t_capturing = false;

// Counts one request while armed; true for the one that must fail.
bool should_fail() {
  if (!g_armed.load(std::memory_order_acquire)) return false;
  if (t_capturing) return false;  // the unwinder's own requests while capturing the stack
  g_counted.fetch_add(1, std::memory_order_relaxed);
  if (g_countdown.fetch_sub(1, std::memory_order_acq_rel) != 1) return false;
  t_capturing = true;
  g_stack_depth.store(backtrace(g_stack, kMaxFrames), std::memory_order_release);
  t_capturing = false;
  g_injected.store(true, std::memory_order_release);
  return true;
}

bool valid_alignment(size_t alignment) {
  return alignment != 0 && (alignment & (alignment - 1)) == 0;
}

void *aligned(size_t alignment, size_t size) {
  if (should_fail()) {
    errno = ENOMEM;
    return nullptr;
  }
  return __libc_memalign(alignment, size);
}

void write_string(const char *text) {
  size_t length = std::strlen(text);
  while (length > 0) {
    const ssize_t written = ::write(2, text, length);
    if (written <= 0) return;
    text += written;
    length -= static_cast<size_t>(written);
  }
}

}  // namespace

void arm(int64_t k) {
  g_injected.store(false, std::memory_order_relaxed);
  g_stack_depth.store(0, std::memory_order_relaxed);
  g_counted.store(0, std::memory_order_relaxed);
  g_countdown.store(k, std::memory_order_relaxed);
  g_armed.store(true, std::memory_order_release);
}

bool disarm() {
  g_armed.store(false, std::memory_order_release);
  return g_injected.load(std::memory_order_acquire);
}

int64_t counted() {
  return g_counted.load(std::memory_order_relaxed);
}

bool injected() {
  return g_injected.load(std::memory_order_acquire);
}

int injected_stack(void **frames, int max_frames) {
  const int depth = g_stack_depth.load(std::memory_order_acquire);
  const int n = depth < max_frames ? depth : max_frames;
  for (int i = 0; i < n; ++i) frames[i] = g_stack[i];
  return n;
}

void print_injected_stack(const char *title) {
  write_string(title);
  write_string("\n");
  const int depth = g_stack_depth.load(std::memory_order_acquire);
  if (depth > 1) backtrace_symbols_fd(g_stack + 1, depth - 1, 2);  // from the allocator entry point on
}

void init() {
  void *frames[4];
  backtrace(frames, 4);  // the first call loads libgcc_s (which allocates): do it now, unarmed
}

}  // namespace fault

// ---- The C allocator ------------------------------------------------------------------------------------

extern "C" {

void *malloc(size_t size) {
  if (fault::should_fail()) {
    errno = ENOMEM;
    return nullptr;
  }
  return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
  if (fault::should_fail()) {
    errno = ENOMEM;
    return nullptr;
  }
  return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
  if (fault::should_fail()) {  // the old block stays valid, as realloc promises
    errno = ENOMEM;
    return nullptr;
  }
  return __libc_realloc(pointer, size);
}

void free(void *pointer) {
  __libc_free(pointer);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
  if (!fault::valid_alignment(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
  void *pointer = fault::aligned(alignment, size);
  if (pointer == nullptr) return ENOMEM;
  *result = pointer;
  return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
  if (!fault::valid_alignment(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  return fault::aligned(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
  return fault::aligned(alignment, size);
}

void *valloc(size_t size) {
  if (fault::should_fail()) {
    errno = ENOMEM;
    return nullptr;
  }
  return __libc_valloc(size);
}

void *pvalloc(size_t size) {
  if (fault::should_fail()) {
    errno = ENOMEM;
    return nullptr;
  }
  return __libc_pvalloc(size);
}

}  // extern "C"

// ---- operator new / delete ------------------------------------------------------------------------------

namespace {

void *new_or_throw(size_t size) {
  void *pointer = malloc(size != 0 ? size : 1);
  if (pointer == nullptr) throw std::bad_alloc();
  return pointer;
}

void *new_aligned_or_throw(size_t size, std::align_val_t alignment) {
  size_t a = static_cast<size_t>(alignment);
  if (a < sizeof(void *)) a = sizeof(void *);
  void *pointer = fault::aligned(a, size != 0 ? size : 1);
  if (pointer == nullptr) throw std::bad_alloc();
  return pointer;
}

}  // namespace

void *operator new(size_t size) {
  return new_or_throw(size);
}
void *operator new[](size_t size) {
  return new_or_throw(size);
}
void *operator new(size_t size, const std::nothrow_t &) noexcept {
  return malloc(size != 0 ? size : 1);
}
void *operator new[](size_t size, const std::nothrow_t &) noexcept {
  return malloc(size != 0 ? size : 1);
}
void *operator new(size_t size, std::align_val_t alignment) {
  return new_aligned_or_throw(size, alignment);
}
void *operator new[](size_t size, std::align_val_t alignment) {
  return new_aligned_or_throw(size, alignment);
}
void *operator new(size_t size, std::align_val_t alignment, const std::nothrow_t &) noexcept {
  size_t a = static_cast<size_t>(alignment);
  return fault::aligned(a < sizeof(void *) ? sizeof(void *) : a, size != 0 ? size : 1);
}
void *operator new[](size_t size, std::align_val_t alignment, const std::nothrow_t &) noexcept {
  size_t a = static_cast<size_t>(alignment);
  return fault::aligned(a < sizeof(void *) ? sizeof(void *) : a, size != 0 ? size : 1);
}

void operator delete(void *pointer) noexcept {
  free(pointer);
}
void operator delete[](void *pointer) noexcept {
  free(pointer);
}
void operator delete(void *pointer, size_t) noexcept {
  free(pointer);
}
void operator delete[](void *pointer, size_t) noexcept {
  free(pointer);
}
void operator delete(void *pointer, const std::nothrow_t &) noexcept {
  free(pointer);
}
void operator delete[](void *pointer, const std::nothrow_t &) noexcept {
  free(pointer);
}
void operator delete(void *pointer, std::align_val_t) noexcept {
  free(pointer);
}
void operator delete[](void *pointer, std::align_val_t) noexcept {
  free(pointer);
}
void operator delete(void *pointer, size_t, std::align_val_t) noexcept {
  free(pointer);
}
void operator delete[](void *pointer, size_t, std::align_val_t) noexcept {
  free(pointer);
}
void operator delete(void *pointer, std::align_val_t, const std::nothrow_t &) noexcept {
  free(pointer);
}
void operator delete[](void *pointer, std::align_val_t, const std::nothrow_t &) noexcept {
  free(pointer);
}
