// Shared pieces of the fuzz harness: failure reporting, the byte reader, buffers the library may touch,
// snapshots of memory that must not change, and the status checks every call gets.
#pragma once

#include <winattn/winattn.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace fz {

using i128 = __int128;
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr i128 kMaxElems = i128(1) << 20;   // per buffer: 4 MiB of float, 8 MiB of int64
constexpr i128 kMaxWork = i128(1) << 19;    // rough multiply-adds per call of target api (~1 ms sanitized)
constexpr i128 kSmallWork = i128(1) << 17;  // the same for the other targets' ordinary calls
constexpr i128 kBigWork = i128(1) << 20;    // the same for the large-shape target (~2-4 ms)
constexpr size_t kTiny = 16;

// ---- Failure reporting ------------------------------------------------------------------------------------
bool verbose();  // WINATTN_FUZZ_VERBOSE is set: print every call
void set_ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));  // the call being made
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));     // printed in verbose mode
[[noreturn]] void fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CHECK(cond, ...)                                         \
  do {                                                           \
    if (!(cond)) ::fz::fail(__FILE__, __LINE__, "" __VA_ARGS__); \
  } while (0)

// ---- Byte reader ------------------------------------------------------------------------------------------
// Past the end every read gives 0, so every input decodes to a complete program.
class Reader {
 public:
  Reader(const uint8_t *data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t u16() {
    const uint16_t lo = u8();
    return static_cast<uint16_t>(lo | (u8() << 8));
  }
  uint32_t u32() {
    const uint32_t lo = u16();
    return lo | (static_cast<uint32_t>(u16()) << 16);
  }
  uint64_t u64() {
    const uint64_t lo = u32();
    return lo | (static_cast<uint64_t>(u32()) << 32);
  }
  // True with probability about 1/k; false once the input is exhausted.
  bool rare(unsigned k) { return u8() % k == k - 1; }
  // A size: 1..small_max most of the time, sometimes 0, negative, huge or overflow-prone.
  int64_t dim(int64_t small_max);

 private:
  const uint8_t *data_;
  size_t size_;
  size_t pos_ = 0;
};

uint64_t mix(uint64_t x);  // splitmix64 finaliser
extern uint64_t g_salt;    // makes arrays filled from the same seed differ
void reset_input_state();  // g_salt and the sampling generator, at the start of each input

// Choices the harness makes without reading the input (which rows to check): seeded per call from g_salt,
// so a reproducer makes the same choices.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(mix(seed ^ 0x5851F42D4C957F2Dull)) {}
  uint64_t next() { return state_ = mix(state_); }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }

 private:
  uint64_t state_;
};
Rng call_rng();  // a fresh generator for the current call

// Fills p[0..n) from a seeded generator at a fuzzer-chosen scale, then plants a few special values
// (NaN, +-Inf, +-FLT_MAX, a denormal, -0, 1e20).
void fill(Reader &r, float *p, size_t n);
// Same, but only plain values (no special values planted) at the scale chosen by the input.
void fill_plain(Reader &r, float *p, size_t n);

// ---- Size arithmetic --------------------------------------------------------------------------------------
inline bool fits_i64(i128 x) {
  return x >= 0 && x <= kI64Max;
}
// Products of sizes as the contract computes them; saturates far above int64 so the checks stay exact. A
// negative factor gives -1 (never a valid size).
inline i128 mul(i128 a, i128 b) {
  const i128 lim = i128(1) << 100;
  if (a < 0 || b < 0) return -1;
  if (a == 0 || b == 0) return 0;
  if (a > lim / b) return lim;
  return a * b;
}

// ---- Buffers ----------------------------------------------------------------------------------------------
template <class T>
struct Buf {
  std::unique_ptr<T[]> own;  // not zeroed: every user fills or poisons it
  T *p = nullptr;
  size_t n = 0;  // elements behind p
  std::vector<T> copy() const { return std::vector<T>(p, p + n); }
};

// valid: the call is valid so far; need: elements the shape claims. A valid call gets the full array when
// it is small, else NULL; an invalid call gets the full array when small, else a tiny one. null_choice
// forces NULL.
template <class T>
Buf<T> make_buf(i128 need, bool valid, bool null_choice, i128 max_elems = kMaxElems) {
  Buf<T> b;
  if (null_choice) return b;
  size_t n;
  if (need >= 1 && need <= max_elems) {
    n = static_cast<size_t>(need);
  } else if (valid) {
    return b;  // NULL
  } else {
    n = kTiny;
  }
  b.own.reset(new T[n]);
  b.p = b.own.get();
  b.n = n;
  return b;
}

// Fills an output with a recognisable pattern before the call.
template <class T>
void poison(Buf<T> &b) {
  if (b.p) std::memset(static_cast<void *>(b.p), 0xA5, b.n * sizeof(T));
}

// Snapshot of byte ranges that must not change (inputs always, outputs on failure).
class Frozen {
 public:
  void add(const void *p, size_t bytes, const char *name);
  void check(const char *when) const;

 private:
  struct Item {
    const unsigned char *p;
    std::vector<unsigned char> copy;
    const char *name;
  };
  std::vector<Item> items_;
};

bool all_finite(const float *p, size_t n, float bound);
bool has_nan(const float *p, size_t n);
// Every value finite, |x| <= bound, and no denormal: the float64 oracles' error bounds hold for such data.
bool oracle_clean(const float *p, size_t n, float bound = 1e4f);
// Bitwise equality, with any NaN equal to any NaN.
bool same_bits(const float *a, const float *b, size_t n);
// The first index where same_bits fails, or n.
size_t first_difference(const float *a, const float *b, size_t n);

// ---- Status checks ----------------------------------------------------------------------------------------
enum class Expect { kOk, kFail, kAny };
extern uint64_t g_checked_calls;  // library calls whose status was checked (statistics)
std::string last_msg();
// The checks every call gets. prev_msg: the error message before the call. Also accepts OUT_OF_MEMORY for
// kOk when allow_oom (allocation failures injected).
void check_status(winattn_status s, Expect expect, const std::string &prev_msg, bool allow_oom = false);

// ---- Layers the harness owns
// -------------------------------------------------------------------------------- Every live layer the
// harness holds, so a stale handle that equals a live one (a reused address: the header's detection is
// best-effort) is not expected to fail.
void layer_created(winattn_layer *layer);
void layer_destroyed(winattn_layer *layer);
bool layer_is_live(const winattn_layer *layer);
void destroy_all_layers();  // end of an input: nothing outlives it

}  // namespace fz
