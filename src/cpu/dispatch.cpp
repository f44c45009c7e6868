#include "cpu/dispatch.h"

#include <cpuid.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
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

bool bit(unsigned word, int index) {
  return ((word >> index) & 1u) != 0;
}

CpuFeatures detect() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
  const bool osxsave = bit(ecx, 27), avx = bit(ecx, 28), fma = bit(ecx, 12), f16c = bit(ecx, 29);
  if (!osxsave || !avx) return 0;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;
  const bool tile_state = (xcr0 & 0x60000) == 0x60000;  // XTILECFG and XTILEDATA
  if (!ymm_state || __get_cpuid_max(0, nullptr) < 7) return 0;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = bit(ebx, 5);
  const bool avx512 = bit(ebx, 16) && bit(ebx, 17) && bit(ebx, 30) && bit(ebx, 31) && zmm_state;  // F DQ BW VL
  const bool vnni = bit(ecx, 11);
  const bool amx = bit(edx, 22) && bit(edx, 24) && tile_state;  // AMX-BF16, AMX-TILE
  unsigned eax1 = 0, ebx1 = 0, ecx1 = 0, edx1 = 0;
  __cpuid_count(7, 1, eax1, ebx1, ecx1, edx1);
  const bool bf16 = bit(eax1, 5);

  CpuFeatures features = 0;
  if (!(avx2 && fma && f16c)) return features;
  features |= kFeatureAvx2;
  if (!avx512) return features;
  features |= kFeatureAvx512;
  if (bf16) features |= kFeatureAvx512Bf16;
  if (vnni) features |= kFeatureAvx512Vnni;
  if (bf16 && amx) features |= kFeatureAmxBf16;
  return features;
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

struct Level {
  const char *name;
  CpuFeatures mask;
};
// Highest first: isa_level_name reports the first level a feature set contains.
constexpr Level kLevels[] = {
    {"amx_bf16", kFeatureAvx2 | kFeatureAvx512 | kFeatureAvx512Bf16 | kFeatureAvx512Vnni | kFeatureAmxBf16},
    {"avx512_bf16", kFeatureAvx2 | kFeatureAvx512 | kFeatureAvx512Bf16 | kFeatureAvx512Vnni},
    {"avx512", kFeatureAvx2 | kFeatureAvx512 | kFeatureAvx512Vnni},
    {"avx2", kFeatureAvx2},
    {"scalar", 0},
};

// The environment's cap is fixed at first use; the API's cap changes at any time.
CpuFeatures environment_cap() {
  static const CpuFeatures cap = [] {
    const char *env = std::getenv("WINATTN_MAX_ISA");
    CpuFeatures mask = kAllFeatures;
    if (env != nullptr && !parse_isa_level(env, &mask)) {
      std::fprintf(stderr,
                   "winattn: WINATTN_MAX_ISA=\"%.64s\" is not one of amx_bf16, avx512_bf16, avx512, avx2, "
                   "scalar, native; ignored\n",
                   env);
      mask = kAllFeatures;
    }
    return mask;
  }();
  return cap;
}

std::atomic<CpuFeatures> g_api_cap{kAllFeatures};

}  // namespace

CpuFeatures cpu_features() {
  static const CpuFeatures detected = detect();
  return detected;
}

CpuFeatures active_features() {
  return cpu_features() & environment_cap() & g_api_cap.load(std::memory_order_relaxed);
}

void set_feature_cap(CpuFeatures cap) {
  g_api_cap.store(cap, std::memory_order_relaxed);
}

bool parse_isa_level(const char *name, CpuFeatures *mask) {
  if (name == nullptr) return false;
  if (std::strcmp(name, "native") == 0) {
    *mask = kAllFeatures;
    return true;
  }
  for (const Level &level : kLevels) {
    if (std::strcmp(name, level.name) == 0) {
      *mask = level.mask;
      return true;
    }
  }
  return false;
}

const char *isa_level_name(CpuFeatures features) {
  for (const Level &level : kLevels) {
    // VNNI is not part of what a level promises below amx_bf16/avx512_bf16: a CPU with AVX-512 and no
    // VNNI is still "avx512".
    const CpuFeatures required = level.mask & ~kFeatureAvx512Vnni;
    if (has_features(features, required)) return level.name;
  }
  return "scalar";
}

bool cpu_is_amd() {
  static const bool amd = detect_amd();
  return amd;
}

int64_t cpu_l2_bytes() {
  static const int64_t bytes = [] {
    const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return reported > 0 ? static_cast<int64_t>(reported) : int64_t{512} << 10;
  }();
  return bytes;
}

}  // namespace winattn::detail
