// Instruction-set detection and the run-time cap on it (winattn_set_max_isa, WINATTN_MAX_ISA).
#pragma once

namespace winattn::detail {

// Ordered: a higher level implies every lower one.
enum class Isa { scalar = 0, avx2 = 1, avx512 = 2, avx512_bf16 = 3 };

const char *isa_name(Isa isa);
// Parses a dispatch name ("scalar", "avx2", "avx512", "avx512_bf16"; "native" = the highest). False if
// unknown.
bool parse_isa(const char *name, Isa *isa);

// The best level this CPU and OS support (cpuid + xgetbv), detected once.
Isa cpu_isa();
// cpu_isa() capped by set_max_isa / WINATTN_MAX_ISA (env read once, at first use).
Isa active_isa();
void set_max_isa(Isa cap);

// Whether the CPU is an AMD one (cpuid vendor "AuthenticAMD"), detected once: a tuning hint, never a
// condition for correctness.
bool cpu_is_amd();

}  // namespace winattn::detail
