#include "fuzz_common.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_set>

namespace fz {

namespace {
char g_ctx[640];  // the call being made, printed with any failure
}

uint64_t g_salt = 0;
namespace {
uint64_t g_rng_calls = 0;  // separate from g_salt: sampling choices do not change the data of later calls
}

void reset_input_state() {
  g_salt = 0;
  g_rng_calls = 0;
}

bool verbose() {
  static const bool on = std::getenv("WINATTN_FUZZ_VERBOSE") != nullptr;
  return on;
}

void set_ctx(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_ctx, sizeof g_ctx, fmt, ap);
  va_end(ap);
  if (verbose()) fprintf(stderr, "fuzz_capi call: %s\n", g_ctx);
}

void note(const char *fmt, ...) {
  if (!verbose()) return;
  fprintf(stderr, "fuzz_capi   ");
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
}

void fail(const char *file, int line, const char *fmt, ...) {
  fprintf(stderr, "\nfuzz_capi: check failed at %s:%d\n  call: %s\n  ", file, line, g_ctx);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n  last error message: \"%s\"\n", winattn_last_error_message());
  abort();
}

int64_t Reader::dim(int64_t small_max) {
  const uint8_t sel = u8();
  if (sel < 224) return 1 + sel % small_max;
  switch (sel & 31) {
    case 0:
    case 1:
      return 0;
    case 2:
    case 3:
      return -1 - static_cast<int64_t>(u8());
    case 4:
      return kI64Max;
    case 5:
      return kI64Min;
    case 6:
    case 7:
      return kI64Max / (2 + u8());
    case 8:
    case 9:
      return int64_t(1) << (20 + u8() % 43);
    case 10:
    case 11:
      return static_cast<int64_t>(u64());
    case 12:
    case 13:
    case 14:
    case 15:
      return small_max + 1 + u8() % 64;
    case 16:
    case 17:
    case 18:
    case 19:
      return 1 + static_cast<int64_t>(u16());
    case 20:
      return 2147483647;
    case 21:
      return 2147483648;
    case 22:
      return 4294967295;
    case 23:
      return 4294967297;
    default:
      return 1 + sel % small_max;
  }
}

uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

Rng call_rng() {
  return Rng(++g_rng_calls * 0x2545F4914F6CDD1Dull);
}

namespace {
void fill_values(Reader &r, float *p, size_t n) {
  static const float kScales[8] = {1.0f, 0.25f, 4.0f, 64.0f, 1000.0f, 1e-3f, 0.0f, 1e30f};
  const uint8_t mode = r.u8();
  uint64_t state = mix((static_cast<uint64_t>(r.u16()) << 8) ^ mode ^ (++g_salt << 32));
  const float scale = kScales[mode % 8];
  for (size_t i = 0; i < n; ++i) {
    state = mix(state);
    const float u = static_cast<float>(state >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    p[i] = scale * (2.0f * u - 1.0f);
  }
}
}  // namespace

void fill(Reader &r, float *p, size_t n) {
  fill_values(r, p, n);
  const uint8_t k = r.u8();
  if (k >= 192 && n > 0) {
    static const float kSpecial[8] = {std::numeric_limits<float>::quiet_NaN(),
                                      std::numeric_limits<float>::infinity(),
                                      -std::numeric_limits<float>::infinity(),
                                      std::numeric_limits<float>::max(),
                                      -std::numeric_limits<float>::max(),
                                      1e-40f,
                                      -0.0f,
                                      1e20f};
    const int count = 1 + k % 4;
    for (int c = 0; c < count; ++c) {
      const size_t pos = r.u32() % n;
      p[pos] = kSpecial[r.u8() % 8];
    }
  }
}

void fill_plain(Reader &r, float *p, size_t n) {
  fill_values(r, p, n);
}

void Frozen::add(const void *p, size_t bytes, const char *name) {
  if (p == nullptr || bytes == 0) return;
  const auto *b = static_cast<const unsigned char *>(p);
  items_.push_back({b, std::vector<unsigned char>(b, b + bytes), name});
}

void Frozen::check(const char *when) const {
  for (const auto &it : items_) {
    if (std::memcmp(it.p, it.copy.data(), it.copy.size()) == 0) continue;
    size_t first = 0;
    while (first < it.copy.size() && it.p[first] == it.copy[first]) ++first;
    fail(__FILE__, __LINE__, "%s: '%s' was modified (first changed byte %zu of %zu)", when, it.name, first,
         it.copy.size());
  }
}

bool all_finite(const float *p, size_t n, float bound) {
  for (size_t i = 0; i < n; ++i)
    if (!(std::fabs(p[i]) <= bound)) return false;
  return true;
}

bool has_nan(const float *p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (std::isnan(p[i])) return true;
  return false;
}

bool oracle_clean(const float *p, size_t n, float bound) {
  for (size_t i = 0; i < n; ++i) {
    const float a = std::fabs(p[i]);
    if (!(a <= bound) || (a != 0.0f && a < 1e-30f)) return false;
  }
  return true;
}

bool same_bits(const float *a, const float *b, size_t n) {
  if (std::memcmp(a, b, n * sizeof(float)) == 0) return true;
  for (size_t i = 0; i < n; ++i)
    if (std::memcmp(a + i, b + i, sizeof(float)) != 0 && !(std::isnan(a[i]) && std::isnan(b[i])))
      return false;
  return true;
}

size_t first_difference(const float *a, const float *b, size_t n) {
  if (std::memcmp(a, b, n * sizeof(float)) == 0) return n;
  for (size_t i = 0; i < n; ++i)
    if (!same_bits(a + i, b + i, 1)) return i;
  return n;
}

std::string last_msg() {
  return winattn_last_error_message();
}

uint64_t g_checked_calls = 0;

void check_status(winattn_status s, Expect expect, const std::string &prev_msg, bool allow_oom) {
  ++g_checked_calls;
  const int si = static_cast<int>(s);
  note("-> status %d", si);
  CHECK(si >= 0 && si <= 4, "status %d is not a winattn_status value", si);
  const char *name = winattn_status_string(s);
  CHECK(name != nullptr && name[0] != '\0', "winattn_status_string(%d) empty", si);
  CHECK(std::strcmp(name, "unknown status") != 0, "winattn_status_string(%d) unknown", si);
  const char *msg = winattn_last_error_message();
  CHECK(msg != nullptr, "winattn_last_error_message() returned NULL");
  if (s != WINATTN_STATUS_OK) {
    CHECK(msg[0] != '\0', "status %d (%s) with an empty error message", si, name);
    if (allow_oom && s == WINATTN_STATUS_OUT_OF_MEMORY) return;
    CHECK(expect != Expect::kOk, "expected OK, got %d (%s): %s", si, name, msg);
  } else {
    CHECK(expect != Expect::kFail, "expected an error, got OK");
    CHECK(prev_msg == msg, "a successful call changed the error message from \"%s\" to \"%s\"",
          prev_msg.c_str(), msg);
  }
}

namespace {
std::mutex g_layers_mutex;
std::unordered_set<const winattn_layer *> &live() {
  static auto *set = new std::unordered_set<const winattn_layer *>();
  return *set;
}
}  // namespace

void layer_created(winattn_layer *layer) {
  std::lock_guard<std::mutex> lock(g_layers_mutex);
  live().insert(layer);
}

void layer_destroyed(winattn_layer *layer) {
  std::lock_guard<std::mutex> lock(g_layers_mutex);
  live().erase(layer);
}

bool layer_is_live(const winattn_layer *layer) {
  std::lock_guard<std::mutex> lock(g_layers_mutex);
  return live().count(layer) != 0;
}

void destroy_all_layers() {
  std::vector<const winattn_layer *> all;
  {
    std::lock_guard<std::mutex> lock(g_layers_mutex);
    all.assign(live().begin(), live().end());
    live().clear();
  }
  for (const winattn_layer *layer : all) winattn_layer_destroy(const_cast<winattn_layer *>(layer));
}

}  // namespace fz
