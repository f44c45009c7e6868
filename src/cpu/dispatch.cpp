#include "cpu/dispatch.h"

#include <cpuid.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace winattn::detail {
namespace {

uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

Isa detect() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return Isa::scalar;
  const bool osxsave = (ecx >> 27) & 1;
  const bool fma = (ecx >> 12) & 1;
  const bool avx = (ecx >> 28) & 1;
  if (!osxsave || !avx || !fma) return Isa::scalar;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;
  if (!ymm_state) return Isa::scalar;
  if (__get_cpuid_max(0, nullptr) < 7) return Isa::scalar;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = (ebx >> 5) & 1;
  const bool avx512f = (ebx >> 16) & 1;
  const bool avx512dq = (ebx >> 17) & 1;
  const bool avx512bw = (ebx >> 30) & 1;
  const bool avx512vl = (ebx >> 31) & 1;
  if (!avx2) return Isa::scalar;
  if (!(avx512f && avx512dq && avx512bw && avx512vl && zmm_state)) return Isa::avx2;
  unsigned eax1 = 0, ebx1 = 0, ecx1 = 0, edx1 = 0;
  __cpuid_count(7, 1, eax1, ebx1, ecx1, edx1);
  const bool avx512_bf16 = (eax1 >> 5) & 1;
  return avx512_bf16 ? Isa::avx512_bf16 : Isa::avx512;
}

bool detect_amd() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return false;
  char vendor[12];
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  return std::memcmp(vendor, "AuthenticAMD", 12) == 0;
}

std::atomic<int> g_cap{-1};  // -1: not initialised yet; else an Isa value
std::once_flag g_env_once;

void read_environment_once() {
  std::call_once(g_env_once, [] {
    Isa cap = Isa::avx512_bf16;
    if (const char *env = std::getenv("WINATTN_MAX_ISA")) {
      if (!parse_isa(env, &cap)) cap = Isa::avx512_bf16;  // unknown names are ignored
    }
    int expected = -1;
    g_cap.compare_exchange_strong(expected, static_cast<int>(cap));
  });
}

}  // namespace

const char *isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return "scalar";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::avx512_bf16:
      return "avx512_bf16";
  }
  return "scalar";
}

bool parse_isa(const char *name, Isa *isa) {
  if (name == nullptr) return false;
  static const struct {
    const char *name;
    Isa isa;
  } kNames[] = {{"scalar", Isa::scalar},
                {"avx2", Isa::avx2},
                {"avx512", Isa::avx512},
                {"avx512_bf16", Isa::avx512_bf16},
                {"native", Isa::avx512_bf16}};
  for (const auto &entry : kNames) {
    if (std::strcmp(name, entry.name) == 0) {
      *isa = entry.isa;
      return true;
    }
  }
  return false;
}

Isa cpu_isa() {
  static const Isa detected = detect();
  return detected;
}

Isa active_isa() {
  read_environment_once();
  const int cap = g_cap.load(std::memory_order_relaxed);
  const int cpu = static_cast<int>(cpu_isa());
  return static_cast<Isa>(cap < cpu ? cap : cpu);
}

void set_max_isa(Isa cap) {
  read_environment_once();
  g_cap.store(static_cast<int>(cap), std::memory_order_relaxed);
}

bool cpu_is_amd() {
  static const bool amd = detect_amd();
  return amd;
}

}  // namespace winattn::detail
