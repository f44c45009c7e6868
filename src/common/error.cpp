#include "common/error.h"

#include <cstdarg>
#include <cstdio>
#include <limits>

namespace winattn::detail {
namespace {

thread_local std::string g_last_error;

std::string vformat(const char *format, va_list args) {
  char buffer[512];
  std::vsnprintf(buffer, sizeof buffer, format, args);
  return std::string(buffer);
}

}  // namespace

void invalid_argument(const char *format, ...) {
  va_list args;
  va_start(args, format);
  std::string message = vformat(format, args);
  va_end(args);
  throw Error(WINATTN_STATUS_INVALID_ARGUMENT, std::move(message));
}

void unsupported(const char *format, ...) {
  va_list args;
  va_start(args, format);
  std::string message = vformat(format, args);
  va_end(args);
  throw Error(WINATTN_STATUS_UNSUPPORTED, std::move(message));
}

void set_last_error(const char *message) {
  try {
    g_last_error = message;
  } catch (...) {
    g_last_error.clear();  // out of memory while reporting: keep the old buffer usable
  }
}

const char *last_error() {
  return g_last_error.c_str();
}

int64_t checked_mul(int64_t a, int64_t b, const char *what) {
  int64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product)) {
    invalid_argument("%s overflows: %lld * %lld does not fit in 64 bits", what, static_cast<long long>(a),
                     static_cast<long long>(b));
  }
  return product;
}

int64_t checked_elements(int64_t count, const char *what) {
  // Keep every byte offset representable in ptrdiff_t.
  if (count > std::numeric_limits<int64_t>::max() / 8) {
    invalid_argument("%s is too large: %lld elements", what, static_cast<long long>(count));
  }
  return count;
}

void require_not_null(const void *pointer, const char *name) {
  if (pointer == nullptr) invalid_argument("%s must not be NULL", name);
}

void require_positive(int64_t value, const char *name) {
  if (value <= 0) invalid_argument("%s must be positive, got %lld", name, static_cast<long long>(value));
}

bool overlaps(const void *a, size_t a_bytes, const void *b, size_t b_bytes) {
  const auto a0 = reinterpret_cast<uintptr_t>(a);
  const auto b0 = reinterpret_cast<uintptr_t>(b);
  if (a_bytes == 0 || b_bytes == 0) return false;
  return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

}  // namespace winattn::detail
