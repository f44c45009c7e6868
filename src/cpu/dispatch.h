// CPU features the kernels may use, and the run-time cap on them (winattn_set_max_isa, WINATTN_MAX_ISA).
//
// Dispatch is by feature set, not by a ladder of levels: a kernel names the features it requires, and a
// kernel table picks the first entry whose features are all active. The cap is a mask over the same bits.
// The named levels of the C API ("avx2", "avx512", "avx512_bf16", "amx_bf16") are masks too.
#pragma once

#include <cstdint>

namespace winattn::detail {

using CpuFeatures = uint32_t;

enum CpuFeature : CpuFeatures {
  kFeatureAvx2 = 1u << 0,        // AVX2, FMA and F16C, with the OS saving ymm state
  kFeatureAvx512 = 1u << 1,      // AVX-512 F, BW, DQ and VL, with the OS saving zmm state
  kFeatureAvx512Bf16 = 1u << 2,  // AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16)
  kFeatureAvx512Vnni = 1u << 3,  // AVX512_VNNI
  kFeatureAmxBf16 = 1u << 4,     // AMX-TILE and AMX-BF16, with the OS supporting tile state (XCR0)
};
constexpr CpuFeatures kAllFeatures =
    kFeatureAvx2 | kFeatureAvx512 | kFeatureAvx512Bf16 | kFeatureAvx512Vnni | kFeatureAmxBf16;

// Whether every feature of `required` is in `available`.
constexpr bool has_features(CpuFeatures available, CpuFeatures required) {
  return (available & required) == required;
}

// The features of this CPU and OS (cpuid + xgetbv), detected once. A feature is only reported with the ones
// it builds on (AVX-512 with AVX2, BF16 and VNNI with AVX-512), so masks stay consistent.
CpuFeatures cpu_features();

// The features the kernels may use now: cpu_features() & the environment's cap & set_feature_cap's cap.
CpuFeatures active_features();
// Sets the API's own cap (kAllFeatures lifts it; the environment's cap stays).
void set_feature_cap(CpuFeatures cap);

// The named levels: a level's mask, and the name of the highest level a feature set contains.
// "native" parses to kAllFeatures. False for an unknown (or null) name.
bool parse_isa_level(const char *name, CpuFeatures *mask);
const char *isa_level_name(CpuFeatures features);

// Whether the CPU is an AMD one (cpuid vendor "AuthenticAMD"), detected once: a tuning hint, never a
// condition for correctness.
bool cpu_is_amd();

// The size of one core's L2 cache in bytes (sysconf(_SC_LEVEL2_CACHE_SIZE), detected once; 512 KiB where the
// system does not say): a tuning hint, never a condition for correctness.
int64_t cpu_l2_bytes();

}  // namespace winattn::detail
