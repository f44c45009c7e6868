// Shared helpers of the doctest unit tests: random data, ISA enumeration, dispatch/thread guards and the
// "invalid argument leaves the output untouched" check.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "winattn/winattn.h"

namespace wt {

// Deterministic random numbers (fixed seed per test so failures reproduce).
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(engine_); }
  int64_t integer(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(engine_); }
  std::vector<float> vec(size_t count, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> out(count);
    for (auto &x : out) x = uniform(lo, hi);
    return out;
  }

 private:
  std::mt19937_64 engine_;
};

// Restores the library's dispatch cap and thread count when a test that changes them ends (also on failure).
struct DispatchGuard {
  DispatchGuard() = default;
  DispatchGuard(const DispatchGuard &) = delete;
  DispatchGuard &operator=(const DispatchGuard &) = delete;
  ~DispatchGuard() {
    winattn_set_max_isa("native");
    winattn_set_num_threads(0);
  }
};

// The dispatch levels this CPU offers, best first: a name counts when capping at it makes
// winattn_active_isa() report exactly it. "scalar" is always expected to be there.
inline std::vector<std::string> available_isas() {
  static const char *const kNames[] = {"amx_bf16", "avx512_bf16", "avx512", "avx2", "scalar"};
  std::vector<std::string> found;
  for (const char *name : kNames) {
    if (winattn_set_max_isa(name) != WINATTN_STATUS_OK) continue;
    if (std::string(winattn_active_isa()) == name) found.emplace_back(name);
  }
  winattn_set_max_isa("native");
  return found;
}

// Forces `isa` and checks the library reports it.
inline void force_isa(const std::string &isa) {
  REQUIRE(winattn_set_max_isa(isa.c_str()) == WINATTN_STATUS_OK);
  REQUIRE(std::string(winattn_active_isa()) == isa);
}

// A byte pattern that no library would write by accident.
constexpr unsigned char kSentinelByte = 0xA7;

template <typename T>
std::vector<T> sentinel_buffer(size_t count) {
  std::vector<T> buffer(count);
  std::memset(buffer.data(), kSentinelByte, count * sizeof(T));
  return buffer;
}

template <typename T>
bool is_sentinel(const std::vector<T> &buffer) {
  const unsigned char *bytes = reinterpret_cast<const unsigned char *>(buffer.data());
  for (size_t i = 0; i < buffer.size() * sizeof(T); ++i)
    if (bytes[i] != kSentinelByte) return false;
  return true;
}

// The common contract of every failed call: the status, a non-empty message, nothing written.
#define WT_CHECK_INVALID(call_expr, buffer)                                   \
  do {                                                                        \
    const winattn_status wt_status_ = (call_expr);                            \
    CHECK_MESSAGE(wt_status_ == WINATTN_STATUS_INVALID_ARGUMENT, #call_expr); \
    CHECK_MESSAGE(std::strlen(winattn_last_error_message()) > 0, #call_expr); \
    CHECK_MESSAGE(wt::is_sentinel(buffer), "output written by: " #call_expr); \
  } while (0)

inline float max_abs(const std::vector<float> &x) {
  float m = 0.0f;
  for (float value : x) m = std::fmax(m, std::fabs(value));
  return m;
}

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

}  // namespace wt
