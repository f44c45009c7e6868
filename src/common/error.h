// Errors inside the C++ core. Validation throws winattn::detail::Error; capi/ turns it into a status and a per-thread
// message. Nothing may throw inside an OpenMP region (that would terminate the host), so parallel loops only
// run code that cannot throw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "winattn/winattn.h"

namespace winattn::detail {

class Error {
 public:
  Error(winattn_status status, std::string message) : status_(status), message_(std::move(message)) {}
  winattn_status status() const { return status_; }
  const std::string &message() const { return message_; }

 private:
  winattn_status status_;
  std::string message_;
};

// Formats like printf and throws Error(INVALID_ARGUMENT, ...).
[[noreturn]] void invalid_argument(const char *format, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void unsupported(const char *format, ...) __attribute__((format(printf, 1, 2)));

void set_last_error(const char *message);
const char *last_error();

// a * b, or an INVALID_ARGUMENT error naming `what` when the product leaves int64 (or size_t bytes).
int64_t checked_mul(int64_t a, int64_t b, const char *what);
// Checks that `count` floats fit in size_t bytes and returns count.
int64_t checked_elements(int64_t count, const char *what);

void require_not_null(const void *pointer, const char *name);
void require_positive(int64_t value, const char *name);

// True when [a, a + a_bytes) and [b, b + b_bytes) share a byte.
bool overlaps(const void *a, size_t a_bytes, const void *b, size_t b_bytes);

}  // namespace winattn::detail
