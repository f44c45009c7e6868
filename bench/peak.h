// FMA peak probe: how many fp32 FLOP/s this CPU's fused multiply-add units deliver, measured in the calling
// process right now (on a shared or throttled machine the figure moves; a share of a peak measured in the
// same process is the stable number).
#ifndef WINATTN_BENCH_PEAK_H_
#define WINATTN_BENCH_PEAK_H_

#include <cstdint>

namespace winattn_bench {

enum class PeakIsa { kAvx512, kAvx2, kNone };

// "avx512", "avx2" or "none".
const char *peak_isa_name(PeakIsa isa);

// The widest probe the CPU supports (cpuid, via __builtin_cpu_supports).
PeakIsa best_peak_isa();

// fp32 FMA GFLOP/s summed over `threads` threads that run the probe at the same time (an OpenMP team, so
// OMP_PROC_BIND/OMP_PLACES apply as they do to the library), each the median of `repeats` short runs
// (~7 ms each) after a warm-up run. Returns 0 when `isa` is not supported by this CPU, threads < 1, or
// OpenMP gave fewer threads.
double measure_fma_peak_gflops(PeakIsa isa, int threads, int repeats = 9);

// The kernels (peak_avx512.cpp, peak_avx2.cpp; each compiled for its ISA only). Each runs `iterations`
// steps of 12 independent FMA chains and returns the FLOP count done.
double fma_probe_avx512(int64_t iterations);
double fma_probe_avx2(int64_t iterations);

}  // namespace winattn_bench

#endif  // WINATTN_BENCH_PEAK_H_
