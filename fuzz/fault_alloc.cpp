#include "fault_alloc.h"

#include <dlfcn.h>
#include <link.h>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace fz::fault {
namespace {

std::atomic<bool> g_armed{false};
std::atomic<int64_t> g_count{0}, g_failed{0};
Mode g_mode = Mode::kNth;
int64_t g_n = 1;
size_t g_min_bytes = 0;
bool g_include_dnnl = false;
std::atomic<bool> g_called{false};  // a replacement ran for a library allocation
bool g_verbose = false;

// Address ranges of the loaded code of libwinattn and libdnnl (found once, on the first arm).
struct Range {
  uintptr_t lo = 0, hi = 0, base = 0;  // base: the object's load address (offsets in reports)
};
Range g_winattn[4], g_dnnl[4];

int collect(struct dl_phdr_info *info, size_t, void *) {
  const char *name = info->dlpi_name ? info->dlpi_name : "";
  Range *ranges = std::strstr(name, "libwinattn") ? g_winattn
                  : std::strstr(name, "libdnnl")  ? g_dnnl
                                                  : nullptr;
  if (!ranges) return 0;
  int k = 0;
  for (int i = 0; i < info->dlpi_phnum && k < 4; ++i) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    ranges[k].base = info->dlpi_addr;
    ranges[k].lo = info->dlpi_addr + ph.p_vaddr;
    ranges[k].hi = ranges[k].lo + ph.p_memsz;
    ++k;
  }
  return 0;
}

bool in(const Range *ranges, uintptr_t a) {
  for (int i = 0; i < 4; ++i)
    if (a >= ranges[i].lo && a < ranges[i].hi) return true;
  return false;
}

// oneDNN allocates its objects (memory, primitive descriptors, ...) through a class operator new that returns
// the NULL of a failed posix_memalign without being noexcept, so the constructor then writes through NULL
// (SEGV in dnnl_memory_create, oneDNN 2.6.3 as shipped by Debian 12): a failure there cannot be survived by
// any caller. Only oneDNN's allocations of data (scratchpads, buffers: at least this size) are failed.
constexpr size_t kDnnlMinBytes = 64 * 1024;

// Decides for one allocation of `bytes` whose caller's return address is `caller`.
bool should_fail(size_t bytes, void *caller) {
  if (!g_armed.load(std::memory_order_acquire)) return false;
  const auto a = reinterpret_cast<uintptr_t>(caller);
  const bool ours = in(g_winattn, a);
  if (ours) g_called.store(true, std::memory_order_relaxed);
  if (!ours && !(g_include_dnnl && bytes >= kDnnlMinBytes && in(g_dnnl, a))) return false;
  const int64_t k = g_count.fetch_add(1) + 1;
  bool fail = false;
  switch (g_mode) {
    case Mode::kNth:
      fail = k == g_n;
      break;
    case Mode::kFrom:
      fail = k >= g_n;
      break;
    case Mode::kLarge:
      fail = bytes >= g_min_bytes;
      break;
  }
  if (fail) {
    g_failed.fetch_add(1);
    if (g_verbose) {  // no stdio here: it may allocate
      char line[160];
      const int len =
          snprintf(line, sizeof line, "fuzz_capi   fault: allocation %lld (%zu bytes) from %s+0x%zx fails\n",
                   (long long)k, bytes, ours ? "libwinattn" : "libdnnl",
                   static_cast<size_t>(a - (ours ? g_winattn : g_dnnl)[0].base));
      if (len > 0) (void)!write(2, line, static_cast<size_t>(len < 160 ? len : 159));
    }
  }
  return fail;
}

template <class F>
F next(const char *name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

using NewFn = void *(*)(size_t);
using NewNothrowFn = void *(*)(size_t, const std::nothrow_t &);
using NewAlignFn = void *(*)(size_t, std::align_val_t);
using NewAlignNothrowFn = void *(*)(size_t, std::align_val_t, const std::nothrow_t &);

}  // namespace

void arm(Mode mode, int64_t n, size_t min_bytes, bool include_dnnl) {
  static const bool found =
      (dl_iterate_phdr(collect, nullptr), g_verbose = getenv("WINATTN_FUZZ_VERBOSE"), true);
  (void)found;
  g_mode = mode;
  g_n = n < 1 ? 1 : n;
  g_min_bytes = min_bytes;
  g_include_dnnl = include_dnnl;
  g_count.store(0);
  g_failed.store(0);
  g_armed.store(true, std::memory_order_release);
}

int64_t disarm() {
  g_armed.store(false, std::memory_order_release);
  return g_failed.load();
}

int64_t counted() {
  return g_count.load();
}

bool active() {
  return g_called.load() || g_winattn[0].hi != 0;
}

}  // namespace fz::fault

using fz::fault::should_fail;

// ---- Replacements ----------------------------------------------------------------------------------------
// Each forwards to the next definition in the lookup order (the sanitizer runtime's allocator, or libc /
// libstdc++ without one), looked up once.
#define FZ_CALLER __builtin_return_address(0)

void *operator new(size_t n) {
  static const auto real = fz::fault::next<fz::fault::NewFn>("_Znwm");
  if (should_fail(n, FZ_CALLER)) throw std::bad_alloc();
  return real(n);
}
void *operator new[](size_t n) {
  static const auto real = fz::fault::next<fz::fault::NewFn>("_Znam");
  if (should_fail(n, FZ_CALLER)) throw std::bad_alloc();
  return real(n);
}
void *operator new(size_t n, const std::nothrow_t &t) noexcept {
  static const auto real = fz::fault::next<fz::fault::NewNothrowFn>("_ZnwmRKSt9nothrow_t");
  if (should_fail(n, FZ_CALLER)) return nullptr;
  return real(n, t);
}
void *operator new[](size_t n, const std::nothrow_t &t) noexcept {
  static const auto real = fz::fault::next<fz::fault::NewNothrowFn>("_ZnamRKSt9nothrow_t");
  if (should_fail(n, FZ_CALLER)) return nullptr;
  return real(n, t);
}
void *operator new(size_t n, std::align_val_t a) {
  static const auto real = fz::fault::next<fz::fault::NewAlignFn>("_ZnwmSt11align_val_t");
  if (should_fail(n, FZ_CALLER)) throw std::bad_alloc();
  return real(n, a);
}
void *operator new[](size_t n, std::align_val_t a) {
  static const auto real = fz::fault::next<fz::fault::NewAlignFn>("_ZnamSt11align_val_t");
  if (should_fail(n, FZ_CALLER)) throw std::bad_alloc();
  return real(n, a);
}
void *operator new(size_t n, std::align_val_t a, const std::nothrow_t &t) noexcept {
  static const auto real =
      fz::fault::next<fz::fault::NewAlignNothrowFn>("_ZnwmSt11align_val_tRKSt9nothrow_t");
  if (should_fail(n, FZ_CALLER)) return nullptr;
  return real(n, a, t);
}
void *operator new[](size_t n, std::align_val_t a, const std::nothrow_t &t) noexcept {
  static const auto real =
      fz::fault::next<fz::fault::NewAlignNothrowFn>("_ZnamSt11align_val_tRKSt9nothrow_t");
  if (should_fail(n, FZ_CALLER)) return nullptr;
  return real(n, a, t);
}

extern "C" void *aligned_alloc(size_t alignment, size_t size) {
  static const auto real = fz::fault::next<void *(*)(size_t, size_t)>("aligned_alloc");
  if (should_fail(size, FZ_CALLER)) {
    errno = ENOMEM;
    return nullptr;
  }
  return real(alignment, size);
}

extern "C" int posix_memalign(void **out, size_t alignment, size_t size) {
  static const auto real = fz::fault::next<int (*)(void **, size_t, size_t)>("posix_memalign");
  if (should_fail(size, FZ_CALLER)) return ENOMEM;
  return real(out, alignment, size);
}
